//! `DB_SSL_MODE`: how the connection to the tenant database is protected
//! (libpq's names; `server::tls` implements them).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::value::Setting;

/// How the connection to the database is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, certificate not verified; plain when
    /// it does not or the handshake fails (libpq's default).
    #[default]
    Prefer,
    /// TLS or fail, certificate not verified (the Elixir server's
    /// `ssl_enforced`, which connects with `verify: :verify_none`).
    Require,
    /// TLS or fail, chain verified and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    /// Every accepted spelling, for error messages.
    pub const NAMES: &'static str = "disable, prefer, require, verify-full";
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-full" => Ok(SslMode::VerifyFull),
            _ => Err(format!("expected one of {}", SslMode::NAMES)),
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

impl Setting for SslMode {
    fn parse_text(text: &str) -> Result<Self, String> {
        text.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_by_their_libpq_names() {
        for m in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyFull,
        ] {
            assert_eq!(m.to_string().parse::<SslMode>(), Ok(m));
            let toml = toml::to_string(&std::collections::BTreeMap::from([("m", m)])).unwrap();
            assert_eq!(toml.trim(), format!("m = \"{m}\""));
        }
        assert_eq!("REQUIRE".parse::<SslMode>(), Ok(SslMode::Require));
        assert!("verify-ca".parse::<SslMode>().is_err());
    }
}
