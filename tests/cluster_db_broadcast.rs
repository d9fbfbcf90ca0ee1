//! Broadcast from Database in a cluster: two nodes serve one tenant
//! database (a real Postgres and nats-server). The messages slot is
//! permanent and has one name per tenant, so one node at a time streams it
//! (the other's attempts find it in use and retry); what the streaming
//! node broadcasts crosses to the other node's subscribers once. When the
//! streaming node is killed, the other takes the slot and nothing
//! committed meanwhile is lost.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::nats::{until_connected, Nats};
use support::rls::SchemaDb;
use support::*;

fn node(db: &SchemaDb, nats: &Nats, name: &str) -> Server {
    let mut env = db.server_env();
    env.push(("NATS_URL".into(), nats.url()));
    env.push(("NODE_NAME".into(), name.into()));
    let srv = Server::start_env(&env);
    until_connected(&srv, true);
    srv
}

/// A vsn 1.0.0 subscriber of public `realtime:<name>`.
fn subscriber(srv: &Server, name: &str) -> Ws {
    let mut ws = Ws::connect(srv.port, "1.0.0", &token("anon", 3600));
    let msg = json!({"topic": format!("realtime:{name}"), "event": "phx_join",
        "payload": {"config": {}}, "ref": "1", "join_ref": "1"});
    ws.text(&msg.to_string());
    let reply = ws.recv_json();
    assert_eq!(reply["payload"]["status"], "ok", "{reply}");
    ws
}

fn send(db: &SchemaDb, event: &str) {
    db.sql(&format!(
        "select realtime.send('{{}}', '{event}', 'room:db', false)"
    ));
}

/// The event of the next broadcast.
fn next_event(ws: &mut Ws) -> String {
    let v: Value = ws.recv_json();
    assert_eq!(v["event"], "broadcast", "{v}");
    v["payload"]["event"].as_str().unwrap().to_owned()
}

#[test]
fn database_broadcasts_reach_every_node_once_and_survive_the_streaming_node() {
    let db = SchemaDb::create("cluster_bfd", true, "");
    let nats = Nats::start("");
    let mut nodes = [node(&db, &nats, "a"), node(&db, &nats, "b")];
    let mut subs = [
        subscriber(&nodes[0], "room:db"),
        subscriber(&nodes[1], "room:db"),
    ];
    // The slot is made at the first join; probe until one node streams
    // it and its broadcast reached both nodes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probes = 0;
    'up: loop {
        assert!(
            Instant::now() < deadline,
            "the messages stream never came up"
        );
        send(&db, &format!("probe-{probes}"));
        probes += 1;
        if let Recv::Frame(Frame::Text(_)) = subs[0].recv_for(300) {
            break 'up;
        }
    }
    // Both have every probe that was streamed, then the same messages, once.
    for m in ["m1", "m2"] {
        send(&db, m);
    }
    for ws in &mut subs {
        let mut got = Vec::new();
        while got.last().map(String::as_str) != Some("m2") {
            got.push(next_event(ws));
        }
        let tail: Vec<&str> = got.iter().map(String::as_str).rev().take(2).collect();
        assert_eq!(tail, ["m2", "m1"], "{got:?}");
        assert!(got.iter().filter(|e| *e == "m1").count() == 1, "{got:?}");
    }
    // One node streams: its count of database broadcasts grew.
    let streamed: Vec<i64> = nodes
        .iter()
        .map(|n| n.metric("realtime_db_broadcasts_total"))
        .collect();
    assert!(
        streamed.iter().filter(|&&n| n > 0).count() == 1,
        "exactly one node streams the slot: {streamed:?}"
    );
    let streamer = streamed.iter().position(|&n| n > 0).unwrap();
    let other = 1 - streamer;
    // The streaming node dies; what is committed then reaches the other
    // node's subscriber once it took the slot, in order.
    nodes[streamer].kill();
    for m in ["m3", "m4", "m5"] {
        send(&db, m);
    }
    let ws = &mut subs[other];
    ws.s.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("m5") {
        got.push(next_event(ws));
    }
    // At least once: the slot resumes from the last position the killed
    // node confirmed, so earlier rows may come again first; the new ones
    // come once, in order.
    let new: Vec<&str> = got
        .iter()
        .map(String::as_str)
        .filter(|e| ["m3", "m4", "m5"].contains(e))
        .collect();
    assert_eq!(new, ["m3", "m4", "m5"], "{got:?}");
    assert!(
        got.iter().all(
            |e| e.starts_with("probe-") || ["m1", "m2", "m3", "m4", "m5"].contains(&e.as_str())
        ),
        "{got:?}"
    );
    assert!(nodes[other].metric("realtime_db_broadcasts_total") >= 3);
}
