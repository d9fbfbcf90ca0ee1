//! `broadcast`: a client message fanned out to every subscriber of the
//! topic (PROTOCOL 4.1-4.2). Text pushes forward the payload exactly as
//! sent; kind-3 user broadcasts go out as kind 4 (v2) or JSON (v1); kind-0
//! pushes go out as kind 2 to sockets that speak kind 0.
//!
//! A private channel's first broadcast asks for its write policies; the
//! answer is kept on the channel (until a token refresh or a rejoin) and a
//! channel without broadcast write has its broadcasts dropped, with no
//! ack even when asked for one (PROTOCOL 4.2).

use crate::proto::phoenix::{InPayload, Inbound};
use crate::realtime::authz::{AuthAnswer, AuthRequest, Authorize, Pending};
use crate::realtime::hub::{ChannelId, Outgoing, TopicKey};
use crate::realtime::state::{Env, Flow, Resumed, Session};

/// The ack `response` for an oversize payload: a bare string.
pub const PAYLOAD_SIZE_EXCEEDED: &[u8] = b"\"payload_size_exceeded\"";

/// Handles a client broadcast.
pub fn handle(session: &mut Session, env: &mut Env<'_>, msg: Inbound<'_>) -> Flow {
    let Some(ch) = session.channels.get(msg.topic.as_ref()) else {
        return Flow::Continue;
    };
    if ch.private {
        match (ch.policies.broadcast_write, &ch.auth) {
            (None, Some(ctx)) => {
                return Flow::Authorize(Box::new(Authorize {
                    request: AuthRequest {
                        ctx: ctx.clone(),
                        read: None,
                        write: true,
                    },
                    then: Pending::Broadcast {
                        topic: ch.topic.clone(),
                        channel: ch.id,
                    },
                }))
            }
            // Not counted, not sent, not acknowledged.
            (Some(false), _) | (None, None) => return Flow::Continue,
            (Some(true), _) => {}
        }
    }
    let (id, ack, self_, join_ref) = (
        ch.id,
        ch.broadcast_ack,
        ch.broadcast_self,
        ch.join_ref.clone(),
    );
    let key = TopicKey {
        topic: msg.topic.as_ref(),
        private: ch.private,
    };
    let limits = env.tenant.config.limits.clone();
    if env
        .tenant
        .events
        .triggered(limits.max_events_per_second, env.now_ms)
    {
        session.shutdown_channel(env, &msg.topic, "Too many messages per second");
        return Flow::Continue;
    }
    env.tenant.events.add(1, env.now_ms);
    let out = match &msg.payload {
        InPayload::Json(raw) => Outgoing::Json {
            event: "broadcast",
            payload: raw.get().as_bytes(),
        },
        InPayload::UserBroadcast(ub) => Outgoing::User {
            event: &ub.event,
            encoding: ub.encoding,
            metadata: b"",
            payload: ub.payload,
        },
        InPayload::Binary(bytes) => Outgoing::Kind0 {
            event: "broadcast",
            payload: bytes,
        },
    };
    let size = match &out {
        Outgoing::Json { payload, .. }
        | Outgoing::User { payload, .. }
        | Outgoing::Kind0 { payload, .. } => payload.len(),
    };
    if size > limits.max_payload_bytes() {
        if ack {
            session.reply(
                join_ref.as_ref(),
                msg.msg_ref.as_ref(),
                &msg.topic,
                "error",
                PAYLOAD_SIZE_EXCEEDED,
            );
        }
        return Flow::Continue;
    }
    let exclude = (!self_).then_some(id);
    let n = env.tenant.hub.fanout(key, &out, exclude);
    env.tenant.events.add(n, env.now_ms);
    env.tally.deliveries += n;
    if ack {
        session.reply(
            join_ref.as_ref(),
            msg.msg_ref.as_ref(),
            &msg.topic,
            "ok",
            b"{}",
        );
    }
    Flow::Continue
}

/// A private channel's write policies arrived: kept on the channel, and
/// the broadcast that asked is handled again. A check that decided
/// nothing drops the broadcast (the next one asks again).
pub fn resume(
    session: &mut Session,
    topic: &str,
    channel: ChannelId,
    answer: AuthAnswer,
) -> Resumed {
    let Some(ch) = session.channels.get_mut(topic).filter(|c| c.id == channel) else {
        return Flow::Continue.into();
    };
    match answer {
        Ok(p) => {
            ch.policies.merge(p);
            Resumed {
                flow: Flow::Continue,
                redispatch: true,
            }
        }
        Err(e) => {
            tracing::warn!(topic, error = ?e, "broadcast write check failed; message dropped");
            Flow::Continue.into()
        }
    }
}
