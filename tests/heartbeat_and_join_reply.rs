//! Heartbeats are answered on `phoenix`; a join replies with every
//! postgres_changes binding echoed with an integer id, then
//! `presence_state` (when enabled) and the `system` message.

mod support;
use serde_json::json;
use support::*;

#[test]
fn heartbeat_is_answered_before_and_after_join() {
    let srv = Server::start(&[]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    ws.text(r#"[null,"1","phoenix","heartbeat",{}]"#);
    assert_eq!(
        ws.recv_json(),
        json!([null, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}])
    );
}

#[test]
fn join_reply_echoes_bindings_then_presence_state_then_system() {
    let srv = Server::start(&[]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let binding = json!({"event": "INSERT", "schema": "public", "table": "todos"});
    let reply = ws.join_v2(
        "1",
        "realtime:room1",
        json!({
            "broadcast": {"ack": false, "self": false},
            "presence": {"key": "", "enabled": true},
            "postgres_changes": [binding],
            "private": false
        }),
    );
    assert_eq!(reply[0], "1");
    assert_eq!(reply[1], "1");
    assert_eq!(reply[3], "phx_reply");
    assert_eq!(reply[4]["status"], "ok");
    let echoed = &reply[4]["response"]["postgres_changes"][0];
    assert_eq!(echoed["event"], "INSERT");
    assert_eq!(echoed["table"], "todos");
    assert!(echoed["id"].is_u64(), "id must be an integer: {echoed}");
    assert_eq!(
        ws.recv_json(),
        json!(["1", null, "realtime:room1", "presence_state", {}])
    );
    assert_eq!(
        ws.recv_json(),
        json!(["1", null, "realtime:room1", "system", {
            "extension": "postgres_changes", "status": "error",
            "message": "Postgres Changes are not configured for this tenant", "channel": "room1"
        }])
    );
    // The same binding on another channel gets the same id.
    let reply2 = ws.join_v2(
        "2",
        "realtime:room2",
        json!({"postgres_changes": [binding]}),
    );
    assert_eq!(
        reply2[4]["response"]["postgres_changes"][0]["id"],
        echoed["id"]
    );
}

#[test]
fn leave_replies_ok_then_closes_with_join_ref() {
    let srv = Server::start(&[]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    ws.join_v2("7", "realtime:room", json!({}));
    ws.text(r#"["7","8","realtime:room","phx_leave",{}]"#);
    assert_eq!(
        ws.recv_json(),
        json!(["7", "8", "realtime:room", "phx_reply", {"status": "ok", "response": {}}])
    );
    assert_eq!(
        ws.recv_json(),
        json!(["7", "7", "realtime:room", "phx_close", {}])
    );
}

#[test]
fn v1_messages_never_carry_join_ref() {
    let srv = Server::start(&[]);
    let mut ws = Ws::connect(srv.port, "1.0.0", &token("anon", 3600));
    ws.text(r#"{"topic":"realtime:a","event":"phx_join","payload":{"config":{}},"ref":"1","join_ref":"1"}"#);
    let r = ws.recv_json();
    assert_eq!(
        r,
        json!({"topic": "realtime:a", "event": "phx_reply", "payload": {"status": "ok", "response": {"postgres_changes": []}}, "ref": "1"})
    );
}

#[test]
fn unmatched_topics_and_empty_topic_names_are_refused() {
    let srv = Server::start(&[]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    ws.text(r#"["1","1","room:lobby","phx_join",{}]"#);
    assert_eq!(
        ws.recv_json(),
        json!([null, "1", "room:lobby", "phx_reply", {"status": "error", "response": {"reason": "unmatched topic"}}])
    );
    ws.text(r#"[null,"2","realtime:nope","broadcast",{}]"#);
    assert_eq!(
        ws.recv_json(),
        json!([null, "2", "realtime:nope", "phx_reply", {"status": "error", "response": {"reason": "unmatched topic"}}])
    );
    ws.text(r#"["3","3","realtime:","phx_join",{}]"#);
    assert_eq!(
        ws.recv_json(),
        json!(["3", "3", "realtime:", "phx_reply", {"status": "error", "response": {"reason": "TopicNameRequired: You must provide a topic name"}}])
    );
}
