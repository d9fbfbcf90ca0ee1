//! Unit tests for token verification and its error texts. Keys live in
//! `tests/fixtures/jwt/` (made by its `gen.sh`).
//!
//! `texts`: every client-visible string; `keys`: key selection, signatures
//! and token structure; `claims`: claim validation, token cleaning, and
//! proptests that garbage never panics.

mod claims;
mod keys;
mod texts;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

pub(super) use super::*;

pub(super) const NOW: i64 = 1_700_000_000;
pub(super) const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

pub(super) const RSA_PEM: &str = include_str!("../../../../tests/fixtures/jwt/rsa.pem");
pub(super) const EC256_PEM: &str = include_str!("../../../../tests/fixtures/jwt/ec256.pem");
pub(super) const EC384_PEM: &str = include_str!("../../../../tests/fixtures/jwt/ec384.pem");
pub(super) const ED25519_PEM: &str = include_str!("../../../../tests/fixtures/jwt/ed25519.pem");
pub(super) const JWKS: &str = include_str!("../../../../tests/fixtures/jwt/jwks.json");

pub(super) fn jwks() -> Value {
    serde_json::from_str(JWKS).unwrap()
}

pub(super) fn secret_keys() -> JwtKeys {
    JwtKeys {
        secret: Some(SECRET.into()),
        jwks: None,
    }
}

pub(super) fn all_keys() -> JwtKeys {
    JwtKeys {
        secret: Some(SECRET.into()),
        jwks: Some(jwks()),
    }
}

pub(super) fn good_claims() -> Value {
    json!({"role": "authenticated", "exp": NOW + 3600, "sub": "user-1", "iat": NOW})
}

pub(super) fn b64json(v: &Value) -> String {
    B64.encode(v.to_string())
}

/// A token with this exact header, signed by `key` with `alg`.
pub(super) fn sign(alg: Algorithm, key: &EncodingKey, header: Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64json(&header), b64json(claims));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

pub(super) fn hs(alg: &str, secret: &[u8], header_extra: Value, claims: &Value) -> String {
    let a = match alg {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        _ => Algorithm::HS512,
    };
    let mut header = json!({"alg": alg, "typ": "JWT"});
    if let (Value::Object(h), Value::Object(extra)) = (&mut header, header_extra) {
        h.extend(extra);
    }
    sign(
        a,
        &EncodingKey::from_secret(secret).unwrap(),
        header,
        claims,
    )
}

pub(super) fn rs256(kid: Option<&str>, claims: &Value) -> String {
    let header = match kid {
        Some(kid) => json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
        None => json!({"alg": "RS256", "typ": "JWT"}),
    };
    sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap(),
        header,
        claims,
    )
}

pub(super) fn es512(kid: &str, claims: &Value) -> String {
    use p521::ecdsa::signature::Signer;
    let jwk = jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "ec521-1")
        .cloned()
        .unwrap();
    let d = B64.decode(jwk["d"].as_str().unwrap()).unwrap();
    let sk = p521::ecdsa::SigningKey::from_slice(&d).unwrap();
    let message = format!(
        "{}.{}",
        b64json(&json!({"alg": "ES512", "kid": kid})),
        b64json(claims)
    );
    let sig: p521::ecdsa::Signature = sk.sign(message.as_bytes());
    format!("{message}.{}", B64.encode(sig.to_bytes()))
}

pub(super) fn verify_all(token: &str) -> Result<Claims, AuthError> {
    verify(token, &all_keys(), &ClaimValidators::default(), NOW)
}

/// Changes the first character of the signature (always a data bit, unlike
/// the last one, whose low bits may be padding).
pub(super) fn tamper(token: &str) -> String {
    let at = token.rfind('.').unwrap() + 1;
    let first = token.as_bytes()[at];
    let other = if first == b'A' { "B" } else { "A" };
    format!("{}{other}{}", &token[..at], &token[at + 1..])
}
