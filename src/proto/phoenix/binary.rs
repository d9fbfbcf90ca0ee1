//! vsn 2.0.0 binary frames (PROTOCOL 2.3). Every length is one byte and
//! every string is raw bytes of at most 255; all integers are u8.
//!
//! Client to server: kind 0 (push) and kind 3 (user broadcast push).
//! Server to client: kind 0 (push, no ref), 1 (reply), 2 (broadcast) and
//! 4 (user broadcast). realtime-js only understands kind 4.
//!
//! Decoding checks every length against the frame and never panics. Text
//! fields (refs, topic, events) must be UTF-8: the Elixir server accepts any
//! bytes there but then cannot route, echo or JSON-encode them, so rejecting
//! them up front loses nothing a client could rely on.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use super::{DecodeError, EncodeError, Encoding, InPayload, Inbound, Ref, UserBroadcastIn};
use crate::proto::json::is_json_value;

/// Kind byte of a push (both directions, different layouts).
pub const KIND_PUSH: u8 = 0;
/// Kind byte of a reply (server to client).
pub const KIND_REPLY: u8 = 1;
/// Kind byte of a broadcast (server to client).
pub const KIND_BROADCAST: u8 = 2;
/// Kind byte of a user broadcast push (client to server).
pub const KIND_USER_BROADCAST_PUSH: u8 = 3;
/// Kind byte of a user broadcast (server to client).
pub const KIND_USER_BROADCAST: u8 = 4;

/// A bounds-checked reader over a binary frame.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The next `n` bytes, or `Truncated`.
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array, or `Truncated`.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// The next `n` bytes as UTF-8 text.
    fn text(&mut self, n: u8, field: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.take(n as usize)?).map_err(|_| DecodeError::InvalidUtf8(field))
    }
}

/// Decodes a client binary frame: kind 0 (push) or kind 3 (user broadcast
/// push); any other kind is an error.
///
/// Refs arrive as raw strings and become JSON-quoted [`Ref`]s; an empty ref
/// (realtime-js writes `""` for a null ref) stays `Some("")`, as it does in
/// the Elixir server, so a reply echoes `""`. A kind 3 message has event
/// `"broadcast"` and an [`InPayload::UserBroadcast`] payload; its encoding
/// byte is 0 for binary and anything else for JSON (the Elixir reading);
/// non-empty metadata must be valid JSON (the Elixir server decodes it and
/// drops the frame otherwise), and so must a payload declared JSON
/// ([`DecodeError::InvalidPayload`]): its bytes end up spliced into other
/// clients' frames.
pub fn decode_binary(frame: &[u8]) -> Result<Inbound<'_>, DecodeError> {
    let (&kind, rest) = frame.split_first().ok_or(DecodeError::Empty)?;
    let mut r = Reader { rest };
    match kind {
        KIND_PUSH => {
            let [jr_len, ref_len, topic_len, event_len] = r.array()?;
            let join_ref = r.text(jr_len, "join_ref")?;
            let msg_ref = r.text(ref_len, "ref")?;
            let topic = r.text(topic_len, "topic")?;
            let event = r.text(event_len, "event")?;
            Ok(Inbound {
                join_ref: Some(Ref::from_str_value(join_ref)),
                msg_ref: Some(Ref::from_str_value(msg_ref)),
                topic: Cow::Borrowed(topic),
                event: Cow::Borrowed(event),
                payload: InPayload::Binary(r.rest),
            })
        }
        KIND_USER_BROADCAST_PUSH => {
            let [jr_len, ref_len, topic_len, event_len, meta_len, encoding] = r.array()?;
            let join_ref = r.text(jr_len, "join_ref")?;
            let msg_ref = r.text(ref_len, "ref")?;
            let topic = r.text(topic_len, "topic")?;
            let user_event = r.text(event_len, "user_event")?;
            let metadata = r.take(meta_len as usize)?;
            if !metadata.is_empty() && !is_json_value(metadata) {
                return Err(DecodeError::InvalidMetadata);
            }
            let encoding = Encoding::from_u8(encoding);
            // A payload declared JSON is copied verbatim into the text frames
            // of vsn 1.0.0 subscribers and parsed by realtime-js from kind 4,
            // so it must be one JSON value; checked here, once per message,
            // never per subscriber.
            if encoding == Encoding::Json && !is_json_value(r.rest) {
                return Err(DecodeError::InvalidPayload);
            }
            Ok(Inbound {
                join_ref: Some(Ref::from_str_value(join_ref)),
                msg_ref: Some(Ref::from_str_value(msg_ref)),
                topic: Cow::Borrowed(topic),
                event: Cow::Borrowed("broadcast"),
                payload: InPayload::UserBroadcast(UserBroadcastIn {
                    event: Cow::Borrowed(user_event),
                    encoding,
                    metadata,
                    payload: r.rest,
                }),
            })
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// The length of a length-prefixed field as its u8 prefix.
fn len_u8(field: &'static str, bytes: &[u8]) -> Result<u8, EncodeError> {
    u8::try_from(bytes.len()).map_err(|_| EncodeError::TooLong {
        field,
        len: bytes.len(),
    })
}

/// Appends a kind 4 user broadcast:
/// `04 | topic_len | event_len | metadata_len | encoding | topic | event |
/// metadata | payload`. `topic` is the subscriber's joined topic
/// (`realtime:<name>`); `metadata` is JSON text or empty. Nothing is written
/// on error.
pub fn encode_user_broadcast(
    out: &mut BytesMut,
    topic: &str,
    user_event: &str,
    metadata: &[u8],
    encoding: Encoding,
    payload: &[u8],
) -> Result<(), EncodeError> {
    let topic_len = len_u8("topic", topic.as_bytes())?;
    let event_len = len_u8("user_event", user_event.as_bytes())?;
    let meta_len = len_u8("metadata", metadata)?;
    out.reserve(5 + topic.len() + user_event.len() + metadata.len() + payload.len());
    out.put_slice(&[
        KIND_USER_BROADCAST,
        topic_len,
        event_len,
        meta_len,
        encoding.as_u8(),
    ]);
    out.put_slice(topic.as_bytes());
    out.put_slice(user_event.as_bytes());
    out.put_slice(metadata);
    out.put_slice(payload);
    Ok(())
}

/// Appends a kind 0 push in the server layout (no ref):
/// `00 | join_ref_len | topic_len | event_len | join_ref | topic | event |
/// payload`; a `None` join_ref is written empty. Never send to realtime-js.
pub fn encode_binary_push(
    out: &mut BytesMut,
    join_ref: Option<&str>,
    topic: &str,
    event: &str,
    payload: &[u8],
) -> Result<(), EncodeError> {
    let join_ref = join_ref.unwrap_or("");
    let jr_len = len_u8("join_ref", join_ref.as_bytes())?;
    let topic_len = len_u8("topic", topic.as_bytes())?;
    let event_len = len_u8("event", event.as_bytes())?;
    out.reserve(4 + join_ref.len() + topic.len() + event.len() + payload.len());
    out.put_slice(&[KIND_PUSH, jr_len, topic_len, event_len]);
    out.put_slice(join_ref.as_bytes());
    out.put_slice(topic.as_bytes());
    out.put_slice(event.as_bytes());
    out.put_slice(payload);
    Ok(())
}

/// Appends a kind 1 reply:
/// `01 | join_ref_len | ref_len | topic_len | status_len | join_ref | ref |
/// topic | status | payload`; `None` refs are written empty (see
/// [`Ref::as_plain_str`] to get them from a [`Ref`]). Never send to
/// realtime-js.
pub fn encode_binary_reply(
    out: &mut BytesMut,
    join_ref: Option<&str>,
    msg_ref: Option<&str>,
    topic: &str,
    status: &str,
    payload: &[u8],
) -> Result<(), EncodeError> {
    let (join_ref, msg_ref) = (join_ref.unwrap_or(""), msg_ref.unwrap_or(""));
    let jr_len = len_u8("join_ref", join_ref.as_bytes())?;
    let ref_len = len_u8("ref", msg_ref.as_bytes())?;
    let topic_len = len_u8("topic", topic.as_bytes())?;
    let status_len = len_u8("status", status.as_bytes())?;
    out.reserve(5 + join_ref.len() + msg_ref.len() + topic.len() + status.len() + payload.len());
    out.put_slice(&[KIND_REPLY, jr_len, ref_len, topic_len, status_len]);
    out.put_slice(join_ref.as_bytes());
    out.put_slice(msg_ref.as_bytes());
    out.put_slice(topic.as_bytes());
    out.put_slice(status.as_bytes());
    out.put_slice(payload);
    Ok(())
}

/// Appends a kind 2 broadcast: `02 | topic_len | event_len | topic | event |
/// payload`. Never send to realtime-js.
pub fn encode_binary_broadcast(
    out: &mut BytesMut,
    topic: &str,
    event: &str,
    payload: &[u8],
) -> Result<(), EncodeError> {
    let topic_len = len_u8("topic", topic.as_bytes())?;
    let event_len = len_u8("event", event.as_bytes())?;
    out.reserve(3 + topic.len() + event.len() + payload.len());
    out.put_slice(&[KIND_BROADCAST, topic_len, event_len]);
    out.put_slice(topic.as_bytes());
    out.put_slice(event.as_bytes());
    out.put_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user_broadcast<'a>(m: &'a Inbound<'a>) -> &'a UserBroadcastIn<'a> {
        match &m.payload {
            InPayload::UserBroadcast(u) => u,
            other => panic!("not a user broadcast: {other:?}"),
        }
    }

    #[test]
    fn realtime_js_probe_kind3() {
        // 03 01 01 0e 06 00 01 "6" "7" "realtime:room1" "cursor" {"x":42}
        let mut frame = vec![3, 1, 1, 0x0e, 6, 0, 1];
        frame.extend_from_slice(b"67realtime:room1cursor{\"x\":42}");
        let m = decode_binary(&frame).unwrap();
        assert_eq!(m.join_ref.as_ref().unwrap().as_json(), "\"6\"");
        assert_eq!(m.msg_ref.as_ref().unwrap().as_json(), "\"7\"");
        assert_eq!(m.topic, "realtime:room1");
        assert_eq!(m.event, "broadcast");
        let u = user_broadcast(&m);
        assert_eq!(u.event, "cursor");
        assert_eq!(u.encoding, Encoding::Json);
        assert_eq!(u.metadata, b"");
        assert_eq!(u.payload, br#"{"x":42}"#);
    }

    #[test]
    fn appendix_a_kind3_to_kind4() {
        let mut frame = vec![3, 1, 1, 0x0e, 6, 0, 1];
        frame.extend_from_slice(b"13realtime:room1cursor{\"x\":1}");
        let m = decode_binary(&frame).unwrap();
        let u = user_broadcast(&m);
        let mut out = BytesMut::new();
        encode_user_broadcast(
            &mut out, &m.topic, &u.event, u.metadata, u.encoding, u.payload,
        )
        .unwrap();
        let mut want = vec![4, 0x0e, 6, 0, 1];
        want.extend_from_slice(b"realtime:room1cursor{\"x\":1}");
        assert_eq!(&out[..], &want[..]);
    }

    #[test]
    fn elixir_serializer_test_vectors() {
        // Kind 0 client push: join_ref "12", ref "123", "topic", "event", 101 102 103.
        let mut push = vec![0, 2, 3, 5, 5];
        push.extend_from_slice(b"12123topicevent");
        push.extend_from_slice(&[101, 102, 103]);
        let m = decode_binary(&push).unwrap();
        assert_eq!(m.join_ref, Some(Ref::from_str_value("12")));
        assert_eq!(m.msg_ref, Some(Ref::from_str_value("123")));
        assert_eq!((&*m.topic, &*m.event), ("topic", "event"));
        assert!(matches!(m.payload, InPayload::Binary(&[101, 102, 103])));

        // Kind 3 with binary encoding and metadata {"store":true}.
        let mut ub = vec![3, 2, 3, 5, 10, 14, 0];
        ub.extend_from_slice(b"12123topicuser_event{\"store\":true}");
        ub.extend_from_slice(&[101, 102, 103]);
        let m = decode_binary(&ub).unwrap();
        let u = user_broadcast(&m);
        assert_eq!(u.event, "user_event");
        assert_eq!(u.encoding, Encoding::Binary);
        assert_eq!(u.metadata, br#"{"store":true}"#);
        assert_eq!(u.payload, &[101, 102, 103]);

        // Kind 0 server push: join_ref "12", no ref.
        let mut out = BytesMut::new();
        encode_binary_push(&mut out, Some("12"), "topic", "event", &[101, 102, 103]).unwrap();
        let mut want = vec![0, 2, 5, 5];
        want.extend_from_slice(b"12topicevent");
        want.extend_from_slice(&[101, 102, 103]);
        assert_eq!(&out[..], &want[..]);

        // Kind 1 reply.
        out.clear();
        encode_binary_reply(
            &mut out,
            Some("12"),
            Some("123"),
            "topic",
            "ok",
            &[101, 102, 103],
        )
        .unwrap();
        let mut want = vec![1, 2, 3, 5, 2];
        want.extend_from_slice(b"12123topicok");
        want.extend_from_slice(&[101, 102, 103]);
        assert_eq!(&out[..], &want[..]);

        // Kind 2 broadcast.
        out.clear();
        encode_binary_broadcast(&mut out, "topic", "event", &[101, 102, 103]).unwrap();
        let mut want = vec![2, 5, 5];
        want.extend_from_slice(b"topicevent");
        want.extend_from_slice(&[101, 102, 103]);
        assert_eq!(&out[..], &want[..]);

        // Kind 4 with metadata {"replayed":true} (17 bytes).
        out.clear();
        encode_user_broadcast(
            &mut out,
            "topic",
            "user_event",
            br#"{"replayed":true}"#,
            Encoding::Json,
            b"{}",
        )
        .unwrap();
        let mut want = vec![4, 5, 10, 17, 1];
        want.extend_from_slice(b"topicuser_event{\"replayed\":true}{}");
        assert_eq!(&out[..], &want[..]);
    }

    #[test]
    fn none_refs_are_empty() {
        let mut out = BytesMut::new();
        encode_binary_reply(&mut out, None, None, "t", "error", b"").unwrap();
        assert_eq!(&out[..], b"\x01\x00\x00\x01\x05terror");
        out.clear();
        encode_binary_push(&mut out, None, "t", "e", b"").unwrap();
        assert_eq!(&out[..], b"\x00\x00\x01\x01te");
        // An empty ref in a client frame stays an (empty) string.
        let m = decode_binary(b"\x00\x00\x00\x01\x01te").unwrap();
        assert_eq!(m.join_ref.unwrap().as_json(), "\"\"");
        // Refs from binary frames are JSON-quoted, so text replies echo them as strings.
        let m = decode_binary(b"\x00\x01\x00\x01\x01\"te").unwrap();
        assert_eq!(m.join_ref.as_ref().unwrap().as_json(), r#""\"""#);
        assert_eq!(m.join_ref.unwrap().as_plain_str().as_deref(), Some("\""));
    }

    #[test]
    fn malformed() {
        use DecodeError::*;
        let d = |b: &[u8]| decode_binary(b).unwrap_err();
        assert_eq!(d(b""), Empty);
        for k in [1u8, 2, 4, 5, 0x5b, 255] {
            assert_eq!(d(&[k, 0, 0, 0, 0, 0, 0]), UnknownKind(k));
        }
        assert_eq!(d(b"\x00"), Truncated);
        assert_eq!(d(b"\x00\x00\x00\x00"), Truncated);
        assert_eq!(d(b"\x00\x01\x00\x00\x00"), Truncated);
        assert_eq!(d(b"\x00\x00\x00\x02\x01t"), Truncated);
        assert_eq!(d(b"\x03\x00\x00\x00\x00\x00"), Truncated);
        assert_eq!(d(b"\x03\x00\x00\x01\x01\x05\x01te{}"), Truncated);
        assert_eq!(d(b"\x03\xff\xff\xff\xff\xff\xff"), Truncated);
        assert_eq!(d(b"\x00\x01\x00\x01\x01\xfftx"), InvalidUtf8("join_ref"));
        assert_eq!(d(b"\x00\x00\x01\x01\x01\xfftx"), InvalidUtf8("ref"));
        assert_eq!(d(b"\x00\x00\x00\x01\x01\xffx"), InvalidUtf8("topic"));
        assert_eq!(d(b"\x00\x00\x00\x01\x01t\xff"), InvalidUtf8("event"));
        assert_eq!(
            d(b"\x03\x00\x00\x01\x01\x00\x01t\xff"),
            InvalidUtf8("user_event")
        );
        assert_eq!(d(b"\x03\x00\x00\x01\x01\x02\x01te{x"), InvalidMetadata);
        assert_eq!(d(b"\x03\x00\x00\x01\x01\x01\x00te\xff"), InvalidMetadata);
        // A payload declared JSON must be exactly one JSON value in UTF-8.
        assert_eq!(d(b"\x03\x00\x00\x01\x01\x00\x01te{x"), InvalidPayload);
        assert_eq!(d(b"\x03\x00\x00\x01\x01\x00\x01te"), InvalidPayload);
        assert_eq!(d(b"\x03\x00\x00\x01\x01\x00\x01te\"\xff\""), InvalidPayload);
        assert_eq!(d(b"\x03\x00\x00\x01\x01\x00\x01te1}{"), InvalidPayload);
        let mut forged = b"\x03\x00\x00\x01\x01\x00\x01te".to_vec();
        forged.extend_from_slice(
            br#"1},"event":"phx_close","topic":"realtime:room","ref":"1","x":{"a":1"#,
        );
        assert_eq!(d(&forged), InvalidPayload);
        // The same bytes declared binary are opaque and go out only as kind 4.
        forged[6] = 0;
        assert!(decode_binary(&forged).is_ok());
        // Kind 0 payload may be anything, including empty; so may kind 3's.
        assert!(decode_binary(b"\x00\x00\x00\x01\x01te").is_ok());
        assert!(decode_binary(b"\x03\x00\x00\x01\x01\x00\x00te").is_ok());
        // Any non-zero encoding byte means JSON, as in the Elixir server.
        let m = decode_binary(b"\x03\x00\x00\x01\x01\x00\x07te1").unwrap();
        assert_eq!(user_broadcast(&m).encoding, Encoding::Json);
    }

    #[test]
    fn oversized_fields_are_rejected_without_writing() {
        let long = "x".repeat(256);
        let ok = "x".repeat(255);
        let mut out = BytesMut::new();
        let e = |field, len| Err(EncodeError::TooLong { field, len });
        assert_eq!(
            encode_user_broadcast(&mut out, &long, "e", b"", Encoding::Json, b""),
            e("topic", 256)
        );
        assert_eq!(
            encode_user_broadcast(&mut out, "t", &long, b"", Encoding::Json, b""),
            e("user_event", 256)
        );
        assert_eq!(
            encode_user_broadcast(&mut out, "t", "e", long.as_bytes(), Encoding::Json, b""),
            e("metadata", 256)
        );
        assert_eq!(
            encode_binary_push(&mut out, Some(&long), "t", "e", b""),
            e("join_ref", 256)
        );
        assert_eq!(
            encode_binary_push(&mut out, None, &long, "e", b""),
            e("topic", 256)
        );
        assert_eq!(
            encode_binary_push(&mut out, None, "t", &long, b""),
            e("event", 256)
        );
        assert_eq!(
            encode_binary_reply(&mut out, Some(&long), None, "t", "ok", b""),
            e("join_ref", 256)
        );
        assert_eq!(
            encode_binary_reply(&mut out, None, Some(&long), "t", "ok", b""),
            e("ref", 256)
        );
        assert_eq!(
            encode_binary_reply(&mut out, None, None, &long, "ok", b""),
            e("topic", 256)
        );
        assert_eq!(
            encode_binary_reply(&mut out, None, None, "t", &long, b""),
            e("status", 256)
        );
        assert_eq!(
            encode_binary_broadcast(&mut out, &long, "e", b""),
            e("topic", 256)
        );
        assert_eq!(
            encode_binary_broadcast(&mut out, "t", &long, b""),
            e("event", 256)
        );
        assert!(out.is_empty());
        // Multi-byte characters count in bytes.
        assert!(encode_binary_broadcast(&mut out, &"é".repeat(128), "e", b"").is_err());
        assert!(
            encode_user_broadcast(&mut out, &ok, &ok, ok.as_bytes(), Encoding::Binary, b"p")
                .is_ok()
        );
        assert_eq!(out.len(), 5 + 3 * 255 + 1);
    }

    proptest! {
        /// A kind 3 push built like realtime-js decodes back to its parts and
        /// re-encodes as the kind 4 subscribers get.
        #[test]
        fn kind3_round_trip(
            join_ref in "[0-9]{0,10}",
            msg_ref in "\\PC{0,20}",
            topic in "realtime:[a-z0-9:_-]{0,40}",
            event in "\\PC{0,30}",
            binary in any::<bool>(),
            meta in proptest::option::of("[a-z]{0,10}"),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let meta = meta.map(|k| format!("{{\"{k}\":true}}")).unwrap_or_default();
            // A JSON payload must be JSON: carry the random bytes as a string.
            let payload = if binary {
                payload
            } else {
                crate::proto::json::quote(&String::from_utf8_lossy(&payload)).into_bytes()
            };
            let mut frame = vec![
                3,
                join_ref.len() as u8,
                msg_ref.len() as u8,
                topic.len() as u8,
                event.len() as u8,
                meta.len() as u8,
                u8::from(!binary),
            ];
            for part in [join_ref.as_bytes(), msg_ref.as_bytes(), topic.as_bytes(), event.as_bytes(), meta.as_bytes(), &payload] {
                frame.extend_from_slice(part);
            }
            let m = decode_binary(&frame).unwrap();
            prop_assert_eq!(m.join_ref.unwrap().as_plain_str().map(Cow::into_owned), Some(join_ref.clone()));
            prop_assert_eq!(m.msg_ref.unwrap().as_plain_str().map(Cow::into_owned), Some(msg_ref.clone()));
            prop_assert_eq!(&*m.topic, topic.as_str());
            let InPayload::UserBroadcast(u) = m.payload else { panic!() };
            prop_assert_eq!(&*u.event, event.as_str());
            prop_assert_eq!(u.encoding, if binary { Encoding::Binary } else { Encoding::Json });
            prop_assert_eq!(u.metadata, meta.as_bytes());
            prop_assert_eq!(u.payload, &payload[..]);
            let mut out = BytesMut::new();
            encode_user_broadcast(&mut out, &m.topic, &u.event, u.metadata, u.encoding, u.payload).unwrap();
            prop_assert_eq!(out[0], 4);
            prop_assert_eq!(&out[5..], &frame[7 + join_ref.len() + msg_ref.len()..]);
        }

        /// Server kind 0 and kind 1 layouts match the client push layout once
        /// the ref is added, so a server-encoded push decodes as a client one.
        #[test]
        fn kind0_round_trip(
            join_ref in "[0-9]{0,5}",
            msg_ref in "[0-9]{0,5}",
            topic in "\\PC{0,40}",
            event in "\\PC{0,20}",
            payload in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut out = BytesMut::new();
            encode_binary_reply(&mut out, Some(&join_ref), Some(&msg_ref), &topic, &event, &payload).unwrap();
            // Kind 1 has exactly the client kind 0 layout with the status as event.
            out[0] = 0;
            let m = decode_binary(&out).unwrap();
            prop_assert_eq!(m.join_ref.unwrap().as_plain_str().map(Cow::into_owned), Some(join_ref.clone()));
            prop_assert_eq!(m.msg_ref.unwrap().as_plain_str().map(Cow::into_owned), Some(msg_ref.clone()));
            prop_assert_eq!((&*m.topic, &*m.event), (topic.as_str(), event.as_str()));
            prop_assert!(matches!(m.payload, InPayload::Binary(p) if p == &payload[..]));
        }

        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..300), kind in 0u8..5) {
            let _ = decode_binary(&bytes);
            if let Some(b) = bytes.first_mut() {
                *b = kind;
            }
            let _ = decode_binary(&bytes);
        }
    }
}
