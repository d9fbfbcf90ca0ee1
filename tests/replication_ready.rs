//! `config.broadcast.replication_ready` (PROTOCOL 3.5): a channel that asks
//! is told `Replication connection established` once its tenant's
//! Broadcast from Database stream is up, or shut down with `Replication
//! connection was not established in time` at its deadline
//! (`REPLICATION_READY_TIMEOUT_MS`, the Elixir server's one minute by
//! default).

mod support;
use serde_json::json;
use support::*;

#[test]
fn without_a_messages_stream_the_channel_is_shut_down_at_its_deadline() {
    // No database: no stream will ever come up.
    let srv = Server::start(&[("REPLICATION_READY_TIMEOUT_MS", "300")]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let reply = ws.join_v2(
        "1",
        "realtime:room:ready",
        json!({"broadcast": {"replication_ready": true}}),
    );
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    // A channel that did not ask is left alone.
    let other = ws.join_v2("2", "realtime:room:plain", json!({}));
    assert_eq!(other[4]["status"], "ok", "{other}");
    let system = ws.recv_json();
    assert_eq!(
        system,
        json!(["1", null, "realtime:room:ready", "system", {
            "extension": "system", "status": "error",
            "message": "Replication connection was not established in time",
            "channel": "room:ready"}]),
    );
    let close = ws.recv_json();
    assert_eq!(
        close,
        json!(["1", "1", "realtime:room:ready", "phx_close", {}])
    );
    // The other channel still works.
    ws.text(r#"[null,"h","phoenix","heartbeat",{}]"#);
    let hb = ws.recv_json();
    assert_eq!(hb[1], "h", "{hb}");
}

#[test]
fn once_the_messages_stream_is_up_the_channel_is_told_and_then_receives() {
    let db = support::rls::TenantDb::start("repready", "");
    let mut ws = Ws::connect(db.srv.port, "2.0.0", &token("anon", 3600));
    let reply = ws.join_v2(
        "1",
        "realtime:room:ready",
        json!({"broadcast": {"replication_ready": true}}),
    );
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    let system = ws.recv_json();
    assert_eq!(
        system,
        json!(["1", null, "realtime:room:ready", "system", {
            "extension": "system", "status": "ok",
            "message": "Replication connection established",
            "channel": "room:ready"}]),
    );
    // Told means streaming: a row sent now arrives.
    db.sql("select realtime.send('{\"n\":1}'::jsonb, 'ev', 'room:ready', false)");
    match ws.recv() {
        Recv::Frame(Frame::Binary(b)) => assert_eq!(b[0], 4, "kind 4 user broadcast"),
        other => panic!("expected the broadcast, got {other:?}"),
    }
    // A second channel that asks once it is up is told right after its
    // join reply.
    let reply = ws.join_v2(
        "2",
        "realtime:room:later",
        json!({"broadcast": {"replication_ready": "true"}}),
    );
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    let system = ws.recv_json();
    assert_eq!(system[4]["message"], "Replication connection established");
    assert_eq!(system[4]["channel"], "room:later");
}
