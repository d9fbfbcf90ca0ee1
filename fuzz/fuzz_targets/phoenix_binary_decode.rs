//! Decodes arbitrary bytes as a vsn 2.0.0 binary frame; whatever decodes must
//! survive re-encoding: a kind 0 push through the kind 1 layout (identical to
//! the client push layout once the kind byte is swapped), a kind 3 user
//! broadcast push as the kind 4 frame subscribers get.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use realtime::proto::phoenix::{
    decode_binary, encode_binary_reply, encode_user_broadcast, InPayload, Ref,
};

fn plain(r: &Option<Ref>) -> String {
    let r = r.as_ref().expect("binary frames always carry refs");
    let s = r
        .as_plain_str()
        .expect("binary refs are strings")
        .into_owned();
    assert_eq!(&Ref::from_str_value(&s), r);
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(m) = decode_binary(data) else { return };
    let (jr, r) = (plain(&m.join_ref), plain(&m.msg_ref));
    let mut out = BytesMut::new();
    match &m.payload {
        InPayload::Binary(payload) => {
            encode_binary_reply(&mut out, Some(&jr), Some(&r), &m.topic, &m.event, payload)
                .expect("decoded fields fit in 255 bytes");
            assert_eq!(out[0], 1);
            out[0] = 0;
            assert_eq!(&out[..], data);
        }
        InPayload::UserBroadcast(u) => {
            assert_eq!(m.event, "broadcast");
            encode_user_broadcast(
                &mut out, &m.topic, &u.event, u.metadata, u.encoding, u.payload,
            )
            .expect("decoded fields fit in 255 bytes");
            let header = 7 + jr.len() + r.len();
            assert_eq!(&out[5..], &data[header..]);
            assert_eq!(out[4] == 0, data[6] == 0);
        }
        InPayload::Json(_) => panic!("binary frames never carry JSON payloads"),
    }
});
