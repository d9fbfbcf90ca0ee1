//! A REST broadcast larger than a subscriber's write queue reaches the
//! subscribers that read, at their pace, instead of closing them as slow
//! consumers; one that never reads is still closed. The batch endpoint
//! refuses a batch its tenant's events/s budget cannot take, with the
//! Elixir server's 429, and counts what it delivers against that budget.

mod support;
use serde_json::{json, Value};
use support::*;

const TOO_MANY: &str =
    r#"{"message":"Too many messages to broadcast, please reduce the batch size"}"#;

/// Reads frames until `n` data frames arrived; stops early (returning
/// what came, the stopping frame last) on a close frame. The stream ending
/// or going quiet for the read timeout before that fails the test.
fn read_n(ws: &mut Ws, n: usize) -> Vec<Frame> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match ws.recv() {
            Recv::Frame(f @ (Frame::Text(_) | Frame::Binary(_))) => got.push(f),
            Recv::Frame(Frame::Ping(_) | Frame::Pong(_)) => {}
            Recv::Frame(other) => {
                got.push(other);
                break;
            }
            end => panic!("{end:?} after {} data frames of {n}", got.len()),
        }
    }
    got
}

/// The `broadcast` payload of a v1 or v2 text frame.
fn broadcast_payload(f: &Frame) -> Value {
    let Frame::Text(t) = f else {
        panic!("expected a text frame, got {}", describe(f));
    };
    let v: Value = serde_json::from_str(t).unwrap();
    match v {
        Value::Array(mut a) => {
            assert_eq!(a[3], "broadcast");
            a.swap_remove(4)
        }
        Value::Object(mut o) => {
            assert_eq!(o["event"], "broadcast");
            o.remove("payload").unwrap()
        }
        other => panic!("not a phoenix message: {other}"),
    }
}

/// A frame for an assertion message, without megabytes of payload.
fn describe(f: &Frame) -> String {
    match f {
        Frame::Text(t) => format!("text of {} bytes: {:.80}", t.len(), t),
        Frame::Binary(b) => format!("binary of {} bytes", b.len()),
        other => format!("{other:?}"),
    }
}

fn post_json(srv: &Server, path: &str, token: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    srv.http(
        "POST",
        path,
        &[("apikey", token), ("content-type", "application/json")],
        body,
    )
}

fn batch_of(topic: &str, n: usize) -> Vec<u8> {
    let messages: Vec<Value> = (0..n)
        .map(|i| json!({"topic": topic, "event": "e", "payload": {"i": i}}))
        .collect();
    json!({ "messages": messages }).to_string().into_bytes()
}

#[test]
fn readers_get_a_rest_batch_larger_than_their_queue() {
    // Two 2.9 MB messages, each under the 3000 kB payload limit, together
    // over the 4 MiB queue bound.
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    let mut v2 = Ws::connect(srv.port, "2.0.0", &t);
    let mut v1 = Ws::connect(srv.port, "1.0.0", &t);
    v2.join_v2("1", "realtime:big", json!({}));
    v1.text(r#"{"topic":"realtime:big","event":"phx_join","payload":{"config":{}},"ref":"1"}"#);
    v1.recv_json();
    let size = 2_900_000;
    let body = json!({"messages": [
        {"topic": "big", "event": "one", "payload": {"p": "a".repeat(size)}},
        {"topic": "big", "event": "two", "payload": {"p": "b".repeat(size)}},
    ]})
    .to_string();
    let (status, got2, got1) = std::thread::scope(|s| {
        let r2 = s.spawn(|| read_n(&mut v2, 2));
        let r1 = s.spawn(|| read_n(&mut v1, 2));
        let (status, _, _) = post_json(&srv, "/api/broadcast", &t, body.as_bytes());
        (status, r2.join().unwrap(), r1.join().unwrap())
    });
    assert_eq!(status, 202);
    for got in [&got2, &got1] {
        let seen: Vec<String> = got.iter().map(describe).collect();
        assert_eq!(got.len(), 2, "{seen:?}");
        for (f, (event, fill)) in got.iter().zip([("one", 'a'), ("two", 'b')]) {
            let p = broadcast_payload(f);
            assert_eq!(p["event"], event, "{seen:?}");
            let text = p["payload"]["p"].as_str().unwrap();
            assert!(
                text.len() == size && text.chars().all(|c| c == fill),
                "{event} arrived damaged"
            );
        }
    }
    assert_eq!(srv.metric("realtime_queue_drops_total"), 0);
}

#[test]
fn a_subscriber_that_never_reads_is_still_closed_and_readers_get_everything() {
    // 7 MB of 30 kB messages against 64 KiB queues: far more than a
    // socket that is not read can take in (its queue plus the kernel's
    // buffers, 4 MiB at most for sending on this host).
    let srv = Server::start(&[
        ("WEBSOCKET_QUEUE_BYTES", "65536"),
        ("TENANT_MAX_PAYLOAD_SIZE_IN_KB", "32"),
        ("TENANT_MAX_EVENTS_PER_SECOND", "1000000"),
        ("REST_QUEUE_WAIT_MS", "300"),
        // Both sockets on the publishing shard, which writes them at the
        // batch's pace: a socket on another shard is written as the
        // forwarded messages come, and the kernel may grow its buffers
        // enough to take the whole batch.
        ("SELF_HOST_TENANT_PLACEMENT", "home"),
    ]);
    let t = token("anon", 3600);
    let mut reader = Ws::connect(srv.port, "2.0.0", &t);
    let mut stalled = Ws::connect(srv.port, "2.0.0", &t);
    reader.join_v2("1", "realtime:flood", json!({}));
    stalled.join_v2("1", "realtime:flood", json!({}));
    let n = 7_000_000 / 30_000;
    let messages: Vec<Value> = (0..n)
        .map(|i| json!({"topic": "flood", "event": "e", "payload": {"i": i, "p": "z".repeat(30_000)}}))
        .collect();
    let body = json!({ "messages": messages }).to_string();
    let (status, got) = std::thread::scope(|s| {
        let r = s.spawn(|| read_n(&mut reader, n));
        let (status, _, _) = post_json(&srv, "/api/broadcast", &t, body.as_bytes());
        (status, r.join().unwrap())
    });
    assert_eq!(status, 202);
    assert_eq!(got.len(), n, "stopped at {}", describe(got.last().unwrap()));
    for (i, f) in got.iter().enumerate() {
        assert_eq!(broadcast_payload(f)["payload"]["i"], i);
    }
    // The socket that never read gets an in-order prefix, then 1008.
    let rest = read_n(&mut stalled, n);
    let last = rest.last().unwrap();
    assert_eq!(describe(last), describe(&Frame::Close(Some(1008))));
    for (i, f) in rest[..rest.len() - 1].iter().enumerate() {
        assert_eq!(broadcast_payload(f)["payload"]["i"], i);
    }
    assert_eq!(srv.metric("realtime_queue_drops_total"), 1);
}

#[test]
fn a_batch_over_the_events_budget_gets_the_429_and_delivers_nothing() {
    // The default budget: 100 events/s, nothing counted yet.
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    let mut ws = Ws::connect(srv.port, "2.0.0", &t);
    ws.join_v2("1", "realtime:many", json!({}));
    for n in [100_000, 101] {
        let (s, head, b) = post_json(&srv, "/api/broadcast", &t, &batch_of("many", n));
        assert_eq!(
            (s, String::from_utf8(b).unwrap().as_str()),
            (429, TOO_MANY),
            "{n} messages"
        );
        // Whole events per second, as the Elixir plug writes them.
        let head = head.to_ascii_lowercase();
        for want in [
            "x-rate-rolling: 0",
            "x-rate-limit: 100",
            "x-rate-limit-remaining: 100",
        ] {
            assert!(head.lines().any(|l| l == want), "{want} in {head}");
        }
    }
    // The batch was refused whole: the next message is the first one in.
    let (s, _, _) = post_json(&srv, "/api/broadcast/many/events/marker", &t, b"{}");
    assert_eq!(s, 202);
    assert_eq!(ws.expect_frame(), {
        let mut want = vec![4u8, 13, 6, 0, 1];
        want.extend_from_slice(b"realtime:manymarker{}");
        Frame::Binary(want)
    });
}

#[test]
fn a_100k_message_batch_within_the_budget_reaches_every_reader() {
    // Every reader paces the batch, on whichever shard it is.
    let srv = Server::start(&[("TENANT_MAX_EVENTS_PER_SECOND", "1000000")]);
    let t = token("anon", 3600);
    let n = 100_000;
    let mut a = Ws::connect(srv.port, "2.0.0", &t);
    let mut b = Ws::connect(srv.port, "1.0.0", &t);
    a.join_v2("1", "realtime:many", json!({}));
    b.text(r#"{"topic":"realtime:many","event":"phx_join","payload":{"config":{}},"ref":"1"}"#);
    b.recv_json();
    let body = batch_of("many", n);
    let (status, got_a, got_b) = std::thread::scope(|s| {
        let ra = s.spawn(|| read_n(&mut a, n));
        let rb = s.spawn(|| read_n(&mut b, n));
        let (status, _, _) = post_json(&srv, "/api/broadcast", &t, &body);
        (status, ra.join().unwrap(), rb.join().unwrap())
    });
    assert_eq!(status, 202);
    for got in [got_a, got_b] {
        assert_eq!(got.len(), n, "stopped at {}", describe(got.last().unwrap()));
        for (i, f) in got.iter().enumerate() {
            assert_eq!(broadcast_payload(f)["payload"]["i"], i, "{}", describe(f));
        }
    }
    assert_eq!(srv.metric("realtime_queue_drops_total"), 0);
}

#[test]
fn a_batch_counts_its_messages_and_deliveries_against_the_budget() {
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    let mut ws = Ws::connect(srv.port, "2.0.0", &t);
    ws.join_v2("1", "realtime:acct", json!({}));
    // 40 messages to one subscriber: 40 events + 40 deliveries.
    let (s, _, _) = post_json(&srv, "/api/broadcast", &t, &batch_of("acct", 40));
    assert_eq!(s, 202);
    for i in 0..40 {
        assert_eq!(ws.recv_json()[4]["payload"]["i"], i);
    }
    // The rolling average moves at the counter's next 5 s tick: watch it
    // through a request that counts nothing (an empty batch is a 422).
    let rolling = || {
        let (s, head, _) = post_json(&srv, "/api/broadcast", &t, br#"{"messages":[]}"#);
        assert_eq!(s, 422);
        head.lines()
            .find_map(|l| {
                let l = l.to_ascii_lowercase();
                l.strip_prefix("x-rate-rolling: ").map(str::to_owned)
            })
            .expect("x-rate-rolling header")
            .parse::<f64>()
            .unwrap() as u64
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let r = loop {
        let r = rolling();
        if r > 0 {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the average never moved"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // 80 events over the ticks finished so far (usually one): 80 / 5 / ticks.
    let ticks = (1..=3u64)
        .find(|k| 80 / (5 * k) == r)
        .unwrap_or_else(|| panic!("x-rate-rolling {r} is not 80 events over 1-3 ticks"));
    let avg = 80.0 / (5.0 * ticks as f64);
    let fits = (100.0 - avg).floor() as usize;
    let (s, _, b) = post_json(&srv, "/api/broadcast", &t, &batch_of("acct", fits + 1));
    assert_eq!((s, String::from_utf8(b).unwrap().as_str()), (429, TOO_MANY));
    let (s, _, _) = post_json(&srv, "/api/broadcast", &t, &batch_of("acct", fits));
    assert_eq!(s, 202);
    assert_eq!(ws.recv_json()[4]["payload"]["i"], 0);
}

#[test]
fn a_single_rest_message_larger_than_the_queue_reaches_a_reader() {
    let srv = Server::start(&[]);
    let t = token("anon", 3600);
    let mut v2 = Ws::connect(srv.port, "2.0.0", &t);
    let mut v1 = Ws::connect(srv.port, "1.0.0", &t);
    v2.join_v2("1", "realtime:one", json!({}));
    v1.text(r#"{"topic":"realtime:one","event":"phx_join","payload":{"config":{}},"ref":"1"}"#);
    v1.recv_json();
    // 2.9 MB under a 4 MiB bound, then a payload of 1 MB by the payload
    // limit's measure whose JSON text (6 MB of escapes) is over the bound.
    let plain = format!(r#"{{"p":"{}"}}"#, "a".repeat(2_900_000));
    let escaped = format!(r#"{{"p":"{}"}}"#, r"\u0001".repeat(1_000_000));
    for body in [plain, escaped] {
        let (got2, got1) = std::thread::scope(|s| {
            let r2 = s.spawn(|| read_n(&mut v2, 1));
            let r1 = s.spawn(|| read_n(&mut v1, 1));
            let (status, _, _) =
                post_json(&srv, "/api/broadcast/one/events/big", &t, body.as_bytes());
            assert_eq!(status, 202);
            (r2.join().unwrap(), r1.join().unwrap())
        });
        let mut want = vec![4u8, 12, 3, 0, 1];
        want.extend_from_slice(b"realtime:onebig");
        want.extend_from_slice(body.as_bytes());
        assert!(
            got2.len() == 1 && got2[0] == Frame::Binary(want),
            "v2 got {}",
            describe(&got2[0])
        );
        let p = broadcast_payload(&got1[0]);
        assert_eq!(p["event"], "big");
        assert_eq!(p["payload"], serde_json::from_str::<Value>(&body).unwrap());
    }
    assert_eq!(srv.metric("realtime_queue_drops_total"), 0);
}

#[test]
fn a_spread_tenants_readers_on_every_shard_are_waited_for() {
    // Two readers on two shards: one of them is not on the tenant's home
    // shard, which publishes REST. Neither reads for a moment while 7 MB
    // of 30 kB messages go out against 64 KiB queues (more than a socket
    // that is not read takes in); each shard waits for its own reader's
    // room rather than close it.
    let srv = Server::start(&[
        ("SHARDS", "2"),
        ("SELF_HOST_TENANT_PLACEMENT", "spread"),
        ("WEBSOCKET_QUEUE_BYTES", "65536"),
        ("TENANT_MAX_PAYLOAD_SIZE_IN_KB", "32"),
        ("TENANT_MAX_EVENTS_PER_SECOND", "1000000"),
        ("REST_QUEUE_WAIT_MS", "10000"),
    ]);
    let t = token("anon", 3600);
    let mut a = Ws::connect(srv.port, "2.0.0", &t);
    let mut b = Ws::connect(srv.port, "2.0.0", &t);
    assert_eq!(srv.metric_by_shard("realtime_connections"), [1, 1]);
    a.join_v2("1", "realtime:flood", json!({}));
    b.join_v2("1", "realtime:flood", json!({}));
    let n = 7_000_000 / 30_000;
    let messages: Vec<Value> = (0..n)
        .map(|i| json!({"topic": "flood", "event": "e", "payload": {"i": i, "p": "z".repeat(30_000)}}))
        .collect();
    let body = json!({ "messages": messages }).to_string();
    // A slow reader: it starts reading only after a while.
    let slow = |ws: &mut Ws| {
        std::thread::sleep(std::time::Duration::from_millis(500));
        read_n(ws, n)
    };
    let (status, got_a, got_b) = std::thread::scope(|s| {
        let ra = s.spawn(|| slow(&mut a));
        let rb = s.spawn(|| slow(&mut b));
        let (status, _, _) = post_json(&srv, "/api/broadcast", &t, body.as_bytes());
        (status, ra.join().unwrap(), rb.join().unwrap())
    });
    assert_eq!(status, 202);
    for got in [got_a, got_b] {
        assert_eq!(got.len(), n, "stopped at {}", describe(got.last().unwrap()));
        for (i, f) in got.iter().enumerate() {
            assert_eq!(broadcast_payload(f)["payload"]["i"], i);
        }
    }
    assert_eq!(srv.metric("realtime_queue_drops_total"), 0);
}
