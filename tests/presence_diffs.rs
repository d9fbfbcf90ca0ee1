//! Presence: `presence_state` on join, `presence_diff` joins on track,
//! update as new meta (with phx_ref_prev) plus old meta in leaves, and a
//! leave when the tracking socket disappears without a goodbye.

mod support;
use serde_json::json;
use support::*;

#[test]
fn track_update_and_abrupt_disconnect() {
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    let mut a = Ws::connect(srv.port, "2.0.0", &t);
    let mut b = Ws::connect(srv.port, "2.0.0", &t);
    a.join_v2(
        "1",
        "realtime:p",
        json!({"presence": {"key": "alice", "enabled": true}}),
    );
    assert_eq!(a.recv_json()[3], "presence_state");
    b.join_v2(
        "1",
        "realtime:p",
        json!({"presence": {"key": "bob", "enabled": true}}),
    );
    assert_eq!(b.recv_json()[3], "presence_state");

    a.text(r#"["1","2","realtime:p","presence",{"type":"presence","event":"track","payload":{"online_at":1}}]"#);
    // The sender gets its own diff, before the reply (a client reading its
    // presence right after `await track()` sees itself).
    assert_eq!(
        a.recv_json()[3],
        "presence_diff",
        "the sender gets its own diff first"
    );
    assert_eq!(
        a.recv_json(),
        json!(["1", "2", "realtime:p", "phx_reply", {"status": "ok", "response": {}}])
    );
    let diff = b.recv_json();
    assert_eq!(diff[0], serde_json::Value::Null);
    assert_eq!(diff[3], "presence_diff");
    let metas = &diff[4]["joins"]["alice"]["metas"];
    assert_eq!(metas[0]["online_at"], 1);
    let r1 = metas[0]["phx_ref"].as_str().unwrap().to_owned();
    assert_eq!(r1.len(), 16);
    assert_eq!(diff[4]["leaves"], json!({}));

    // Update: new meta with phx_ref_prev in joins, old meta in leaves.
    a.text(r#"["1","3","realtime:p","presence",{"type":"presence","event":"TRACK","payload":{"online_at":2}}]"#);
    a.recv_json();
    let diff = b.recv_json();
    assert_eq!(
        diff[4]["joins"]["alice"]["metas"][0]["phx_ref_prev"],
        r1.as_str()
    );
    assert_eq!(
        diff[4]["leaves"]["alice"]["metas"][0]["phx_ref"],
        r1.as_str()
    );
    a.recv_json();

    // A late joiner sees the state.
    let mut c = Ws::connect(srv.port, "2.0.0", &t);
    c.join_v2("1", "realtime:p", json!({"presence": {"enabled": true}}));
    let state = c.recv_json();
    assert_eq!(state[4]["alice"]["metas"][0]["online_at"], 2);

    // Abrupt disconnect: the others see alice leave.
    a.s.shutdown(std::net::Shutdown::Both).unwrap();
    drop(a);
    let diff = b.recv_json();
    assert_eq!(diff[4]["leaves"]["alice"]["metas"][0]["online_at"], 2);
    assert_eq!(diff[4]["joins"], json!({}));
}

#[test]
fn bad_track_payloads_and_the_client_rate_limit() {
    let srv = Server::start(&[("CLIENT_PRESENCE_MAX_CALLS", "2")]);
    let mut a = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    a.join_v2("1", "realtime:q", json!({}));
    a.text(
        r#"["1","2","realtime:q","presence",{"type":"presence","event":"track","payload":"nope"}]"#,
    );
    assert_eq!(
        a.recv_json(),
        json!(["1", "2", "realtime:q", "phx_reply", {"status": "error", "response": {"reason": "Presence track payload must be a map"}}])
    );
    a.text(r#"["1","3","realtime:q","presence",{"type":"presence","event":"wave"}]"#);
    assert_eq!(
        a.recv_json(),
        json!(["1", "3", "realtime:q", "phx_reply", {"status": "error", "response": {}}])
    );
    a.text(r#"["1","4","realtime:q","presence",{"type":"presence","event":"untrack"}]"#);
    assert_eq!(
        a.recv_json(),
        json!(["1", null, "realtime:q", "system", {"extension": "system", "status": "error", "message": "Client presence rate limit exceeded", "channel": "q"}])
    );
    assert_eq!(
        a.recv_json(),
        json!(["1", "1", "realtime:q", "phx_close", {}])
    );
}
