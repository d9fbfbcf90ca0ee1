//! Client JWT verification, with the Elixir server's error texts.
//!
//! One function, [`verify`], does what the Elixir server does to a socket
//! token (PROTOCOL 1.4 steps 3-5): pick the key from the header `alg`/`kid`,
//! check the signature, validate `exp`/`iat` and `JWT_CLAIM_VALIDATORS`, then
//! require `role` and `exp`. Channel tokens go through [`verify_channel`],
//! which adds the join-time `exp > now` check. An [`AuthError`] renders as
//! each place the Elixir server reports it: the HTTP answer to a refused
//! connection, the `reason` of a refused join, the `message` of a `system`
//! shutdown.
//!
//! Runtime-free: time comes in as `now_unix` seconds.
//!
//! Layout: `signer` picks and applies the key; `inspect` renders values the way
//! Elixir's `inspect/1` does for the texts built with it; `memo` keeps the
//! tokens a tenant's joins verified recently. `error` and `keys` hold the
//! types `signer` and `memo` share with this module, so neither imports it
//! back (`memo` uses [`verify_channel`]; this module does not use `memo`).

mod error;
mod inspect;
mod keys;
pub mod memo;
mod signer;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use error::AuthError;
pub use keys::JwtKeys;

/// Exact-value claim checks from env `JWT_CLAIM_VALIDATORS` (a JSON object
/// claim -> value). As in the Elixir server, a check applies only when the
/// token carries that claim, and entries for `exp`/`iat` are ignored (their
/// own validation replaces them). `Default` checks nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimValidators(BTreeMap<String, Value>);

impl ClaimValidators {
    /// Parses the env value; anything but a JSON object is an error (the
    /// Elixir server refuses to start with the same message).
    pub fn parse(json: &str) -> Result<Self, String> {
        match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(map)) => Ok(Self(
                map.into_iter()
                    .filter(|(k, _)| k != "exp" && k != "iat")
                    .collect(),
            )),
            _ => Err("JWT claim validators is not a valid JSON object".into()),
        }
    }

    /// Whether no claim is checked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The claims of a verified token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    /// `role` (the Postgres role for RLS). A non-string `role` is accepted as
    /// the Elixir server does (it only checks presence) and kept as its JSON text.
    pub role: String,
    /// `exp`, seconds since the epoch, rounded if it was a decimal.
    pub exp: i64,
    /// `sub`, when it is a string.
    pub sub: Option<String>,
    /// Every claim as compact JSON text, with `exp`/`iat` rounded to
    /// integers: the RLS claims (`request.jwt.claims`). Kept as text, the
    /// only form it is used in, so an idle channel holds one short string
    /// rather than a map.
    pub json: Box<str>,
}

impl Claims {
    /// Milliseconds until a channel re-checks this token: `min(5 min, exp - now)`.
    pub fn confirm_interval_ms(&self, now_unix: i64) -> u64 {
        let left = self.exp.saturating_sub(now_unix).max(0) as u64;
        left.saturating_mul(1000).min(5 * 60 * 1000)
    }
}

/// Whether a token is one of Supabase's opaque API keys (`sb_...`), which
/// Realtime never verifies itself.
pub fn is_opaque_api_key(token: &str) -> bool {
    token.starts_with("sb_")
}

/// Elixir `URI.decode/1` then removal of ASCII whitespace (`\s`: space, `\t`,
/// `\n`, `\v`, `\f`, `\r`). `%XX` with two hex digits is decoded, any other `%`
/// is kept, and `+` stays `+`. Bytes that do not form UTF-8 after decoding
/// become U+FFFD (they could not be part of a valid token anyway).
pub fn clean_token(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out.retain(|b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r'));
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Verifies a (cleaned) token the way the Elixir server verifies a socket
/// token (`ChannelsAuthorization.authorize_conn`): structure, key, signature,
/// then claims in key order (`exp` a number after `now_unix`, `iat` a number,
/// validators equal), then `role` and `exp` present.
pub fn verify(
    token: &str,
    keys: &JwtKeys,
    validators: &ClaimValidators,
    now_unix: i64,
) -> Result<Claims, AuthError> {
    authorize(verify_claims(token, keys, validators, now_unix)?)
}

/// [`verify`] plus the channel check (`confirm_token`): the rounded `exp` must
/// still be after `now_unix`, else [`AuthError::ExpInvalid`]. Use it for join
/// tokens, `access_token` refreshes and the periodic re-check.
pub fn verify_channel(
    token: &str,
    keys: &JwtKeys,
    validators: &ClaimValidators,
    now_unix: i64,
) -> Result<Claims, AuthError> {
    let claims = verify(token, keys, validators, now_unix)?;
    if claims.exp.saturating_sub(now_unix) <= 0 {
        return Err(AuthError::ExpInvalid);
    }
    Ok(claims)
}

/// The admin REST API / metrics check (`RealtimeWeb.Router.check_auth`) for
/// one secret, without claim validators: see [`verify_hs`].
pub fn verify_hs_any(token: &str, secret: &str, now_unix: i64) -> bool {
    verify_hs(token, &[secret], &ClaimValidators::default(), now_unix).is_ok()
}

/// The admin REST API / metrics check (`RealtimeWeb.Router.check_auth`): the
/// raw token from `Authorization: Bearer <token>` is cleaned (twice, as the
/// Elixir router cleans it before `authorize/3` cleans it again), then must
/// verify with one of `secrets` as an HS key. No JWKS, and no `role`/`exp`
/// requirement: `exp`/`iat` and `validators` are checked only when present.
/// Returns the claims of the first secret that accepts it, else the last error.
pub fn verify_hs(
    token: &str,
    secrets: &[&str],
    validators: &ClaimValidators,
    now_unix: i64,
) -> Result<Map<String, Value>, AuthError> {
    let token = clean_token(&clean_token(token));
    let mut last = AuthError::Other("no secret configured".into());
    for secret in secrets {
        let keys = JwtKeys {
            secret: Some((*secret).to_owned()),
            jwks: None,
        };
        match verify_claims(&token, &keys, validators, now_unix) {
            Ok(claims) => return Ok(claims),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `JwtVerification.verify/3`: structure, key, signature and claim validation,
/// returning the claims with `exp`/`iat` rounded (no `role`/`exp` requirement).
fn verify_claims(
    token: &str,
    keys: &JwtKeys,
    validators: &ClaimValidators,
    now_unix: i64,
) -> Result<Map<String, Value>, AuthError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };

    // Claims are peeked first, then the header (`check_claims_format`, then
    // `check_header_format`). Non-JSON parts crash the Elixir server; here
    // they are malformed tokens.
    let claims = signer::b64url_decode(claims_b64).ok_or(AuthError::Malformed)?;
    let Value::Object(mut claims) =
        serde_json::from_slice(&claims).map_err(|_| AuthError::Malformed)?
    else {
        return Err(AuthError::ClaimsNotObject);
    };
    let header = signer::b64url_decode(header_b64).ok_or(AuthError::HeaderNotObject)?;
    let Value::Object(header) =
        serde_json::from_slice(&header).map_err(|_| AuthError::Malformed)?
    else {
        return Err(AuthError::HeaderNotObject);
    };

    let key = signer::select(&header, keys)?;
    let signature = signer::b64url_decode(sig_b64).ok_or(AuthError::BadSignature)?;
    let signed = &token.as_bytes()[..header_b64.len() + 1 + claims_b64.len()];
    if !key.verify(signed, &signature) {
        return Err(AuthError::BadSignature);
    }

    validate(&claims, validators, now_unix)?;
    round_times(&mut claims);
    Ok(claims)
}

/// Joken's validation: claims in key order, the first failure wins.
fn validate(
    claims: &Map<String, Value>,
    validators: &ClaimValidators,
    now: i64,
) -> Result<(), AuthError> {
    let mut keys: Vec<&String> = claims.keys().collect();
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for key in keys {
        let value = &claims[key.as_str()];
        let ok = match key.as_str() {
            "exp" => number_after(value, now),
            "iat" => value.is_number(),
            k => validators
                .0
                .get(k)
                .is_none_or(|want| elixir_eq(value, want)),
        };
        if ok {
            continue;
        }
        if key == "exp" {
            if let Some(exp) = value.as_i64() {
                return Err(AuthError::Expired {
                    seconds_ago: now.saturating_sub(exp),
                });
            }
        }
        return Err(AuthError::InvalidClaim {
            claim: key.clone(),
            value: value.clone(),
            now,
        });
    }
    Ok(())
}

/// `is_number(v) and v > now`.
fn number_after(v: &Value, now: i64) -> bool {
    match v {
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i > now,
            (None, Some(_), _) => true,
            (_, _, Some(f)) => f > now as f64,
            _ => false,
        },
        _ => false,
    }
}

/// Elixir `==` between a token claim (decoded by OTP `json`, where `null` is
/// the atom `:null`) and a validator value (decoded by Jason, where `null` is
/// `nil`): numbers compare by value, so `1 == 1.0`; a `null` never matches.
fn elixir_eq(claim: &Value, want: &Value) -> bool {
    match (claim, want) {
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => {
            let int =
                |n: &serde_json::Number| n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
            match (int(a), int(b)) {
                (Some(x), Some(y)) => x == y,
                _ => a.as_f64() == b.as_f64(),
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| elixir_eq(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, x)| b.get(k).is_some_and(|y| elixir_eq(x, y)))
        }
        _ => false,
    }
}

/// Rounds decimal `exp`/`iat` (`round/1`: half away from zero).
fn round_times(json: &mut Map<String, Value>) {
    for key in ["exp", "iat"] {
        if let Some(Value::Number(n)) = json.get(key) {
            if !(n.is_i64() || n.is_u64()) {
                let rounded = n.as_f64().unwrap_or_default().round() as i64;
                json.insert(key.to_owned(), Value::from(rounded));
            }
        }
    }
}

/// `authorize_conn`: `role` and `exp` must be present.
fn authorize(json: Map<String, Value>) -> Result<Claims, AuthError> {
    let (Some(role), Some(exp)) = (json.get("role"), json.get("exp")) else {
        return Err(AuthError::MissingClaims);
    };
    let role = match role {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let exp = exp
        .as_i64()
        .or_else(|| exp.as_u64().map(|_| i64::MAX))
        .unwrap_or_default();
    let sub = json.get("sub").and_then(Value::as_str).map(str::to_owned);
    let json = serde_json::to_string(&json)
        .unwrap_or_else(|_| "{}".into())
        .into_boxed_str();
    Ok(Claims {
        role,
        exp,
        sub,
        json,
    })
}

/// Signs `claims` as an HS256 JWT (header `{"typ":"JWT","alg":"HS256"}`) with
/// `secret` as raw bytes: for tests and the example token printed at startup.
pub fn sign_hs256(secret: &str, claims: &Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
    let payload = b64.encode(claims.to_string());
    let message = format!("{header}.{payload}");
    // HMAC pads short keys with zeros: "" signs like "\0", which jsonwebtoken accepts.
    let secret: &[u8] = if secret.is_empty() {
        &[0]
    } else {
        secret.as_bytes()
    };
    let key = jsonwebtoken::EncodingKey::from_secret(secret)
        .expect("a non-empty HMAC key is always valid");
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
            .expect("HS256 signing with the built-in RustCrypto provider cannot fail");
    format!("{message}.{signature}")
}
