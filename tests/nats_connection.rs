//! The cluster's transport against a real nats-server (the Debian package
//! `scripts/install-deps` installs): the handshake, a message published
//! and received through the server with a hostile topic kept to its own
//! subject, the server's keep-alive pings answered, an authorization
//! refusal with the server's own words, a payload over the server's limit
//! refused before it is written, and a server that never answers cut off
//! at the deadline.

mod support;

use std::time::{Duration, Instant};

use realtime::proto::nats::subject;
use realtime::server::deadline::within;
use realtime::server::nats::{NatsConn, NatsConnError};

use support::nats::Nats;

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

const T: Duration = Duration::from_secs(5);

#[test]
fn a_message_goes_through_the_server_to_its_own_subject_only() {
    let nats = Nats::start("");
    let addr = nats.addr;
    run(move || async move {
        let mut sub = NatsConn::connect(addr, "sub", T).await.unwrap();
        let mut publ = NatsConn::connect(addr, "pub", T).await.unwrap();
        assert!(!sub.server_id.is_empty());
        let hostile = subject("rt.b", &[b"tenant", b"room.*"]);
        let other = subject("rt.b", &[b"tenant", b"room"]);
        sub.subscribe(hostile.as_bytes(), None, 1).unwrap();
        sub.subscribe(b"rt.b._tenant._room", None, 2).unwrap();
        // The subscriptions are in place once the server answered a ping
        // sent after them.
        sub.round_trip().await.unwrap();
        publ.publish(other.as_bytes(), None, b"plain").unwrap();
        publ.publish(hostile.as_bytes(), Some(b"_INBOX.x"), b"hostile")
            .unwrap();
        publ.flush().await.unwrap();
        let first = within(T, sub.next()).await.unwrap().unwrap();
        assert_eq!((&first.subject[..], first.sid), (other.as_bytes(), 2));
        assert_eq!(&first.payload[..], b"plain");
        let second = within(T, sub.next()).await.unwrap().unwrap();
        assert_eq!((&second.subject[..], second.sid), (hostile.as_bytes(), 1));
        assert_eq!(second.reply.as_deref(), Some(&b"_INBOX.x"[..]));
        assert_eq!(&second.payload[..], b"hostile");
        // Nothing else: `room.*` did not reach `room`'s subscription.
        assert!(within(Duration::from_millis(200), sub.next())
            .await
            .is_none());
    });
}

#[test]
fn the_servers_keep_alive_pings_are_answered() {
    // Unanswered, two pings 100 ms apart close the connection as stale.
    let nats = Nats::start("ping_interval: \"100ms\"\nping_max: 2");
    let addr = nats.addr;
    run(move || async move {
        let mut sub = NatsConn::connect(addr, "sub", T).await.unwrap();
        sub.subscribe(b"alive", None, 1).unwrap();
        sub.round_trip().await.unwrap();
        // A second of pings, each answered inside `next`.
        assert!(within(Duration::from_secs(1), sub.next()).await.is_none());
        let mut publ = NatsConn::connect(addr, "pub", T).await.unwrap();
        publ.publish(b"alive", None, b"still here").unwrap();
        publ.flush().await.unwrap();
        let m = within(T, sub.next()).await.unwrap().unwrap();
        assert_eq!(&m.payload[..], b"still here");
    });
}

#[test]
fn a_refusal_and_a_payload_over_the_limit_are_exact_errors() {
    let nats = Nats::start("authorization { user: a, password: b }\nmax_payload: 1000");
    let addr = nats.addr;
    run(move || async move {
        match NatsConn::connect(addr, "no-credentials", T).await {
            Err(NatsConnError::Refused(e)) => assert_eq!(e, "Authorization Violation"),
            Err(e) => panic!("expected a refusal, got {e}"),
            Ok(_) => panic!("expected a refusal, got a connection"),
        }
    });
    let open = Nats::start("max_payload: 1000");
    let addr = open.addr;
    run(move || async move {
        let mut c = NatsConn::connect(addr, "big", T).await.unwrap();
        assert_eq!(c.max_payload(), 1000);
        match c.publish(b"big", None, &[b'x'; 1001]) {
            Err(NatsConnError::TooLarge {
                len: 1001,
                max: 1000,
            }) => {}
            other => panic!("{other:?}"),
        }
        c.publish(b"big", None, &[b'x'; 1000]).unwrap();
        c.flush().await.unwrap();
    });
}

#[test]
fn a_server_that_never_answers_is_cut_off_at_the_deadline() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    run(move || async move {
        let started = Instant::now();
        match NatsConn::connect(addr, "x", Duration::from_millis(300)).await {
            Err(NatsConnError::Timeout(what)) => assert_eq!(what, "the handshake"),
            Err(e) => panic!("expected a timeout, got {e}"),
            Ok(_) => panic!("expected a timeout, got a connection"),
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
    });
    drop(silent);
}
