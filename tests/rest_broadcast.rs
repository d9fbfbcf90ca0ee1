//! REST broadcast reaches socket subscribers: the batch endpoint as a JSON
//! broadcast, the single endpoint as a user broadcast (kind 4 to v2), with
//! the Elixir server's auth and content-type answers.

mod support;
use serde_json::json;
use support::*;

#[test]
fn batch_and_single_reach_sockets() {
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    let mut v2 = Ws::connect(srv.port, "2.0.0", &t);
    let mut v1 = Ws::connect(srv.port, "1.0.0", &t);
    v2.join_v2("1", "realtime:news", json!({}));
    v1.text(r#"{"topic":"realtime:news","event":"phx_join","payload":{"config":{}},"ref":"1"}"#);
    v1.recv_json();
    let auth = format!("Bearer {t}");
    let body =
        json!({"messages": [{"topic": "news", "event": "flash", "payload": {"a": 1}}]}).to_string();
    let (s, head, _) = srv.http(
        "POST",
        "/api/broadcast?apikey=x&vsn=2.0.0",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(s, 202);
    assert!(
        head.to_ascii_lowercase().contains("x-rate-limit:"),
        "{head}"
    );
    assert_eq!(
        v2.recv_json(),
        json!([null, null, "realtime:news", "broadcast", {"payload": {"a": 1}, "event": "flash", "type": "broadcast"}])
    );
    assert_eq!(v1.recv_json()["payload"]["event"], "flash");

    let (s, _, _) = srv.http(
        "POST",
        "/api/broadcast/news/events/ping",
        &[("apikey", &t), ("content-type", "application/json")],
        br#"{"n":2}"#,
    );
    assert_eq!(s, 202);
    let mut want = vec![4u8, 13, 4, 0, 1];
    want.extend_from_slice(br#"realtime:newsping{"n":2}"#);
    assert_eq!(v2.expect_frame(), Frame::Binary(want));
    assert_eq!(
        v1.recv_json()["payload"],
        json!({"event": "ping", "payload": {"n": 2}, "type": "broadcast"})
    );
}

#[test]
fn rest_errors_are_exact() {
    let srv = Server::start(&[]);
    let body = json!({"messages": [{"topic": "news", "event": "e", "payload": {}}]}).to_string();
    let (s, _, b) = srv.http(
        "POST",
        "/api/broadcast",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(
        (s, String::from_utf8(b).unwrap()),
        (401, r#"{"message":"Unauthorized"}"#.into())
    );
    let t = token("anon", 3600);
    let (s, _, b) = srv.http(
        "POST",
        "/api/broadcast/news/events/e",
        &[("apikey", &t), ("content-type", "text/plain")],
        b"hi",
    );
    assert_eq!(s, 415);
    assert_eq!(
        String::from_utf8(b).unwrap(),
        r#"{"error":"Unsupported Media Type. Use application/json or application/octet-stream"}"#
    );
}

#[test]
fn the_gateway_prefixed_rest_path_is_served() {
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    let mut ws = Ws::connect(srv.port, "2.0.0", &t);
    ws.join_v2("1", "realtime:gw", json!({}));
    let body = json!({"messages": [{"topic": "gw", "event": "e", "payload": {}}]}).to_string();
    let (s, _, _) = srv.http(
        "POST",
        "/realtime/v1/api/broadcast",
        &[("apikey", &t), ("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(s, 202);
    assert_eq!(ws.recv_json()[4]["event"], "e");
    let (s, _, _) = srv.http(
        "POST",
        "/realtime/v1/api/broadcast/gw/events/x",
        &[("apikey", &t)],
        b"{}",
    );
    assert_eq!(s, 202);
}
