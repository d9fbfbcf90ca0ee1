//! Builds complete server WebSocket frames for Phoenix messages: each is
//! encoded straight into the frame's body and handed out as `Bytes`, so a
//! message fanned out to many sockets is encoded and framed exactly once.

use bytes::Bytes;

use crate::proto::phoenix::{self, Encoding, Ref, Vsn};
use crate::proto::ws::{FrameBuilder, OpCode};

/// A text frame carrying one Phoenix message.
pub fn message(
    vsn: Vsn,
    join_ref: Option<&Ref>,
    msg_ref: Option<&Ref>,
    topic: &str,
    event: &str,
    payload_json: &[u8],
) -> Bytes {
    let mut fb = FrameBuilder::new(OpCode::Text, payload_json.len() + topic.len() + 64);
    phoenix::encode_message(
        vsn,
        fb.body(),
        join_ref,
        msg_ref,
        topic,
        event,
        payload_json,
    );
    fb.finish()
}

/// A text frame carrying a server push whose payload `payload` writes
/// straight into the frame (one valid JSON value); `payload_hint` is its
/// expected length, so the frame is allocated once.
pub fn message_with(
    vsn: Vsn,
    topic: &str,
    event: &str,
    payload_hint: usize,
    payload: impl FnOnce(&mut bytes::BytesMut),
) -> Bytes {
    let mut fb = FrameBuilder::new(OpCode::Text, payload_hint + topic.len() + 64);
    phoenix::encode_message_with(vsn, fb.body(), None, None, topic, event, payload);
    fb.finish()
}

/// A text frame carrying a `phx_reply`.
pub fn reply(
    vsn: Vsn,
    join_ref: Option<&Ref>,
    msg_ref: Option<&Ref>,
    topic: &str,
    status: &str,
    response_json: &[u8],
) -> Bytes {
    let mut fb = FrameBuilder::new(OpCode::Text, response_json.len() + topic.len() + 64);
    phoenix::encode_reply(
        vsn,
        fb.body(),
        join_ref,
        msg_ref,
        topic,
        status,
        response_json,
    );
    fb.finish()
}

/// `{"reason":"<reason>"}` error reply.
pub fn error_reply(
    vsn: Vsn,
    join_ref: Option<&Ref>,
    msg_ref: Option<&Ref>,
    topic: &str,
    reason: &str,
) -> Bytes {
    reply(vsn, join_ref, msg_ref, topic, "error", &reason_json(reason))
}

/// The JSON object `{"reason":"<reason>"}`.
pub fn reason_json(reason: &str) -> Vec<u8> {
    let mut b = bytes::BytesMut::with_capacity(reason.len() + 16);
    b.extend_from_slice(b"{\"reason\":");
    crate::proto::json::write_str(&mut b, reason);
    b.extend_from_slice(b"}");
    b.to_vec()
}

/// A `system` push to a channel, `[join_ref, null, topic, "system",
/// {"extension":E,"status":S,"message":M,"channel":<sub-topic>}]`
/// (PROTOCOL 3.5). Every `system` message the server sends is built here.
/// `name_channel` is false only for the tenant-wide disconnect, whose
/// payload has no `channel` key.
pub fn system(
    vsn: Vsn,
    join_ref: Option<&Ref>,
    topic: &str,
    extension: &str,
    status: &str,
    message: &str,
    name_channel: bool,
) -> Bytes {
    let channel = name_channel.then(|| topic.strip_prefix("realtime:").unwrap_or(topic));
    let payload = system_payload(extension, status, message, channel);
    self::message(vsn, join_ref, None, topic, "system", &payload)
}

/// The `system` payload `{"extension":E,"status":S,"message":M,"channel":C}`.
fn system_payload(extension: &str, status: &str, message: &str, channel: Option<&str>) -> Vec<u8> {
    let mut b = bytes::BytesMut::with_capacity(message.len() + 96);
    b.extend_from_slice(b"{\"extension\":");
    crate::proto::json::write_str(&mut b, extension);
    b.extend_from_slice(b",\"status\":");
    crate::proto::json::write_str(&mut b, status);
    b.extend_from_slice(b",\"message\":");
    crate::proto::json::write_str(&mut b, message);
    if let Some(c) = channel {
        b.extend_from_slice(b",\"channel\":");
        crate::proto::json::write_str(&mut b, c);
    }
    b.extend_from_slice(b"}");
    b.to_vec()
}

/// Kind-4 user broadcast as a binary frame.
pub fn user_broadcast_binary(
    topic: &str,
    user_event: &str,
    metadata: &[u8],
    encoding: Encoding,
    payload: &[u8],
) -> Option<Bytes> {
    let mut fb = FrameBuilder::new(
        OpCode::Binary,
        payload.len() + topic.len() + user_event.len() + metadata.len() + 8,
    );
    phoenix::encode_user_broadcast(fb.body(), topic, user_event, metadata, encoding, payload)
        .ok()?;
    Some(fb.finish())
}

/// Kind-2 broadcast (re-fan of a kind-0 push) as a binary frame.
pub fn binary_broadcast(topic: &str, event: &str, payload: &[u8]) -> Option<Bytes> {
    let mut fb = FrameBuilder::new(
        OpCode::Binary,
        payload.len() + topic.len() + event.len() + 4,
    );
    phoenix::encode_binary_broadcast(fb.body(), topic, event, payload).ok()?;
    Some(fb.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body of an unmasked server frame shorter than 126 bytes.
    fn body(frame: &Bytes) -> &str {
        assert!(frame[1] < 126);
        std::str::from_utf8(&frame[2..]).unwrap()
    }

    #[test]
    fn system_messages_are_exact() {
        let jr = Ref::from_str_value("1");
        let f = system(
            Vsn::V2,
            Some(&jr),
            "realtime:r",
            "system",
            "error",
            "m",
            true,
        );
        assert_eq!(
            body(&f),
            r#"["1",null,"realtime:r","system",{"extension":"system","status":"error","message":"m","channel":"r"}]"#
        );
        let f = system(
            Vsn::V2,
            None,
            "realtime:r",
            "system",
            "ok",
            "Server requested disconnect",
            false,
        );
        assert_eq!(
            body(&f),
            r#"[null,null,"realtime:r","system",{"extension":"system","status":"ok","message":"Server requested disconnect"}]"#
        );
    }
}
