//! Decodes arbitrary bytes as a vsn 2.0.0 text frame; whatever decodes must
//! re-encode to a frame that decodes to the same message.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use realtime::proto::phoenix::{decode_text, encode_message, encode_reply, InPayload, Vsn};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = decode_text(Vsn::V2, data) else {
        return;
    };
    let InPayload::Json(payload) = m.payload else {
        panic!("a text frame decoded to a non-JSON payload")
    };
    let mut out = BytesMut::new();
    let (jr, r) = (m.join_ref.as_ref(), m.msg_ref.as_ref());
    encode_message(
        Vsn::V2,
        &mut out,
        jr,
        r,
        &m.topic,
        &m.event,
        payload.get().as_bytes(),
    );
    let back = decode_text(Vsn::V2, &out).expect("re-encoded message must decode");
    assert_eq!(back.join_ref, m.join_ref);
    assert_eq!(back.msg_ref, m.msg_ref);
    assert_eq!(back.topic, m.topic);
    assert_eq!(back.event, m.event);
    let InPayload::Json(p2) = back.payload else {
        panic!()
    };
    assert_eq!(p2.get(), payload.get());

    out.clear();
    encode_reply(
        Vsn::V2,
        &mut out,
        jr,
        r,
        &m.topic,
        &m.event,
        payload.get().as_bytes(),
    );
    let reply = decode_text(Vsn::V2, &out).expect("reply must decode");
    assert_eq!(reply.event, "phx_reply");
    assert_eq!(reply.msg_ref, m.msg_ref);
});
