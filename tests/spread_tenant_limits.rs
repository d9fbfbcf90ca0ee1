//! A spread tenant's limits hold for the whole tenant, not per shard:
//! users on two shards count against one `max_concurrent_users`, and
//! broadcasts on two shards add up to one events-per-second rate, each
//! refused with the exact error of one shard.

mod support;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn spread(extra: &[(&str, &str)]) -> Server {
    let mut env = vec![("SHARDS", "2"), ("SELF_HOST_TENANT_PLACEMENT", "spread")];
    env.extend_from_slice(extra);
    Server::start(&env)
}

#[test]
fn users_on_two_shards_count_against_one_limit() {
    let srv = spread(&[("TENANT_MAX_CONCURRENT_USERS", "2")]);
    let t = token("anon", 3600);
    let mut a = Ws::connect(srv.port, "2.0.0", &t);
    a.join_v2("1", "realtime:a", json!({}));
    let mut b = Ws::connect(srv.port, "2.0.0", &t);
    b.join_v2("1", "realtime:b", json!({}));
    assert_eq!(
        srv.metric_by_shard("realtime_connections"),
        [1, 1],
        "one user per shard"
    );
    let path = format!("/socket/websocket?apikey={t}&vsn=2.0.0");
    // Whichever shard the third lands on, the tenant already has two.
    for _ in 0..4 {
        let (status, body) = Ws::try_connect(srv.port, &path, "localhost", &[])
            .err()
            .expect("refused");
        assert_eq!(
            (status, body.as_str()),
            (429, r#"{"error":"Too many connected users"}"#)
        );
    }
    // One leaves: a place is free, on whichever shard.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        match Ws::try_connect(srv.port, &path, "localhost", &[]) {
            Ok(ws) => break ws,
            Err((429, _)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("no place after a user left: {e:?}"),
        }
    };
    assert_eq!(c.join_v2("1", "realtime:c", json!({}))[4]["status"], "ok");
}

#[test]
fn broadcasts_on_two_shards_add_up_to_one_rate() {
    // 10 events/s over the first 5 s tick is 50 events: 30 on each shard
    // reach it together, neither alone.
    let srv = spread(&[("TENANT_MAX_EVENTS_PER_SECOND", "10")]);
    let t = token("anon", 3600);
    let mut a = Ws::connect(srv.port, "2.0.0", &t);
    a.join_v2("1", "realtime:a", json!({"broadcast": {"ack": true}}));
    let mut b = Ws::connect(srv.port, "2.0.0", &t);
    b.join_v2("1", "realtime:b", json!({"broadcast": {"ack": true}}));
    assert_eq!(srv.metric_by_shard("realtime_connections"), [1, 1]);
    let send = |ws: &mut Ws, topic: &str, i: usize| {
        ws.text(&json!(["1", format!("{i}"), topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {}}]).to_string());
        ws.recv_json()
    };
    for i in 0..30 {
        assert_eq!(send(&mut a, "realtime:a", i)[4]["status"], "ok");
        assert_eq!(send(&mut b, "realtime:b", i)[4]["status"], "ok");
    }
    // Once the tick has passed, the tenant's average is over the limit on
    // both shards. One probe a second: shard a's own count stays under 50
    // by the first tick, so only the sum of both shards trips it.
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut i = 100;
    let shut = loop {
        let reply = send(&mut a, "realtime:a", i);
        if reply[3] == "system" {
            break reply;
        }
        assert!(Instant::now() < deadline, "never limited");
        i += 1;
        std::thread::sleep(Duration::from_millis(1000));
    };
    assert_eq!(
        shut,
        json!(["1", null, "realtime:a", "system", {"extension": "system", "status": "error", "message": "Too many messages per second", "channel": "a"}])
    );
    let reply = send(&mut b, "realtime:b", 0);
    assert_eq!(
        reply[4]["message"], "Too many messages per second",
        "{reply}"
    );
}
