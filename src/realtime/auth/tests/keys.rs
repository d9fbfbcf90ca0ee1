//! Key selection, signatures and token structure.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use super::*;

// ---- HS tokens -----------------------------------------------------------

#[test]
fn hs256_384_512_with_the_secret() {
    for alg in ["HS256", "HS384", "HS512"] {
        let token = hs(alg, SECRET.as_bytes(), json!({}), &good_claims());
        let claims = verify(&token, &secret_keys(), &ClaimValidators::default(), NOW).unwrap();
        assert_eq!(claims.role, "authenticated");
        assert_eq!(claims.exp, NOW + 3600);
        assert_eq!(claims.sub.as_deref(), Some("user-1"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&claims.json).unwrap()["iat"],
            json!(NOW)
        );
        let wrong = hs(alg, b"another-secret", json!({}), &good_claims());
        assert_eq!(verify_all(&wrong), Err(AuthError::BadSignature), "{alg}");
        assert_eq!(
            verify_all(&tamper(&token)),
            Err(AuthError::BadSignature),
            "{alg}"
        );
    }
}

#[test]
fn sign_hs256_round_trips() {
    let token = sign_hs256(SECRET, &good_claims());
    assert!(token.starts_with("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9."));
    assert_eq!(verify_all(&token).unwrap().role, "authenticated");
    // The empty secret is a valid HMAC key.
    let keys = JwtKeys {
        secret: Some(String::new()),
        jwks: None,
    };
    let token = sign_hs256("", &good_claims());
    assert!(verify(&token, &keys, &ClaimValidators::default(), NOW).is_ok());
}

#[test]
fn the_secret_is_raw_bytes_not_base64() {
    // "c2VjcmV0" is base64 for "secret": only the literal bytes verify.
    let keys = JwtKeys {
        secret: Some("c2VjcmV0".into()),
        jwks: None,
    };
    let token = hs("HS256", b"c2VjcmV0", json!({}), &good_claims());
    assert!(verify(&token, &keys, &ClaimValidators::default(), NOW).is_ok());
    let token = hs("HS256", b"secret", json!({}), &good_claims());
    assert_eq!(
        verify(&token, &keys, &ClaimValidators::default(), NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn oct_jwk_selected_by_kid() {
    let oct_secret = b"an oct key from the JWKS";
    let keys = JwtKeys {
        secret: Some(SECRET.into()),
        jwks: Some(json!({"keys": [
            {"kty": "oct", "kid": "wrong-type"},
            {"kty": "oct", "kid": "hs-1", "k": B64.encode(oct_secret)},
            {"kty": "oct", "kid": "bad-k", "k": "not base64!"},
        ]})),
    };
    let v = ClaimValidators::default();
    let token = hs("HS256", oct_secret, json!({"kid": "hs-1"}), &good_claims());
    assert!(verify(&token, &keys, &v, NOW).is_ok());
    // The same kid signed with the tenant secret does not verify.
    let token = hs(
        "HS256",
        SECRET.as_bytes(),
        json!({"kid": "hs-1"}),
        &good_claims(),
    );
    assert_eq!(verify(&token, &keys, &v, NOW), Err(AuthError::BadSignature));
    // A kid with no oct key (or one without `k`) falls back to the secret.
    for kid in ["unknown", "wrong-type"] {
        let token = hs(
            "HS384",
            SECRET.as_bytes(),
            json!({"kid": kid}),
            &good_claims(),
        );
        assert!(verify(&token, &keys, &v, NOW).is_ok(), "{kid}");
    }
    // An oct key whose `k` is not base64url is a signer error for that kid.
    let token = hs(
        "HS256",
        SECRET.as_bytes(),
        json!({"kid": "bad-k"}),
        &good_claims(),
    );
    assert_eq!(
        verify(&token, &keys, &v, NOW),
        Err(AuthError::SignerKid("bad-k".into()))
    );
    // Padded `k` is accepted as Elixir's decoder does.
    let padded = JwtKeys {
        secret: None,
        jwks: Some(json!({"keys": [{"kty": "oct", "kid": "p", "k": "YWJjZA=="}]})),
    };
    let token = hs("HS256", b"abcd", json!({"kid": "p"}), &good_claims());
    assert!(verify(&token, &padded, &v, NOW).is_ok());
}

#[test]
fn hs_without_a_secret_is_a_signer_error() {
    let keys = JwtKeys {
        secret: None,
        jwks: Some(jwks()),
    };
    let v = ClaimValidators::default();
    let token = hs("HS256", SECRET.as_bytes(), json!({}), &good_claims());
    assert_eq!(verify(&token, &keys, &v, NOW), Err(AuthError::Signer));
    let token = hs(
        "HS256",
        SECRET.as_bytes(),
        json!({"kid": "nope"}),
        &good_claims(),
    );
    assert_eq!(
        verify(&token, &keys, &v, NOW),
        Err(AuthError::SignerKid("nope".into()))
    );
}

// ---- asymmetric tokens ---------------------------------------------------

#[test]
fn rs256_with_jwks() {
    let token = rs256(Some("rsa-1"), &good_claims());
    assert_eq!(verify_all(&token).unwrap().role, "authenticated");
    assert_eq!(verify_all(&tamper(&token)), Err(AuthError::BadSignature));
    // No JWK with that kid (or of the right kty) names the kid.
    assert_eq!(
        verify_all(&rs256(Some("ec256-1"), &good_claims())),
        Err(AuthError::SignerKid("ec256-1".into()))
    );
    // No kid, or no JWKS at all: the plain signer error.
    assert_eq!(
        verify_all(&rs256(None, &good_claims())),
        Err(AuthError::Signer)
    );
    assert_eq!(
        verify(&token, &secret_keys(), &ClaimValidators::default(), NOW),
        Err(AuthError::Signer)
    );
}

#[test]
fn es256_and_es384_with_jwks() {
    for (alg, pem, kid) in [
        (Algorithm::ES256, EC256_PEM, "ec256-1"),
        (Algorithm::ES384, EC384_PEM, "ec384-1"),
    ] {
        let name = format!("{alg:?}");
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        let token = sign(alg, &key, json!({"alg": name, "kid": kid}), &good_claims());
        assert!(verify_all(&token).is_ok(), "{name}");
        assert_eq!(
            verify_all(&tamper(&token)),
            Err(AuthError::BadSignature),
            "{name}"
        );
        let other = sign(
            alg,
            &key,
            json!({"alg": name, "kid": "missing"}),
            &good_claims(),
        );
        assert_eq!(
            verify_all(&other),
            Err(AuthError::SignerKid("missing".into()))
        );
    }
    // A P-256 signature checked against the P-384 key never verifies.
    let key = EncodingKey::from_ec_pem(EC256_PEM.as_bytes()).unwrap();
    let token = sign(
        Algorithm::ES256,
        &key,
        json!({"alg": "ES256", "kid": "ec384-1"}),
        &good_claims(),
    );
    assert!(matches!(
        verify_all(&token),
        Err(AuthError::SignerKid(_) | AuthError::BadSignature)
    ));
}

#[test]
fn es512_with_jwks() {
    let token = es512("ec521-1", &good_claims());
    assert!(verify_all(&token).is_ok());
    assert_eq!(verify_all(&tamper(&token)), Err(AuthError::BadSignature));
    assert_eq!(
        verify_all(&es512("nope", &good_claims())),
        Err(AuthError::SignerKid("nope".into()))
    );
}

#[test]
fn eddsa_with_jwks() {
    let key = EncodingKey::from_ed_pem(ED25519_PEM.as_bytes()).unwrap();
    for alg in ["EdDSA", "Ed25519"] {
        let token = sign(
            Algorithm::EdDSA,
            &key,
            json!({"alg": alg, "kid": "ed-1"}),
            &good_claims(),
        );
        assert!(verify_all(&token).is_ok(), "{alg}");
        assert_eq!(
            verify_all(&tamper(&token)),
            Err(AuthError::BadSignature),
            "{alg}"
        );
    }
    let token = sign(
        Algorithm::EdDSA,
        &key,
        json!({"alg": "Ed448", "kid": "ed-1"}),
        &good_claims(),
    );
    assert_eq!(verify_all(&token), Err(AuthError::BadSignature));
    // An OKP key on a curve that cannot sign is a signer error for its kid.
    let keys = JwtKeys {
        secret: None,
        jwks: Some(json!({"keys": [{"kty": "OKP", "crv": "X25519", "kid": "x", "x": "AAAA"}]})),
    };
    let token = sign(
        Algorithm::EdDSA,
        &key,
        json!({"alg": "EdDSA", "kid": "x"}),
        &good_claims(),
    );
    assert_eq!(
        verify(&token, &keys, &ClaimValidators::default(), NOW),
        Err(AuthError::SignerKid("x".into()))
    );
    // Short key material is refused rather than sliced.
    let keys = JwtKeys {
        secret: None,
        jwks: Some(json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "x", "x": "AAAA"}]})),
    };
    assert_eq!(
        verify(&token, &keys, &ClaimValidators::default(), NOW),
        Err(AuthError::SignerKid("x".into()))
    );
}

#[test]
fn unusable_jwks_never_panic() {
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "r", "n": "AA", "e": "AA"},
        {"kty": "RSA", "kid": "r2", "n": "AQ", "e": "AQAB"},
        {"kty": "EC", "kid": "e", "x": "AA", "y": "AA"},
        {"kty": "EC", "kid": "e5", "x": "AA", "y": "AA"},
        "not an object",
        null,
    ]});
    let keys = JwtKeys {
        secret: None,
        jwks: Some(jwks),
    };
    for (alg, kid) in [
        ("RS256", "r"),
        ("RS512", "r2"),
        ("ES256", "e"),
        ("ES384", "e"),
        ("ES512", "e5"),
    ] {
        let token = format!(
            "{}.{}.AAAA",
            b64json(&json!({"alg": alg, "kid": kid})),
            b64json(&good_claims())
        );
        let err = verify(&token, &keys, &ClaimValidators::default(), NOW).unwrap_err();
        assert!(
            matches!(err, AuthError::SignerKid(_) | AuthError::BadSignature),
            "{alg}: {err:?}"
        );
    }
    // "keys" that is not a list finds nothing.
    let keys = JwtKeys {
        secret: None,
        jwks: Some(json!({"keys": {"kid": "r"}})),
    };
    let token = rs256(Some("r"), &good_claims());
    assert_eq!(
        verify(&token, &keys, &ClaimValidators::default(), NOW),
        Err(AuthError::SignerKid("r".into()))
    );
}

#[test]
fn unsupported_algs_are_signer_errors() {
    for header in [
        json!({"alg": "PS256", "kid": "rsa-1"}),
        json!({"alg": "none"}),
        json!({"alg": "ZZ999"}),
        json!({"kid": "rsa-1"}),
        json!({"alg": 256}),
        json!({"alg": "RS256", "kid": 1}),
    ] {
        let token = format!("{}.{}.sig", b64json(&header), b64json(&good_claims()));
        assert_eq!(verify_all(&token), Err(AuthError::Signer), "{header}");
    }
    let keys = JwtKeys {
        secret: None,
        jwks: Some(json!({"keys": [{"kty": "OKP", "crv": "Ed448", "kid": "e448", "x": "AA"}]})),
    };
    let token = format!(
        "{}.{}.sig",
        b64json(&json!({"alg": "Ed448", "kid": "e448"})),
        b64json(&good_claims())
    );
    assert!(matches!(
        verify(&token, &keys, &ClaimValidators::default(), NOW),
        Err(AuthError::Other(_))
    ));
}

// ---- structure -----------------------------------------------------------

#[test]
fn malformed_tokens() {
    let claims = b64json(&good_claims());
    let header = b64json(&json!({"alg": "HS256"}));
    for token in [
        "bad_token".to_string(),
        String::new(),
        "e30=".to_string(),
        format!("{header}.{claims}"),
        format!("{header}.{claims}.sig.extra"),
        format!("{header}.not*base64.sig"),
        format!("{header}.{}.sig", B64.encode("not json")),
        format!("{header}..sig"),
        format!("{}.{claims}.sig", B64.encode("{bad")),
    ] {
        assert_eq!(verify_all(&token), Err(AuthError::Malformed), "{token}");
    }
    // Claims checked before the header.
    let token = format!("!!.{}.sig", B64.encode("[]"));
    assert_eq!(verify_all(&token), Err(AuthError::ClaimsNotObject));
    let token = format!("{}.{claims}.sig", B64.encode("[]"));
    assert_eq!(verify_all(&token), Err(AuthError::HeaderNotObject));
    let token = format!("!!.{claims}.sig");
    assert_eq!(verify_all(&token), Err(AuthError::HeaderNotObject));
    // A signature that is not base64url cannot match.
    let token = format!("{header}.{claims}.***");
    assert_eq!(verify_all(&token), Err(AuthError::BadSignature));
}

#[test]
fn base64url_like_elixir_padding_false() {
    use super::signer::b64url_decode as d;
    assert_eq!(d("YWJj"), Some(b"abc".to_vec()));
    assert_eq!(d("YWI"), Some(b"ab".to_vec()));
    assert_eq!(d("YWI="), Some(b"ab".to_vec()));
    assert_eq!(d("YQ"), Some(b"a".to_vec()));
    assert_eq!(d("YQ=="), Some(b"a".to_vec()));
    assert_eq!(
        d("YR"),
        Some(b"a".to_vec()),
        "non-zero trailing bits are dropped"
    );
    assert_eq!(d(""), Some(vec![]));
    assert_eq!(d("YQ="), None);
    assert_eq!(d("Y"), None);
    assert_eq!(d("Y==="), None);
    assert_eq!(d("YW=j"), None);
    assert_eq!(d("Y+/A"), None, "standard alphabet is refused");
}

#[test]
fn admin_api_check_tries_each_secret() {
    let v = ClaimValidators::default();
    // No role/exp needed, exp checked when present.
    let token = sign_hs256("next-secret", &json!({"iss": "admin"}));
    assert!(verify_hs(&token, &["old-secret", "next-secret"], &v, NOW).is_ok());
    assert!(verify_hs_any(&token, "next-secret", NOW));
    assert!(!verify_hs_any(&token, "old-secret", NOW));
    let expired = sign_hs256("s", &json!({"exp": NOW - 1}));
    assert_eq!(
        verify_hs(&expired, &["s"], &v, NOW),
        Err(AuthError::Expired { seconds_ago: 1 })
    );
    // Asymmetric tokens never pass: there is no JWKS here.
    assert_eq!(
        verify_hs(&rs256(Some("rsa-1"), &good_claims()), &["s"], &v, NOW),
        Err(AuthError::Signer)
    );
    // The header value is URI-decoded twice (router, then authorize/3).
    let double = token.replace('.', "%252E");
    assert!(verify_hs_any(&double, "next-secret", NOW));
    assert!(verify_hs(&token, &[], &v, NOW).is_err());
}

#[test]
fn kid_is_inspected() {
    let err = AuthError::SignerKid("a\u{1}".into());
    assert_eq!(
        err.connect_error().1,
        "Failed to generate JWT signer for key ID (kid) <<97, 1>>, check your JWT secret or JWKS configuration"
    );
    let err = AuthError::SignerKid("#{x}\n".into());
    assert!(err.join_reason().contains("(kid) \"\\#{x}\\n\","));
}

/// Every other token here is made with `jsonwebtoken`, the library the
/// verifier itself uses: this one was made elsewhere (jwt.io's published
/// HS256 example), so a bug the two share cannot pass unseen.
#[test]
fn an_hs256_token_signed_outside_this_code_verifies() {
    const JWT_IO: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
        eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
        SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    let v = ClaimValidators::default();
    let claims = verify_hs(JWT_IO, &["your-256-bit-secret"], &v, NOW).unwrap();
    assert_eq!(claims["name"], "John Doe");
    assert_eq!(
        verify_hs(JWT_IO, &["your-256-bit-secreT"], &v, NOW),
        Err(AuthError::BadSignature)
    );
}
