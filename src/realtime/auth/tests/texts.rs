//! Every error text, as each place reports it.

use serde_json::json;

use super::*;

// ---- error texts -------------------------------------------------------

#[test]
fn connect_errors_match_protocol() {
    let kid_text = "Failed to generate JWT signer for key ID (kid) \"k\\\"1\", check your JWT secret or JWKS configuration";
    let cases: Vec<(AuthError, u16, &str)> = vec![
        (AuthError::MissingApiKey, 401, "API key is missing"),
        (
            AuthError::Expired { seconds_ago: 5 },
            401,
            "Token has expired",
        ),
        (
            AuthError::MissingClaims,
            401,
            "Fields `role` and `exp` are required in JWT",
        ),
        (
            AuthError::Malformed,
            401,
            "The token provided is not a valid JWT",
        ),
        (
            AuthError::BadSignature,
            401,
            "Failed to validate JWT signature",
        ),
        (
            AuthError::Signer,
            401,
            "Failed to generate JWT signer, check your JWT secret or JWKS configuration",
        ),
        (AuthError::SignerKid("k\"1".into()), 401, kid_text),
        (AuthError::ExpInvalid, 500, "Error connecting to Realtime"),
        (
            AuthError::ClaimsNotObject,
            500,
            "Error connecting to Realtime",
        ),
        (
            AuthError::HeaderNotObject,
            500,
            "Error connecting to Realtime",
        ),
        (
            AuthError::InvalidClaim {
                claim: "iss".into(),
                value: json!("x"),
                now: NOW,
            },
            500,
            "Error connecting to Realtime",
        ),
        (
            AuthError::Other("boom".into()),
            500,
            "Error connecting to Realtime",
        ),
    ];
    for (err, status, text) in cases {
        assert_eq!(err.connect_error(), (status, text.to_string()), "{err:?}");
    }
}

#[test]
fn join_reasons_match_protocol() {
    let cases: Vec<(AuthError, &str)> = vec![
        (AuthError::Expired { seconds_ago: 42 }, "InvalidJWTToken: Token has expired 42 seconds ago"),
        (AuthError::MissingClaims, "InvalidJWTToken: Fields `role` and `exp` are required in JWT"),
        (AuthError::ExpInvalid, "InvalidJWTToken: Token expiration time is invalid"),
        (AuthError::Malformed, "MalformedJWT: The token provided is not a valid JWT"),
        (AuthError::BadSignature, "JwtSignatureError: Failed to validate JWT signature"),
        (
            AuthError::Signer,
            "JwtSignerError: Failed to generate JWT signer, check your JWT secret or JWKS configuration",
        ),
        (
            AuthError::SignerKid("key-1".into()),
            "JwtSignerError: Failed to generate JWT signer for key ID (kid) \"key-1\", check your JWT secret or JWKS configuration",
        ),
        (AuthError::ClaimsNotObject, "Unknown Error on Channel"),
        (AuthError::HeaderNotObject, "Unknown Error on Channel"),
        (
            AuthError::InvalidClaim { claim: "iat".into(), value: json!("1"), now: NOW },
            "Unknown Error on Channel",
        ),
        (AuthError::Other("x".into()), "Unknown Error on Channel"),
    ];
    for (err, reason) in cases {
        assert_eq!(err.join_reason(), reason, "{err:?}");
    }
}

#[test]
fn shutdown_messages_match_the_elixir_server() {
    let cases: Vec<(AuthError, &str)> = vec![
        (AuthError::Expired { seconds_ago: 7 }, "Token has expired 7 seconds ago"),
        (AuthError::MissingClaims, "Fields `role` and `exp` are required in JWT"),
        (AuthError::Malformed, "The token provided is not a valid JWT"),
        (AuthError::BadSignature, ":signature_error"),
        (AuthError::Signer, ":error_generating_signer"),
        (
            AuthError::SignerKid("kid-9".into()),
            "Failed to generate JWT signer for key ID (kid) \"kid-9\", check your JWT secret or JWKS configuration",
        ),
        (AuthError::ExpInvalid, "0"),
        (AuthError::ClaimsNotObject, ":expected_claims_map"),
        (AuthError::HeaderNotObject, ":expected_header_map"),
        (
            AuthError::InvalidClaim { claim: "exp".into(), value: json!(1699999999.5), now: NOW },
            "[message: 1700000000, claim: \"exp\", claim_val: 1699999999.5]",
        ),
        (
            AuthError::InvalidClaim { claim: "iss".into(), value: json!(null), now: NOW },
            "[message: \"Invalid token\", claim: \"iss\", claim_val: :null]",
        ),
    ];
    for (err, msg) in cases {
        assert_eq!(err.shutdown_message(), msg, "{err:?}");
    }
}

#[test]
fn log_codes() {
    assert_eq!(
        AuthError::Expired { seconds_ago: 1 }.log_code(),
        "InvalidJWTToken"
    );
    assert_eq!(AuthError::Malformed.log_code(), "MalformedJWT");
    assert_eq!(
        AuthError::SignerKid("a".into()).log_code(),
        "JwtSignerError"
    );
    assert_eq!(
        AuthError::ClaimsNotObject.log_code(),
        "UnknownErrorOnChannel"
    );
}
