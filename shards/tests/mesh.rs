//! The shard mesh and the socket handoff between shards, on real executors:
//! every message sent between shards arrives, in order per sender; a sender
//! waits while its queue to a shard is full and goes on as that shard
//! drains it; a message to a shard that has stopped receiving comes back;
//! and a TCP socket accepted on one shard moves as a bare descriptor to
//! another, which reads and writes it.

use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use realtime_shards::{PoolBuilder, Shard};

/// A pool of `n` unpinned shards with little locked memory each (tests run
/// in parallel, and io_uring's locked memory counts per user).
fn pool(n: usize) -> PoolBuilder {
    PoolBuilder::new(n).pin(false).io_memory(256 << 10)
}

#[test]
fn every_message_arrives_in_order_per_sender() {
    const SHARDS: usize = 3;
    const PER_PEER: u32 = 2_000;
    let checked = Arc::new(AtomicUsize::new(0));
    let done = checked.clone();
    // A queue far smaller than the traffic: senders wait for room often.
    pool(SHARDS)
        .mesh_capacity(8)
        .run(move |mut shard: Shard<(usize, u32)>| {
            let done = done.clone();
            async move {
                let me = shard.id;
                let readers: Vec<_> = shard
                    .take_receivers()
                    .into_iter()
                    .map(|rx| {
                        glommio::spawn_local(async move {
                            // One receiver carries one peer's messages.
                            let (from, first) = rx.recv().await.expect("a first message");
                            assert_ne!(from, me);
                            assert_eq!(first, 0, "from shard {from}");
                            for want in 1..PER_PEER {
                                let (f, n) = rx.recv().await.expect("all messages");
                                assert_eq!((f, n), (from, want), "shard {me} from {from}");
                            }
                            from
                        })
                    })
                    .collect();
                assert_eq!(readers.len(), SHARDS - 1);
                for n in 0..PER_PEER {
                    for to in (0..SHARDS).filter(|&to| to != me) {
                        shard.send_to(to, (me, n)).await.expect("peer alive");
                    }
                }
                let mut heard = Vec::new();
                for r in readers {
                    heard.push(r.await);
                }
                heard.sort_unstable();
                let others: Vec<usize> = (0..SHARDS).filter(|&s| s != me).collect();
                assert_eq!(heard, others, "shard {me} heard every peer once");
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    assert_eq!(checked.load(Ordering::SeqCst), SHARDS);
}

#[test]
fn a_sender_waits_while_the_queue_is_full_and_resumes_as_it_drains() {
    const CAPACITY: usize = 4;
    // Shard 1 reads nothing until shard 0 has found the queue full.
    let full = Arc::new(Barrier::new(2));
    let checked = Arc::new(AtomicUsize::new(0));
    let done = checked.clone();
    pool(2)
        .mesh_capacity(CAPACITY)
        .run(move |mut shard: Shard<u32>| {
            let full = full.clone();
            let done = done.clone();
            async move {
                if shard.id == 0 {
                    for n in 0..CAPACITY as u32 {
                        shard.send_to(1, n).await.expect("room for a full queue");
                    }
                    let next = shard.send_to(1, CAPACITY as u32);
                    let mut next = std::pin::pin!(next);
                    let mut cx = Context::from_waker(Waker::noop());
                    assert!(
                        matches!(next.as_mut().poll(&mut cx), Poll::Pending),
                        "a send to a full queue waits"
                    );
                    full.wait();
                    // Shard 1 now drains; the waiting send goes through,
                    // and so do the ones after it.
                    next.await.expect("room once drained");
                    for n in CAPACITY as u32 + 1..100 {
                        shard.send_to(1, n).await.expect("peer alive");
                    }
                } else {
                    let rx = shard.take_receivers().pop().unwrap();
                    full.wait();
                    for want in 0..100 {
                        assert_eq!(rx.recv().await, Some(want));
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    assert_eq!(checked.load(Ordering::SeqCst), 2);
}

#[test]
fn a_message_to_a_shard_that_stopped_receiving_comes_back() {
    let gone = Arc::new(Barrier::new(2));
    let checked = Arc::new(AtomicUsize::new(0));
    let done = checked.clone();
    pool(2)
        .run(move |mut shard: Shard<String>| {
            let gone = gone.clone();
            let done = done.clone();
            async move {
                if shard.id == 1 {
                    drop(shard.take_receivers());
                    gone.wait();
                } else {
                    gone.wait();
                    let back = shard.send_to(1, "hello".to_owned()).await;
                    assert_eq!(back, Err("hello".to_owned()));
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    assert_eq!(checked.load(Ordering::SeqCst), 2);
}

/// What moves between shards in the handoff test.
enum Handoff {
    /// The socket, with the bytes the accepting shard already read.
    Socket(OwnedFd, Vec<u8>),
}

#[test]
fn a_socket_accepted_on_one_shard_is_served_by_another() {
    let (port_tx, port_rx) = std::sync::mpsc::channel::<u16>();
    // The client: a plain blocking socket on its own thread.
    let client = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let port = port_rx.recv().unwrap();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(b"HEAD|").unwrap();
        let mut reply = [0u8; 17];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"shard 1 got HEAD|");
        // Bytes sent after the move are read on the new shard too.
        s.write_all(b"ping").unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"pong from shard 1");
    });
    let checked = Arc::new(AtomicUsize::new(0));
    let done = checked.clone();
    pool(2)
        .run(move |mut shard: Shard<Handoff>| {
            let port_tx = port_tx.clone();
            let done = done.clone();
            async move {
                if shard.id == 0 {
                    let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                    port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                    let mut stream = listener.accept().await.unwrap();
                    let mut head = vec![0u8; 5];
                    stream.read_exact(&mut head).await.unwrap();
                    // Our own handle goes; the duplicate keeps the socket
                    // open for the shard it moves to.
                    // SAFETY: dup of a descriptor this stream holds open.
                    let dup = unsafe { libc::dup(stream.as_raw_fd()) };
                    assert!(dup >= 0, "dup: {}", std::io::Error::last_os_error());
                    drop(stream);
                    drop(listener);
                    // SAFETY: `dup` is a fresh descriptor nobody else owns.
                    let fd = unsafe { OwnedFd::from_raw_fd(dup) };
                    if shard.send_to(1, Handoff::Socket(fd, head)).await.is_err() {
                        panic!("shard 1 is gone");
                    }
                } else {
                    let rx = shard.take_receivers().pop().unwrap();
                    let Some(Handoff::Socket(fd, head)) = rx.recv().await else {
                        panic!("no socket came");
                    };
                    // SAFETY: an open TCP socket this shard now owns alone.
                    let mut stream =
                        unsafe { glommio::net::TcpStream::from_raw_fd(fd.into_raw_fd()) };
                    let mut reply = b"shard 1 got ".to_vec();
                    reply.extend_from_slice(&head);
                    stream.write_all(&reply).await.unwrap();
                    let mut ping = [0u8; 4];
                    stream.read_exact(&mut ping).await.unwrap();
                    assert_eq!(&ping, b"ping");
                    stream.write_all(b"pong from shard 1").await.unwrap();
                    stream.close().await.unwrap();
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    client.join().unwrap();
    assert_eq!(checked.load(Ordering::SeqCst), 2);
}
