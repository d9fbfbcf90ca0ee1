//! What one connection can make the server keep is bounded: the topic and
//! presence key a join keeps (`TENANT_MAX_TOPIC_BYTES`,
//! `TENANT_MAX_PRESENCE_META_BYTES`), each tracked presence
//! (`TENANT_MAX_PRESENCE_META_BYTES`) and the presence of all its channels
//! together (`TENANT_MAX_PRESENCE_BYTES_PER_CLIENT`), each with an exact error.

mod support;
use serde_json::{json, Value};
use support::*;

fn join(ws: &mut Ws, topic: &str, config: Value) -> Value {
    ws.text(&json!(["1", "1", topic, "phx_join", {"config": config}]).to_string());
    ws.recv_json()
}

fn error_reason(reason: &str) -> Value {
    json!({"status": "error", "response": {"reason": reason}})
}

#[test]
fn long_topics_and_presence_keys_are_refused_at_join() {
    let srv = Server::start(&[]);
    let mut a = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let longest = format!("realtime:{}", "t".repeat(255 - 9));
    assert_eq!(join(&mut a, &longest, json!({}))[4]["status"], "ok");
    for name_len in [256 - 9, 1_900_000] {
        let topic = format!("realtime:{}", "t".repeat(name_len));
        assert_eq!(
            join(&mut a, &topic, json!({}))[4],
            error_reason("TopicNameTooLong: Topic must be at most 255 bytes"),
        );
    }
    let key = "k".repeat(65_537);
    let reply = join(&mut a, "realtime:p", json!({"presence": {"key": key}}));
    assert_eq!(
        reply[4],
        error_reason("PresenceKeyTooLong: Presence key must be at most 65536 bytes")
    );
    let key = "k".repeat(65_536);
    let reply = join(&mut a, "realtime:p", json!({"presence": {"key": key}}));
    assert_eq!(reply[4]["status"], "ok");

    // The bound is configurable.
    let srv = Server::start(&[("TENANT_MAX_TOPIC_BYTES", "20")]);
    let mut a = Ws::connect(srv.port, "1.0.0", &token("anon", 3600));
    a.text(r#"{"topic":"realtime:abcdefghijkl","event":"phx_join","payload":{},"ref":"1"}"#);
    assert_eq!(
        a.recv_json()["payload"],
        error_reason("TopicNameTooLong: Topic must be at most 20 bytes")
    );
    a.text(r#"{"topic":"realtime:abcdefghijk","event":"phx_join","payload":{},"ref":"2"}"#);
    assert_eq!(a.recv_json()["payload"]["status"], "ok");
}

/// Sends a presence track of `{"d":"x..."}` taking `bytes` bytes with the
/// one-byte key `k` (8 bytes of JSON around the string, 1 of key) and
/// returns the reply, skipping the presence pushes before it.
fn track(ws: &mut Ws, topic: &str, msg_ref: &str, bytes: usize) -> Value {
    let d = "x".repeat(bytes - 9);
    ws.text(&json!(["1", msg_ref, topic, "presence", {"type": "presence", "event": "track", "payload": {"d": d}}]).to_string());
    next_reply(ws, msg_ref)
}

fn next_reply(ws: &mut Ws, msg_ref: &str) -> Value {
    loop {
        let m = ws.recv_json();
        if m[3] == "phx_reply" && m[1] == msg_ref {
            return m[4].clone();
        }
        assert!(
            m[3] == "presence_diff" || m[3] == "presence_state",
            "unexpected {m}"
        );
    }
}

#[test]
fn presence_per_meta_and_per_connection_bounds() {
    let srv = Server::start(&[
        ("TENANT_MAX_PRESENCE_META_BYTES", "1000"),
        ("TENANT_MAX_PRESENCE_BYTES_PER_CLIENT", "2500"),
        ("CLIENT_PRESENCE_MAX_CALLS", "100"),
    ]);
    let mut a = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    for t in ["realtime:p1", "realtime:p2", "realtime:p3"] {
        let reply = join(
            &mut a,
            t,
            json!({"presence": {"key": "k", "enabled": true}}),
        );
        assert_eq!(reply[4]["status"], "ok");
        assert_eq!(a.recv_json()[3], "presence_state");
    }
    let ok = json!({"status": "ok", "response": {}});
    let over = error_reason("Presence of this connection would exceed 2500 bytes");
    assert_eq!(track(&mut a, "realtime:p1", "2", 1000), ok);
    assert_eq!(track(&mut a, "realtime:p2", "3", 1000), ok);
    assert_eq!(track(&mut a, "realtime:p3", "4", 1000), over);
    // An update replaces the channel's share rather than adding to it.
    assert_eq!(track(&mut a, "realtime:p2", "5", 500), ok);
    assert_eq!(track(&mut a, "realtime:p3", "6", 1000), ok);
    // Untracking frees the share.
    a.text(r#"["1","8","realtime:p3","presence",{"type":"presence","event":"untrack"}]"#);
    assert_eq!(next_reply(&mut a, "8"), ok);
    assert_eq!(track(&mut a, "realtime:p2", "9", 1000), ok);
    assert_eq!(track(&mut a, "realtime:p3", "10", 600), over);

    // One meta over its own bound shuts the channel down like an oversize
    // payload does.
    a.text(&json!(["1", "11", "realtime:p1", "presence", {"type": "presence", "event": "track", "payload": {"d": "x".repeat(1001 - 9)}}]).to_string());
    let system = loop {
        let m = a.recv_json();
        if m[3] == "system" {
            break m;
        }
        assert_eq!(m[3], "presence_diff", "unexpected {m}");
    };
    assert_eq!(
        system,
        json!(["1", null, "realtime:p1", "system", {"extension": "system", "status": "error", "message": "Track message size exceeded", "channel": "p1"}])
    );
    assert_eq!(
        a.recv_json(),
        json!(["1", "1", "realtime:p1", "phx_close", {}])
    );
}
