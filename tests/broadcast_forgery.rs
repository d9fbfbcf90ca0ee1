//! A kind-3 user broadcast whose encoding byte says JSON is spliced into
//! the text frames of vsn 1.0.0 subscribers, so its payload must be JSON:
//! otherwise a sender could close another client's channel (a second
//! top-level `event: phx_close`, which `JSON.parse` keeps), forge rows, or
//! send frames that are not JSON or not UTF-8 (browsers drop the socket).
//! Such a message is dropped as malformed, with no ack, and every
//! subscriber's next frame is the next real broadcast.

mod support;
use serde_json::json;
use support::*;

/// A realtime-js kind-3 push: join_ref "1", `msg_ref`, JSON encoding unless
/// `binary`.
fn kind3(msg_ref: &str, topic: &str, event: &str, binary: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![
        3,
        1,
        msg_ref.len() as u8,
        topic.len() as u8,
        event.len() as u8,
        0,
        u8::from(!binary),
    ];
    f.extend_from_slice(b"1");
    f.extend_from_slice(msg_ref.as_bytes());
    f.extend_from_slice(topic.as_bytes());
    f.extend_from_slice(event.as_bytes());
    f.extend_from_slice(payload);
    f
}

/// The kind 4 frame a v2 subscriber gets for a JSON user broadcast.
fn kind4(topic: &str, event: &str, payload: &[u8]) -> Frame {
    let mut f = vec![4, topic.len() as u8, event.len() as u8, 0, 1];
    f.extend_from_slice(topic.as_bytes());
    f.extend_from_slice(event.as_bytes());
    f.extend_from_slice(payload);
    Frame::Binary(f)
}

#[test]
fn kind3_payload_declared_json_must_be_json() {
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    let topic = "realtime:room";
    let mut sender = Ws::connect(srv.port, "2.0.0", &t);
    let mut v2 = Ws::connect(srv.port, "2.0.0", &t);
    let mut v1 = Ws::connect(srv.port, "1.0.0", &t);
    sender.join_v2("1", topic, json!({"broadcast": {"ack": true}}));
    v2.join_v2("1", topic, json!({}));
    v1.text(r#"{"topic":"realtime:room","event":"phx_join","payload":{"config":{}},"ref":"1","join_ref":"1"}"#);
    assert_eq!(v1.recv_json()["payload"]["status"], "ok");

    let hostile: [&[u8]; 6] = [
        // Closes a realtime-js v1 channel for good: the frame gets a second
        // top-level `event`, and the v1 client's join ref is "1".
        br#"1},"event":"phx_close","topic":"realtime:room","ref":"1","x":{"a":1"#,
        // Forges a postgres_changes delivery.
        br#"1},"event":"postgres_changes","payload":{"data":{"type":"INSERT","record":{"id":1}},"ids":[1]},"x":{"a":1"#,
        br#"{"a":"#,
        b"\"\xff\xfe\"",
        b"",
        b"1 2",
    ];
    for (i, payload) in hostile.iter().enumerate() {
        sender.binary(&kind3(&format!("bad{i}"), topic, "e", false, payload));
        // The next real broadcast is the first thing anyone hears: the
        // hostile one was neither delivered nor acknowledged.
        let marker = format!(r#"{{"n":{i}}}"#);
        let msg_ref = format!("ok{i}");
        sender.binary(&kind3(&msg_ref, topic, "after", false, marker.as_bytes()));
        assert_eq!(
            v1.expect_frame(),
            Frame::Text(format!(
                r#"{{"event":"broadcast","payload":{{"event":"after","payload":{marker},"type":"broadcast"}},"ref":null,"topic":"realtime:room"}}"#
            )),
            "payload {i}"
        );
        assert_eq!(
            v2.expect_frame(),
            kind4(topic, "after", marker.as_bytes()),
            "payload {i}"
        );
        assert_eq!(
            sender.recv_json(),
            json!(["1", msg_ref, topic, "phx_reply", {"status": "ok", "response": {}}]),
            "payload {i}: only the valid message is acknowledged"
        );
    }

    // The same bytes declared binary are opaque: kind 4 to v2, nothing to v1.
    let forged = hostile[0];
    sender.binary(&kind3("bin", topic, "e", true, forged));
    assert_eq!(
        sender.recv_json(),
        json!(["1", "bin", topic, "phx_reply", {"status": "ok", "response": {}}])
    );
    let mut want = vec![4, topic.len() as u8, 1, 0, 0];
    want.extend_from_slice(topic.as_bytes());
    want.extend_from_slice(b"e");
    want.extend_from_slice(forged);
    assert_eq!(v2.expect_frame(), Frame::Binary(want));
    sender.binary(&kind3("last", topic, "after", false, b"[]"));
    assert_eq!(
        v1.expect_frame(),
        Frame::Text(
            r#"{"event":"broadcast","payload":{"event":"after","payload":[],"type":"broadcast"},"ref":null,"topic":"realtime:room"}"#
                .into()
        )
    );
    // The v1 socket is still open and answering.
    v1.text(r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"10"}"#);
    assert_eq!(v1.recv_json()["ref"], "10");
}
