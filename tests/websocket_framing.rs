//! RFC 6455 behaviour at the socket: fragmented messages are reassembled,
//! pings are answered, oversize frames close with 1009, unmasked client
//! frames close with 1002, and a client close is echoed.

mod support;
use serde_json::json;
use support::*;

#[test]
fn fragmented_text_is_reassembled_around_a_ping() {
    let srv = Server::start(&[]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let msg = br#"[null,"1","phoenix","heartbeat",{}]"#;
    ws.send_raw(0x01, &msg[..10]); // text, not FIN
    ws.send_raw(0x89, b"hi"); // ping between fragments
    ws.send_raw(0x00, &msg[10..20]); // continuation
    ws.send_raw(0x80, &msg[20..]); // final continuation
    assert_eq!(ws.expect_frame(), Frame::Pong(b"hi".to_vec()));
    assert_eq!(
        ws.recv_json(),
        json!([null, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}])
    );
}

#[test]
fn oversize_frame_closes_with_1009() {
    let srv = Server::start(&[("WEBSOCKET_MAX_FRAME_SIZE", "2048")]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    ws.send_raw(0x81, &vec![b' '; 4096]);
    assert_eq!(ws.expect_frame(), Frame::Close(Some(1009)));
}

#[test]
fn unmasked_frame_closes_with_1002() {
    use std::io::Write;
    let srv = Server::start(&[]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    ws.s.write_all(&[0x81, 0x02, b'{', b'}']).unwrap();
    assert_eq!(ws.expect_frame(), Frame::Close(Some(1002)));
}

#[test]
fn client_close_is_echoed_and_garbage_is_dropped() {
    let srv = Server::start(&[]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    ws.text("not json at all");
    ws.text(r#"{"an":"object on v2"}"#);
    ws.binary(&[9, 9, 9]);
    ws.text(r#"[null,"2","phoenix","heartbeat",{}]"#);
    assert_eq!(
        ws.recv_json()[1],
        "2",
        "malformed messages are dropped, the socket lives"
    );
    ws.send_raw(0x88, &[0x03, 0xe8]);
    assert_eq!(ws.expect_frame(), Frame::Close(Some(1000)));
    ws.expect_eof();
}

#[test]
fn a_socket_silent_past_the_idle_timeout_is_closed() {
    let srv = Server::start(&[("WEBSOCKET_IDLE_TIMEOUT_MS", "400")]);
    let started = std::time::Instant::now();
    let mut quiet = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let mut chatty = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    // `chatty` talks every 150 ms, well within the timeout, until the
    // server ends `quiet`'s stream (without a close frame, as a read
    // timeout would) or the deadline passes.
    for i in 0.. {
        chatty.text(&format!(r#"[null,"{i}","phoenix","heartbeat",{{}}]"#));
        assert_eq!(chatty.recv_json()[4]["status"], "ok");
        match quiet.recv_for(150) {
            Recv::Eof => break,
            Recv::Timeout => assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "the silent socket was never closed"
            ),
            Recv::Frame(f) => panic!("the silent socket got {f:?}"),
        }
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(400),
        "closed before the idle timeout"
    );
    chatty.text(r#"[null,"x","phoenix","heartbeat",{}]"#);
    assert_eq!(chatty.recv_json()[1], "x", "a socket that talks stays open");
}
