//! The `phx_join` config as the server reads it (PROTOCOL 3.2): lenient,
//! every invalid field falling back to its default. A leaf of its own so a
//! join waiting for its authorization can carry it (see `authz`).

use serde_json::{Map, Value};

use super::presence;
use super::state::lenient_bool;

/// The join config after defaults and leniency (PROTOCOL 3.2).
#[derive(Debug, Default, PartialEq)]
pub struct JoinConfig {
    /// `broadcast.ack`.
    pub ack: bool,
    /// `broadcast.self`.
    pub self_: bool,
    /// `presence.enabled`.
    pub presence_enabled: bool,
    /// `presence.key`, stringified; `None` when absent, null or "".
    pub presence_key: Option<String>,
    /// `private`.
    pub private: bool,
    /// `postgres_changes` bindings as sent (nulls removed).
    pub postgres_changes: Vec<Map<String, Value>>,
    /// Token from `user_token`, else `access_token`.
    pub token: Option<String>,
    /// The payload has a `config` key (the "new API"); without it the
    /// sub-topic itself is a Postgres Changes subscription.
    pub has_config: bool,
}

impl JoinConfig {
    /// Reads a join payload. Invalid fields fall back to their defaults,
    /// never failing the join.
    pub fn parse(payload: &Value) -> Self {
        let mut c = JoinConfig::default();
        let config = payload.get("config");
        c.has_config = config.is_some();
        let broadcast = config.and_then(|c| c.get("broadcast"));
        c.ack = lenient_bool(broadcast.and_then(|b| b.get("ack"))).unwrap_or(false);
        c.self_ = lenient_bool(broadcast.and_then(|b| b.get("self"))).unwrap_or(false);
        let presence = config.and_then(|c| c.get("presence"));
        c.presence_enabled = lenient_bool(presence.and_then(|p| p.get("enabled"))).unwrap_or(false);
        c.presence_key = presence::presence_key_from_config(presence.and_then(|p| p.get("key")));
        c.private = lenient_bool(config.and_then(|c| c.get("private"))).unwrap_or(false);
        if let Some(Value::Array(items)) = config.and_then(|c| c.get("postgres_changes")) {
            c.postgres_changes = items
                .iter()
                .filter_map(|i| i.as_object().cloned())
                .collect();
        }
        let str_field = |k: &str| payload.get(k).and_then(|t| t.as_str()).map(str::to_owned);
        c.token = str_field("user_token").or_else(|| str_field("access_token"));
        c
    }
}
