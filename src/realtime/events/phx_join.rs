//! `phx_join`: reads the join config leniently, runs the checks in the
//! Elixir server's order, and answers with the reply, `presence_state` and
//! `system` pushes, or a delayed `{"reason": "<Code>: <msg>"}` error. A
//! private join asks the tenant database for its read policies first and
//! completes in [`resume`], or, when it asked for a replay, in
//! [`replayed`] once its stored messages are in.

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::proto::phoenix::{InPayload, Inbound, Ref};
use crate::realtime::auth::{self, Claims};
use crate::realtime::authz::{
    AuthAnswer, AuthContext, AuthError, AuthRequest, Authorize, Pending, PendingJoin, Policies,
};
use crate::realtime::cdc::{CdcSub, SubClaims};
use crate::realtime::errors::JoinError;
use crate::realtime::frames;
use crate::realtime::hub::Sub;
pub use crate::realtime::join_config::JoinConfig;
use crate::realtime::join_config::ReplayConfig;
use crate::realtime::postgres_changes;
use crate::realtime::presence::ClientPresenceLimiter;
use crate::realtime::replay::{
    self, PendingReplay, ReplayAnswer, ReplayError, ReplayRequest, StoredMessage,
};
use crate::realtime::state::{Channel, Env, Flow, Session};

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
            return refuse(
                session,
                env,
                msg.join_ref.as_ref(),
                msg.msg_ref.as_ref(),
                &msg.topic,
                &e,
            )
        }
    };
    let join = PendingJoin {
        topic: msg.topic.as_ref().into(),
        join_ref: msg.join_ref.clone(),
        msg_ref: msg.msg_ref.clone(),
        ctx: AuthContext::new(sub_topic, &admitted.claims, session.headers_json()),
        cfg,
        token: admitted.token,
        claims: admitted.claims,
    };
    if !join.cfg.private && join.cfg.replay.asked() {
        // Checked where the Elixir server checks it: after everything else.
        return refuse_join(session, env, &join, &JoinError::ReplayPublic);
    }
    if join.cfg.private {
        // The read policies decide (PROTOCOL 4.3): presence is probed only
        // when presence is on for this join.
        let presence = join.cfg.presence_enabled || env.tenant.config.presence_enabled;
        return Flow::Authorize(Box::new(Authorize {
            request: AuthRequest {
                ctx: join.ctx.clone(),
                read: Some(presence),
                write: false,
            },
            then: Pending::Join(Box::new(join)),
        }));
    }
    finish(session, env, join, Policies::default(), &[]);
    Flow::Continue
}

/// The delayed error reply of a refused join.
fn refuse(
    session: &Session,
    env: &Env<'_>,
    join_ref: Option<&Ref>,
    msg_ref: Option<&Ref>,
    topic: &str,
    e: &JoinError,
) -> Flow {
    Flow::Delay {
        ms: env.settings.channel_error_backoff_ms,
        frames: vec![frames::error_reply(
            session.vsn,
            join_ref,
            msg_ref,
            topic,
            &e.reason(),
        )],
        close: e.close(),
    }
}

/// A private join's read policies arrived: the join completes if they
/// allow broadcast or presence read, else it is refused with the reason.
pub fn resume(
    session: &mut Session,
    env: &mut Env<'_>,
    join: PendingJoin,
    answer: AuthAnswer,
) -> Flow {
    let refused = match answer {
        Ok(p) if p.can_read() => return admit(session, env, join, p),
        Ok(_) | Err(AuthError::RlsPolicy(_)) => JoinError::Unauthorized(join.ctx.topic.clone()),
        Err(AuthError::QueryCanceled(m)) => JoinError::QueryCanceled(m),
        Err(AuthError::MissingPartition) => JoinError::MissingPartition,
        Err(AuthError::DatabaseUnavailable(_)) => JoinError::UnableToConnectToProject,
        Err(AuthError::IncreaseConnectionPool) => JoinError::IncreaseConnectionPool,
    };
    refuse_join(session, env, &join, &refused)
}

/// [`refuse`] for a join that passed the checks before the database's.
fn refuse_join(session: &Session, env: &Env<'_>, join: &PendingJoin, e: &JoinError) -> Flow {
    let refs = (join.join_ref.as_ref(), join.msg_ref.as_ref());
    refuse(session, env, refs.0, refs.1, &join.topic, e)
}

/// A private join its policies let read: completes it, or first asks for
/// the replay it wants (PROTOCOL 4.7). A replay needs broadcast read, and
/// its params are checked only now, in the Elixir server's order.
fn admit(session: &mut Session, env: &mut Env<'_>, join: PendingJoin, p: Policies) -> Flow {
    let refused = match join.cfg.replay {
        ReplayConfig::Absent => None,
        _ if p.broadcast_read != Some(true) => {
            Some(JoinError::Unauthorized(join.ctx.topic.clone()))
        }
        // Not an object: nothing to replay, as the Elixir server reads it.
        ReplayConfig::NotObject => None,
        ReplayConfig::Invalid => Some(JoinError::ReplayParamsInvalid),
        ReplayConfig::Valid(r) => {
            return Flow::Replay(Box::new(PendingReplay {
                request: ReplayRequest {
                    topic: join.ctx.topic.clone(),
                    since_ms: r.since_ms,
                    limit: r.limit,
                },
                join,
                policies: p,
            }))
        }
    };
    if let Some(e) = refused {
        return refuse_join(session, env, &join, &e);
    }
    finish(session, env, join, p, &[]);
    Flow::Continue
}

/// A private join's stored messages arrived: it completes with them
/// replayed, or is refused as the Elixir server refuses it.
pub fn replayed(
    session: &mut Session,
    env: &mut Env<'_>,
    r: PendingReplay,
    answer: ReplayAnswer,
) -> Flow {
    let e = match answer {
        Ok(messages) => {
            finish(session, env, r.join, r.policies, &messages);
            return Flow::Continue;
        }
        Err(ReplayError::Query(_)) => JoinError::UnknownErrorOnChannel,
        Err(ReplayError::Unavailable(_)) => JoinError::ReplayFailed,
    };
    refuse_join(session, env, &r.join, &e)
}

/// Completes a join that passed: replaces any channel on the topic,
/// builds the new one and announces it, with `replayed` (newest first)
/// after its reply.
fn finish(
    session: &mut Session,
    env: &mut Env<'_>,
    join: PendingJoin,
    policies: Policies,
    replayed: &[StoredMessage],
) {
    // A second join on a joined topic replaces the first, the old channel
    // closing with its own join ref. Only now, once the new join has passed:
    // a refused rejoin must not cost the client the channel it has.
    if let Some(old) = session.remove_channel(env, &join.topic) {
        session.push_close(&old);
    }
    let ch = build(session, env, &join, policies);
    if !replayed.is_empty() {
        env.tenant.hub.set_replayed(ch.id, replay::ids(replayed));
    }
    announce(session, env, ch, &join, replayed);
    // Already streaming: told at once, right after the join's frames.
    if join.cfg.replication_ready && env.tenant.messages_streaming() {
        session.replication_ready(env);
    }
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
    if !session.counted_user && env.tenant.nr_users() >= limits.max_concurrent_users {
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
    if cfg.private && !env.tenant.config.has_database {
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
    join: &PendingJoin,
    policies: Policies,
) -> Channel {
    let cfg = &join.cfg;
    let tenant_cfg = &env.tenant.config;
    let limits = &tenant_cfg.limits;
    *env.next_channel_id += 1;
    let id = *env.next_channel_id;
    let ch = Channel {
        id,
        topic: join.topic.clone(),
        join_ref: join.join_ref.clone(),
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
        token: join.token.clone(),
        exp: join.claims.exp,
        private: cfg.private,
        replication_wait_until: if cfg.replication_ready {
            env.tally.replication_waits += 1;
            env.now_ms + env.settings.replication_ready_timeout_ms.max(1)
        } else {
            0
        },
        policies,
        auth: cfg.private.then(|| join.ctx.clone()),
    };
    let (broadcast_read, presence_read) = ch.reads();
    env.tenant.hub.subscribe(
        ch.key(),
        Sub {
            channel: id,
            vsn: session.vsn,
            out: session.out.clone(),
            broadcast_read,
            presence_read,
        },
    );
    if !session.counted_user {
        session.counted_user = true;
        env.tenant.users.add();
    }
    env.tally.joins += 1;
    env.tally.channels += 1;
    ch
}

/// Tells the client: the `ok` reply with the bindings, the replayed
/// messages, the presence state, the Postgres Changes subscription (or why
/// not); then keeps the channel.
fn announce(
    session: &mut Session,
    env: &mut Env<'_>,
    ch: Channel,
    join: &PendingJoin,
    replayed: &[StoredMessage],
) {
    let cfg = &join.cfg;
    // Reply: the bindings echoed with their ids (none: a constant).
    let response = if cfg.postgres_changes.is_empty() {
        br#"{"postgres_changes":[]}"#.to_vec()
    } else {
        echo_bindings(&cfg.postgres_changes)
    };
    let jr = ch.join_ref.as_ref();
    session.reply(jr, join.msg_ref.as_ref(), &ch.topic, "ok", &response);
    for f in replay::frames(session.vsn, jr, &ch.topic, replayed) {
        session.out.push(f);
    }
    // A private channel gets the state only with presence read.
    if ch.presence_enabled && ch.reads().1 {
        let mut state = Vec::with_capacity(64);
        match env.tenant.hub.topic(ch.key()) {
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
        subscribe_changes(session, env, &ch, &join.claims, cfg, &join.ctx.topic);
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
