//! Choosing the key a token is checked with (`generate_signer` in the Elixir
//! server's `JwtVerification`) and checking its signature.
//!
//! The header's `alg` picks the family; asymmetric families need a `kid`
//! naming a JWK of the right `kty` in the tenant's `jwt_jwks.keys`. HS tokens
//! use an `oct` JWK named by their `kid` when there is one, else the tenant's
//! `jwt_secret` as raw bytes.

use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use base64::{alphabet, Engine};
use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier};
use jsonwebtoken::signature::Verifier as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::error::AuthError;
use super::keys::JwtKeys;

/// Base64url without padding that keeps non-zero trailing bits, as Elixir's
/// `Base.url_decode64(s, padding: false)` does.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// `Base.url_decode64(s, padding: false)`: padding is optional but, when
/// present, must be the canonical `=`/`==` at the end of a 4-aligned input.
pub(super) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let body = if s.contains('=') {
        if s.len() % 4 != 0 {
            return None;
        }
        let body = s.strip_suffix("==").or_else(|| s.strip_suffix('='))?;
        if body.contains('=') {
            return None;
        }
        body
    } else {
        s
    };
    B64URL.decode(body).ok()
}

/// A key ready to check one token's signature.
pub(super) enum Key {
    /// Anything `jsonwebtoken` verifies (HS*, RS*, ES256, ES384, EdDSA).
    Jwt(Box<dyn JwtVerifier>),
    /// ES512, which `jsonwebtoken` lacks.
    P521(p521::ecdsa::VerifyingKey),
    /// A key no signature of this alg can match (an Ed448 token naming an
    /// Ed25519 key).
    Never,
}

impl Key {
    /// Whether `signature` signs `message` (`header.payload`).
    pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Key::Jwt(v) => v.verify(message, &signature.to_vec()).is_ok(),
            Key::P521(k) => p521::ecdsa::Signature::from_slice(signature)
                .map(|s| k.verify(message, &s).is_ok())
                .unwrap_or(false),
            Key::Never => false,
        }
    }
}

/// The key for a token with this header, or the signer error the Elixir
/// server gives (`:error_generating_signer` or `{:error_generating_signer, kid}`).
pub(super) fn select(header: &Map<String, Value>, keys: &JwtKeys) -> Result<Key, AuthError> {
    let Some(alg) = header.get("alg").and_then(Value::as_str) else {
        return Err(AuthError::Signer);
    };
    let kid = header.get("kid").and_then(Value::as_str);
    // `%{"keys" => keys}`: any value under "keys" selects the JWKS clauses.
    let jwks: Option<&[Value]> = keys
        .jwks
        .as_ref()
        .and_then(Value::as_object)
        .and_then(|o| o.get("keys"))
        .map(|k| k.as_array().map(Vec::as_slice).unwrap_or(&[]));

    match alg {
        "RS256" | "RS384" | "RS512" | "ES256" | "ES384" | "ES512" | "Ed25519" | "Ed448"
        | "EdDSA" => {
            let (Some(kid), Some(jwks)) = (kid, jwks) else {
                return Err(AuthError::Signer);
            };
            let kty = match alg.as_bytes()[0] {
                b'R' => "RSA",
                b'E' if alg.starts_with("ES") => "EC",
                _ => "OKP",
            };
            let jwk = find(jwks, kty, kid).ok_or_else(|| AuthError::SignerKid(kid.to_owned()))?;
            asymmetric(alg, kid, jwk)
        }
        "HS256" | "HS384" | "HS512" => {
            let alg = match alg {
                "HS256" => Algorithm::HS256,
                "HS384" => Algorithm::HS384,
                _ => Algorithm::HS512,
            };
            let oct = match (kid, jwks) {
                (Some(kid), Some(jwks)) => jwks.iter().find(|k| {
                    k.get("kty").and_then(Value::as_str) == Some("oct")
                        && k.get("kid").and_then(Value::as_str) == Some(kid)
                        && k.get("k").is_some_and(Value::is_string)
                }),
                _ => None,
            };
            let secret = match (oct, kid) {
                (Some(jwk), Some(kid)) => {
                    let k = jwk.get("k").and_then(Value::as_str).unwrap_or_default();
                    b64url_decode(k).ok_or_else(|| AuthError::SignerKid(kid.to_owned()))?
                }
                _ => match (&keys.secret, kid) {
                    (Some(s), _) => s.as_bytes().to_vec(),
                    // The Elixir server crashes here (no secret to decrypt);
                    // this is the answer that says what is wrong.
                    (None, Some(kid)) => return Err(AuthError::SignerKid(kid.to_owned())),
                    (None, None) => return Err(AuthError::Signer),
                },
            };
            hmac(alg, &secret)
        }
        _ => Err(AuthError::Signer),
    }
}

/// The first JWK (a JSON object) with this `kty` and `kid`, as `Enum.find`.
fn find<'a>(jwks: &'a [Value], kty: &str, kid: &str) -> Option<&'a Map<String, Value>> {
    jwks.iter().filter_map(Value::as_object).find(|k| {
        k.get("kty").and_then(Value::as_str) == Some(kty)
            && k.get("kid").and_then(Value::as_str) == Some(kid)
    })
}

/// An HMAC key. HMAC pads short keys with zero bytes, so the empty key is
/// the one-zero-byte key (which `jsonwebtoken` accepts where it refuses "").
fn hmac(alg: Algorithm, secret: &[u8]) -> Result<Key, AuthError> {
    let secret: &[u8] = if secret.is_empty() { &[0] } else { secret };
    let key = DecodingKey::from_secret(secret).map_err(|e| AuthError::Other(e.to_string()))?;
    jwt_verifier(alg, &key).map_err(AuthError::Other)
}

/// A key from an RSA, EC or OKP JWK. Key material that cannot be used is a
/// signer error for that `kid` (the Elixir server crashes or refuses it).
fn asymmetric(alg: &str, kid: &str, jwk: &Map<String, Value>) -> Result<Key, AuthError> {
    let bad_key = || AuthError::SignerKid(kid.to_owned());
    let field = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .and_then(b64url_decode)
            .ok_or_else(bad_key)
    };
    match alg {
        "RS256" | "RS384" | "RS512" => {
            let (n, e) = (field("n")?, field("e")?);
            if n.iter().all(|b| *b == 0) || e.iter().all(|b| *b == 0) || e.len() > 8 {
                return Err(bad_key());
            }
            let alg = match alg {
                "RS256" => Algorithm::RS256,
                "RS384" => Algorithm::RS384,
                _ => Algorithm::RS512,
            };
            jwt_verifier(alg, &DecodingKey::from_rsa_raw_components(&n, &e)).map_err(|_| bad_key())
        }
        "ES256" | "ES384" | "ES512" => {
            let mut point = vec![0x04];
            point.extend(field("x")?);
            point.extend(field("y")?);
            match alg {
                "ES512" => p521::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                    .map(Key::P521)
                    .map_err(|_| bad_key()),
                _ => {
                    let alg = if alg == "ES256" {
                        Algorithm::ES256
                    } else {
                        Algorithm::ES384
                    };
                    jwt_verifier(alg, &DecodingKey::from_ec_der(&point)).map_err(|_| bad_key())
                }
            }
        }
        _ => match jwk.get("crv").and_then(Value::as_str) {
            Some("Ed25519") => {
                let x = field("x")?;
                // jsonwebtoken slices the first 32 bytes: check the length first.
                if x.len() != 32 {
                    return Err(bad_key());
                }
                if alg == "Ed448" {
                    // Ed448 signatures never verify with an Ed25519 key.
                    return Ok(Key::Never);
                }
                jwt_verifier(Algorithm::EdDSA, &DecodingKey::from_ed_der(&x)).map_err(|_| bad_key())
            }
            Some("Ed448") => Err(AuthError::Other("Ed448 keys are not supported".into())),
            _ => Err(bad_key()),
        },
    }
}

/// `jsonwebtoken`'s verifier for `alg` with `key`.
fn jwt_verifier(alg: Algorithm, key: &DecodingKey) -> Result<Key, String> {
    let provider =
        CryptoProvider::try_get_default().ok_or("no JWT crypto provider is installed")?;
    (provider.verifier_factory)(&alg, key)
        .map(Key::Jwt)
        .map_err(|e| e.to_string())
}
