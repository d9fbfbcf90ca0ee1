//! REST request bodies sent with `Transfer-Encoding: chunked`, as HTTP/1.1
//! clients may: decoded and served like a `Content-Length` body, under the
//! same body limit (on the decoded size, with the same 413), and a malformed
//! chunk is a 400.

mod support;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use support::*;

/// The largest body the REST API accepts (`MAX_BODY` in the server).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A chunked POST head to the batch broadcast endpoint.
fn chunked_head(token: &str, connection: &str) -> String {
    format!(
        "POST /api/broadcast HTTP/1.1\r\nhost: localhost\r\napikey: {token}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\
         connection: {connection}\r\n\r\n"
    )
}

/// Writes `parts` on a fresh connection, then reads until the server
/// closes it (every request here ends with a close), within 20 s.
fn exchange(port: u16, parts: &[&[u8]]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    for p in parts {
        s.write_all(p).expect("write request");
    }
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("read until the server closes");
    got
}

/// `body` as chunks of at most `size` bytes, with an extension on the first
/// size line and a trailer after the last chunk.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in body.chunks(size).enumerate() {
        let ext = if i == 0 { ";note=first" } else { "" };
        out.extend_from_slice(format!("{:x}{ext}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
    out
}

fn error_response(status: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-length: 0\r\naccess-control-allow-origin: *\r\n\
         connection: close\r\n\r\n"
    )
}

#[test]
fn a_chunked_broadcast_is_accepted_and_delivered() {
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    let mut ws = Ws::connect(srv.port, "2.0.0", &t);
    ws.join_v2("1", "realtime:chunky", json!({}));
    let first = json!({"messages": [{"topic": "chunky", "event": "one", "payload": {"n": 1}}]});
    let second = json!({"messages": [{"topic": "chunky", "event": "two", "payload": {"n": 2}}]});
    // Two requests on one connection, the second pipelined right behind the
    // first body: what follows a chunked body is the next request.
    let mut wire = chunked_head(&t, "keep-alive").into_bytes();
    wire.extend(chunked(first.to_string().as_bytes(), 7));
    wire.extend(chunked_head(&t, "close").into_bytes());
    wire.extend(chunked(second.to_string().as_bytes(), 1000));
    let got = String::from_utf8(exchange(srv.port, &[&wire])).unwrap();
    let statuses: Vec<&str> = got
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &got[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["202", "202"], "{got}");
    for (event, n) in [("one", 1), ("two", 2)] {
        assert_eq!(
            ws.recv_json(),
            json!([null, null, "realtime:chunky", "broadcast", {"payload": {"n": n}, "event": event, "type": "broadcast"}])
        );
    }
}

#[test]
fn a_chunked_body_over_the_limit_gets_the_limit_error() {
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    // The existing answer to a declared length over the limit.
    let head = format!(
        "POST /api/broadcast HTTP/1.1\r\nhost: localhost\r\napikey: {t}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    let by_length = String::from_utf8(exchange(srv.port, &[head.as_bytes()])).unwrap();
    assert_eq!(by_length, error_response("413 Request Entity Too Large"));
    // Each chunk is under the limit; the second takes the total past it,
    // and is refused at its size line.
    let big = vec![b' '; MAX_BODY / 2 + 1];
    let mut first = format!("{:x}\r\n", big.len()).into_bytes();
    first.extend_from_slice(&big);
    first.extend_from_slice(b"\r\n");
    let second = format!("{:x}\r\n", MAX_BODY / 2).into_bytes();
    let got = exchange(
        srv.port,
        &[chunked_head(&t, "keep-alive").as_bytes(), &first, &second],
    );
    assert_eq!(String::from_utf8(got).unwrap(), by_length);
}

#[test]
fn a_malformed_chunk_is_a_400() {
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    // Each ends at the byte that makes it malformed, so the server has read
    // everything when it answers and closes (no reset to race the answer).
    for bad in [
        // Not a chunk size.
        &b"z"[..],
        // Chunk data not followed by CRLF.
        b"2\r\n{}X",
        // A chunk size over 16 hex digits.
        b"11111111111111111",
    ] {
        let got = exchange(srv.port, &[chunked_head(&t, "keep-alive").as_bytes(), bad]);
        assert_eq!(
            String::from_utf8(got).unwrap(),
            error_response("400 Bad Request"),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}
