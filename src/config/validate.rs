//! Whether a parsed configuration is usable.

use serde_json::{Map, Value};

use super::{Config, ConfigError, FIELDS};
use crate::realtime::tenant::Placement;

/// Upper bound for every `*_ms` setting (7 days): longer is never meant, and
/// keeps `Instant + Duration` from overflowing.
pub const MAX_DURATION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Upper bound for `max_frame_size` and `socket_queue_bytes` (1 GiB per socket).
pub const MAX_BUFFER_BYTES: usize = 1 << 30;

/// Upper bound for an explicit `shards`: the interest table between
/// shards has a bit per shard in a 64-bit word.
pub const MAX_SHARDS: usize = crate::realtime::interest::MAX_SHARDS;

/// Upper bound for the tenant limits (they must also fit TOML's integers).
pub const MAX_LIMIT: u64 = u32::MAX as u64;

/// Smallest `max_topic_bytes`: `realtime:` and a one-character name.
pub const MIN_TOPIC_BYTES: u64 = 10;

/// Smallest `max_frame_size`: below it ordinary joins do not fit.
pub const MIN_FRAME_SIZE: usize = 1024;

/// Smallest `max_header_length`: below it ordinary JWTs do not fit.
pub const MIN_HEADER_LENGTH: usize = 1024;

/// Upper bound for `max_header_length`.
pub const MAX_HEADER_LENGTH: usize = 1 << 20;

/// `ConfigError::Invalid` for `field`, with its environment variable.
fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    let env = FIELDS
        .iter()
        .find(|f| f.name == field)
        .map_or("", |f| f.env);
    ConfigError::Invalid {
        field,
        env,
        reason: reason.into(),
    }
}

fn positive(field: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(field, "must be greater than 0"));
    }
    Ok(())
}

fn limit(field: &'static str, value: u64) -> Result<(), ConfigError> {
    positive(field, value)?;
    if value > MAX_LIMIT {
        return Err(invalid(field, format!("must be at most {MAX_LIMIT}")));
    }
    Ok(())
}

fn duration(field: &'static str, value: u64) -> Result<(), ConfigError> {
    if value > MAX_DURATION_MS {
        return Err(invalid(
            field,
            format!("must be at most {MAX_DURATION_MS} ms (7 days)"),
        ));
    }
    Ok(())
}

fn positive_duration(field: &'static str, value: u64) -> Result<(), ConfigError> {
    positive(field, value)?;
    duration(field, value)
}

fn within(field: &'static str, value: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            field,
            format!("must be between {min} and {max} bytes"),
        ));
    }
    Ok(())
}

fn non_empty_secret(field: &'static str, value: &Option<String>) -> Result<(), ConfigError> {
    if value.as_deref() == Some("") {
        return Err(invalid(
            field,
            "is set but empty; unset it or give a secret",
        ));
    }
    Ok(())
}

/// Number of keys in a JWKS, or why it is not one.
pub(super) fn jwks_keys(jwks: &Value) -> Result<usize, String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(r#"must be a JSON object {"keys":[...]}"#)?;
    for (i, key) in keys.iter().enumerate() {
        if key.get("kty").and_then(Value::as_str).is_none() {
            return Err(format!("keys[{i}] must be an object with a string \"kty\""));
        }
    }
    Ok(keys.len())
}

/// Parses `jwt_claim_validators`.
pub(super) fn claim_validators(text: &str) -> Result<Map<String, Value>, ConfigError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid(
            "jwt_claim_validators",
            r#"must be a JSON object such as {"iss":"supabase"}"#,
        )),
        Err(e) => Err(invalid(
            "jwt_claim_validators",
            format!("is not valid JSON: {e}"),
        )),
    }
}

/// The tracing level for a `log_level` name, if it is one.
pub(super) fn tracing_level(name: &str) -> Option<&'static str> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" | "notice" => "info",
        "warn" | "warning" => "warn",
        "error" | "critical" | "alert" | "emergency" => "error",
        _ => return None,
    })
}

impl Config {
    /// Checks the values make sense together; the error names the first
    /// field (and its variable) that does not, and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.port == 0 {
            return Err(invalid("port", "must not be 0"));
        }
        if self.shards > MAX_SHARDS {
            return Err(invalid(
                "shards",
                format!("must be at most {MAX_SHARDS} (0 means one per core)"),
            ));
        }

        let nr_jwks_keys = match &self.api_jwt_jwks {
            Some(jwks) => jwks_keys(jwks).map_err(|reason| invalid("api_jwt_jwks", reason))?,
            None => 0,
        };
        if self.api_jwt_secret.is_empty() && nr_jwks_keys == 0 {
            return Err(invalid(
                "api_jwt_secret",
                "is empty and api_jwt_jwks has no keys, so no token could be verified",
            ));
        }
        non_empty_secret("api_jwt_secret_next", &self.api_jwt_secret_next)?;
        non_empty_secret("metrics_jwt_secret", &self.metrics_jwt_secret)?;
        claim_validators(&self.jwt_claim_validators)?;

        let name = &self.self_host_tenant_name;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "self_host_tenant_name",
                "must be a non-empty DNS label (letters, digits, '-', '_'): \
                 it is matched against the first label of the Host",
            ));
        }

        let placement = &self.self_host_tenant_placement;
        if Placement::parse(placement).is_none() {
            return Err(invalid(
                "self_host_tenant_placement",
                format!("{placement:?} is not a placement: home or spread"),
            ));
        }

        nats_url(&self.nats_url)?;
        if self.node_timeout_ms < 500 {
            return Err(invalid("node_timeout_ms", "must be at least 500"));
        }
        duration("node_timeout_ms", self.node_timeout_ms)?;
        positive_duration("accept_backoff_max_ms", self.accept_backoff_max_ms)?;
        duration("connect_error_backoff_ms", self.connect_error_backoff_ms)?;
        positive_duration("db_query_timeout_ms", self.db_query_timeout_ms)?;
        if let Err(e) = crate::realtime::secrets::SecretKeys::new(
            self.db_enc_key.as_deref(),
            self.db_enc_key_gcm.as_deref(),
            self.db_enc_write_gcm,
        ) {
            let field = match e {
                crate::realtime::secrets::SecretError::EcbKeySize(_) => "db_enc_key",
                _ => "db_enc_key_gcm",
            };
            return Err(invalid(field, e.to_string()));
        }
        if self.uses_control_db() && self.db_host.is_none() {
            let field = if self.control_db {
                "control_db"
            } else {
                "seed_self_host"
            };
            return Err(invalid(
                field,
                "needs the control database's host in db_host (DB_HOST)",
            ));
        }
        if self.uses_control_db() && self.db_enc_key.is_none() && self.db_enc_key_gcm.is_none() {
            return Err(invalid(
                "db_enc_key",
                "a control database keeps tenant secrets encrypted: set DB_ENC_KEY \
                 (16 bytes) or DB_ENC_KEY_GCM (32 bytes)",
            ));
        }
        if !(1..=16).contains(&self.db_check_connections) {
            return Err(invalid("db_check_connections", "must be between 1 and 16"));
        }
        duration(
            "replication_idle_timeout_ms",
            self.replication_idle_timeout_ms,
        )?;
        duration("channel_error_backoff_ms", self.channel_error_backoff_ms)?;
        duration(
            "replication_ready_timeout_ms",
            self.replication_ready_timeout_ms,
        )?;

        limit("max_concurrent_users", self.max_concurrent_users)?;
        limit("max_events_per_second", self.max_events_per_second)?;
        limit(
            "max_presence_events_per_second",
            self.max_presence_events_per_second,
        )?;
        limit("max_payload_size_in_kb", self.max_payload_size_in_kb)?;
        limit("max_bytes_per_second", self.max_bytes_per_second)?;
        limit("max_channels_per_client", self.max_channels_per_client)?;
        limit("max_joins_per_second", self.max_joins_per_second)?;
        limit("max_topic_bytes", self.max_topic_bytes)?;
        if self.max_topic_bytes < MIN_TOPIC_BYTES {
            return Err(invalid(
                "max_topic_bytes",
                format!("must be at least {MIN_TOPIC_BYTES} (`realtime:` and one character)"),
            ));
        }
        limit("max_presence_meta_bytes", self.max_presence_meta_bytes)?;
        limit(
            "max_presence_bytes_per_client",
            self.max_presence_bytes_per_client,
        )?;
        positive(
            "client_presence_max_calls",
            self.client_presence_max_calls.into(),
        )?;
        positive_duration("client_presence_window_ms", self.client_presence_window_ms)?;

        within(
            "max_frame_size",
            self.max_frame_size,
            MIN_FRAME_SIZE,
            MAX_BUFFER_BYTES,
        )?;
        within(
            "max_header_length",
            self.max_header_length,
            MIN_HEADER_LENGTH,
            MAX_HEADER_LENGTH,
        )?;
        positive_duration("request_head_timeout_ms", self.request_head_timeout_ms)?;
        positive_duration("idle_timeout_ms", self.idle_timeout_ms)?;
        // A subscriber must be able to queue at least one largest payload, or
        // every maximum-size broadcast would disconnect it.
        let largest_payload = self.max_payload_size_in_kb * 1000;
        within(
            "socket_queue_bytes",
            self.socket_queue_bytes,
            usize::try_from(largest_payload).unwrap_or(usize::MAX),
            MAX_BUFFER_BYTES,
        )
        .map_err(|_| {
            invalid(
                "socket_queue_bytes",
                format!(
                    "must be between max_payload_size_in_kb * 1000 ({largest_payload}) \
                     and {MAX_BUFFER_BYTES} bytes, so one largest payload fits"
                ),
            )
        })?;
        duration("rest_queue_wait_ms", self.rest_queue_wait_ms)?;
        // A forwarded message carries up to two forms of one payload.
        let two = usize::try_from(largest_payload.saturating_mul(2)).unwrap_or(usize::MAX);
        within(
            "shard_queue_bytes",
            self.shard_queue_bytes,
            two,
            MAX_BUFFER_BYTES,
        )
        .map_err(|_| {
            invalid(
                "shard_queue_bytes",
                format!(
                    "must be between 2 * max_payload_size_in_kb * 1000 ({two}) \
                         and {MAX_BUFFER_BYTES} bytes, so one forwarded message fits"
                ),
            )
        })?;
        positive_duration("no_channel_timeout_ms", self.no_channel_timeout_ms)?;
        duration("shutdown_drain_ms", self.shutdown_drain_ms)?;

        if tracing_level(&self.log_level).is_none() {
            return Err(invalid(
                "log_level",
                "must be one of trace, debug, info, notice, warn, warning, error, \
                 critical, alert, emergency",
            ));
        }
        super::tenants::check(self)
    }
}

/// `nats_url`: empty, or comma-separated `[nats://]host[:port]`.
fn nats_url(url: &str) -> Result<(), ConfigError> {
    if url.trim().is_empty() {
        return Ok(());
    }
    for u in url.split(',').map(str::trim) {
        let bad = |why: &str| invalid("nats_url", format!("{u:?}: {why}"));
        if u.is_empty() {
            return Err(bad("an empty server in the list"));
        }
        let rest = match u.split_once("://") {
            Some(("nats", rest)) => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "scheme {scheme}:// is not supported (nats:// only; no TLS to NATS yet)"
                )))
            }
            None => u,
        };
        if rest.contains('@') {
            return Err(bad("credentials are not supported yet"));
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(bad("expected host:port"));
        }
        // `[v6]` or `[v6]:port`; otherwise `host` or `host:port`.
        let port = match rest.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((addr, "")) if !addr.is_empty() => None,
                Some((addr, tail)) if !addr.is_empty() && tail.starts_with(':') => Some(&tail[1..]),
                _ => return Err(bad("expected [address]:port")),
            },
            None => match rest.rsplit_once(':') {
                Some(("", _)) => return Err(bad("expected host:port")),
                Some((_, port)) => Some(port),
                None => None,
            },
        };
        if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
            return Err(bad("expected host:port with a port from 1 to 65535"));
        }
    }
    Ok(())
}
