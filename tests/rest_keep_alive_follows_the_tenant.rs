//! One keep-alive HTTP connection used for two projects (tenants homed on
//! different shards): each request is served on its own tenant's home
//! shard, so a broadcast reaches that tenant's subscribers rather than a
//! second, subscriber-less copy of the tenant on the shard that served the
//! connection's first request.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use support::control::{client_token, connect, next_event};
use support::*;

const SECRET_A: &str = "keepalive-tenant-a-secret-32-byte";
const SECRET_B: &str = "keepalive-tenant-b-secret-32-byte";

/// Two tenant ids homed on different shards of two.
fn two_homes() -> (String, String) {
    let a = "kaa".to_owned();
    let home = realtime_shards::home_shard(&a, 2);
    let b = (0..)
        .map(|i| format!("kab{i}"))
        .find(|id| realtime_shards::home_shard(id, 2) != home)
        .unwrap();
    (a, b)
}

/// POSTs one batch broadcast on `s` for tenant `id` and reads the
/// response head (the 202 has no body); the connection stays open.
fn post(s: &mut TcpStream, id: &str, secret: &str, event: &str) -> String {
    let body = json!({"messages": [{"topic": "room", "event": event, "payload": {}}]}).to_string();
    let req = format!(
        "POST /api/broadcast HTTP/1.1\r\nhost: {id}.localhost\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        client_token(secret),
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(
        head.to_ascii_lowercase().contains("content-length: 0"),
        "{head}"
    );
    head.lines().next().unwrap().to_owned()
}

#[test]
fn each_request_of_a_keep_alive_connection_reaches_its_own_tenant() {
    let (a, b) = two_homes();
    let file = std::env::temp_dir().join(format!("realtime-keepalive-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        format!(
            "[[tenants]]\nexternal_id = \"{a}\"\njwt_secret = \"{SECRET_A}\"\n\n\
             [[tenants]]\nexternal_id = \"{b}\"\njwt_secret = \"{SECRET_B}\"\n"
        ),
    )
    .unwrap();
    let srv = Server::start_with_args(&["--config", file.to_str().unwrap()], &[("SHARDS", "2")]);
    let _ = std::fs::remove_file(&file);
    let mut sa = connect(&srv, &a, SECRET_A).unwrap();
    let mut sb = connect(&srv, &b, SECRET_B).unwrap();
    for ws in [&mut sa, &mut sb] {
        assert_eq!(
            ws.join_v2("1", "realtime:room", json!({}))[4]["status"],
            "ok"
        );
    }

    let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(post(&mut s, &a, SECRET_A, "to-a"), "HTTP/1.1 202 Accepted");
    assert_eq!(next_event(&mut sa), "to-a");
    // The same connection, now for the tenant homed on the other shard.
    assert_eq!(post(&mut s, &b, SECRET_B, "to-b"), "HTTP/1.1 202 Accepted");
    assert_eq!(next_event(&mut sb), "to-b");
    // And back.
    assert_eq!(
        post(&mut s, &a, SECRET_A, "a-again"),
        "HTTP/1.1 202 Accepted"
    );
    assert_eq!(next_event(&mut sa), "a-again");
}
