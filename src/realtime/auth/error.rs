//! Why a token was refused, with the Elixir server's texts; a leaf shared
//! by the verifier, `signer` and `memo`.

use serde_json::Value;

use super::inspect::{self, ClaimMessage};

/// Why a token was refused. Variants are the Elixir server's error terms.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// No `x-api-key` header and no `apikey` param (`:missing_api_key`).
    #[error("API key is missing")]
    MissingApiKey,
    /// Integer `exp` at or before now (`{:expired_token, msg}`).
    #[error("Token has expired {seconds_ago} seconds ago")]
    Expired {
        /// `now - exp`; 0 when `exp == now`.
        seconds_ago: i64,
    },
    /// Valid token without `role` or `exp` (`:missing_claims`).
    #[error("Fields `role` and `exp` are required in JWT")]
    MissingClaims,
    /// Channel token whose rounded `exp` is not after now (`{:error, exp - now}`).
    #[error("Token expiration time is invalid")]
    ExpInvalid,
    /// Not three `.`-separated parts, claims not base64url, or a header or
    /// claims part that is not JSON (`:token_malformed`).
    #[error("The token provided is not a valid JWT")]
    Malformed,
    /// Signature does not match (`:signature_error`).
    #[error("Failed to validate JWT signature")]
    BadSignature,
    /// No usable key: unknown `alg`, asymmetric `alg` without `kid` or without
    /// a JWKS, or no secret (`:error_generating_signer`).
    #[error("Failed to generate JWT signer, check your JWT secret or JWKS configuration")]
    Signer,
    /// No usable JWK for this `kid` (`{:error_generating_signer, kid}`).
    #[error(
        "Failed to generate JWT signer for key ID (kid) {}, check your JWT secret or JWKS configuration",
        inspect::string(.0)
    )]
    SignerKid(String),
    /// The claims part is JSON but not an object (`:expected_claims_map`).
    #[error(":expected_claims_map")]
    ClaimsNotObject,
    /// The header part is not base64url, or is JSON but not an object
    /// (`:expected_header_map`).
    #[error(":expected_header_map")]
    HeaderNotObject,
    /// A claim failed validation other than an integer `exp` in the past: a
    /// non-numeric or decimal expired `exp`, a non-numeric `iat`, or a
    /// `JWT_CLAIM_VALIDATORS` mismatch (Joken's keyword-list error).
    #[error("{}", inspect::claim_error(&claim_message(claim, *now), claim, value))]
    InvalidClaim {
        /// The claim that failed.
        claim: String,
        /// Its value in the token.
        value: Value,
        /// The validation time (reported for `exp`).
        now: i64,
    },
    /// Anything else (e.g. an Ed448 key, which this server cannot verify).
    #[error("{0}")]
    Other(String),
}

impl AuthError {
    /// HTTP status and `{"error": ...}` text of a refused WebSocket connect
    /// (PROTOCOL 1.5).
    pub fn connect_error(&self) -> (u16, String) {
        match self {
            AuthError::MissingApiKey
            | AuthError::MissingClaims
            | AuthError::Malformed
            | AuthError::BadSignature
            | AuthError::Signer
            | AuthError::SignerKid(_) => (401, self.to_string()),
            AuthError::Expired { .. } => (401, "Token has expired".into()),
            _ => (500, "Error connecting to Realtime".into()),
        }
    }

    /// `reason` of the `phx_reply` refusing a join (PROTOCOL 3.3).
    pub fn join_reason(&self) -> String {
        match self {
            AuthError::Expired { .. } | AuthError::MissingClaims | AuthError::ExpInvalid => {
                format!("InvalidJWTToken: {self}")
            }
            AuthError::Malformed => format!("MalformedJWT: {self}"),
            AuthError::BadSignature => format!("JwtSignatureError: {self}"),
            AuthError::Signer | AuthError::SignerKid(_) => format!("JwtSignerError: {self}"),
            _ => "Unknown Error on Channel".into(),
        }
    }

    /// `message` of the `system` error that shuts a channel down when an
    /// `access_token` refresh or the periodic re-check fails (PROTOCOL 3.5):
    /// the text for errors the Elixir server names, else its `inspect`.
    pub fn shutdown_message(&self) -> String {
        match self {
            AuthError::BadSignature => ":signature_error".into(),
            AuthError::Signer => ":error_generating_signer".into(),
            AuthError::MissingApiKey => ":missing_api_key".into(),
            // `{:error, exp - now}` with `exp - now` always 0 here.
            AuthError::ExpInvalid => "0".into(),
            _ => self.to_string(),
        }
    }

    /// Error code the Elixir server logs this under.
    pub fn log_code(&self) -> &'static str {
        match self {
            AuthError::MissingApiKey => "MissingAPIKey",
            AuthError::Expired { .. } | AuthError::MissingClaims | AuthError::ExpInvalid => {
                "InvalidJWTToken"
            }
            AuthError::Malformed => "MalformedJWT",
            AuthError::BadSignature => "JwtSignatureError",
            AuthError::Signer | AuthError::SignerKid(_) => "JwtSignerError",
            _ => "UnknownErrorOnChannel",
        }
    }
}

fn claim_message(claim: &str, now: i64) -> ClaimMessage {
    if claim == "exp" {
        ClaimMessage::Now(now)
    } else {
        ClaimMessage::InvalidToken
    }
}
