//! Servers joined by a real nats-server (`NATS_URL`) act as one for
//! Broadcast: a client on one node receives what is sent on another, once
//! and in the publisher's order, in its own wire form, whether sent over a
//! socket or REST. A join answered hears the next message from any node,
//! even when its subscription reaches NATS late. A topic name holding NATS
//! wildcards or separators reaches only its own subscribers. A nats-server
//! restarted under load is rejoined without restarting the nodes, each
//! node serving its own sockets meanwhile.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::nats::{until_connected, Nats};
use support::*;

/// `n` nodes on `nats`, each connected on every shard.
fn cluster(nats: &Nats, n: usize) -> Vec<Server> {
    let url = nats.url();
    let nodes: Vec<Server> = (0..n)
        .map(|i| Server::start(&[("NATS_URL", &url), ("NODE_NAME", &format!("node-{i}"))]))
        .collect();
    for node in &nodes {
        until_connected(node, true);
    }
    nodes
}

fn bcast(topic: &str, jr: &str, r: &str, n: i64) -> String {
    json!([jr, r, topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": n}}])
        .to_string()
}

fn v2_got(topic: &str, n: i64) -> Value {
    json!([null, null, topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": n}}])
}

fn v1_got(topic: &str, n: i64) -> Value {
    json!({"event": "broadcast", "payload": {"type": "broadcast", "event": "e", "payload": {"n": n}}, "ref": null, "topic": topic})
}

#[test]
fn broadcasts_cross_nodes_once_in_order_with_self_ack_and_rest() {
    let nats = Nats::start("");
    let nodes = cluster(&nats, 3);
    let t = token("anon", 3600);
    let topic = "realtime:room";
    let mut sender = Ws::connect(nodes[0].port, "2.0.0", &t);
    sender.join_v2(
        "1",
        topic,
        json!({"broadcast": {"self": false, "ack": true}}),
    );
    // On the sender's node too: it has the messages between shards and
    // must skip NATS's copy of them.
    let mut near = Ws::connect(nodes[0].port, "2.0.0", &t);
    near.join_v2("1", topic, json!({}));
    let mut b = Ws::connect(nodes[1].port, "2.0.0", &t);
    b.join_v2("1", topic, json!({}));
    let mut c1 = Ws::connect(nodes[2].port, "1.0.0", &t);
    c1.text(
        &json!({"topic": topic, "event": "phx_join", "payload": {"config": {}}, "ref": "1"})
            .to_string(),
    );
    assert_eq!(c1.recv_json()["payload"]["status"], "ok");
    // Joined last, and sent to at once: its join reply means it hears.
    let mut c2 = Ws::connect(nodes[2].port, "2.0.0", &t);
    c2.join_v2("1", topic, json!({}));

    let n = 300;
    for i in 0..n {
        sender.text(&bcast(topic, "1", &format!("m{i}"), i));
    }
    for i in 0..n {
        assert_eq!(
            sender.recv_json(),
            json!(["1", format!("m{i}"), topic, "phx_reply", {"status": "ok", "response": {}}]),
            "acks only: self is false"
        );
        assert_eq!(near.recv_json(), v2_got(topic, i), "same node");
        assert_eq!(b.recv_json(), v2_got(topic, i), "second node");
        assert_eq!(c1.recv_json(), v1_got(topic, i), "v1 on the third node");
        assert_eq!(c2.recv_json(), v2_got(topic, i), "v2 on the third node");
    }

    // REST on the second node reaches every node, the sender included.
    let body = json!({"messages": [{"topic": "room", "event": "e", "payload": {"n": -1}}]});
    let (s, _, _) = nodes[1].http(
        "POST",
        "/api/broadcast",
        &[("apikey", &t), ("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(s, 202);
    for ws in [&mut sender, &mut near, &mut b, &mut c2] {
        assert_eq!(ws.recv_json(), v2_got(topic, -1), "REST from another node");
    }
    assert_eq!(c1.recv_json(), v1_got(topic, -1));

    // And back the other way: the third node's client to the others. Had
    // any copy come twice, it would be read here instead.
    c2.text(&bcast(topic, "1", "z", -2));
    for ws in [&mut sender, &mut near, &mut b] {
        assert_eq!(ws.recv_json(), v2_got(topic, -2), "exactly once, in order");
    }
    assert_eq!(c1.recv_json(), v1_got(topic, -2));
    assert!(nodes[0].metric("realtime_nats_published_total") >= n);
    assert!(nodes[2].metric("realtime_nats_delivered_total") >= n);
}

#[test]
fn topic_names_with_nats_wildcards_reach_only_their_own_subscribers() {
    let nats = Nats::start("");
    let nodes = cluster(&nats, 2);
    let t = token("anon", 3600);
    let names = [
        "realtime:room",
        "realtime:room.*",
        "realtime:room.>",
        "realtime:room.a",
        "realtime:*",
        "realtime:>",
        "realtime:room a",
        "realtime:_room",
        "realtime:%5Froom",
    ];
    let mut subs: Vec<Ws> = names
        .iter()
        .map(|topic| {
            let mut ws = Ws::connect(nodes[1].port, "2.0.0", &t);
            ws.join_v2("1", topic, json!({}));
            ws
        })
        .collect();
    let mut publisher = Ws::connect(nodes[0].port, "2.0.0", &t);
    for (i, topic) in names.iter().enumerate() {
        publisher.join_v2(&i.to_string(), topic, json!({}));
    }
    // Each topic's message, then each topic's end, from one socket (one
    // order): a subscriber that got another topic's message reads it
    // before its own end.
    for round in [0, 1] {
        for (i, topic) in names.iter().enumerate() {
            publisher.text(&bcast(topic, &i.to_string(), "r", round * 100 + i as i64));
        }
    }
    for (i, (topic, ws)) in names.iter().zip(&mut subs).enumerate() {
        assert_eq!(ws.recv_json(), v2_got(topic, i as i64), "{topic}");
        assert_eq!(
            ws.recv_json(),
            v2_got(topic, 100 + i as i64),
            "{topic}: its own only"
        );
    }
}

#[test]
fn a_restarted_nats_server_is_rejoined_and_each_node_serves_alone_meanwhile() {
    let mut nats = Nats::start("");
    let nodes = cluster(&nats, 2);
    let t = token("anon", 3600);
    let topic = "realtime:outage";
    let mut local = Ws::connect(nodes[0].port, "2.0.0", &t);
    local.join_v2("1", topic, json!({}));
    let mut far = Ws::connect(nodes[1].port, "2.0.0", &t);
    far.join_v2("1", topic, json!({}));
    let mut publisher = Ws::connect(nodes[0].port, "2.0.0", &t);
    publisher.join_v2("1", topic, json!({}));
    publisher.text(&bcast(topic, "1", "a", 0));
    assert_eq!(local.recv_json(), v2_got(topic, 0));
    assert_eq!(far.recv_json(), v2_got(topic, 0));

    nats.stop();
    for node in &nodes {
        until_connected(node, false);
    }
    // Alone, the node still serves its own sockets.
    publisher.text(&bcast(topic, "1", "b", 1));
    assert_eq!(local.recv_json(), v2_got(topic, 1), "served alone");
    assert!(nodes[0].metric("realtime_nats_drops_total") >= 1);

    nats.restart();
    for node in &nodes {
        until_connected(node, true);
    }
    // Interest comes back without a rejoin: keep publishing until the far
    // node hears, then every later message arrives in order.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut next = 2;
    let first = loop {
        publisher.text(&bcast(topic, "1", "c", next));
        assert_eq!(local.recv_json(), v2_got(topic, next));
        next += 1;
        if let Recv::Frame(Frame::Text(f)) = far.recv_for(50) {
            break serde_json::from_str::<Value>(&f).unwrap()[4]["payload"]["n"]
                .as_i64()
                .unwrap();
        }
        assert!(Instant::now() < deadline, "the far node never heard again");
    };
    assert!(first >= 2, "nothing from the outage arrives late");
    for i in next..next + 100 {
        publisher.text(&bcast(topic, "1", "d", i));
    }
    for i in first + 1..next + 100 {
        assert_eq!(
            far.recv_json(),
            v2_got(topic, i),
            "in order after the restart"
        );
    }
}

#[test]
fn a_join_answered_hears_the_next_message_even_over_a_slow_link_to_nats() {
    let nats = Nats::start("");
    let nodes = cluster(&nats, 2);
    let t = token("anon", 3600);
    // Its subscription reaches nats-server late (fault hook): the join
    // reply must wait for it, or the message below is lost.
    let topic = "realtime:__slow_subscribe__";
    let mut publisher = Ws::connect(nodes[0].port, "2.0.0", &t);
    publisher.join_v2("1", topic, json!({}));
    let mut late = Ws::connect(nodes[1].port, "2.0.0", &t);
    late.join_v2("1", topic, json!({}));
    publisher.text(&bcast(topic, "1", "a", 1));
    assert_eq!(late.recv_json(), v2_got(topic, 1));
}
