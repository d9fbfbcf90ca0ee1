//! Presence of a spread tenant is one view across shards: each shard
//! keeps the entries of its own sockets and sends every change to the
//! others, so a joiner on any shard gets every shard's entries in its
//! `presence_state`, diffs reach subscribers on every shard, a socket
//! dropped without a goodbye leaves everywhere, and a shard that starts
//! serving the tenant late first takes the others' entries.

mod support;
use serde_json::{json, Value};
use support::*;

const TOPIC: &str = "realtime:lobby";

fn join(srv: &Server, key: &str) -> (Ws, Value) {
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let reply = ws.join_v2(
        "1",
        TOPIC,
        json!({"presence": {"key": key, "enabled": true}}),
    );
    assert_eq!(reply[4]["status"], "ok");
    let state = ws.recv_json();
    assert_eq!(state[3], "presence_state");
    (ws, state[4].clone())
}

fn track(ws: &mut Ws, r: &str, meta: Value) {
    ws.text(&json!(["1", r, TOPIC, "presence", {"type": "presence", "event": "track", "payload": meta}]).to_string());
    assert_eq!(ws.recv_json()[3], "presence_diff", "its own diff first");
    assert_eq!(ws.recv_json()[4]["status"], "ok");
}

/// The keys of a presence state or of one side of a diff, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn one_view_across_shards() {
    let srv = Server::start(&[("SHARDS", "3"), ("SELF_HOST_TENANT_PLACEMENT", "spread")]);
    let (mut alice, state) = join(&srv, "alice");
    assert_eq!(state, json!({}));
    track(&mut alice, "2", json!({"n": 1}));
    // Bob is on another shard: alice's entry is in his state.
    let (mut bob, state) = join(&srv, "bob");
    assert_eq!(keys(&state), ["alice"]);
    assert_eq!(state["alice"]["metas"][0]["n"], 1);
    track(&mut bob, "2", json!({"n": 2}));
    let diff = alice.recv_json();
    assert_eq!(
        (diff[3].as_str(), keys(&diff[4]["joins"])),
        (Some("presence_diff"), vec!["bob".to_owned()])
    );
    // Carol, on the third shard: both.
    let (mut carol, state) = join(&srv, "carol");
    assert_eq!(srv.metric_by_shard("realtime_connections"), [1, 1, 1]);
    assert_eq!(keys(&state), ["alice", "bob"]);
    // An update on alice's shard: everyone sees the new meta replace the
    // old, with the same refs.
    track(&mut alice, "3", json!({"n": 3}));
    let (to_bob, to_carol) = (bob.recv_json(), carol.recv_json());
    assert_eq!(to_bob[4], to_carol[4]);
    assert_eq!(to_bob[4]["joins"]["alice"]["metas"][0]["n"], 3);
    assert_eq!(to_bob[4]["leaves"]["alice"]["metas"][0]["n"], 1);
    // Alice's socket goes without a goodbye: she leaves on every shard.
    drop(alice);
    for ws in [&mut bob, &mut carol] {
        let diff = ws.recv_json();
        assert_eq!(diff[3], "presence_diff");
        assert_eq!(keys(&diff[4]["leaves"]), ["alice"]);
        assert_eq!(diff[4]["joins"], json!({}));
    }
    // A newcomer sees exactly who is left, whichever shard it lands on,
    // with the refs everyone else saw.
    let (_dave, state) = join(&srv, "dave");
    assert_eq!(keys(&state), ["bob"]);
    assert_eq!(state["bob"]["metas"][0]["n"], 2);
    // The view is the same from every shard.
    let (_erin, state_e) = join(&srv, "erin");
    assert_eq!(state_e, state);
}
