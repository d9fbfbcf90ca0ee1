//! A shard that cannot keep up with what another forwards to it (here it
//! is stalled on purpose by the fault-injection hook) paces the sender
//! for a while (a second at most), and never lets a subscriber go on with
//! a gap: when it stays stalled, once the sender's overflow queue for it
//! is full, messages are dropped and counted, and the stalled shard's
//! subscribers of the topic are closed as slow consumers (1008) after the
//! messages that did arrive, which are a gap-free prefix in order. A
//! shard that is stalled for less than that loses nothing.

mod support;
use serde_json::json;
use support::*;

/// Two shards, the tenant spread, the queue between them as small as
/// allowed.
fn start() -> Server {
    Server::start(&[
        ("SHARDS", "2"),
        ("SELF_HOST_TENANT_PLACEMENT", "spread"),
        ("TENANT_MAX_PAYLOAD_SIZE_IN_KB", "1"),
        // The smallest bound allowed: two largest payloads.
        ("SHARD_QUEUE_BYTES", "2000"),
        ("TENANT_MAX_EVENTS_PER_SECOND", "10000000"),
    ])
}

#[test]
fn a_full_queue_between_shards_closes_the_topics_subscribers_there() {
    let srv = start();
    let t = token("anon", 3600);
    let topic = "realtime:flood";
    let mut sender = Ws::connect(srv.port, "2.0.0", &t);
    sender.join_v2("1", topic, json!({"broadcast": {"self": false}}));
    let mut far = Ws::connect(srv.port, "2.0.0", &t);
    far.join_v2("1", topic, json!({}));
    assert_eq!(srv.metric_by_shard("realtime_connections"), [1, 1]);
    let mut bystander = Ws::connect(srv.port, "2.0.0", &t);
    bystander.join_v2("1", "realtime:other", json!({}));
    // The first message stalls the far shard's thread; the rest pile up
    // behind it in the queue between the shards, then in the sender's
    // overflow queue, then are dropped.
    let n = 3000;
    for i in 0..n {
        let payload = if i == 0 {
            json!({"n": i, "stall": "__stall_shard__"})
        } else {
            json!({"n": i})
        };
        sender.text(&json!(["1", null, topic, "broadcast", {"type": "broadcast", "event": "e", "payload": payload}]).to_string());
    }
    // The sender was held up a second at most: its shard answers.
    sender.text(r#"["1","hb","phoenix","heartbeat",{}]"#);
    assert_eq!(sender.recv_json()[1], "hb");
    let mut got = 0;
    let end = loop {
        match far.recv() {
            Recv::Frame(Frame::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v[4]["payload"]["n"], got, "in order and without a hole");
                got += 1;
            }
            other => break other,
        }
    };
    assert_eq!(
        end,
        Recv::Frame(Frame::Close(Some(1008))),
        "after {got} messages"
    );
    assert!(got > 0 && got < n, "{got} of {n} arrived before the close");
    assert!(srv.metric("realtime_forward_drops_total") > 0);
    assert_eq!(srv.metric("realtime_forward_gap_closes_total"), 1);
    // Other topics were not touched.
    sender.text(&json!(["1", null, "realtime:other", "broadcast", {"type": "broadcast", "event": "e", "payload": {}}]).to_string());
    bystander.text(r#"["1","hb","phoenix","heartbeat",{}]"#);
    assert_eq!(bystander.recv_json()[1], "hb");
}

#[test]
fn a_shard_busy_for_a_moment_paces_the_sender_and_loses_nothing() {
    let srv = start();
    let t = token("anon", 3600);
    let topic = "realtime:burst";
    let mut sender = Ws::connect(srv.port, "2.0.0", &t);
    sender.join_v2("1", topic, json!({"broadcast": {"self": false}}));
    let mut far = Ws::connect(srv.port, "2.0.0", &t);
    far.join_v2("1", topic, json!({}));
    assert_eq!(srv.metric_by_shard("realtime_connections"), [1, 1]);
    // The first message keeps the far shard's thread busy for 300 ms;
    // what follows fills the queue between the shards past half its bound
    // many times over, unless the sender waits for it.
    let n = 3000;
    for i in 0..n {
        let payload = if i == 0 {
            json!({"n": i, "pause": "__pause_shard__"})
        } else {
            json!({"n": i})
        };
        sender.text(&json!(["1", null, topic, "broadcast", {"type": "broadcast", "event": "e", "payload": payload}]).to_string());
    }
    for i in 0..n {
        match far.recv() {
            Recv::Frame(Frame::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v[4]["payload"]["n"], i, "in order and without a hole");
            }
            other => panic!("after {i} messages: {other:?}"),
        }
    }
    assert_eq!(srv.metric("realtime_forward_drops_total"), 0);
    assert_eq!(srv.metric("realtime_forward_gap_closes_total"), 0);
}
