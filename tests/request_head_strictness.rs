//! The HTTP head is checked before anything is upgraded: a WebSocket
//! handshake over HTTP/1.0, without a well-formed `Sec-WebSocket-Key` or
//! with a version other than 13 is refused (400, or 426 naming 13); heads
//! over the size or header-count limit get 431; the Host's tenant label is
//! matched without regard to case.

mod support;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Writes `raw` on a fresh connection and returns the response head (status
/// line and headers, lower-cased) once it has fully arrived.
fn exchange(port: u16, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut tmp).expect("response within 10 s");
        assert!(n > 0, "closed without a response");
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    (head[9..12].parse().unwrap(), head)
}

/// A WebSocket handshake with a valid token, `line` as its request line
/// and `headers` (name, value) replacing or extending the standard ones;
/// a `None` value drops that header.
fn handshake(port: u16, line: &str, host: &str, headers: &[(&str, Option<&str>)]) -> (u16, String) {
    let mut hs: Vec<(String, String)> = vec![
        ("host".into(), host.into()),
        ("upgrade".into(), "websocket".into()),
        ("connection".into(), "Upgrade".into()),
        ("sec-websocket-key".into(), KEY.into()),
        ("sec-websocket-version".into(), "13".into()),
    ];
    for (k, v) in headers {
        hs.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        if let Some(v) = v {
            hs.push((k.to_string(), v.to_string()));
        }
    }
    let line = line.replace("TOKEN", &token("anon", 3600));
    let mut raw = format!("{line}\r\n");
    for (k, v) in hs {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    exchange(port, raw.as_bytes())
}

const WS_11: &str = "GET /socket/websocket?apikey=TOKEN&vsn=2.0.0 HTTP/1.1";

#[test]
fn malformed_websocket_handshakes_are_refused_not_upgraded() {
    let srv = Server::start(&[]);
    let p = srv.port;
    // The control: the standard handshake is upgraded.
    assert_eq!(handshake(p, WS_11, "localhost", &[]).0, 101);

    let ws_10 = "GET /socket/websocket?apikey=TOKEN&vsn=2.0.0 HTTP/1.0";
    assert_eq!(handshake(p, ws_10, "localhost", &[]).0, 400, "HTTP/1.0");
    for key in [
        None,
        Some(""),
        Some("abc"),
        Some("AAAAAAAAAAAAAAAAAAAAAAA="),
    ] {
        let (status, _) = handshake(p, WS_11, "localhost", &[("sec-websocket-key", key)]);
        assert_eq!(status, 400, "key {key:?}");
    }
    let (status, _) = handshake(p, WS_11, "localhost", &[("sec-websocket-version", None)]);
    assert_eq!(status, 400, "no version");
    for version in ["8", "14", "13x"] {
        let (status, head) = handshake(
            p,
            WS_11,
            "localhost",
            &[("sec-websocket-version", Some(version))],
        );
        assert_eq!(status, 426, "version {version}");
        assert!(
            head.lines().any(|l| l == "sec-websocket-version: 13"),
            "426 names the version spoken: {head}"
        );
    }
    let (status, _) = handshake(p, WS_11, "localhost", &[("connection", Some("keep-alive"))]);
    assert_eq!(status, 400, "no upgrade token in Connection");
}

#[test]
fn oversized_heads_and_too_many_headers_are_431() {
    let srv = Server::start(&[]);
    // Every header within MAX_HEADER_LENGTH, the head as a whole over 16 KiB.
    let mut raw = String::from("GET /healthcheck HTTP/1.1\r\nhost: localhost\r\n");
    for i in 0..6 {
        raw.push_str(&format!("x-pad-{i}: {}\r\n", "a".repeat(3000)));
    }
    raw.push_str("\r\n");
    assert_eq!(exchange(srv.port, raw.as_bytes()).0, 431, "head too large");

    let mut raw = String::from("GET /healthcheck HTTP/1.1\r\nhost: localhost\r\n");
    for i in 0..70 {
        raw.push_str(&format!("x-h{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    assert_eq!(
        exchange(srv.port, raw.as_bytes()).0,
        431,
        "too many headers"
    );

    // Just under both limits is served.
    let mut raw = String::from("GET /healthcheck HTTP/1.1\r\nhost: localhost\r\n");
    for i in 0..60 {
        raw.push_str(&format!("x-h{i}: v\r\n"));
    }
    raw.push_str("connection: close\r\n\r\n");
    assert_eq!(exchange(srv.port, raw.as_bytes()).0, 200);
}

#[test]
fn the_hosts_tenant_label_is_matched_case_insensitively() {
    let srv = Server::start(&[("SELF_HOST_TENANT_NAME", "realtime-dev")]);
    for host in ["REALTIME-DEV.example", "Realtime-Dev.example:4000"] {
        assert_eq!(handshake(srv.port, WS_11, host, &[]).0, 101, "{host}");
        let raw = format!("GET /api/ping HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        assert_eq!(exchange(srv.port, raw.as_bytes()).0, 200, "{host}");
    }
    // Another tenant's name, whatever its case, is still unknown.
    let (status, _) = handshake(srv.port, WS_11, "OTHER.example", &[]);
    assert_eq!(status, 404);
}
