//! Broadcast fan-out: `self:false` skips only the sending channel, `ack`
//! replies only when asked, oversize payloads answer the bare string
//! `payload_size_exceeded`, and pushes with a stale join_ref still count.

mod support;
use serde_json::json;
use support::*;

#[test]
fn self_false_excludes_only_the_sender() {
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    let mut a = Ws::connect(srv.port, "2.0.0", &t);
    let mut b = Ws::connect(srv.port, "2.0.0", &t);
    a.join_v2("1", "realtime:r", json!({"broadcast": {"self": false}}));
    b.join_v2("1", "realtime:r", json!({}));
    a.text(
        r#"["1","2","realtime:r","broadcast",{"type":"broadcast","event":"e","payload":{"x":1}}]"#,
    );
    assert_eq!(
        b.recv_json(),
        json!([null, null, "realtime:r", "broadcast", {"type": "broadcast", "event": "e", "payload": {"x": 1}}])
    );
    // Barrier: `a`'s own message was fanned out before `b` got it, so it
    // would be queued to `a` ahead of this one from `b`.
    b.text(
        r#"["1","3","realtime:r","broadcast",{"type":"broadcast","event":"e","payload":{"x":2}}]"#,
    );
    assert_eq!(
        a.recv_json(),
        json!([null, null, "realtime:r", "broadcast", {"type": "broadcast", "event": "e", "payload": {"x": 2}}]),
        "the sender must not get its own message"
    );
}

#[test]
fn self_true_and_ack_true() {
    let srv = Server::start(&[]);
    let mut a = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    a.join_v2(
        "1",
        "realtime:r",
        json!({"broadcast": {"self": true, "ack": "true"}}),
    );
    a.text(r#"["1","2","realtime:r","broadcast",{"type":"broadcast","event":"e","payload":{}}]"#);
    let mut got = [a.recv_json(), a.recv_json()];
    got.sort_by_key(|v| v[3].as_str().unwrap().to_owned());
    assert_eq!(
        got[0],
        json!([null, null, "realtime:r", "broadcast", {"type": "broadcast", "event": "e", "payload": {}}])
    );
    assert_eq!(
        got[1],
        json!(["1", "2", "realtime:r", "phx_reply", {"status": "ok", "response": {}}])
    );
}

#[test]
fn oversize_with_ack_answers_bare_string() {
    let srv = Server::start(&[("TENANT_MAX_PAYLOAD_SIZE_IN_KB", "1")]);
    let mut a = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    a.join_v2(
        "1",
        "realtime:r",
        json!({"broadcast": {"ack": true, "self": true}}),
    );
    let big = "x".repeat(2000);
    a.text(&json!(["1", "2", "realtime:r", "broadcast", {"type": "broadcast", "event": "e", "payload": {"b": big}}]).to_string());
    assert_eq!(
        a.recv_json(),
        json!(["1", "2", "realtime:r", "phx_reply", {"status": "error", "response": "payload_size_exceeded"}])
    );
}

#[test]
fn stale_join_ref_is_still_processed() {
    let srv = Server::start(&[]);
    let mut a = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    a.join_v2("5", "realtime:r", json!({"broadcast": {"self": true}}));
    a.text(r#"["999","6","realtime:r","broadcast",{"type":"broadcast","event":"e","payload":{}}]"#);
    assert_eq!(a.recv_json()[3], "broadcast");
}

#[test]
fn binary_kind3_goes_out_as_kind4_to_v2_and_json_to_v1() {
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    let mut a = Ws::connect(srv.port, "2.0.0", &t);
    let mut b = Ws::connect(srv.port, "2.0.0", &t);
    let mut c = Ws::connect(srv.port, "1.0.0", &t);
    a.join_v2("1", "realtime:room1", json!({}));
    b.join_v2("1", "realtime:room1", json!({}));
    c.text(r#"{"topic":"realtime:room1","event":"phx_join","payload":{"config":{}},"ref":"1"}"#);
    c.recv_json();
    // The realtime-js probe frame: kind 3, JSON encoding.
    let mut f = vec![3u8, 1, 1, 14, 6, 0, 1];
    f.extend_from_slice(b"67realtime:room1cursor{\"x\":42}");
    a.binary(&f);
    let mut want = vec![4u8, 14, 6, 0, 1];
    want.extend_from_slice(b"realtime:room1cursor{\"x\":42}");
    assert_eq!(b.expect_frame(), Frame::Binary(want));
    assert_eq!(
        c.recv_json(),
        json!({"topic": "realtime:room1", "event": "broadcast", "payload": {"event": "cursor", "payload": {"x": 42}, "type": "broadcast"}, "ref": null})
    );
    // Binary encoding: v2 gets kind 4 enc 0, v1 gets nothing.
    let mut f = vec![3u8, 1, 1, 14, 1, 0, 0];
    f.extend_from_slice(b"89realtime:room1b");
    f.extend_from_slice(&[0, 1, 2, 255]);
    a.binary(&f);
    let mut want = vec![4u8, 14, 1, 0, 0];
    want.extend_from_slice(b"realtime:room1b");
    want.extend_from_slice(&[0, 1, 2, 255]);
    assert_eq!(b.expect_frame(), Frame::Binary(want));
    // Barrier: a JSON-encoded broadcast after it is the next thing v1 hears.
    let mut f = vec![3u8, 1, 1, 14, 5, 0, 1];
    f.extend_from_slice(b"1arealtime:room1after[]");
    a.binary(&f);
    assert_eq!(
        c.recv_json()["payload"],
        json!({"event": "after", "payload": [], "type": "broadcast"}),
        "v1 gets nothing of a binary-encoded broadcast"
    );
}
