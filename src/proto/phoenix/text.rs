//! Text frames: vsn 1.0.0 (JSON object) and vsn 2.0.0 (JSON array).
//!
//! Decoding walks the JSON once with serde_json, keeping every element as a
//! borrowed `&RawValue`; only `topic` and `event` are looked into, and they
//! borrow from the frame unless they contain escapes.
//!
//! Encoding is hand-written and matches the Elixir server byte for byte:
//! - vsn 2.0.0: `[join_ref,ref,topic,event,payload]`.
//! - vsn 1.0.0: Phoenix's V1 serializer builds a map of `topic`, `event`,
//!   `payload`, `ref` (never `join_ref`) and Jason writes small maps in sorted
//!   key order, so the wire order is `{"event":…,"payload":…,"ref":…,"topic":…}`.
//! - reply payloads are the map `%{status: s, response: r}`, which Jason
//!   likewise writes sorted: `{"response":…,"status":…}`.
//! - a JSON user broadcast converted for a V1 subscriber is the map
//!   `{"event","payload","type"[,"meta"]}`, written sorted:
//!   `{"event":…[,"meta":…],"payload":…,"type":"broadcast"}`.

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, BytesMut};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{DecodeError, InPayload, Inbound, Ref, Vsn};
use crate::proto::json::write_str;

/// Decodes a client text frame for serializer `vsn`.
///
/// vsn 1.0.0: a JSON object with `topic`, `event`, `payload` and `ref`
/// (`join_ref` optional). Unlike the Elixir server, a missing `ref` is
/// accepted as `None` (PROTOCOL 8.9: the Dart v1 client omits null keys).
/// Unknown keys are ignored; for duplicate keys the last one wins (as Jason).
///
/// vsn 2.0.0: a JSON array `[join_ref, ref, topic, event, payload, ...]` of
/// at least 5 elements; extra elements are ignored.
///
/// In both, `topic` and `event` must be strings; refs and payload may be any
/// JSON value.
pub fn decode_text(vsn: Vsn, frame: &[u8]) -> Result<Inbound<'_>, DecodeError> {
    let first = frame.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let mut de = serde_json::Deserializer::from_slice(frame);
    let fields = match vsn {
        Vsn::V1 => {
            if first != Some(b'{') {
                return Err(if first.is_none() {
                    DecodeError::InvalidJson
                } else {
                    DecodeError::NotAnObject
                });
            }
            let f = de
                .deserialize_map(V1Visitor)
                .map_err(|_| DecodeError::InvalidJson)?;
            de.end().map_err(|_| DecodeError::InvalidJson)?;
            Fields {
                join_ref: f.join_ref,
                msg_ref: f.msg_ref,
                topic: f.topic.ok_or(DecodeError::MissingField("topic"))?,
                event: f.event.ok_or(DecodeError::MissingField("event"))?,
                payload: f.payload.ok_or(DecodeError::MissingField("payload"))?,
            }
        }
        Vsn::V2 => {
            if first != Some(b'[') {
                return Err(if first.is_none() {
                    DecodeError::InvalidJson
                } else {
                    DecodeError::NotAnArray
                });
            }
            let (elems, n) = de
                .deserialize_seq(V2Visitor)
                .map_err(|_| DecodeError::InvalidJson)?;
            de.end().map_err(|_| DecodeError::InvalidJson)?;
            match elems {
                [Some(join_ref), Some(msg_ref), Some(topic), Some(event), Some(payload)] => {
                    Fields {
                        join_ref: Some(join_ref),
                        msg_ref: Some(msg_ref),
                        topic,
                        event,
                        payload,
                    }
                }
                _ => return Err(DecodeError::ArrayTooShort(n)),
            }
        }
    };
    Ok(Inbound {
        join_ref: fields.join_ref.and_then(Ref::from_raw),
        msg_ref: fields.msg_ref.and_then(Ref::from_raw),
        topic: raw_str(fields.topic, "topic")?,
        event: raw_str(fields.event, "event")?,
        payload: InPayload::Json(fields.payload),
    })
}

/// The five message fields as raw JSON values.
struct Fields<'a> {
    join_ref: Option<&'a RawValue>,
    msg_ref: Option<&'a RawValue>,
    topic: &'a RawValue,
    event: &'a RawValue,
    payload: &'a RawValue,
}

/// The content of a raw JSON string value, borrowed when it has no escapes.
fn raw_str<'a>(raw: &'a RawValue, field: &'static str) -> Result<Cow<'a, str>, DecodeError> {
    let text = raw.get();
    if !text.starts_with('"') {
        return Err(DecodeError::NotAString(field));
    }
    if !text.contains('\\') {
        // A validated JSON string without escapes: the content is verbatim.
        return text
            .get(1..text.len() - 1)
            .map(Cow::Borrowed)
            .ok_or(DecodeError::InvalidJson);
    }
    serde_json::from_str::<String>(text)
        .map(Cow::Owned)
        .map_err(|_| DecodeError::InvalidJson)
}

/// Collects the first five elements of a V2 array; returns them with the
/// number present (capped at 5).
struct V2Visitor;

impl<'de> Visitor<'de> for V2Visitor {
    type Value = ([Option<&'de RawValue>; 5], usize);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elems = [None; 5];
        let mut n = 0;
        while n < elems.len() {
            match seq.next_element::<&'de RawValue>()? {
                Some(v) => {
                    elems[n] = Some(v);
                    n += 1;
                }
                None => return Ok((elems, n)),
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok((elems, n))
    }
}

/// The V1 object's known keys (last occurrence wins).
#[derive(Default)]
struct V1Fields<'a> {
    join_ref: Option<&'a RawValue>,
    msg_ref: Option<&'a RawValue>,
    topic: Option<&'a RawValue>,
    event: Option<&'a RawValue>,
    payload: Option<&'a RawValue>,
}

struct V1Visitor;

impl<'de> Visitor<'de> for V1Visitor {
    type Value = V1Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut f = V1Fields::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let slot = match &*key.0 {
                "topic" => &mut f.topic,
                "event" => &mut f.event,
                "payload" => &mut f.payload,
                "ref" => &mut f.msg_ref,
                "join_ref" => &mut f.join_ref,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value::<&'de RawValue>()?);
        }
        Ok(f)
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Writes a ref's JSON text, or `null`.
fn write_ref(out: &mut BytesMut, r: Option<&Ref>) {
    match r {
        Some(r) => out.extend_from_slice(r.as_json().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

/// Writes the envelope around a payload produced by `payload`.
fn write_envelope(
    vsn: Vsn,
    out: &mut BytesMut,
    join_ref: Option<&Ref>,
    msg_ref: Option<&Ref>,
    topic: &str,
    event: &str,
    payload: impl FnOnce(&mut BytesMut),
) {
    match vsn {
        Vsn::V2 => {
            out.put_u8(b'[');
            write_ref(out, join_ref);
            out.put_u8(b',');
            write_ref(out, msg_ref);
            out.put_u8(b',');
            write_str(out, topic);
            out.put_u8(b',');
            write_str(out, event);
            out.put_u8(b',');
            payload(out);
            out.put_u8(b']');
        }
        Vsn::V1 => {
            // Jason's sorted key order; V1 never carries join_ref.
            out.extend_from_slice(b"{\"event\":");
            write_str(out, event);
            out.extend_from_slice(b",\"payload\":");
            payload(out);
            out.extend_from_slice(b",\"ref\":");
            write_ref(out, msg_ref);
            out.extend_from_slice(b",\"topic\":");
            write_str(out, topic);
            out.put_u8(b'}');
        }
    }
}

/// Appends one message: vsn 2.0.0 `[join_ref,ref,topic,event,payload]` (null
/// where `None`), vsn 1.0.0 `{"event":E,"payload":P,"ref":R,"topic":T}`
/// (`join_ref` is never sent to V1 clients). `payload_json` must be valid
/// JSON text; it is copied verbatim.
pub fn encode_message(
    vsn: Vsn,
    out: &mut BytesMut,
    join_ref: Option<&Ref>,
    msg_ref: Option<&Ref>,
    topic: &str,
    event: &str,
    payload_json: &[u8],
) {
    write_envelope(vsn, out, join_ref, msg_ref, topic, event, |out| {
        out.extend_from_slice(payload_json)
    });
}

/// [`encode_message`] with the payload written by `payload` straight into
/// `out` (it must append exactly one valid JSON value), so a payload built
/// per message needs no buffer of its own.
pub fn encode_message_with(
    vsn: Vsn,
    out: &mut BytesMut,
    join_ref: Option<&Ref>,
    msg_ref: Option<&Ref>,
    topic: &str,
    event: &str,
    payload: impl FnOnce(&mut BytesMut),
) {
    write_envelope(vsn, out, join_ref, msg_ref, topic, event, payload);
}

/// Appends a `phx_reply` whose payload is `{"response":R,"status":S}` (the
/// Elixir server's key order). `response_json` must be valid JSON text.
pub fn encode_reply(
    vsn: Vsn,
    out: &mut BytesMut,
    join_ref: Option<&Ref>,
    msg_ref: Option<&Ref>,
    topic: &str,
    status: &str,
    response_json: &[u8],
) {
    write_envelope(vsn, out, join_ref, msg_ref, topic, "phx_reply", |out| {
        out.extend_from_slice(b"{\"response\":");
        out.extend_from_slice(response_json);
        out.extend_from_slice(b",\"status\":");
        write_str(out, status);
        out.put_u8(b'}');
    });
}

/// Appends the JSON payload a text (V1) subscriber gets for a JSON user
/// broadcast (PROTOCOL 2.5):
/// `{"event":E,"meta":M,"payload":P,"type":"broadcast"}`, `meta` only when
/// metadata is given. `payload_json` and `metadata_json` are copied verbatim
/// (like the Elixir server, which does not validate encoding-1 payloads).
pub fn encode_user_broadcast_json(
    out: &mut BytesMut,
    user_event: &str,
    metadata_json: Option<&[u8]>,
    payload_json: &[u8],
) {
    out.extend_from_slice(b"{\"event\":");
    write_str(out, user_event);
    if let Some(meta) = metadata_json {
        out.extend_from_slice(b",\"meta\":");
        out.extend_from_slice(meta);
    }
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(payload_json);
    out.extend_from_slice(b",\"type\":\"broadcast\"}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v2(s: &str) -> Result<Inbound<'_>, DecodeError> {
        decode_text(Vsn::V2, s.as_bytes())
    }

    fn v1(s: &str) -> Result<Inbound<'_>, DecodeError> {
        decode_text(Vsn::V1, s.as_bytes())
    }

    fn json(p: &InPayload<'_>) -> String {
        match p {
            InPayload::Json(r) => r.get().to_owned(),
            other => panic!("not json: {other:?}"),
        }
    }

    fn enc(f: impl FnOnce(&mut BytesMut)) -> String {
        let mut out = BytesMut::new();
        f(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn r(s: &str) -> Ref {
        Ref::from_str_value(s)
    }

    #[test]
    fn v2_join_from_realtime_js() {
        let frame = r#"["1","1","realtime:room1","phx_join",{"config":{"broadcast":{"ack":false,"self":false},"presence":{"key":"","enabled":true},"postgres_changes":[{"event":"INSERT","schema":"public","table":"todos"}],"private":false},"access_token":"<user JWT>"}]"#;
        let m = v2(frame).unwrap();
        assert_eq!(m.join_ref, Some(r("1")));
        assert_eq!(m.msg_ref, Some(r("1")));
        assert!(matches!(m.topic, Cow::Borrowed("realtime:room1")));
        assert!(matches!(m.event, Cow::Borrowed("phx_join")));
        assert!(json(&m.payload).starts_with(r#"{"config":{"broadcast""#));
        assert!(json(&m.payload).ends_with(r#""access_token":"<user JWT>"}"#));
    }

    #[test]
    fn v2_heartbeat_and_refs_echoed_exactly() {
        let m = v2(r#"[null,"10","phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!(m.join_ref, None);
        assert_eq!(m.msg_ref.as_ref().unwrap().as_json(), r#""10""#);
        assert_eq!(json(&m.payload), "{}");
        let reply = enc(|o| {
            encode_reply(
                Vsn::V2,
                o,
                m.join_ref.as_ref(),
                m.msg_ref.as_ref(),
                &m.topic,
                "ok",
                b"{}",
            )
        });
        assert_eq!(
            reply,
            r#"[null,"10","phoenix","phx_reply",{"response":{},"status":"ok"}]"#
        );
        // Numbers, escaped strings and odd values come back verbatim.
        let m = v2(r#" [ 6 , "\u0037" , "t" , "e" , 1.5e3 , "extra", {"x":[1]} ] "#).unwrap();
        assert_eq!(m.join_ref.as_ref().unwrap().as_json(), "6");
        assert_eq!(m.msg_ref.as_ref().unwrap().as_json(), r#""\u0037""#);
        assert_eq!(json(&m.payload), "1.5e3");
        let out = enc(|o| {
            encode_message(
                Vsn::V2,
                o,
                m.join_ref.as_ref(),
                m.msg_ref.as_ref(),
                "t",
                "e",
                b"{}",
            )
        });
        assert_eq!(out, r#"[6,"\u0037","t","e",{}]"#);
    }

    #[test]
    fn escaped_topic_and_event_are_unescaped() {
        let m = v2(r#"[null,null,"realtime:a\"b","ev\u0041",{}]"#).unwrap();
        assert_eq!(m.topic, "realtime:a\"b");
        assert!(matches!(m.topic, Cow::Owned(_)));
        assert_eq!(m.event, "evA");
        let m = v1(r#"{"t\u006fpic":"x","event":"e","payload":null,"ref":"1"}"#).unwrap();
        assert_eq!(m.topic, "x");
    }

    #[test]
    fn v2_malformed() {
        use DecodeError::*;
        assert_eq!(v2("").unwrap_err(), InvalidJson);
        assert_eq!(v2("   ").unwrap_err(), InvalidJson);
        assert_eq!(v2("{}").unwrap_err(), NotAnArray);
        assert_eq!(v2("null").unwrap_err(), NotAnArray);
        assert_eq!(v2("[]").unwrap_err(), ArrayTooShort(0));
        assert_eq!(v2(r#"[null,"1","t","e"]"#).unwrap_err(), ArrayTooShort(4));
        assert_eq!(v2(r#"[null,"1","t","e",{}"#).unwrap_err(), InvalidJson);
        assert_eq!(v2(r#"[null,"1","t","e",{}] x"#).unwrap_err(), InvalidJson);
        assert_eq!(v2(r#"[null,"1","t","e",{},]"#).unwrap_err(), InvalidJson);
        assert_eq!(
            v2(r#"[null,"1",1,"e",{}]"#).unwrap_err(),
            NotAString("topic")
        );
        assert_eq!(
            v2(r#"[null,"1","t",null,{}]"#).unwrap_err(),
            NotAString("event")
        );
        assert_eq!(v2(r#"[null,"1","t","e",{"a":}]"#).unwrap_err(), InvalidJson);
        assert_eq!(
            decode_text(Vsn::V2, b"[null,\"1\",\"t\xff\",\"e\",{}]").unwrap_err(),
            InvalidJson
        );
        // Deep nesting is skipped iteratively: no depth limit, no stack overflow.
        let deep = format!(
            "[null,null,\"t\",\"e\",{}{}]",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(v2(&deep).is_ok());
        let deep = format!(
            r#"{{"topic":"t","event":"e","payload":{{}},"x":{}}}"#,
            "[".repeat(100_000)
        );
        assert_eq!(v1(&deep).unwrap_err(), InvalidJson);
    }

    #[test]
    fn v1_decode() {
        let m = v1(r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"10"}"#).unwrap();
        assert_eq!((m.join_ref, m.msg_ref), (None, Some(r("10"))));
        assert_eq!((&*m.topic, &*m.event), ("phoenix", "heartbeat"));
        let m =
            v1(r#"{"join_ref":"1","ref":"2","topic":"t","event":"e","payload":[1],"x":{"y":2}}"#)
                .unwrap();
        assert_eq!((m.join_ref, m.msg_ref), (Some(r("1")), Some(r("2"))));
        assert_eq!(json(&m.payload), "[1]");
        // Missing ref is tolerated (Dart v1 client), null ref too.
        let m = v1(r#"{"topic":"t","event":"e","payload":{}}"#).unwrap();
        assert_eq!(m.msg_ref, None);
        let m = v1(r#"{"topic":"t","event":"e","payload":{},"ref":null,"join_ref":null}"#).unwrap();
        assert_eq!((m.join_ref, m.msg_ref), (None, None));
        // Last duplicate wins, as with Jason.
        let m = v1(r#"{"topic":"a","event":"e","payload":{},"topic":"b"}"#).unwrap();
        assert_eq!(m.topic, "b");
    }

    #[test]
    fn v1_malformed() {
        use DecodeError::*;
        assert_eq!(v1("").unwrap_err(), InvalidJson);
        assert_eq!(v1("[]").unwrap_err(), NotAnObject);
        assert_eq!(v1("\"x\"").unwrap_err(), NotAnObject);
        assert_eq!(v1("{").unwrap_err(), InvalidJson);
        assert_eq!(
            v1(r#"{"event":"e","payload":{}}"#).unwrap_err(),
            MissingField("topic")
        );
        assert_eq!(
            v1(r#"{"topic":"t","payload":{}}"#).unwrap_err(),
            MissingField("event")
        );
        assert_eq!(
            v1(r#"{"topic":"t","event":"e"}"#).unwrap_err(),
            MissingField("payload")
        );
        assert_eq!(
            v1(r#"{"topic":["t"],"event":"e","payload":1}"#).unwrap_err(),
            NotAString("topic")
        );
        assert_eq!(
            v1(r#"{"topic":"t","event":2,"payload":1}"#).unwrap_err(),
            NotAString("event")
        );
        assert_eq!(
            v1(r#"{"topic":"t","event":"e","payload":1}}"#).unwrap_err(),
            InvalidJson
        );
        assert_eq!(
            v1(r#"{"topic":"t" "event":"e","payload":1}"#).unwrap_err(),
            InvalidJson
        );
    }

    #[test]
    fn v2_encodings_match_appendix_a() {
        let one = r("1");
        let out = enc(|o| {
            encode_message(
                Vsn::V2,
                o,
                Some(&one),
                None,
                "realtime:room1",
                "presence_state",
                b"{}",
            )
        });
        assert_eq!(out, r#"["1",null,"realtime:room1","presence_state",{}]"#);
        let out = enc(|o| {
            encode_message(
                Vsn::V2,
                o,
                Some(&one),
                Some(&one),
                "realtime:room1",
                "phx_close",
                b"{}",
            )
        });
        assert_eq!(out, r#"["1","1","realtime:room1","phx_close",{}]"#);
        let out = enc(|o| {
            encode_message(
                Vsn::V2,
                o,
                None,
                None,
                "realtime:room1",
                "presence_diff",
                br#"{"joins":{},"leaves":{}}"#,
            )
        });
        assert_eq!(
            out,
            r#"[null,null,"realtime:room1","presence_diff",{"joins":{},"leaves":{}}]"#
        );
        let out = enc(|o| {
            encode_reply(
                Vsn::V2,
                o,
                Some(&one),
                Some(&r("5")),
                "realtime:room1",
                "ok",
                b"{}",
            )
        });
        assert_eq!(
            out,
            r#"["1","5","realtime:room1","phx_reply",{"response":{},"status":"ok"}]"#
        );
        let out = enc(|o| {
            encode_reply(
                Vsn::V2,
                o,
                None,
                Some(&r("3")),
                "x",
                "error",
                br#"{"reason":"unmatched topic"}"#,
            )
        });
        assert_eq!(
            out,
            r#"[null,"3","x","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#
        );
    }

    #[test]
    fn v1_encodings_never_carry_join_ref() {
        let out = enc(|o| {
            encode_message(
                Vsn::V1,
                o,
                Some(&r("1")),
                None,
                "realtime:r",
                "broadcast",
                b"{\"a\":1}",
            )
        });
        assert_eq!(
            out,
            r#"{"event":"broadcast","payload":{"a":1},"ref":null,"topic":"realtime:r"}"#
        );
        let out = enc(|o| {
            encode_reply(
                Vsn::V1,
                o,
                Some(&r("1")),
                Some(&r("10")),
                "phoenix",
                "ok",
                b"{}",
            )
        });
        assert_eq!(
            out,
            r#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"10","topic":"phoenix"}"#
        );
    }

    #[test]
    fn topic_and_event_are_escaped() {
        let out = enc(|o| encode_message(Vsn::V2, o, None, None, "realtime:\"q\"\n", "e\\", b"{}"));
        assert_eq!(out, r#"[null,null,"realtime:\"q\"\n","e\\",{}]"#);
        let back = v2(&out).unwrap();
        assert_eq!((&*back.topic, &*back.event), ("realtime:\"q\"\n", "e\\"));
    }

    #[test]
    fn user_broadcast_json_for_v1() {
        let out = enc(|o| encode_user_broadcast_json(o, "cursor", None, br#"{"x":42}"#));
        assert_eq!(
            out,
            r#"{"event":"cursor","payload":{"x":42},"type":"broadcast"}"#
        );
        let out = enc(|o| encode_user_broadcast_json(o, "c\"", Some(br#"{"id":"u"}"#), b"[1]"));
        assert_eq!(
            out,
            r#"{"event":"c\"","meta":{"id":"u"},"payload":[1],"type":"broadcast"}"#
        );
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
    }

    #[test]
    fn encoders_only_append() {
        let mut out = BytesMut::from(&b"HEADER"[..]);
        encode_message(Vsn::V2, &mut out, None, None, "t", "e", b"{}");
        assert_eq!(&out[..], br#"HEADER[null,null,"t","e",{}]"#);
    }

    fn arb_ref() -> impl Strategy<Value = Option<Ref>> {
        prop_oneof![
            Just(None),
            any::<String>().prop_map(|s| Some(Ref::from_str_value(&s))),
            any::<i64>().prop_map(|n| Ref::from_json(&n.to_string())),
        ]
    }

    fn arb_payload() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i32>().prop_map(|n| n.to_string()),
            any::<String>().prop_map(|s| crate::proto::json::quote(&s)),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec((any::<String>(), inner), 0..4).prop_map(|v| {
                    let fields: Vec<String> = v
                        .into_iter()
                        .map(|(k, x)| format!("{}:{x}", crate::proto::json::quote(&k)))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            v1_wire in any::<bool>(),
            join_ref in arb_ref(),
            msg_ref in arb_ref(),
            topic in any::<String>(),
            event in any::<String>(),
            payload in arb_payload(),
        ) {
            let vsn = if v1_wire { Vsn::V1 } else { Vsn::V2 };
            let mut out = BytesMut::new();
            encode_message(vsn, &mut out, join_ref.as_ref(), msg_ref.as_ref(), &topic, &event, payload.as_bytes());
            let m = decode_text(vsn, &out).unwrap();
            prop_assert_eq!(&*m.topic, topic.as_str());
            prop_assert_eq!(&*m.event, event.as_str());
            prop_assert_eq!(json(&m.payload), payload);
            prop_assert_eq!(m.msg_ref, msg_ref);
            // V1 never carries join_ref.
            prop_assert_eq!(m.join_ref, if v1_wire { None } else { join_ref });
        }

        #[test]
        fn replies_are_valid_json(status in any::<String>(), payload in arb_payload(), v1_wire in any::<bool>()) {
            let vsn = if v1_wire { Vsn::V1 } else { Vsn::V2 };
            let mut out = BytesMut::new();
            encode_reply(vsn, &mut out, None, Some(&Ref::from_str_value("1")), "t", &status, payload.as_bytes());
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let p = if v1_wire { &v["payload"] } else { &v[4] };
            prop_assert_eq!(p["status"].as_str(), Some(status.as_str()));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_text(Vsn::V1, &bytes);
            let _ = decode_text(Vsn::V2, &bytes);
        }

        #[test]
        fn random_text_never_panics(s in r#"[\[\]{}",:0-9a-z\\ ]{0,64}"#) {
            let _ = decode_text(Vsn::V1, s.as_bytes());
            let _ = decode_text(Vsn::V2, s.as_bytes());
        }
    }
}
