//! `broadcast`: a client message fanned out to every subscriber of the
//! topic (PROTOCOL 4.1-4.2). Text pushes forward the payload exactly as
//! sent; kind-3 user broadcasts go out as kind 4 (v2) or JSON (v1); kind-0
//! pushes go out as kind 2 to sockets that speak kind 0.

use crate::proto::phoenix::{InPayload, Inbound};
use crate::realtime::hub::Outgoing;
use crate::realtime::state::{Env, Flow, Session};

/// The ack `response` for an oversize payload: a bare string.
pub const PAYLOAD_SIZE_EXCEEDED: &[u8] = b"\"payload_size_exceeded\"";

/// Handles a client broadcast.
pub fn handle(session: &mut Session, env: &mut Env<'_>, msg: Inbound<'_>) -> Flow {
    let Some(ch) = session.channels.get(msg.topic.as_ref()) else {
        return Flow::Continue;
    };
    let (id, ack, self_, join_ref) = (
        ch.id,
        ch.broadcast_ack,
        ch.broadcast_self,
        ch.join_ref.clone(),
    );
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
    let n = env.tenant.hub.fanout(&msg.topic, &out, exclude);
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
