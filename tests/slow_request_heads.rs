//! Request heads that arrive slowly: a late head still reaches its
//! tenant's home shard, and a head that never completes is cut off at
//! `REQUEST_HEAD_TIMEOUT_MS` however steadily it trickles (slowloris), with
//! 408 once a request line has come and silently before.

mod support;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// Reads until EOF or `limit`; returns what was read and whether EOF came.
fn read_until_eof(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut tmp = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, false);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut tmp) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&tmp[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (out, false)
            }
            // A reset is the server closing too.
            Err(_) => return (out, true),
        }
    }
}

/// Starts a thread writing `bytes` one at a time, `gap` apart, until the
/// server closes the socket or the bytes run out.
fn trickle(s: &TcpStream, bytes: Vec<u8>, gap: Duration) -> std::thread::JoinHandle<()> {
    let mut w = s.try_clone().unwrap();
    std::thread::spawn(move || {
        for b in bytes {
            if w.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(gap);
        }
    })
}

#[test]
fn a_trickled_head_is_cut_off_at_the_head_deadline() {
    let srv = Server::start(&[("REQUEST_HEAD_TIMEOUT_MS", "1000")]);
    let t0 = Instant::now();
    // Each byte comes well within any per-read timeout; the heads would
    // take 20 s to finish.
    let gap = Duration::from_millis(100);
    let mut with_line = Vec::new();
    let mut without_line = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..10 {
        let s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        let mut head = b"GET /healthcheck HTTP/1.1\r\n".to_vec();
        (&s).write_all(&head).unwrap();
        head = b"x-slow: "
            .iter()
            .chain([b'a'; 200].iter())
            .copied()
            .collect();
        writers.push(trickle(&s, head, gap));
        with_line.push(s);

        let s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        writers.push(trickle(&s, [b'G'; 200].to_vec(), gap));
        without_line.push(s);
    }
    for mut s in with_line {
        let (got, eof) = read_until_eof(&mut s, Duration::from_secs(5));
        assert!(eof, "a trickled head was kept open past the deadline");
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text}"
        );
    }
    for mut s in without_line {
        let (got, eof) = read_until_eof(&mut s, Duration::from_secs(5));
        assert!(
            eof,
            "a trickled request line was kept open past the deadline"
        );
        assert!(got.is_empty(), "no answer before a request line");
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "closed before the deadline"
    );
    for w in writers {
        w.join().unwrap();
    }
}

#[test]
fn an_idle_kept_alive_connection_is_closed_at_the_head_deadline() {
    let srv = Server::start(&[("REQUEST_HEAD_TIMEOUT_MS", "1000")]);
    let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    s.write_all(b"GET /healthcheck HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .unwrap();
    let (got, eof) = read_until_eof(&mut s, Duration::from_secs(5));
    assert!(eof, "kept-alive connection not closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "one response only: {text}");
}

#[test]
fn a_late_head_is_served_by_the_tenants_home_shard() {
    let srv = Server::start(&[("SHARDS", "2")]);
    let t = token("anon", 3600);
    let full = format!(
        "GET /socket/websocket?apikey={t}&vsn=2.0.0 HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    let (first, rest) = full.split_at(60);
    // Eight sockets send part of the head now and the rest after the old
    // routing window (about a second); the kernel spreads them over both
    // shards' listeners, so some are certainly accepted away from home
    // (all eight landing at home by chance: 1 in 256).
    let mut slow: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
            s.write_all(first.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let mut slow: Vec<Ws> = slow
        .drain(..)
        .map(|mut s| {
            s.write_all(rest.as_bytes()).unwrap();
            match Ws::finish_handshake(s) {
                Ok(ws) => ws,
                Err(e) => panic!("late head refused: {e:?}"),
            }
        })
        .collect();
    let mut senders: Vec<Ws> = (0..4).map(|_| Ws::connect(srv.port, "2.0.0", &t)).collect();
    for ws in slow.iter_mut().chain(senders.iter_mut()) {
        let reply = ws.join_v2("1", "realtime:room", json!({}));
        assert_eq!(reply[4]["status"], "ok", "{reply}");
    }
    for (i, ws) in senders.iter_mut().enumerate() {
        ws.text(
            &json!(["1", "2", "realtime:room", "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": i}}])
                .to_string(),
        );
    }
    for (k, ws) in slow.iter_mut().enumerate() {
        let mut seen: Vec<i64> = (0..senders.len())
            .map(|_| {
                let m = ws.recv_json();
                assert_eq!(m[3], "broadcast", "slow socket {k}: {m}");
                m[4]["payload"]["n"].as_i64().unwrap()
            })
            .collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3], "slow socket {k} missed broadcasts");
    }
    assert_eq!(srv.metric("realtime_connections"), 12);
    assert!(
        srv.metric("realtime_handoffs_total") > 0,
        "no socket was handed over"
    );
}
