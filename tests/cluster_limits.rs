//! A tenant's limits hold across the nodes of a cluster (a real
//! nats-server): users on two nodes count against one
//! `max_concurrent_users`, and events on two nodes add up to one
//! events-per-second rate. Each node learns the others' figures from
//! their reports (once per heartbeat), so the tests wait for the refusal
//! rather than expect it at once.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::nats::{until_connected, Nats};
use support::*;

fn two_nodes(nats: &Nats, env: &[(&str, &str)]) -> (Server, Server) {
    let url = nats.url();
    let start = |name: &str| {
        let mut all = vec![("NATS_URL", url.as_str()), ("NODE_NAME", name)];
        all.extend_from_slice(env);
        let srv = Server::start(&all);
        until_connected(&srv, true);
        srv
    };
    (start("a"), start("b"))
}

fn path(t: &str) -> String {
    format!("/socket/websocket?apikey={t}&vsn=2.0.0")
}

/// Connects to `srv` until it refuses with `Too many connected users`
/// (an admitted socket that joins nothing is no user, and is dropped).
fn until_full(srv: &Server, t: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Ws::try_connect(srv.port, &path(t), "localhost", &[]) {
            Err((status, body)) => {
                assert_eq!(
                    (status, body.as_str()),
                    (429, r#"{"error":"Too many connected users"}"#)
                );
                return;
            }
            Ok(_) => assert!(
                Instant::now() < deadline,
                "node on port {} never counted the other node's users",
                srv.port
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects and joins on `srv` once a place is free there.
fn joined_when_free(srv: &Server, t: &str) -> Ws {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Ws::try_connect(srv.port, &path(t), "localhost", &[]) {
            Ok(mut ws) => {
                let reply = ws.join_v2("1", "realtime:x", json!({}));
                if reply[4]["status"] == "ok" {
                    return ws;
                }
            }
            Err((429, _)) => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(Instant::now() < deadline, "no place freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn users_on_two_nodes_count_against_one_limit() {
    let nats = Nats::start("");
    let (a, b) = two_nodes(&nats, &[("TENANT_MAX_CONCURRENT_USERS", "2")]);
    let t = token("anon", 3600);
    let mut u1 = Ws::connect(a.port, "2.0.0", &t);
    assert_eq!(u1.join_v2("1", "realtime:x", json!({}))[4]["status"], "ok");
    let mut u2 = Ws::connect(a.port, "2.0.0", &t);
    assert_eq!(u2.join_v2("1", "realtime:x", json!({}))[4]["status"], "ok");
    // Node b has none of its own, but the tenant has two users.
    until_full(&b, &t);
    // One leaves node a: node b admits one, and then node a is full.
    drop(u1);
    let _u3 = joined_when_free(&b, &t);
    until_full(&a, &t);
}

#[test]
fn events_on_two_nodes_add_up_to_one_rate() {
    // 8 events/s on each node: under the limit of 10 alone, over it
    // together. Other nodes' counts arrive a tick late, so it is a steady
    // rate, not a burst, that trips the limit (at the second or third
    // 5 s tick).
    let nats = Nats::start("");
    let (a, b) = two_nodes(&nats, &[("TENANT_MAX_EVENTS_PER_SECOND", "10")]);
    let t = token("anon", 3600);
    let send = |ws: &mut Ws, topic: &str, i: usize| {
        ws.text(&json!(["1", format!("{i}"), topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {}}]).to_string());
        ws.recv_json()
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut wb = Ws::connect(b.port, "2.0.0", &t);
    wb.join_v2("1", "realtime:b", json!({"broadcast": {"ack": true}}));
    let on_b = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = send(&mut wb, "realtime:b", i);
                if reply[3] == "system" {
                    return;
                }
                i += 1;
                // Pacing a rate, not ordering events.
                std::thread::sleep(Duration::from_millis(125));
            }
        })
    };
    let mut wa = Ws::connect(a.port, "2.0.0", &t);
    wa.join_v2("1", "realtime:a", json!({"broadcast": {"ack": true}}));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    let shut = loop {
        let reply = send(&mut wa, "realtime:a", i);
        if reply[3] == "system" {
            break reply;
        }
        assert!(Instant::now() < deadline, "never limited");
        i += 1;
        std::thread::sleep(Duration::from_millis(125));
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    on_b.join().unwrap();
    assert_eq!(
        shut,
        json!(["1", null, "realtime:a", "system", {"extension": "system", "status": "error", "message": "Too many messages per second", "channel": "a"}])
    );
}
