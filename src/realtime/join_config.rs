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
    /// `broadcast.replication_ready`: tell the channel (a `system`
    /// message) once the tenant's messages stream is up.
    pub replication_ready: bool,
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
    /// `broadcast.replay` (PROTOCOL 4.7), read strictly: unlike the
    /// fields above, invalid values refuse the join.
    pub replay: ReplayConfig,
}

/// Most messages a replay delivers, and how many when `limit` is absent.
pub const REPLAY_MAX_LIMIT: u32 = 25;

/// Earliest and latest `since` (Unix ms) the Elixir server takes: its
/// calendar's years -9999 to 9999. Outside, the params are not valid.
const SINCE_RANGE: std::ops::RangeInclusive<i64> = -377_705_116_800_000..=253_402_300_799_999;

/// `config.broadcast.replay` as the join sent it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReplayConfig {
    /// No `replay` key.
    #[default]
    Absent,
    /// A `replay` key whose value is not an object (null too): a private
    /// join then replays nothing, a public one is still refused.
    NotObject,
    /// An object whose `since` is not an integer in range, or whose
    /// `limit` is neither absent, null, false nor an integer: the join is
    /// refused (`Replay params are not valid`).
    Invalid,
    /// What to replay.
    Valid(ReplayParams),
}

/// A valid replay request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayParams {
    /// Messages inserted at or after this Unix time (ms, UTC).
    pub since_ms: i64,
    /// At most this many, the newest ones: 1 to [`REPLAY_MAX_LIMIT`].
    pub limit: u32,
}

impl ReplayConfig {
    /// Reads `broadcast.replay` from the join's `broadcast` object, as the
    /// Elixir server does: `since` must be a JSON integer (a float such as
    /// `1.0` is not), `limit` defaults to 25 when absent, null or false,
    /// and an integer limit is clamped to 1..=25.
    pub fn parse(broadcast: Option<&Value>) -> ReplayConfig {
        let Some(replay) = broadcast.and_then(|b| b.as_object()?.get("replay")) else {
            return ReplayConfig::Absent;
        };
        let Some(replay) = replay.as_object() else {
            return ReplayConfig::NotObject;
        };
        let integer = |v: &Value| {
            v.as_i64()
                .map(i128::from)
                .or_else(|| v.as_u64().map(i128::from))
        };
        let since = replay.get("since").and_then(integer);
        let limit = match replay.get("limit") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {
                Some(i128::from(REPLAY_MAX_LIMIT))
            }
            Some(v) => integer(v),
        };
        match (since, limit) {
            (Some(since), Some(limit))
                if (i128::from(*SINCE_RANGE.start())..=i128::from(*SINCE_RANGE.end()))
                    .contains(&since) =>
            {
                ReplayConfig::Valid(ReplayParams {
                    since_ms: since as i64,
                    limit: limit.clamp(1, i128::from(REPLAY_MAX_LIMIT)) as u32,
                })
            }
            _ => ReplayConfig::Invalid,
        }
    }

    /// The join asked for a replay at all (any `replay` key).
    pub fn asked(&self) -> bool {
        *self != ReplayConfig::Absent
    }
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
        c.replay = ReplayConfig::parse(broadcast);
        c.replication_ready =
            lenient_bool(broadcast.and_then(|b| b.get("replication_ready"))).unwrap_or(false);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn replay(v: Value) -> ReplayConfig {
        JoinConfig::parse(&json!({"config": {"private": true, "broadcast": {"replay": v}}})).replay
    }

    fn valid(since_ms: i64, limit: u32) -> ReplayConfig {
        ReplayConfig::Valid(ReplayParams { since_ms, limit })
    }

    #[test]
    fn replay_limit_defaults_to_25_and_is_clamped_to_1_through_25() {
        assert_eq!(replay(json!({"since": 5})), valid(5, 25));
        assert_eq!(replay(json!({"since": 5, "limit": null})), valid(5, 25));
        assert_eq!(replay(json!({"since": 5, "limit": false})), valid(5, 25));
        assert_eq!(replay(json!({"since": 5, "limit": 0})), valid(5, 1));
        assert_eq!(replay(json!({"since": 5, "limit": -3})), valid(5, 1));
        assert_eq!(replay(json!({"since": 5, "limit": 7})), valid(5, 7));
        assert_eq!(replay(json!({"since": 5, "limit": 100})), valid(5, 25));
        assert_eq!(replay(json!({"since": 5, "limit": u64::MAX})), valid(5, 25));
        assert_eq!(replay(json!({"since": -1000, "limit": 2})), valid(-1000, 2));
    }

    #[test]
    fn replay_since_must_be_an_integer_in_the_calendar() {
        for bad in [
            json!({}),
            json!({"limit": 10}),
            json!({"since": null}),
            json!({"since": "1700000000000"}),
            json!({"since": 1.5}),
            json!({"since": 1.0}),
            json!({"since": 1e3}),
            json!({"since": true}),
            json!({"since": 253_402_300_800_000_i64}),
            json!({"since": -377_705_116_800_001_i64}),
            json!({"since": 0, "limit": "10"}),
            json!({"since": 0, "limit": 2.5}),
            json!({"since": 0, "limit": true}),
        ] {
            assert_eq!(replay(bad.clone()), ReplayConfig::Invalid, "{bad}");
        }
        assert_eq!(
            replay(json!({"since": 253_402_300_799_999_i64})),
            valid(253_402_300_799_999, 25)
        );
        assert_eq!(
            replay(json!({"since": -377_705_116_800_000_i64})),
            valid(-377_705_116_800_000, 25)
        );
    }

    #[test]
    fn replay_that_is_not_an_object_is_told_apart_from_none() {
        assert_eq!(replay(json!(null)), ReplayConfig::NotObject);
        assert_eq!(replay(json!(123)), ReplayConfig::NotObject);
        assert_eq!(replay(json!([1])), ReplayConfig::NotObject);
        let none = JoinConfig::parse(&json!({"config": {"broadcast": {"self": true}}}));
        assert_eq!(none.replay, ReplayConfig::Absent);
        assert!(!none.replay.asked());
        let odd = JoinConfig::parse(&json!({"config": {"broadcast": [{"replay": {}}]}}));
        assert_eq!(odd.replay, ReplayConfig::Absent);
        assert!(ReplayConfig::NotObject.asked());
    }
}
