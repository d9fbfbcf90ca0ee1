//! Rows of `realtime.messages` as the stream decodes them, and what
//! subscribers get from them.

use std::rc::Rc;

use super::*;
use crate::proto::pg::pgoutput::{self, Message, RelationColumn, ReplicaIdentity};
use crate::proto::pg::Oid;
use crate::proto::phoenix::Vsn;
use crate::realtime::hub::test_sink::{payload as body, Sink};
use crate::realtime::hub::Sub;

const COLS: [&str; 9] = [
    "topic",
    "extension",
    "payload",
    "event",
    "private",
    "updated_at",
    "inserted_at",
    "id",
    "binary_payload",
];

fn relation(name: &str) -> Relation {
    Relation {
        xid: None,
        oid: Oid(77),
        schema: "realtime".into(),
        name: name.into(),
        replica_identity: ReplicaIdentity::Default,
        columns: COLS
            .iter()
            .map(|c| RelationColumn {
                is_key: false,
                name: (*c).into(),
                type_oid: Oid(25),
                type_modifier: -1,
            })
            .collect(),
    }
}

/// An Insert of `values` (in [`COLS`] order; `None` is NULL).
fn insert(values: [Option<&str>; 9]) -> Insert {
    let mut b = vec![b'I'];
    b.extend_from_slice(&77u32.to_be_bytes());
    b.push(b'N');
    b.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for v in values {
        match v {
            None => b.push(b'n'),
            Some(v) => {
                b.push(b't');
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
        }
    }
    match pgoutput::decode(Bytes::from(b)).unwrap() {
        Message::Insert(i) => i,
        m => panic!("{m:?}"),
    }
}

const ID: &str = "0f4c3f8e-8a55-4a5e-9b1e-2d1f0c3b4a59";

fn row<'a>(
    payload: Option<&'a str>,
    binary: Option<&'a str>,
    private: &'a str,
) -> [Option<&'a str>; 9] {
    [
        Some("room:1"),
        Some("broadcast"),
        payload,
        Some("ev"),
        Some(private),
        Some("2026-12-07 11:00:00"),
        Some("2026-12-07 11:00:00"),
        Some(ID),
        binary,
    ]
}

fn limits(kb: u64, eps: u64) -> Limits {
    Limits {
        max_concurrent_users: 10,
        max_events_per_second: eps,
        max_presence_events_per_second: 10,
        max_payload_size_in_kb: kb,
        max_channels_per_client: 10,
        max_joins_per_second: 10,
        client_presence_max_calls: 10,
        client_presence_window_ms: 1000,
        max_topic_bytes: 255,
        max_presence_meta_bytes: 1000,
        max_presence_bytes_per_client: 1000,
    }
}

#[test]
fn messages_and_their_partitions_are_recognised() {
    assert!(is_messages_relation("realtime", "messages"));
    assert!(is_messages_relation("realtime", "messages_2026_12_07"));
    assert!(!is_messages_relation("realtime", "messagesx"));
    assert!(!is_messages_relation("public", "messages"));
    assert!(!is_messages_relation("realtime", "subscription"));
}

#[test]
fn a_json_row_becomes_a_user_broadcast_with_its_id() {
    let m = DbMessage::from_insert(
        &relation("messages_x"),
        &insert(row(Some(r#"{"a": 1}"#), None, "f")),
    )
    .unwrap();
    assert_eq!(m.id, ID);
    assert_eq!(m.topic, "room:1");
    assert!(!m.private);
    assert_eq!(m.encoding, Encoding::Json);
    assert_eq!(&m.payload[..], br#"{"a": 1}"#);
    assert_eq!(m.metadata(), format!(r#"{{"id":"{ID}"}}"#).into_bytes());
}

#[test]
fn a_binary_row_is_decoded_from_hex() {
    let m = DbMessage::from_insert(
        &relation("messages"),
        &insert(row(None, Some("\\x00ff10"), "t")),
    )
    .unwrap();
    assert!(m.private);
    assert_eq!(m.encoding, Encoding::Binary);
    assert_eq!(&m.payload[..], &[0x00, 0xff, 0x10]);
    assert_eq!(decode_bytea(b"\\x0"), None);
    assert_eq!(decode_bytea(b"\\xzz"), None);
    assert_eq!(decode_bytea(b"abc"), None);
}

#[test]
fn rows_missing_what_a_message_needs_are_refused() {
    let rel = relation("messages");
    assert_eq!(
        DbMessage::from_insert(&rel, &insert(row(None, None, "t"))),
        Err(Unable::Missing("payload"))
    );
    let mut r = row(Some("{}"), None, "t");
    r[7] = None;
    assert_eq!(
        DbMessage::from_insert(&rel, &insert(r)),
        Err(Unable::Missing("id"))
    );
    let mut r = row(Some("{}"), None, "t");
    r[3] = None;
    assert_eq!(
        DbMessage::from_insert(&rel, &insert(r)),
        Err(Unable::Missing("event"))
    );
    let mut r = row(Some("{}"), None, "t");
    r[7] = Some("\"},{");
    assert_eq!(
        DbMessage::from_insert(&rel, &insert(r)),
        Err(Unable::Malformed("id"))
    );
}

fn hub_with(private: bool, vsn: Vsn) -> (Hub, Rc<Sink>) {
    let mut hub = Hub::default();
    let sink = Rc::new(Sink::default());
    hub.subscribe(
        TopicKey {
            topic: "realtime:room:1",
            private,
        },
        Sub::public(1, vsn, sink.clone()),
    );
    (hub, sink)
}

#[test]
fn private_rows_reach_only_the_private_topic() {
    let m =
        DbMessage::from_insert(&relation("messages"), &insert(row(Some("{}"), None, "t"))).unwrap();
    let mut events = RateCounter::tenant(0);
    let (public, sink) = hub_with(false, Vsn::V2);
    assert_eq!(
        deliver_to(&public, &mut events, &limits(1, 100), &m, 0),
        Ok(0)
    );
    assert!(sink.0.borrow().is_empty());
    let (private, sink) = hub_with(true, Vsn::V2);
    assert_eq!(
        deliver_to(&private, &mut events, &limits(1, 100), &m, 0),
        Ok(1)
    );
    let f = sink.0.borrow()[0].clone();
    // Binary frame, kind 4, metadata with the id, JSON encoding.
    assert_eq!(f[0], 0x82);
    let body = body(&f);
    assert_eq!(body[0], 4);
    let meta = format!(r#"{{"id":"{ID}"}}"#);
    assert_eq!(body[3] as usize, meta.len());
    assert_eq!(body[4], 1);
}

#[test]
fn v1_gets_json_with_meta_and_no_binary() {
    let (hub, sink) = hub_with(false, Vsn::V1);
    let mut events = RateCounter::tenant(0);
    let json = DbMessage::from_insert(
        &relation("messages"),
        &insert(row(Some(r#"{"a":1}"#), None, "f")),
    )
    .unwrap();
    let bin = DbMessage::from_insert(
        &relation("messages"),
        &insert(row(None, Some("\\x01"), "f")),
    )
    .unwrap();
    assert_eq!(
        deliver_to(&hub, &mut events, &limits(1, 100), &json, 0),
        Ok(1)
    );
    assert_eq!(
        deliver_to(&hub, &mut events, &limits(1, 100), &bin, 0),
        Ok(0)
    );
    let frames = sink.0.borrow();
    assert_eq!(frames.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(body(&frames[0])).unwrap();
    assert_eq!(
        v["payload"],
        serde_json::json!({"event": "ev", "payload": {"a": 1}, "type": "broadcast", "meta": {"id": ID}})
    );
}

#[test]
fn over_the_size_or_rate_limit_is_dropped() {
    let (hub, sink) = hub_with(false, Vsn::V2);
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(1600));
    let m =
        DbMessage::from_insert(&relation("messages"), &insert(row(Some(&big), None, "f"))).unwrap();
    let mut events = RateCounter::tenant(0);
    assert!(matches!(
        deliver_to(&hub, &mut events, &limits(1, 100), &m, 0),
        Err(Unable::TooLarge { .. })
    ));
    assert!(sink.0.borrow().is_empty());
    let small =
        DbMessage::from_insert(&relation("messages"), &insert(row(Some("{}"), None, "f"))).unwrap();
    events.add(10_000, 0);
    assert_eq!(
        deliver_to(&hub, &mut events, &limits(1, 100), &small, 6_000),
        Err(Unable::RateLimited)
    );
    assert!(sink.0.borrow().is_empty());
}
