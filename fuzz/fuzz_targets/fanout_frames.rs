//! Whatever a client sends as a broadcast, the frames fan-out would give
//! other clients must be well-formed with exactly the keys the server
//! means to send: nothing the sender chose may become structure (a second
//! `event`, a closed object, invalid JSON or invalid UTF-8) in a
//! subscriber's frame. The message is either refused by the decoder or
//! passes these checks.
//!
//! The first byte picks the sender's wire form: 0 a vsn 2.0.0 binary frame
//! (kind 3 user broadcast, kind 0 push), 1 a vsn 1.0.0 text frame, 2 a vsn
//! 2.0.0 text frame; the rest is the frame. Each decoded broadcast is
//! encoded for a vsn 1.0.0 and a vsn 2.0.0 subscriber by the fan-out
//! encoder itself (`hub::encode`).

#![no_main]

use std::fmt;

use libfuzzer_sys::fuzz_target;
use realtime::proto::phoenix::{decode_binary, decode_text, Encoding, InPayload, Vsn};
use realtime::realtime::hub::{encode, Outgoing};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// A JSON object's members in order, duplicates kept (a plain `Value` would
/// silently keep the last of two `event` keys, as `JSON.parse` does, and
/// hide exactly the forgery this target looks for).
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    out.push((k, m.next_value()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Members {
    fn parse(json: &str) -> Members {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not an object ({e}): {json}"))
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn get(&self, key: &str) -> &Value {
        &self
            .0
            .iter()
            .find(|(k, _)| k == key)
            .expect("key checked")
            .1
    }
}

/// The body of a server frame (unmasked, one fragment) and its opcode.
fn body(frame: &[u8]) -> (u8, &[u8]) {
    assert_eq!(frame[0] & 0x80, 0x80, "FIN");
    let header = match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    (frame[0] & 0x0f, &frame[header..])
}

fn text(frame: &[u8]) -> &str {
    let (op, b) = body(frame);
    assert_eq!(op, 1, "text frame");
    std::str::from_utf8(b).expect("text frames are UTF-8")
}

/// Checks the inner payload of a user broadcast converted to JSON.
fn check_user_json(payload: &Value, event: &str, metadata: &[u8], user_payload: &[u8]) {
    let m = Members::parse(&payload.to_string());
    let want: &[&str] = if metadata.is_empty() {
        &["event", "payload", "type"]
    } else {
        &["event", "meta", "payload", "type"]
    };
    assert_eq!(m.keys(), want);
    assert_eq!(m.get("event"), event);
    assert_eq!(m.get("type"), "broadcast");
    let sent: Value = serde_json::from_slice(user_payload).expect("accepted JSON payload");
    assert_eq!(m.get("payload"), &sent);
}

fn check(topic: &str, out: &Outgoing<'_>) {
    // vsn 1.0.0: one object with exactly the envelope keys. (Fan-out
    // offers kind 0 re-fans only to vsn 2.0.0 sockets that speak kind 0.)
    let v1 = match out {
        Outgoing::Kind0 { .. } => None,
        _ => encode(Vsn::V1, topic, out),
    };
    if let Some(frame) = v1 {
        let m = Members::parse(text(&frame));
        assert_eq!(m.keys(), ["event", "payload", "ref", "topic"]);
        assert_eq!(m.get("topic"), topic);
        assert_eq!(m.get("ref"), &Value::Null);
        match out {
            Outgoing::Json { event, payload } => {
                assert_eq!(m.get("event"), *event);
                let sent: Value = serde_json::from_slice(payload).expect("accepted JSON");
                assert_eq!(m.get("payload"), &sent);
            }
            Outgoing::User {
                event,
                metadata,
                payload,
                encoding,
            } => {
                assert_eq!(*encoding, Encoding::Json, "binary payloads never go to v1");
                assert_eq!(m.get("event"), "broadcast");
                check_user_json(m.get("payload"), event, metadata, payload);
            }
            Outgoing::Kind0 { .. } => panic!("kind 0 never goes to v1"),
        }
    }
    // vsn 2.0.0: a five-element array, or kind 4 whose JSON payload parses.
    if let Some(frame) = encode(Vsn::V2, topic, out) {
        match out {
            Outgoing::Json { event, payload } => {
                let v: Vec<Value> = serde_json::from_str(text(&frame)).expect("array");
                assert_eq!(v.len(), 5);
                assert_eq!((&v[0], &v[1]), (&Value::Null, &Value::Null));
                assert_eq!((&v[2], &v[3]), (&Value::from(topic), &Value::from(*event)));
                let sent: Value = serde_json::from_slice(payload).expect("accepted JSON");
                assert_eq!(v[4], sent);
            }
            Outgoing::User {
                encoding, payload, ..
            } => {
                let (op, b) = body(&frame);
                assert_eq!((op, b[0]), (2, 4), "kind 4 in a binary frame");
                let skip = 5 + b[1] as usize + b[2] as usize + b[3] as usize;
                assert_eq!(&b[skip..], *payload);
                if *encoding == Encoding::Json {
                    let s = std::str::from_utf8(&b[skip..]).expect("JSON payload is UTF-8");
                    serde_json::from_str::<Value>(s).expect("JSON payload parses");
                }
            }
            Outgoing::Kind0 { payload, .. } => {
                let (op, b) = body(&frame);
                assert_eq!((op, b[0]), (2, 2), "kind 2 in a binary frame");
                assert!(b.ends_with(payload));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, frame)) = data.split_first() else {
        return;
    };
    let decoded = match mode % 3 {
        0 => decode_binary(frame),
        1 => decode_text(Vsn::V1, frame),
        _ => decode_text(Vsn::V2, frame),
    };
    let Ok(m) = decoded else { return };
    let out = match &m.payload {
        InPayload::Json(raw) => Outgoing::Json {
            event: "broadcast",
            payload: raw.get().as_bytes(),
        },
        // The broadcast handler drops metadata; keep it here so its splice
        // is checked too.
        InPayload::UserBroadcast(u) => Outgoing::User {
            event: &u.event,
            encoding: u.encoding,
            metadata: u.metadata,
            payload: u.payload,
        },
        InPayload::Binary(p) => Outgoing::Kind0 {
            event: "broadcast",
            payload: *p,
        },
    };
    check(&m.topic, &out);
});
