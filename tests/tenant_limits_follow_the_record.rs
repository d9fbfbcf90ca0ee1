//! A tenant's limits come from its record in the control database and
//! follow a change made with the admin API at once, without disconnecting
//! anyone: channels per client, concurrent users and payload size, each
//! with its exact error before and its absence after.

mod support;

use serde_json::json;
use support::control::*;
use support::*;

const SECRET_T: &str = "limits-tenant-secret-of-32-bytes";

fn join(ws: &mut Ws, join_ref: &str, topic: &str) -> serde_json::Value {
    ws.join_v2(
        join_ref,
        topic,
        json!({"broadcast": {"ack": true, "self": false}, "presence": {"enabled": false}}),
    )
}

/// A broadcast of about `bytes` bytes with an ack; the reply.
fn big_broadcast(ws: &mut Ws, join_ref: &str, topic: &str, bytes: usize) -> serde_json::Value {
    let body = "x".repeat(bytes);
    ws.text(
        &json!([join_ref, "b", topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {"b": body}}])
            .to_string(),
    );
    ws.recv_json()
}

fn limits(channels: u32, users: u32, kb: u32) -> serde_json::Value {
    json!({"tenant": {
        "max_channels_per_client": channels,
        "max_concurrent_users": users,
        "max_payload_size_in_kb": kb,
    }})
}

#[test]
fn limits_follow_a_live_change_of_the_tenant_record() {
    let db = ControlDb::create("limits");
    let srv = Server::start_env(&db.env());
    let mut body = tenant_body("lim", SECRET_T);
    body["tenant"]
        .as_object_mut()
        .unwrap()
        .extend(limits(1, 1, 1)["tenant"].as_object().unwrap().clone());
    let (status, _, created) = admin(&srv, "POST", "/api/tenants", Some(body));
    assert_eq!(status, 201, "{created}");

    let mut ws1 = connect(&srv, "lim", SECRET_T).unwrap();
    assert_eq!(join(&mut ws1, "1", "realtime:a")[4]["status"], "ok");
    assert_eq!(
        join(&mut ws1, "2", "realtime:b"),
        json!(["2", "2", "realtime:b", "phx_reply", {"status": "error", "response": {"reason": "ChannelRateLimitReached: Too many channels"}}])
    );
    let (status, body) = connect(&srv, "lim", SECRET_T).err().expect("one user only");
    assert_eq!(
        (status, body.as_str()),
        (429, r#"{"error":"Too many connected users"}"#)
    );
    assert_eq!(
        big_broadcast(&mut ws1, "1", "realtime:a", 2000),
        json!(["1", "b", "realtime:a", "phx_reply", {"status": "error", "response": "payload_size_exceeded"}])
    );

    // Raised: the same socket, still open, gets what it was refused.
    let (status, _, body) = admin(&srv, "PATCH", "/api/tenants/lim", Some(limits(2, 2, 3)));
    assert_eq!(status, 200, "{body}");
    assert_eq!(join(&mut ws1, "3", "realtime:b")[4]["status"], "ok");
    let reply = big_broadcast(&mut ws1, "1", "realtime:a", 2000);
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    let mut ws2 = connect(&srv, "lim", SECRET_T).expect("a second user now");

    // Lowered again: the next join over the new limit is refused.
    assert_eq!(
        admin(&srv, "PATCH", "/api/tenants/lim", Some(limits(1, 2, 3))).0,
        200
    );
    assert_eq!(join(&mut ws2, "1", "realtime:a")[4]["status"], "ok");
    assert_eq!(
        join(&mut ws2, "2", "realtime:b")[4]["response"]["reason"],
        "ChannelRateLimitReached: Too many channels"
    );
}
