//! Realistic inputs: the frames realtime-js sends, broadcast payloads of a
//! chosen size, presence metas. Built once per bench, outside timed loops.

use serde_json::{Map, Value};

/// The topic every fixture uses (`realtime:` plus a typical channel name).
pub const TOPIC: &str = "realtime:room:lobby-42";

/// The user event of the fixture broadcasts.
pub const USER_EVENT: &str = "cursor-pos";

/// A JWT-shaped access token of a typical length (not a valid signature:
/// the benches never verify it).
pub const ACCESS_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
eyJpc3MiOiJzdXBhYmFzZSIsInJlZiI6ImJlbmNoZml4dHVyZSIsInJvbGUiOiJhdXRoZW50aWNhdGVkIiwi\
c3ViIjoiOGQ2YzJmNGUtMWIzYS00YzVkLTllOGYtN2EwYjFjMmQzZTRmIiwiZXhwIjoxOTAwMDAwMDAwfQ.\
q3Zk2T0bH1cV9eW7yXa5sD4fG6hJ8kL0zX1cV3bN5mQ";

/// A JSON object of `size` bytes shaped like an app's broadcast: a few
/// numbers and ids, then a text field padded to size. Sizes under 95 bytes
/// (the fixed fields) give the 95-byte minimum.
pub fn json_payload(size: usize) -> String {
    let head = r##"{"x":1280,"y":704,"user_id":"8d6c2f4e-1b3a-4c5d-9e8f-7a0b1c2d3e4f","color":"#3ecf8e","text":""##;
    let tail = r#""}"#;
    let fill = size.saturating_sub(head.len() + tail.len());
    let mut s = String::with_capacity(size);
    s.push_str(head);
    // Lower-case words and spaces: typical chat text, no escapes needed.
    let words = "lorem ipsum dolor sit amet consectetur adipiscing elit ";
    while s.len() < head.len() + fill {
        let left = head.len() + fill - s.len();
        s.push_str(&words[..left.min(words.len())]);
    }
    s.push_str(tail);
    s
}

/// The `payload` of a realtime-js text broadcast push:
/// `{"type":"broadcast","event":E,"payload":P}`.
pub fn broadcast_envelope(user_payload: &str) -> String {
    format!(r#"{{"type":"broadcast","event":"{USER_EVENT}","payload":{user_payload}}}"#)
}

/// A vsn 2.0.0 text broadcast push as realtime-js writes it
/// (`[join_ref,ref,topic,"broadcast",{type,event,payload}]`).
pub fn v2_broadcast_push(user_payload: &str) -> Vec<u8> {
    format!(
        r#"["3","17","{TOPIC}","broadcast",{}]"#,
        broadcast_envelope(user_payload)
    )
    .into_bytes()
}

/// The same push for vsn 1.0.0 (a JSON object, realtime-js key order).
pub fn v1_broadcast_push(user_payload: &str) -> Vec<u8> {
    format!(
        r#"{{"topic":"{TOPIC}","event":"broadcast","payload":{},"ref":"17","join_ref":"3"}}"#,
        broadcast_envelope(user_payload)
    )
    .into_bytes()
}

/// The `phx_join` payload realtime-js sends: broadcast and presence config,
/// no postgres_changes, public channel, plus the access token.
pub fn join_payload() -> String {
    format!(
        r#"{{"config":{{"broadcast":{{"ack":false,"self":false}},"presence":{{"key":"","enabled":true}},"postgres_changes":[],"private":false}},"access_token":"{ACCESS_TOKEN}"}}"#
    )
}

/// A vsn 2.0.0 `phx_join` text frame.
pub fn v2_join() -> Vec<u8> {
    format!(r#"["3","3","{TOPIC}","phx_join",{}]"#, join_payload()).into_bytes()
}

/// A vsn 1.0.0 `phx_join` text frame.
pub fn v1_join() -> Vec<u8> {
    format!(
        r#"{{"topic":"{TOPIC}","event":"phx_join","payload":{},"ref":"3","join_ref":"3"}}"#,
        join_payload()
    )
    .into_bytes()
}

/// A binary kind 3 user broadcast push as realtime-js sends it:
/// `03 | join_ref_len | ref_len | topic_len | event_len | meta_len |
/// encoding | join_ref | ref | topic | event | meta | payload`, with JSON
/// encoding (1) and no metadata.
pub fn kind3_push(user_payload: &[u8]) -> Vec<u8> {
    let (join_ref, msg_ref) = ("3", "17");
    let mut out = Vec::with_capacity(7 + 3 + TOPIC.len() + USER_EVENT.len() + user_payload.len());
    out.extend_from_slice(&[
        3,
        join_ref.len() as u8,
        msg_ref.len() as u8,
        TOPIC.len() as u8,
        USER_EVENT.len() as u8,
        0,
        1,
    ]);
    for part in [join_ref, msg_ref, TOPIC, USER_EVENT] {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(user_payload);
    out
}

/// A presence meta like realtime-js apps track: user id, status, a
/// timestamp string, and a small nested object (`variant` picks values, so
/// two variants differ and an update is a real change).
pub fn presence_meta(member: u64, variant: u32) -> Map<String, Value> {
    let v = serde_json::json!({
        "user_id": format!("user-{member:08}"),
        "online_at": format!("2025-01-15T10:{:02}:00.000Z", variant % 60),
        "status": if variant % 2 == 0 { "online" } else { "away" },
        "device": { "kind": "browser", "tab": variant },
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

/// The presence key of member `n` (realtime-js leaves the key empty and the
/// server makes a UUID; any distinct string per member is equivalent).
pub fn presence_key(member: u64) -> String {
    format!("2f1b6c3e-0000-4000-8000-{member:012x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use realtime::proto::phoenix::{decode_binary, decode_text, InPayload, Vsn};

    #[test]
    fn payloads_have_the_asked_size_and_parse() {
        assert_eq!(json_payload(0).len(), 95);
        for size in [95, 100, 1000, 3000] {
            let p = json_payload(size);
            assert_eq!(p.len(), size);
            serde_json::from_str::<Value>(&p).unwrap();
        }
    }

    #[test]
    fn frames_decode() {
        let p = json_payload(100);
        for (vsn, frame) in [
            (Vsn::V2, v2_broadcast_push(&p)),
            (Vsn::V1, v1_broadcast_push(&p)),
        ] {
            let m = decode_text(vsn, &frame).unwrap();
            assert_eq!(m.topic, TOPIC);
            assert_eq!(m.event, "broadcast");
        }
        for (vsn, frame) in [(Vsn::V2, v2_join()), (Vsn::V1, v1_join())] {
            assert_eq!(decode_text(vsn, &frame).unwrap().event, "phx_join");
        }
        let k3 = kind3_push(p.as_bytes());
        let m = decode_binary(&k3).unwrap();
        let InPayload::UserBroadcast(ub) = m.payload else {
            panic!("not a user broadcast")
        };
        assert_eq!(ub.event, USER_EVENT);
        assert_eq!(ub.payload, p.as_bytes());
    }

    #[test]
    fn metas_differ_by_variant() {
        assert_ne!(presence_meta(1, 0), presence_meta(1, 1));
        assert_ne!(presence_key(1), presence_key(2));
    }
}
