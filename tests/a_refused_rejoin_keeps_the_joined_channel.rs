//! A second `phx_join` on a joined topic replaces the channel only once the
//! new join has passed every check: a rejoin refused for its token or its
//! config gets its delayed error reply and nothing else, and the channel
//! joined before keeps receiving the topic's broadcasts. A rejoin that
//! passes still closes the old join ref first (PROTOCOL 3.4).

mod support;
use serde_json::json;
use support::*;

const BROADCAST: &str =
    r#"["1","2","realtime:room","broadcast",{"type":"broadcast","event":"e","payload":{"n":1}}]"#;

fn expect_broadcast(ws: &mut Ws) {
    assert_eq!(
        ws.recv_json(),
        json!([null, null, "realtime:room", "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": 1}}]),
        "the channel joined first still receives the topic"
    );
}

#[test]
fn a_rejoin_with_a_bad_token_or_config_leaves_the_channel_working() {
    // One channel per client: a rejoin of the same topic must not count the
    // channel it would replace.
    let srv = Server::start(&[
        ("CHANNEL_ERROR_BACKOFF_MS", "100"),
        ("TENANT_MAX_CHANNELS_PER_CLIENT", "1"),
    ]);
    let t = token("anon", 3600);
    let mut ws = Ws::connect(srv.port, "2.0.0", &t);
    let mut publisher = Ws::connect(srv.port, "2.0.0", &t);
    assert_eq!(
        ws.join_v2("1", "realtime:room", json!({}))[4]["status"],
        "ok"
    );
    assert_eq!(
        publisher.join_v2("1", "realtime:room", json!({}))[4]["status"],
        "ok"
    );

    // A token that is not a JWT: the error reply comes first, with no
    // phx_close of the joined channel before it.
    ws.text(
        &json!(["2", "2", "realtime:room", "phx_join", {"config": {}, "access_token": "garbage"}])
            .to_string(),
    );
    assert_eq!(
        ws.recv_json(),
        json!(["2", "2", "realtime:room", "phx_reply", {"status": "error", "response": {"reason": "MalformedJWT: The token provided is not a valid JWT"}}])
    );
    publisher.text(BROADCAST);
    expect_broadcast(&mut ws);

    // A config the tenant cannot serve (a private channel without a tenant
    // database) is refused the same way.
    ws.text(
        &json!(["3", "3", "realtime:room", "phx_join", {"config": {"private": true}}]).to_string(),
    );
    assert_eq!(
        ws.recv_json(),
        json!(["3", "3", "realtime:room", "phx_reply", {"status": "error", "response": {"reason": "UnableToConnectToProject: Realtime was unable to connect to the project database"}}])
    );
    publisher.text(BROADCAST);
    expect_broadcast(&mut ws);

    // A good rejoin replaces the live channel: its join ref is closed, then
    // the new join is answered, within the one-channel limit.
    ws.text(&json!(["4", "4", "realtime:room", "phx_join", {"config": {}}]).to_string());
    assert_eq!(
        ws.recv_json(),
        json!(["1", "1", "realtime:room", "phx_close", {}])
    );
    assert_eq!(
        ws.recv_json(),
        json!(["4", "4", "realtime:room", "phx_reply", {"status": "ok", "response": {"postgres_changes": []}}])
    );
    publisher.text(BROADCAST);
    expect_broadcast(&mut ws);
}
