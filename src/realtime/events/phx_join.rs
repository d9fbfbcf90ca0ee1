//! `phx_join`: reads the join config leniently, runs the checks in the
//! Elixir server's order, and answers with the reply, `presence_state` and
//! `system` pushes, or a delayed `{"reason": "<Code>: <msg>"}` error.

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::proto::phoenix::{InPayload, Inbound, Ref};
use crate::realtime::auth::{self, Claims};
use crate::realtime::cdc::{CdcSub, SubClaims};
use crate::realtime::errors::JoinError;
use crate::realtime::frames;
use crate::realtime::hub::Sub;
use crate::realtime::postgres_changes;
use crate::realtime::presence::{self, ClientPresenceLimiter};
use crate::realtime::state::{lenient_bool, Channel, Env, Flow, Session};

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

/// The stable integer id of a `postgres_changes` binding: a hash of its
/// canonical JSON (sorted keys), in `0..2^27` like the Elixir server's
/// `phash2` range. Equal bindings get equal ids.
pub fn binding_id(binding: &Map<String, Value>) -> u64 {
    let canonical = serde_json::to_vec(binding).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % (1 << 27)
}

/// What a join that passed its checks carries into the new channel.
struct Admitted {
    /// The channel's token text (shared with the socket's when equal).
    token: Rc<str>,
    /// Its verified claims.
    claims: Claims,
}

/// Handles a join: validate, then (only if it passed) replace any channel on
/// the topic, build the new one and announce it.
pub fn handle(session: &mut Session, env: &mut Env<'_>, msg: Inbound<'_>) -> Flow {
    let Some(sub_topic) = msg.topic.strip_prefix("realtime:") else {
        session.push_unmatched(&msg);
        return Flow::Continue;
    };
    session.attempted_join = true;
    let payload: Value = match &msg.payload {
        InPayload::Json(raw) => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let cfg = JoinConfig::parse(&payload);
    let admitted = match validate(session, env, &msg, sub_topic, &cfg) {
        Ok(a) => a,
        Err(e) => {
            return Flow::Delay {
                ms: env.settings.channel_error_backoff_ms,
                frames: vec![frames::error_reply(
                    session.vsn,
                    msg.join_ref.as_ref(),
                    msg.msg_ref.as_ref(),
                    &msg.topic,
                    &e.reason(),
                )],
                close: e.close(),
            }
        }
    };
    // A second join on a joined topic replaces the first, the old channel
    // closing with its own join ref. Only now, once the new join has passed:
    // a refused rejoin must not cost the client the channel it has.
    if let Some(old) = session.remove_channel(env, &msg.topic) {
        session.push_close(&old);
    }
    let ch = build(
        session,
        env,
        &msg,
        &cfg,
        admitted.token,
        admitted.claims.exp,
    );
    let msg_ref = msg.msg_ref.as_ref();
    announce(session, env, ch, msg_ref, &cfg, &admitted.claims, sub_topic);
    Flow::Continue
}

/// Runs the join's checks in the Elixir server's order. Changes nothing but
/// the tenant's join counter and token memo.
fn validate(
    session: &Session,
    env: &mut Env<'_>,
    msg: &Inbound<'_>,
    sub_topic: &str,
    cfg: &JoinConfig,
) -> Result<Admitted, JoinError> {
    if sub_topic.is_empty() {
        return Err(JoinError::TopicNameRequired);
    }
    let tenant_cfg = env.tenant.config.clone();
    let limits = &tenant_cfg.limits;
    // A joined channel keeps its topic and presence key for its lifetime,
    // so both are bounded before anything is kept (the frame limit alone
    // would let one socket pin megabytes per channel).
    if msg.topic.len() as u64 > limits.max_topic_bytes {
        return Err(JoinError::TopicNameTooLong {
            max: limits.max_topic_bytes,
        });
    }
    if cfg
        .presence_key
        .as_ref()
        .is_some_and(|k| k.len() as u64 > limits.max_presence_meta_bytes)
    {
        return Err(JoinError::PresenceKeyTooLong {
            max: limits.max_presence_meta_bytes,
        });
    }
    if env.shutting_down {
        return Err(JoinError::RealtimeRestarting);
    }
    if tenant_cfg.suspended {
        return Err(JoinError::RealtimeDisabledForTenant);
    }
    if tenant_cfg.private_only && !cfg.private {
        return Err(JoinError::PrivateOnly);
    }
    if !session.counted_user && env.tenant.nr_users >= limits.max_concurrent_users {
        return Err(JoinError::ConnectionRateLimitReached);
    }
    env.tenant.joins.add(1, env.now_ms);
    if env
        .tenant
        .joins
        .triggered(limits.max_joins_per_second, env.now_ms)
    {
        return Err(JoinError::ClientJoinRateLimitReached);
    }
    // The channel a rejoin would replace does not count against the limit.
    let replaced = usize::from(session.channels.contains_key(&msg.topic));
    if (session.channels.len() - replaced) as u64 >= limits.max_channels_per_client {
        return Err(JoinError::ChannelRateLimitReached);
    }
    // Channels joined with the socket's token share the socket's text;
    // others share the memo's copy.
    let cleaned;
    let token: &str = match cfg.token.as_deref() {
        Some(t) if !auth::is_opaque_api_key(t) => {
            cleaned = auth::clean_token(t);
            &cleaned
        }
        _ => &session.socket_token,
    };
    let (token, claims) = match env.tenant.join_tokens.verify_channel(
        &env.tenant.config,
        token,
        &tenant_cfg.jwt,
        &tenant_cfg.validators,
        env.now_unix,
    ) {
        Ok((t, c)) if *t == *session.socket_token => (session.socket_token.clone(), c),
        Ok(v) => v,
        Err(e) => return Err(JoinError::Token(e)),
    };
    if cfg.private {
        // Private channels are authorised by RLS policies on the tenant
        // database's realtime.messages; without a tenant database that is
        // exactly the Elixir server's answer.
        return Err(JoinError::UnableToConnectToProject);
    }
    Ok(Admitted { token, claims })
}

/// Creates the channel and subscribes it to the topic's fan-out; counts the
/// join. The channel is not yet in the session (see [`announce`]).
fn build(
    session: &mut Session,
    env: &mut Env<'_>,
    msg: &Inbound<'_>,
    cfg: &JoinConfig,
    token: Rc<str>,
    exp: i64,
) -> Channel {
    let tenant_cfg = &env.tenant.config;
    let limits = &tenant_cfg.limits;
    *env.next_channel_id += 1;
    let id = *env.next_channel_id;
    let ch = Channel {
        id,
        topic: msg.topic.as_ref().into(),
        join_ref: msg.join_ref.clone(),
        broadcast_self: cfg.self_,
        broadcast_ack: cfg.ack,
        presence_enabled: cfg.presence_enabled || tenant_cfg.presence_enabled,
        presence_key: cfg.presence_key.as_deref().map(Box::from),
        tracking: false,
        presence_bytes: 0,
        presence_limiter: ClientPresenceLimiter::new(
            limits.client_presence_max_calls,
            limits.client_presence_window_ms,
        ),
        token,
        exp,
    };
    env.tenant.hub.subscribe(
        &msg.topic,
        Sub {
            channel: id,
            vsn: session.vsn,
            out: session.out.clone(),
        },
    );
    if !session.counted_user {
        session.counted_user = true;
        env.tenant.nr_users += 1;
    }
    env.tally.joins += 1;
    env.tally.channels += 1;
    ch
}

/// Tells the client: the `ok` reply with the bindings, the presence state,
/// the Postgres Changes subscription (or why not); then keeps the channel.
fn announce(
    session: &mut Session,
    env: &mut Env<'_>,
    ch: Channel,
    msg_ref: Option<&Ref>,
    cfg: &JoinConfig,
    claims: &Claims,
    sub_topic: &str,
) {
    // Reply: the bindings echoed with their ids (none: a constant).
    let response = if cfg.postgres_changes.is_empty() {
        br#"{"postgres_changes":[]}"#.to_vec()
    } else {
        echo_bindings(&cfg.postgres_changes)
    };
    session.reply(ch.join_ref.as_ref(), msg_ref, &ch.topic, "ok", &response);
    if ch.presence_enabled {
        let mut state = Vec::with_capacity(64);
        match env.tenant.hub.topic(&ch.topic) {
            Some(t) => t.presence.state_json(&mut state),
            None => state.extend_from_slice(b"{}"),
        }
        session.out.push(frames::message(
            session.vsn,
            ch.join_ref.as_ref(),
            None,
            &ch.topic,
            "presence_state",
            &state,
        ));
    }
    if !cfg.postgres_changes.is_empty() || (!cfg.has_config && env.tenant.config.has_database) {
        subscribe_changes(session, env, &ch, claims, cfg, sub_topic);
    }
    session.channels.insert(ch);
}

/// The join reply's `{"postgres_changes": [...]}`: every binding echoed in
/// order with its id.
fn echo_bindings(bindings: &[Map<String, Value>]) -> Vec<u8> {
    let echoed: Vec<Value> = bindings
        .iter()
        .map(|b| {
            let mut e = b.clone();
            e.insert("id".into(), Value::from(binding_id(b)));
            Value::Object(e)
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "postgres_changes": echoed })).unwrap_or_default()
}

/// Registers the channel's Postgres Changes bindings, or tells it why not
/// (as a `postgres_changes` system error; the join itself succeeded).
fn subscribe_changes(
    session: &Session,
    env: &mut Env<'_>,
    ch: &Channel,
    claims: &Claims,
    cfg: &JoinConfig,
    sub_topic: &str,
) {
    let system_error = |msg: &str| {
        session.out.push(frames::system(
            session.vsn,
            ch.join_ref.as_ref(),
            &ch.topic,
            "postgres_changes",
            "error",
            msg,
            true,
        ));
    };
    if !env.tenant.config.has_database {
        system_error("Postgres Changes are not configured for this tenant");
        return;
    }
    let legacy = !cfg.has_config;
    let raws = if legacy {
        vec![postgres_changes::binding::legacy_params(sub_topic)]
    } else {
        cfg.postgres_changes.clone()
    };
    let mut bindings = Vec::with_capacity(raws.len());
    for raw in &raws {
        match postgres_changes::binding::parse_binding(raw, binding_id(raw)) {
            Ok(b) => bindings.push(b),
            Err(e) => {
                system_error(&e.message());
                return;
            }
        }
    }
    env.tenant.cdc.add(CdcSub {
        channel: ch.id,
        topic: ch.topic.clone(),
        vsn: session.vsn,
        out: session.out.clone(),
        join_ref: ch.join_ref.clone(),
        bindings,
        legacy,
        claims: sub_claims(claims),
        ready: false,
        generation: 0,
        told_ready: false,
    });
}

/// The role and claims a channel's Postgres Changes rows are authorised
/// with.
pub fn sub_claims(c: &auth::Claims) -> Rc<SubClaims> {
    Rc::new(SubClaims {
        role: c.role.clone(),
        json: c.json.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_defaults_and_leniency() {
        let c = JoinConfig::parse(&json!({}));
        assert_eq!(c, JoinConfig::default());
        let c = JoinConfig::parse(&json!({"config": {
            "broadcast": {"ack": "TRUE", "self": "false"},
            "presence": {"key": 42, "enabled": "yes"},
            "private": "False",
            "postgres_changes": [null, {"event": "*", "schema": "public"}, 3]
        }, "access_token": "t"}));
        assert!(c.ack);
        assert!(!c.self_);
        assert!(
            !c.presence_enabled,
            "invalid boolean falls back to the default"
        );
        assert_eq!(c.presence_key.as_deref(), Some("42"));
        assert!(!c.private);
        assert_eq!(c.postgres_changes.len(), 1);
        assert_eq!(c.token.as_deref(), Some("t"));
        let c = JoinConfig::parse(
            &json!({"user_token": "u", "access_token": "a", "config": {"presence": {"key": ""}}}),
        );
        assert_eq!(c.token.as_deref(), Some("u"), "legacy user_token wins");
        assert_eq!(c.presence_key, None);
    }

    #[test]
    fn binding_ids_are_stable_and_in_range() {
        let a = json!({"event": "*", "schema": "public", "table": "todos"});
        let b = json!({"table": "todos", "schema": "public", "event": "*"});
        let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
        assert_eq!(binding_id(a), binding_id(b));
        assert!(binding_id(a) < 1 << 27);
        let c = json!({"event": "INSERT", "schema": "public", "table": "todos"});
        assert_ne!(binding_id(a), binding_id(c.as_object().unwrap()));
    }
}
