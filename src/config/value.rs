//! How one setting is read from text (environment variables and flags) and
//! how it is shown with secrets hidden.

use std::net::IpAddr;

use serde_json::Value;

use super::DEV_JWT_SECRET;

/// What secrets are replaced with in `to_toml` and `Debug` output.
pub(crate) const REDACTED: &str = "<redacted>";

/// A type a setting can have. Text parsing follows the Elixir server's
/// `Realtime.Env`: integers are plain decimal, booleans are `true`/`false`/
/// `1`/`0` (any case), lists are comma-separated with blanks trimmed.
pub(crate) trait Setting: Sized + Clone {
    /// Whether a bare `--flag` (no value) means `true`.
    const IS_BOOL: bool = false;

    /// Parses an environment variable or flag value; the error says what was
    /// expected.
    fn parse_text(text: &str) -> Result<Self, String>;

    /// The value with any secret in it hidden.
    fn redact(&self) -> Self {
        self.clone()
    }

    /// Whether this is the "not set" value (documented as `(unset)`).
    #[cfg(test)]
    fn is_unset(&self) -> bool {
        false
    }
}

macro_rules! unsigned_setting {
    ($($t:ty),+) => {$(
        impl Setting for $t {
            fn parse_text(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|_| {
                    format!("expected a whole number from 0 to {}", <$t>::MAX)
                })
            }
        }
    )+};
}

unsigned_setting!(u16, u32, u64, usize);

impl Setting for IpAddr {
    fn parse_text(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| "expected an IP address such as 127.0.0.1, 0.0.0.0 or ::".to_owned())
    }
}

impl Setting for bool {
    const IS_BOOL: bool = true;

    fn parse_text(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err("expected true, false, 1 or 0".to_owned()),
        }
    }
}

impl Setting for String {
    fn parse_text(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }

    /// Empty and the public development secret are shown as they are: neither
    /// protects anything, and seeing them flags a misconfiguration.
    fn redact(&self) -> Self {
        if self.is_empty() || self == DEV_JWT_SECRET {
            self.clone()
        } else {
            REDACTED.to_owned()
        }
    }
}

impl Setting for Option<String> {
    fn parse_text(text: &str) -> Result<Self, String> {
        Ok(Some(text.to_owned()))
    }

    fn redact(&self) -> Self {
        self.as_ref().map(|s| s.redact())
    }

    #[cfg(test)]
    fn is_unset(&self) -> bool {
        self.is_none()
    }
}

impl Setting for Vec<String> {
    fn parse_text(text: &str) -> Result<Self, String> {
        Ok(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn redact(&self) -> Self {
        self.iter().map(|s| s.redact()).collect()
    }
}

/// A JWKS given as JSON text. Public key material stays visible when
/// redacted; symmetric keys (`k`) and private RSA/EC/OKP members are hidden.
impl Setting for Option<Value> {
    fn parse_text(text: &str) -> Result<Self, String> {
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| format!(r#"expected JSON such as {{"keys":[...]}}: {e}"#))
    }

    fn redact(&self) -> Self {
        let mut value = self.clone()?;
        if let Some(keys) = value.get_mut("keys").and_then(Value::as_array_mut) {
            for key in keys.iter_mut().filter_map(Value::as_object_mut) {
                for member in ["k", "d", "p", "q", "dp", "dq", "qi", "oth"] {
                    if let Some(v) = key.get_mut(member) {
                        *v = Value::String(REDACTED.to_owned());
                    }
                }
            }
        }
        Some(value)
    }

    #[cfg(test)]
    fn is_unset(&self) -> bool {
        self.is_none()
    }
}

/// Serde for `api_jwt_jwks`: written to TOML as a JSON string (TOML has no
/// `null`, JWKS may), read from either that string or a TOML table.
pub(crate) mod jwks_serde {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    pub(crate) fn serialize<S: Serializer>(jwks: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
        match jwks {
            Some(v) => s.serialize_some(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::String(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| D::Error::custom(format!("api_jwt_jwks is not valid JSON: {e}"))),
            other => Ok(Some(other)),
        }
    }
}
