//! One tenant on every shard (placement `spread`): sockets stay on the
//! shard they were balanced to, and a broadcast reaches the subscribers of
//! its topic on every shard, once, in the publisher's order, in each
//! subscriber's wire form, with `self` and `ack` as on one shard. A shard
//! receives a topic's messages only while it has subscribers of it.

mod support;
use serde_json::json;
use support::*;

fn spread(shards: &str) -> Server {
    Server::start(&[("SHARDS", shards), ("SELF_HOST_TENANT_PLACEMENT", "spread")])
}

fn v1_join(ws: &mut Ws, topic: &str) {
    ws.text(
        &json!({"topic": topic, "event": "phx_join", "payload": {"config": {}}, "ref": "1"})
            .to_string(),
    );
    assert_eq!(ws.recv_json()["payload"]["status"], "ok");
}

/// The frames a v2 client gets for `n` broadcasts of `{"n": i}`.
fn v2_broadcast(topic: &str, i: usize) -> serde_json::Value {
    json!([null, null, topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": i}}])
}

#[test]
fn broadcasts_reach_every_shard_in_order_with_self_and_ack() {
    let srv = spread("4");
    let t = token("anon", 3600);
    let topic = "realtime:room";
    // Connected one after the other, each joined before the next: the
    // least loaded shard is a different one each time.
    let mut sender = Ws::connect(srv.port, "2.0.0", &t);
    sender.join_v2(
        "1",
        topic,
        json!({"broadcast": {"self": false, "ack": true}}),
    );
    let mut a = Ws::connect(srv.port, "2.0.0", &t);
    a.join_v2("1", topic, json!({}));
    let mut old = Ws::connect(srv.port, "1.0.0", &t);
    v1_join(&mut old, topic);
    let mut b = Ws::connect(srv.port, "2.0.0", &t);
    b.join_v2("1", topic, json!({}));
    assert_eq!(
        srv.metric_by_shard("realtime_connections"),
        [1, 1, 1, 1],
        "one socket per shard"
    );
    let n = 200;
    for i in 0..n {
        sender.text(
            &json!(["1", format!("m{i}"), topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": i}}])
                .to_string(),
        );
    }
    for i in 0..n {
        assert_eq!(a.recv_json(), v2_broadcast(topic, i), "v2 on another shard");
        assert_eq!(b.recv_json(), v2_broadcast(topic, i), "v2 on a third shard");
        assert_eq!(
            old.recv_json(),
            json!({"event": "broadcast", "payload": {"type": "broadcast", "event": "e", "payload": {"n": i}}, "ref": null, "topic": topic}),
            "v1 on the fourth shard"
        );
        assert_eq!(
            sender.recv_json(),
            json!(["1", format!("m{i}"), topic, "phx_reply", {"status": "ok", "response": {}}]),
            "acks only: self is false"
        );
    }
    // Barrier: had the sender been sent its own messages, they would be
    // queued ahead of this one.
    a.text(&json!(["1", "x", topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": -1}}]).to_string());
    assert_eq!(sender.recv_json(), v2_broadcast(topic, 0).tap_n(-1));
    let forwards = srv.metric("realtime_forwards_total");
    assert!(
        forwards >= 3 * n as i64,
        "{forwards} forwards for {n} messages to three other shards"
    );
}

/// Sets `payload.n` of a broadcast frame (for the barrier's `-1`).
trait TapN {
    fn tap_n(self, n: i64) -> serde_json::Value;
}

impl TapN for serde_json::Value {
    fn tap_n(mut self, n: i64) -> serde_json::Value {
        self[4]["payload"]["n"] = json!(n);
        self
    }
}

#[test]
fn rest_and_binary_broadcasts_reach_every_shard() {
    let srv = spread("3");
    let t = token("anon", 3600);
    let topic = "realtime:news";
    let mut subs: Vec<Ws> = (0..2)
        .map(|_| {
            let mut ws = Ws::connect(srv.port, "2.0.0", &t);
            ws.join_v2("1", topic, json!({}));
            ws
        })
        .collect();
    let mut old = Ws::connect(srv.port, "1.0.0", &t);
    v1_join(&mut old, topic);
    assert_eq!(srv.metric_by_shard("realtime_connections"), [1, 1, 1]);
    // REST requests land on whichever shard accepted them and stay there.
    let auth = format!("Bearer {t}");
    for i in 0..20 {
        let body = json!({"messages": [{"topic": "news", "event": "flash", "payload": {"i": i}}]})
            .to_string();
        let (s, _, _) = srv.http(
            "POST",
            "/api/broadcast",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(s, 202);
    }
    for i in 0..20 {
        let want = json!({"type": "broadcast", "event": "flash", "payload": {"i": i}});
        for ws in &mut subs {
            assert_eq!(
                ws.recv_json(),
                json!([null, null, topic, "broadcast", want])
            );
        }
        assert_eq!(old.recv_json()["payload"], want);
    }
    // A kind-3 user broadcast from a v2 socket: kind 4 to the other v2
    // socket, JSON to the v1 one, each encoded once on the sender's shard.
    let mut push = vec![3, 1, 1, topic.len() as u8, 1, 0, 1];
    push.extend_from_slice(b"1r");
    push.extend_from_slice(topic.as_bytes());
    push.extend_from_slice(b"u");
    push.extend_from_slice(br#"{"k":1}"#);
    subs[0].binary(&push);
    let mut kind4 = vec![4, topic.len() as u8, 1, 0, 1];
    kind4.extend_from_slice(topic.as_bytes());
    kind4.extend_from_slice(b"u");
    kind4.extend_from_slice(br#"{"k":1}"#);
    assert_eq!(subs[1].expect_frame(), Frame::Binary(kind4));
    assert_eq!(
        old.recv_json()["payload"],
        json!({"type": "broadcast", "event": "u", "payload": {"k": 1}})
    );
}

#[test]
fn a_shard_gets_a_topic_only_while_it_has_subscribers() {
    let srv = spread("2");
    let t = token("anon", 3600);
    let topic = "realtime:t";
    let mut a = Ws::connect(srv.port, "2.0.0", &t);
    a.join_v2("1", topic, json!({"broadcast": {"ack": true}}));
    let mut b = Ws::connect(srv.port, "2.0.0", &t);
    b.join_v2("1", topic, json!({}));
    assert_eq!(srv.metric_by_shard("realtime_connections"), [1, 1]);
    let send = |a: &mut Ws, i: usize| {
        a.text(&json!(["1", format!("{i}"), topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": i}}]).to_string());
        assert_eq!(a.recv_json()[4]["status"], "ok", "acked");
    };
    send(&mut a, 0);
    assert_eq!(b.recv_json(), v2_broadcast(topic, 0));
    assert_eq!(srv.metric("realtime_forwards_total"), 1);
    // b's shard loses its last subscriber of the topic: nothing crosses.
    b.text(&json!(["1", "2", topic, "phx_leave", {}]).to_string());
    assert_eq!(b.recv_json()[4]["status"], "ok");
    assert_eq!(b.recv_json()[3], "phx_close");
    send(&mut a, 1);
    assert_eq!(
        srv.metric("realtime_forwards_total"),
        1,
        "no subscriber there"
    );
    // Back again: the first subscriber announces itself before its reply.
    b.join_v2("3", topic, json!({}));
    send(&mut a, 2);
    assert_eq!(b.recv_json(), v2_broadcast(topic, 2));
    assert_eq!(srv.metric("realtime_forwards_total"), 2);
}

#[test]
fn home_placement_keeps_a_tenant_on_one_shard() {
    let srv = Server::start(&[("SHARDS", "3"), ("SELF_HOST_TENANT_PLACEMENT", "home")]);
    let t = token("anon", 3600);
    let mut socks: Vec<Ws> = (0..6)
        .map(|_| {
            let mut ws = Ws::connect(srv.port, "2.0.0", &t);
            ws.join_v2("1", "realtime:h", json!({"broadcast": {"self": true}}));
            ws
        })
        .collect();
    let mut per_shard = srv.metric_by_shard("realtime_connections");
    per_shard.sort();
    assert_eq!(per_shard, [0, 0, 6], "all on the home shard");
    socks[0].text(
        r#"["1","2","realtime:h","broadcast",{"type":"broadcast","event":"e","payload":{}}]"#,
    );
    for ws in &mut socks {
        assert_eq!(ws.recv_json()[3], "broadcast");
    }
    assert_eq!(srv.metric("realtime_forwards_total"), 0);
}
