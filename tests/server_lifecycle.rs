//! Shard-level behaviour: sockets reach their tenant's home shard whatever
//! shard accepted them, SIGTERM drains with `Server requested disconnect`
//! and close 1012, a subscriber that stops reading is cut off without
//! slowing the others, and a server that cannot listen fails at once.

mod support;
use serde_json::json;
use support::*;

#[test]
fn sockets_accepted_anywhere_meet_on_the_home_shard() {
    let srv = Server::start(&[("SHARDS", "2")]);
    let t = token("anon", 3600);
    let mut socks: Vec<Ws> = (0..12)
        .map(|_| Ws::connect(srv.port, "2.0.0", &t))
        .collect();
    for s in socks.iter_mut() {
        s.join_v2("1", "realtime:all", json!({"broadcast": {"self": true}}));
    }
    socks[0].text(
        r#"["1","2","realtime:all","broadcast",{"type":"broadcast","event":"e","payload":{}}]"#,
    );
    for s in socks.iter_mut() {
        assert_eq!(s.recv_json()[3], "broadcast", "every socket shares one hub");
    }
    // The kernel spreads accepts over both listeners; a dozen sockets all
    // landing on the home shard by chance is unlikely (1 in 4096).
    assert!(
        srv.metric("realtime_handoffs_total") > 0,
        "no socket was handed over"
    );
    assert_eq!(srv.metric("realtime_connections"), 12);
}

#[test]
fn sigterm_sends_server_requested_disconnect_and_closes_1012() {
    let mut srv = Server::start(&[]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    ws.join_v2("1", "realtime:room", json!({}));
    let status = srv.stop();
    assert_eq!(
        ws.recv_json(),
        json!([null, null, "realtime:room", "system", {"extension": "system", "status": "ok", "message": "Server requested disconnect"}])
    );
    assert_eq!(ws.expect_frame(), Frame::Close(Some(1012)));
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_subscriber_that_stops_reading_is_disconnected() {
    let srv = Server::start(&[
        ("WEBSOCKET_QUEUE_BYTES", "65536"),
        ("TENANT_MAX_PAYLOAD_SIZE_IN_KB", "32"),
        ("TENANT_MAX_EVENTS_PER_SECOND", "1000000"),
    ]);
    let t = token("anon", 3600);
    let mut slow = Ws::connect(srv.port, "2.0.0", &t);
    let mut fast = Ws::connect(srv.port, "2.0.0", &t);
    let mut sender = Ws::connect(srv.port, "2.0.0", &t);
    slow.join_v2("1", "realtime:flood", json!({}));
    fast.join_v2("1", "realtime:flood", json!({}));
    sender.join_v2("1", "realtime:flood", json!({}));
    let payload = "y".repeat(8000);
    let msg = json!(["1", null, "realtime:flood", "broadcast", {"type": "broadcast", "event": "e", "payload": {"p": payload}}]).to_string();
    let mut fast_got = 0;
    for _ in 0..2000 {
        sender.text(&msg);
        // The fast reader keeps up.
        assert_eq!(fast.recv_json()[3], "broadcast");
        fast_got += 1;
    }
    assert_eq!(fast_got, 2000);
    assert!(
        srv.metric("realtime_queue_drops_total") >= 1,
        "the slow socket was not dropped"
    );
}

#[test]
fn a_port_already_taken_stops_the_server_with_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (status, err) = run_until_exit(port, &[], 10, "a server that cannot listen");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("realtime: cannot listen on 127.0.0.1:{port}: ")),
        "{err}"
    );
    drop(taken);
}

/// A start whose shards are not all listening in time ends with the
/// status a supervisor restarts on (75), saying so, rather than hang
/// silently unserving.
#[cfg(feature = "fault-injection")]
#[test]
fn a_start_that_stalls_exits_to_be_started_again() {
    let env = [("REALTIME_FAULT_STALL_SHARD_START", "1")];
    let (status, err) = run_until_exit(free_port(), &env, 20, "a stalled start");
    assert_eq!(status.code(), Some(75), "{err}");
    assert!(
        err.contains("realtime: only 1 of 2 shards were listening 10 s after start"),
        "{err}"
    );
}

/// Runs a two-shard server on `port` with `env` until it exits (`what`
/// still running after `secs` fails the test): its status and stderr.
fn run_until_exit(
    port: u16,
    env: &[(&str, &str)],
    secs: u64,
    what: &str,
) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_realtime"))
        .env_clear()
        .env("PORT", port.to_string())
        .env("SHARDS", "2")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{what} kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status, err)
}
