//! Fault isolation (needs the `fault-injection` feature, which the test
//! command enables): a panic in one connection's handler, one REST request
//! or one replication stream session is caught at its boundary. The
//! failing socket is closed (1011, or an empty 500), its teardown runs as
//! on a normal close, and the other sockets of the same tenant on the same
//! shard (`SHARDS=1`) keep being served; a replication stream is restarted
//! with its backoff. The reserved name `__panic__` triggers the hook.

mod support;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::pg::{dev_db_url, psql, psql_bin, server_env};
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
    // The log is read by another thread: wait for the line, then count.
    let line = ["task panicked", "tenant", "connection"];
    assert!(log.wait_for(&line, 1, Instant::now() + Duration::from_secs(10)));
    assert_eq!(log.count(&line), 1);
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

/// Reads `ws` until a `system` message whose text is `message`; the
/// messages skipped on the way are returned.
fn until_system(ws: &mut Ws, message: &str, deadline: Instant) -> Vec<serde_json::Value> {
    let mut skipped = Vec::new();
    while Instant::now() < deadline {
        let m = match ws.recv_for(1000) {
            Recv::Frame(Frame::Text(t)) => serde_json::from_str::<serde_json::Value>(&t).unwrap(),
            Recv::Timeout => continue,
            other => panic!("expected a text frame, got {other:?}"),
        };
        if m[3] == "system" && m[4]["message"] == message {
            return skipped;
        }
        skipped.push(m);
    }
    panic!("no system message {message:?} in time; got {skipped:?}");
}

fn subscribe_table(port: u16, topic: &str, table: &str) -> Ws {
    let mut ws = Ws::connect(port, "2.0.0", &token("anon", 3600));
    let binding = json!({"event": "INSERT", "schema": "public", "table": table});
    let reply = ws.join_v2("1", topic, json!({"postgres_changes": [binding]}));
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    until_system(
        &mut ws,
        SUBSCRIBED,
        Instant::now() + Duration::from_secs(30),
    );
    ws
}

const SUBSCRIBED: &str = "Subscribed to PostgreSQL";
const DOWN: &str = "Realtime was unable to connect to the project database";

#[test]
fn a_panicking_replication_stream_is_restarted_and_resumes() {
    let url = dev_db_url();
    let pid = std::process::id();
    let poisoned = format!("__panic__{pid}");
    let plain = format!("fi_plain_{pid}");
    let suffix = format!("_fi{pid}");
    psql(
        &url,
        &format!(
            "create table public.{poisoned} (id int primary key);
             create table public.{plain} (id int primary key);
             alter publication supabase_realtime add table public.{poisoned}, public.{plain};"
        ),
    );
    let _cleanup = Cleanup {
        url: url.clone(),
        sql: format!(
            "alter publication supabase_realtime drop table public.{poisoned}, public.{plain};
             drop table public.{poisoned}, public.{plain};
             select pg_drop_replication_slot(slot_name) from pg_replication_slots
             where slot_name in ('supabase_realtime_replication_slot{suffix}',
                                 'realtime_messages_slot{suffix}');"
        ),
    };
    let mut env = server_env(&url, &suffix);
    env.push(("SHARDS".into(), "1".into()));
    let (mut srv, log) = Server::start_logged(&env);
    let mut watcher = subscribe_table(srv.port, "realtime:plain", &plain);
    let victim = subscribe_table(srv.port, "realtime:poisoned", &poisoned);

    // Delivering this change panics inside the stream's session.
    psql(&url, &format!("insert into public.{poisoned} values (1)"));
    until_system(&mut watcher, DOWN, Instant::now() + Duration::from_secs(30));
    assert!(panics(&srv, "stream") >= 1);
    // The log is read by another thread, so its line may still be on the way.
    let line = ["task panicked", "stream", "realtime-dev"];
    assert!(log.wait_for(&line, 1, Instant::now() + Duration::from_secs(10)));
    // The process and its sockets live on: the shard still answers here.
    assert_eq!(srv.http("GET", "/api/ping", &[], b"").0, 200);

    // Once the poisoned table has no subscriber the restarted stream gets
    // past that row and resumes for the others.
    victim.s.shutdown(std::net::Shutdown::Both).unwrap();
    drop(victim);
    until_system(
        &mut watcher,
        SUBSCRIBED,
        Instant::now() + Duration::from_secs(30),
    );
    psql(&url, &format!("insert into public.{plain} values (7)"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the insert never arrived");
        let m = match watcher.recv_for(1000) {
            Recv::Frame(Frame::Text(t)) => serde_json::from_str::<serde_json::Value>(&t).unwrap(),
            Recv::Timeout => continue,
            other => panic!("expected a text frame, got {other:?}"),
        };
        if m[3] == "postgres_changes" {
            assert_eq!(m[4]["data"]["table"], plain.as_str());
            assert_eq!(m[4]["data"]["record"], json!({"id": 7}));
            break;
        }
    }
    assert_eq!(panics(&srv, "connection") + panics(&srv, "request"), 0);
    srv.stop();
}

/// Drops the test's tables and slot when the test ends, passed or failed
/// (the server is stopped first: an active slot cannot be dropped).
struct Cleanup {
    url: String,
    sql: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Errors ignored: this may run while a failed test unwinds.
        let _ = std::process::Command::new(psql_bin())
            .args([self.url.as_str(), "-qAt", "-c", self.sql.as_str()])
            .output();
    }
}

#[test]
fn a_panic_in_one_tenants_connection_leaves_the_other_tenant_on_the_shard_serving() {
    use support::control::{admin, connect, tenant_body, ControlDb};
    let db = ControlDb::create("fault2");
    let mut env = db.env();
    env.retain(|(k, _)| k != "SHARDS");
    env.push(("SHARDS".into(), "1".into()));
    let (srv, log) = Server::start_logged(&env);
    let (sa, sb) = (
        "fault-tenant-a-secret-of-32bytes",
        "fault-tenant-b-secret-of-32bytes",
    );
    for (id, secret) in [("ta", sa), ("tb", sb)] {
        let (status, _, body) = admin(&srv, "POST", "/api/tenants", Some(tenant_body(id, secret)));
        assert_eq!(status, 201, "{body}");
    }
    let room = |ws: &mut Ws| {
        let r = ws.join_v2("1", "realtime:room", json!({}));
        assert_eq!(r[4]["status"], "ok", "{r}");
    };
    let mut victim = connect(&srv, "ta", sa).unwrap();
    let mut a_watch = connect(&srv, "ta", sa).unwrap();
    let mut b_send = connect(&srv, "tb", sb).unwrap();
    let mut b_watch = connect(&srv, "tb", sb).unwrap();
    for ws in [&mut victim, &mut a_watch, &mut b_send, &mut b_watch] {
        room(ws);
    }

    broadcast(&mut victim, "3", "__panic__");
    assert_eq!(victim.expect_frame(), Frame::Close(Some(1011)));
    let line = ["task panicked", "ta", "connection"];
    assert!(log.wait_for(&line, 1, Instant::now() + Duration::from_secs(10)));

    // The other tenant on the same shard, and the victim's own tenant,
    // keep serving.
    broadcast(&mut b_send, "4", "b-after");
    let got = b_watch.recv_json();
    assert_eq!(
        (got[3].as_str(), got[4]["event"].as_str()),
        (Some("broadcast"), Some("b-after"))
    );
    broadcast(&mut a_watch, "5", "a-after");
    let mut a_late = connect(&srv, "ta", sa).unwrap();
    room(&mut a_late);
    broadcast(&mut a_watch, "6", "a-late");
    let got = a_late.recv_json();
    assert_eq!(got[4]["event"], "a-late", "{got}");
    assert_eq!(panics(&srv, "connection"), 1);
    assert_eq!(log.count(&["task panicked", "tb"]), 0);
}
