//! Channel tokens and limits: an expiring token shuts its channel down with
//! `Token has expired N seconds ago` then `phx_close`; `access_token` is
//! never answered and a valid one extends the channel's life; bad join
//! tokens and too many channels get their exact delayed reasons; a
//! connection left without channels is dropped by the sweep.

mod support;
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn expired_channel_token_shuts_the_channel_down() {
    let srv = Server::start(&[]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let short = token("authenticated", 2);
    ws.text(
        &json!(["1", "1", "realtime:t", "phx_join", {"config": {}, "access_token": short}])
            .to_string(),
    );
    assert_eq!(ws.recv_json()[4]["status"], "ok");
    let sys = ws.recv_json();
    assert_eq!(sys[3], "system");
    assert_eq!(sys[4]["status"], "error");
    let msg = sys[4]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Token has expired ") && msg.ends_with(" seconds ago"),
        "{msg}"
    );
    assert_eq!(sys[4]["channel"], "t");
    assert_eq!(
        ws.recv_json(),
        json!(["1", "1", "realtime:t", "phx_close", {}])
    );
}

#[test]
fn access_token_refresh_is_silent_and_extends_the_channel() {
    let srv = Server::start(&[]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    ws.text(&json!(["1", "1", "realtime:t", "phx_join", {"config": {"broadcast": {"self": true}}, "access_token": token("anon", 2)}]).to_string());
    assert_eq!(ws.recv_json()[4]["status"], "ok");
    // A control channel whose token expires a second after the first one
    // did: its shutdown is the event that says the first channel's
    // original expiry has come and gone.
    ws.text(&json!(["9", "9", "realtime:control", "phx_join", {"config": {}, "access_token": token("anon", 3)}]).to_string());
    assert_eq!(ws.recv_json()[4]["status"], "ok");
    ws.text(
        &json!(["1", "2", "realtime:t", "access_token", {"access_token": token("anon", 3600)}])
            .to_string(),
    );
    ws.text(
        &json!(["1", "3", "realtime:t", "access_token", {"access_token": "sb_publishable_xyz"}])
            .to_string(),
    );
    ws.text(&json!(["1", "4", "realtime:t", "access_token", {"access_token": null}]).to_string());
    // No reply to access_token and no expiry of `t`: the next frames are
    // the control channel's shutdown.
    let sys = ws.recv_json();
    assert_eq!(
        (&sys[2], &sys[3]),
        (&json!("realtime:control"), &json!("system")),
        "{sys}"
    );
    assert_eq!(
        ws.recv_json(),
        json!(["9", "9", "realtime:control", "phx_close", {}])
    );
    // Barrier: anything `t` was sent before this broadcast would come first.
    ws.text(r#"["1","5","realtime:t","broadcast",{"type":"broadcast","event":"e","payload":{}}]"#);
    let next = ws.recv_json();
    assert_eq!(
        (&next[2], &next[3]),
        (&json!("realtime:t"), &json!("broadcast")),
        "{next}"
    );
    // A bad token shuts the channel with the token error.
    ws.text(
        &json!(["1", "6", "realtime:t", "access_token", {"access_token": "garbage"}]).to_string(),
    );
    assert_eq!(
        ws.recv_json()[4]["message"],
        "The token provided is not a valid JWT"
    );
    assert_eq!(ws.recv_json()[3], "phx_close");
}

#[test]
fn join_errors_are_delayed_and_exact() {
    let srv = Server::start(&[
        ("CHANNEL_ERROR_BACKOFF_MS", "300"),
        ("TENANT_MAX_CHANNELS_PER_CLIENT", "1"),
    ]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let started = Instant::now();
    ws.text(&json!(["1", "1", "realtime:a", "phx_join", {"config": {}, "access_token": token("anon", -5)}]).to_string());
    let r = ws.recv_json();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "join errors wait CHANNEL_ERROR_BACKOFF_MS"
    );
    let reason = r[4]["response"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("InvalidJWTToken: Token has expired "),
        "{reason}"
    );
    ws.join_v2("2", "realtime:a", json!({}));
    let r = ws.join_v2("3", "realtime:b", json!({}));
    assert_eq!(
        r,
        json!(["3", "3", "realtime:b", "phx_reply", {"status": "error", "response": {"reason": "ChannelRateLimitReached: Too many channels"}}])
    );
    let r = ws.join_v2("4", "realtime:c", json!({"private": true}));
    assert_eq!(
        r[4]["status"], "error",
        "private channels need a tenant database: {r}"
    );
}

#[test]
fn duplicate_join_closes_the_old_join_ref() {
    let srv = Server::start(&[]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    ws.join_v2("1", "realtime:d", json!({}));
    ws.text(&json!(["2", "2", "realtime:d", "phx_join", {"config": {}}]).to_string());
    assert_eq!(
        ws.recv_json(),
        json!(["1", "1", "realtime:d", "phx_close", {}])
    );
    assert_eq!(ws.recv_json()[4]["status"], "ok");
}

#[test]
fn connections_left_without_channels_are_dropped() {
    let srv = Server::start(&[("NO_CHANNEL_TIMEOUT_IN_MS", "500")]);
    let t = token("anon", 3600);
    let mut joined_then_left = Ws::connect(srv.port, "2.0.0", &t);
    let mut never_joined = Ws::connect(srv.port, "2.0.0", &t);
    joined_then_left.join_v2("1", "realtime:x", json!({}));
    joined_then_left.text(r#"["1","2","realtime:x","phx_leave",{}]"#);
    joined_then_left.recv_json();
    joined_then_left.recv_json();
    // Dropped without a close frame, within the read timeout (10 s).
    joined_then_left.expect_eof();
    never_joined.text(r#"[null,"1","phoenix","heartbeat",{}]"#);
    assert_eq!(
        never_joined.recv_json()[4]["status"],
        "ok",
        "never-joined sockets are kept"
    );
}
