//! One WebSocket client broadcasting in a tight loop: subscribers that read
//! get everything, whether the burst is a few messages near the payload
//! limit or many small ones, and are never closed as slow consumers.

mod support;
use serde_json::json;
use support::*;

/// Sends `msgs` from one client while another reads them back; returns the
/// payload `i` of every broadcast the reader got, in order, and what
/// stopped it early (another frame, EOF or a timeout), if anything.
fn burst(srv: &Server, msgs: Vec<String>) -> (Vec<u64>, Option<Recv>) {
    let t = token("anon", 3600);
    let mut reader = Ws::connect(srv.port, "2.0.0", &t);
    let mut sender = Ws::connect(srv.port, "2.0.0", &t);
    reader.join_v2("1", "realtime:burst", json!({}));
    sender.join_v2("1", "realtime:burst", json!({}));
    let n = msgs.len();
    std::thread::scope(|s| {
        s.spawn(move || {
            for m in &msgs {
                sender.text(m);
            }
            // Keep the sender open until the reader is done.
            sender
        });
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match reader.recv() {
                Recv::Frame(Frame::Text(t)) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    got.push(v[4]["payload"]["i"].as_u64().unwrap());
                }
                other => return (got, Some(other)),
            }
        }
        (got, None)
    })
}

fn broadcast(i: usize, pad: usize) -> String {
    json!(["1", null, "realtime:burst", "broadcast",
        {"type": "broadcast", "event": "e", "payload": {"i": i, "pad": "x".repeat(pad)}}])
    .to_string()
}

#[test]
fn a_reader_keeps_up_with_two_messages_near_the_payload_limit() {
    let srv = Server::start(&[("TENANT_MAX_EVENTS_PER_SECOND", "1000000")]);
    let msgs = (0..2).map(|i| broadcast(i, 2_900_000)).collect();
    let (got, stopped) = burst(&srv, msgs);
    assert_eq!((got, stopped), (vec![0, 1], None));
    assert_eq!(srv.metric("realtime_queue_drops_total"), 0);
}

#[test]
fn a_reader_keeps_up_with_many_small_messages_in_a_tight_loop() {
    let srv = Server::start(&[("TENANT_MAX_EVENTS_PER_SECOND", "1000000")]);
    let n = 20_000;
    let msgs = (0..n).map(|i| broadcast(i, 1000)).collect();
    let (got, stopped) = burst(&srv, msgs);
    assert_eq!(stopped, None, "after {} messages", got.len());
    assert!(got.iter().copied().eq(0..n as u64));
    assert_eq!(srv.metric("realtime_queue_drops_total"), 0);
}
