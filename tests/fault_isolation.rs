//! Fault isolation (needs the `fault-injection` feature, which the test
//! command enables): a panic in one connection's handler or one REST
//! request is caught at its boundary. The failing socket is closed (1011,
//! or an empty 500), its teardown runs as on a normal close, and the other
//! sockets of the same tenant on the same shard (`SHARDS=1`) keep being
//! served. The reserved name `__panic__` triggers the hook.

mod support;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use support::*;

/// `realtime_task_panics_total` for one boundary kind, summed over shards.
fn panics(srv: &Server, kind: &str) -> i64 {
    let (_, _, body) = srv.http("GET", "/metrics", &[], b"");
    let label = format!("kind=\"{kind}\"}} ");
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("realtime_task_panics_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum()
}

/// Joins `realtime:room` with presence under `key`, skipping the reply
/// and the `presence_state`.
fn join_room(ws: &mut Ws, key: &str) {
    let reply = ws.join_v2(
        "1",
        "realtime:room",
        json!({"presence": {"key": key, "enabled": true}}),
    );
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    assert_eq!(ws.recv_json()[3], "presence_state");
}

fn broadcast(ws: &mut Ws, r: &str, event: &str) {
    ws.text(
        &json!(["1", r, "realtime:room", "broadcast", {"type": "broadcast", "event": event, "payload": {"n": r}}])
            .to_string(),
    );
}

#[test]
fn a_panicking_connection_is_closed_1011_and_its_neighbours_keep_serving() {
    let (srv, log) = Server::start_logged(&[("SHARDS".into(), "1".into())]);
    let t = token("anon", 3600);
    let mut victim = Ws::connect(srv.port, "2.0.0", &t);
    let mut watcher = Ws::connect(srv.port, "2.0.0", &t);
    let mut sender = Ws::connect(srv.port, "2.0.0", &t);
    join_room(&mut watcher, "watcher");
    join_room(&mut sender, "sender");
    join_room(&mut victim, "victim");
    // The victim tracks presence, so its teardown has something to undo.
    victim.text(r#"["1","2","realtime:room","presence",{"type":"presence","event":"track","payload":{"v":1}}]"#);
    let diff = watcher.recv_json();
    assert_eq!(diff[3], "presence_diff");
    assert!(diff[4]["joins"].get("victim").is_some(), "{diff}");
    assert_eq!(sender.recv_json()[3], "presence_diff");

    // The panic happens inside the handler, with the tenant borrowed.
    broadcast(&mut victim, "3", "__panic__");
    loop {
        match victim.recv() {
            Recv::Frame(Frame::Close(code)) => {
                assert_eq!(code, Some(1011));
                break;
            }
            // Its own presence diff may still be queued before the close.
            Recv::Frame(Frame::Text(_)) => {}
            other => panic!("expected close 1011, got {other:?}"),
        }
    }
    victim.expect_eof();

    // Its teardown ran as on a normal close: its presence left.
    let diff = watcher.recv_json();
    assert_eq!(diff[3], "presence_diff", "{diff}");
    assert!(diff[4]["leaves"].get("victim").is_some(), "{diff}");
    assert_eq!(sender.recv_json()[3], "presence_diff");

    // The same tenant's other sockets on the same shard are still served:
    // a broadcast over the socket path (the tenant is borrowable again)...
    broadcast(&mut sender, "4", "after");
    let got = watcher.recv_json();
    assert_eq!(got[3], "broadcast", "{got}");
    assert_eq!(got[4]["event"], "after");
    // ... and a new connection joins and is heard.
    let mut late = Ws::connect(srv.port, "2.0.0", &t);
    join_room(&mut late, "late");
    broadcast(&mut late, "5", "late");
    let got = watcher.recv_json();
    assert_eq!(got[3], "broadcast", "{got}");
    assert_eq!(got[4]["event"], "late");

    assert_eq!(panics(&srv, "connection"), 1);
    assert_eq!(panics(&srv, "request"), 0);
    // The victim is off the shard's session map: watcher, sender, late.
    assert_eq!(srv.metric("realtime_connections"), 3);
    assert_eq!(log.count(&["task panicked", "tenant", "connection"]), 1);
}

#[test]
fn a_panicking_rest_request_gets_500_and_the_next_request_is_served() {
    let srv = Server::start(&[("SHARDS", "1")]);
    let t = token("anon", 3600);
    let mut sub = Ws::connect(srv.port, "2.0.0", &t);
    join_room(&mut sub, "sub");

    // Keep-alive request: the answer is an empty 500, then the socket closes.
    let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = br#"{"n":1}"#;
    let req = format!(
        "POST /api/broadcast/room/events/__panic__ HTTP/1.1\r\nhost: localhost\r\napikey: {t}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("the server closes the socket");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "empty body: {text}");
    assert!(
        text.to_ascii_lowercase().contains("content-length: 0"),
        "{text}"
    );

    // A new connection is served, and the tenant's subscriber gets it.
    let (status, _, _) = srv.http(
        "POST",
        "/api/broadcast/room/events/after",
        &[("apikey", &t), ("content-type", "application/json")],
        br#"{"n":2}"#,
    );
    assert_eq!(status, 202);
    let mut want = vec![4u8, 13, 5, 0, 1];
    want.extend_from_slice(br#"realtime:roomafter{"n":2}"#);
    assert_eq!(sub.expect_frame(), Frame::Binary(want));

    assert_eq!(panics(&srv, "request"), 1);
    assert_eq!(panics(&srv, "connection"), 0);
}
