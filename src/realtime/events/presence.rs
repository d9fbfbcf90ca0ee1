//! `presence`: track / untrack this channel's presence (PROTOCOL 5.1) and
//! fan the resulting `presence_diff` out to the topic, sender included.
//!
//! On a private channel a track needs the presence write policy: asked on
//! the first track (with presence read, if the join did not ask it), kept
//! once granted; a refused track is answered `{"status":"error",
//! "response":{}}` and asks again next time, as the Elixir server does.
//! The check comes before the per-channel presence limiter counts the
//! track (the track is handled again once it is answered, and counted
//! then); the Elixir server counts first.

use serde_json::Value;

use crate::proto::phoenix::{InPayload, Inbound, Ref};
use crate::realtime::authz::{AuthAnswer, AuthRequest, Authorize, Pending};
use crate::realtime::frames;
use crate::realtime::hub::ChannelId;
use crate::realtime::presence;
use crate::realtime::rest;
use crate::realtime::state::{fan_presence_diff, Env, Flow, Resumed, Session};

/// Handles a presence message.
pub fn handle(session: &mut Session, env: &mut Env<'_>, msg: Inbound<'_>) -> Flow {
    let topic = msg.topic.as_ref();
    let InPayload::Json(raw) = &msg.payload else {
        session.reply(None, msg.msg_ref.as_ref(), topic, "error", b"{}");
        return Flow::Continue;
    };
    let payload: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
    let Some(ch) = session.channels.get_mut(topic) else {
        return Flow::Continue;
    };
    let join_ref = ch.join_ref.clone();
    let Some(event) = payload
        .get("event")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
    else {
        session.reply(join_ref.as_ref(), msg.msg_ref.as_ref(), topic, "ok", b"{}");
        return Flow::Continue;
    };
    if event == "track" && ch.private {
        match (ch.policies.presence_write, &ch.auth) {
            (Some(true), _) => {}
            (None, Some(ctx)) => {
                return Flow::Authorize(Box::new(Authorize {
                    request: AuthRequest {
                        ctx: ctx.clone(),
                        read: ch.policies.presence_read.is_none().then_some(true),
                        write: true,
                    },
                    then: Pending::Track {
                        topic: ch.topic.clone(),
                        channel: ch.id,
                        join_ref,
                        msg_ref: msg.msg_ref.clone(),
                    },
                }))
            }
            (Some(false), _) | (None, None) => {
                session.reply(
                    join_ref.as_ref(),
                    msg.msg_ref.as_ref(),
                    topic,
                    "error",
                    b"{}",
                );
                return Flow::Continue;
            }
        }
    }
    if !ch.presence_limiter.allow(env.now_ms) {
        session.shutdown_channel(env, topic, "Client presence rate limit exceeded");
        return Flow::Continue;
    }
    let limits = env.tenant.config.limits.clone();
    env.tenant.presence_events.add(1, env.now_ms);
    if env.tenant.presence_events.avg(env.now_ms) > limits.max_presence_events_per_second as f64 {
        session.shutdown_channel(env, topic, "Too many presence messages per second");
        return Flow::Continue;
    }
    match event.as_str() {
        "track" => {
            let Some(meta) = payload.get("payload").and_then(Value::as_object).cloned() else {
                let reason = "Presence track payload must be a map";
                reply_error(session, &join_ref, &msg, topic, reason);
                return Flow::Continue;
            };
            // The Elixir rule measures the decoded term (`external_size`).
            if rest::external_size(&payload["payload"]) > limits.max_payload_bytes() {
                session.shutdown_channel(env, topic, "Track message size exceeded");
                return Flow::Continue;
            }
            // What the track would keep: bounded per meta like an oversize
            // payload, and per connection over all its channels.
            let ch = session.channels.get_mut(topic).expect("checked above");
            let bytes = (presence::meta_json_len(&meta) + ch.presence_key().len()) as u64;
            if bytes > limits.max_presence_meta_bytes {
                session.shutdown_channel(env, topic, "Track message size exceeded");
                return Flow::Continue;
            }
            let held = session.channels.presence_bytes();
            let ch = session.channels.get_mut(topic).expect("checked above");
            if held - ch.presence_bytes + bytes > limits.max_presence_bytes_per_client {
                let reason = presence_per_client_exceeded(limits.max_presence_bytes_per_client);
                reply_error(session, &join_ref, &msg, topic, &reason);
                return Flow::Continue;
            }
            ch.presence_enabled = true;
            ch.tracking = true;
            ch.presence_bytes = bytes;
            let (id, key, private) = (ch.id, ch.presence_key().to_owned(), ch.private);
            let tk = crate::realtime::hub::TopicKey { topic, private };
            let diff = env.tenant.hub.topic_mut(tk).presence.track(id, &key, meta);
            // The diff first: the sender hears its own join before the
            // reply resolves its `track()` (what a client that reads its
            // presence right after `await track()` counts on).
            if let Some(d) = diff {
                fan_presence_diff(env, tk, &d, id);
            }
            session.reply(join_ref.as_ref(), msg.msg_ref.as_ref(), topic, "ok", b"{}");
        }
        "untrack" => {
            let ch = session.channels.get_mut(topic).expect("checked above");
            ch.tracking = false;
            ch.presence_bytes = 0;
            let (id, private) = (ch.id, ch.private);
            let tk = crate::realtime::hub::TopicKey { topic, private };
            let diff = env.tenant.hub.topic_mut(tk).presence.untrack(id);
            // The diff first: the sender hears its own join before the
            // reply resolves its `track()` (what a client that reads its
            // presence right after `await track()` counts on).
            if let Some(d) = diff {
                fan_presence_diff(env, tk, &d, id);
            }
            session.reply(join_ref.as_ref(), msg.msg_ref.as_ref(), topic, "ok", b"{}");
        }
        _ => session.reply(
            join_ref.as_ref(),
            msg.msg_ref.as_ref(),
            topic,
            "error",
            b"{}",
        ),
    }
    Flow::Continue
}

/// A track's policies arrived. Granted: kept on the channel (presence
/// read now decides which diffs it receives) and the track is handled
/// again. Refused, or undecided: `{"status":"error","response":{}}`.
pub fn resume(
    session: &mut Session,
    env: &mut Env<'_>,
    topic: &str,
    channel: ChannelId,
    (join_ref, msg_ref): (Option<Ref>, Option<Ref>),
    answer: AuthAnswer,
) -> Resumed {
    let Some(ch) = session.channels.get_mut(topic).filter(|c| c.id == channel) else {
        return Flow::Continue.into();
    };
    match answer {
        Ok(p) if p.presence_write == Some(true) => {
            ch.policies.merge(p);
            let (b, pr) = ch.reads();
            env.tenant.hub.set_reads(ch.key(), ch.id, b, pr);
            return Resumed {
                flow: Flow::Continue,
                redispatch: true,
            };
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(topic, error = ?e, "presence write check failed"),
    }
    session.reply(join_ref.as_ref(), msg_ref.as_ref(), topic, "error", b"{}");
    Flow::Continue.into()
}

/// The error reason of a track that would take the connection's presence
/// over `max` bytes.
pub fn presence_per_client_exceeded(max: u64) -> String {
    format!("Presence of this connection would exceed {max} bytes")
}

/// An `error` reply to `msg` whose response is `{"reason": reason}`.
fn reply_error(
    session: &Session,
    join_ref: &Option<crate::proto::phoenix::Ref>,
    msg: &Inbound<'_>,
    topic: &str,
    reason: &str,
) {
    let response = frames::reason_json(reason);
    session.reply(
        join_ref.as_ref(),
        msg.msg_ref.as_ref(),
        topic,
        "error",
        &response,
    );
}
