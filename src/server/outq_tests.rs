//! The write queue against a real loopback socket: what the peer reads is
//! the exact frame sequence, including when the kernel buffer fills and
//! the queue is cut for a slow consumer.

use std::io::Read;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::proto::ws::{self, OpCode};

/// Runs `f` on a glommio executor with a connected pair: the server side
/// as a queue's stream, the peer as a blocking std socket.
fn with_pair(f: impl FnOnce(SharedStream, std::net::TcpStream) + Send + 'static) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            // SAFETY: `into_raw_fd` gives up the std stream's ownership, so
            // the glommio stream is the descriptor's only owner.
            let server = unsafe {
                use std::os::fd::{FromRawFd, IntoRawFd};
                glommio::net::TcpStream::from_raw_fd(server.into_raw_fd())
            };
            f(SharedStream::new(server), peer);
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Splits unmasked server frames into (opcode, payload); panics on a torn
/// frame, which is exactly what these tests must never see.
fn frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        let op = wire[0] & 0x0f;
        let (len, head) = match wire[1] & 0x7f {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        assert!(
            wire.len() >= head + len,
            "torn frame at the end of the stream"
        );
        out.push((op, wire[head..head + len].to_vec()));
        wire = &wire[head + len..];
    }
    out
}

fn read_to_eof(mut peer: std::net::TcpStream) -> Vec<u8> {
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all = Vec::new();
    peer.read_to_end(&mut all).unwrap();
    all
}

/// Blocks until the kernel says `fd` takes more bytes (the peer read some),
/// instead of retrying on a clock; panics after 10 s.
fn wait_writable(fd: std::os::fd::RawFd) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and the count says one.
    let n = unsafe { libc::poll(&mut p, 1, 10_000) };
    assert_eq!(n, 1, "the socket never became writable");
}

fn frame(i: usize, size: usize) -> Bytes {
    let mut p = format!("{i:08}").into_bytes();
    p.resize(size, b'x');
    ws::server_frame(OpCode::Binary, &p)
}

#[test]
fn pushes_list_the_queue_once_and_one_flush_writes_them_all() {
    with_pair(|stream, peer| {
        let q = OutQueue::new(1 << 20, stream, &Rc::default());
        for i in 0..3 {
            q.push(frame(i, 10));
        }
        let listed = q.writers.queues.borrow().len();
        assert_eq!(listed, 1, "listed once however many frames arrive");
        let mut tally = WriteTally::default();
        assert_eq!(q.flush_now(&mut tally), Flushed::Empty);
        assert_eq!(tally.frames, 3);
        assert_eq!(q.queued_bytes(), 0);
        assert!(q.queue.borrow().capacity() > 0);
        q.trim();
        assert_eq!(
            q.queue.borrow().capacity(),
            0,
            "an empty queue trims to nothing"
        );
        q.writers.queues.borrow_mut().clear();
        q.close_with(1000, CloseReason::Peer);
        assert_eq!(
            q.flush_now(&mut tally),
            Flushed::Dead,
            "closing queue shuts down"
        );
        let got = frames(&read_to_eof(peer));
        assert_eq!(got.len(), 4);
        assert_eq!(&got[1].1[..8], b"00000001");
        assert_eq!(got[3].0, 0x8, "close frame last");
        assert_eq!(&got[3].1, &1000u16.to_be_bytes());
    });
}

#[test]
fn a_full_socket_blocks_and_a_slow_consumer_cut_keeps_frame_boundaries() {
    with_pair(|stream, peer| {
        // A small send buffer and a peer that does not read yet.
        let fd = stream.fd();
        let small: libc::c_int = 4096;
        // SAFETY: setsockopt with a valid int option on an open socket.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&small as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        // Without the small buffer the queue would never fill: the test
        // would pass without testing anything.
        assert_eq!(rc, 0, "SO_SNDBUF: {}", std::io::Error::last_os_error());
        let limit = 2 << 20;
        let q = OutQueue::new(limit, stream, &Rc::default());
        let mut tally = WriteTally::default();
        let mut i = 0;
        let blocked = loop {
            q.push(frame(i, 1000));
            i += 1;
            let r = q.flush_now(&mut tally);
            if r == Flushed::Blocked {
                break i;
            }
            assert_eq!(r, Flushed::Empty);
            assert!(i < 100_000, "the socket never filled");
        };
        q.listing.set(Listing::Blocked);
        // Overflow the bound: everything unsent goes, except the frame the
        // socket may be half way through.
        while q.state() == OutState::Open {
            q.push(frame(i, 1000));
            i += 1;
        }
        assert_eq!(q.state(), OutState::Closing);
        assert_eq!(q.queue.borrow().len(), 2, "partial front + close frame");
        // Drain: the peer reads, the queue writes on until it dies.
        let reader = std::thread::spawn(move || read_to_eof(peer));
        loop {
            match q.flush_now(&mut tally) {
                Flushed::Dead => break,
                Flushed::Blocked => wait_writable(fd),
                Flushed::Empty => panic!("a closing queue dies once empty"),
            }
        }
        let got = frames(&reader.join().unwrap());
        assert_eq!(got.len(), blocked + 1);
        for (n, (op, payload)) in got[..blocked].iter().enumerate() {
            assert_eq!(*op, 0x2);
            assert_eq!(&payload[..8], format!("{n:08}").as_bytes());
        }
        let (op, payload) = &got[blocked];
        assert_eq!(*op, 0x8);
        assert_eq!(&payload[..], &1008u16.to_be_bytes());
        q.writers.queues.borrow_mut().clear();
    });
}

#[test]
fn a_killed_queue_drops_frames_and_the_peer_sees_eof() {
    with_pair(|stream, peer| {
        let q = OutQueue::new(1 << 20, stream, &Rc::default());
        q.push(frame(0, 10));
        q.kill();
        assert_eq!(q.state(), OutState::Dead);
        q.push(frame(1, 10));
        assert!(q.is_empty());
        let mut tally = WriteTally::default();
        assert_eq!(q.flush_now(&mut tally), Flushed::Dead);
        assert_eq!(tally.frames, 0);
        assert!(read_to_eof(peer).is_empty());
        q.writers.queues.borrow_mut().clear();
    });
}

#[test]
fn an_idle_queue_fits_a_128_byte_allocation() {
    // Every connection holds one, inside an `Rc` (two counters more): keep
    // it within jemalloc's 128-byte class.
    assert!(
        std::mem::size_of::<OutQueue>() + 16 <= 128,
        "OutQueue is {} bytes",
        std::mem::size_of::<OutQueue>()
    );
}

/// A waker that counts its wakes.
struct CountWakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountWakes {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn counting_waker() -> (std::sync::Arc<CountWakes>, Waker) {
    let c = std::sync::Arc::new(CountWakes(0.into()));
    (c.clone(), Waker::from(c))
}

fn wakes(c: &CountWakes) -> usize {
    c.0.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn the_bound_is_on_the_backlog_so_an_empty_queue_takes_any_frame() {
    with_pair(|stream, peer| {
        let q = OutQueue::new(1000, stream, &Rc::default());
        assert!(q.has_room(5000));
        q.push(frame(0, 5000));
        assert_eq!(
            q.state(),
            OutState::Open,
            "a reader with nothing pending keeps up"
        );
        assert!(!q.has_room(1));
        q.push(frame(1, 1));
        assert_eq!(
            q.state(),
            OutState::Closing,
            "a backlog over the bound is a slow reader"
        );
        assert!(
            q.has_room(1 << 30),
            "a closing queue drops pushes: always room"
        );
        drop(peer);
        q.writers.queues.borrow_mut().clear();
    });
}

#[test]
fn a_producer_waiting_for_room_is_woken_once_the_queue_drains_or_dies() {
    with_pair(|stream, peer| {
        let q = OutQueue::new(4096, stream, &Rc::default());
        q.push(frame(0, 3000));
        let (count, waker) = counting_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(q.poll_room(3000, &mut cx).is_pending());
        assert!(q.poll_room(3000, &mut cx).is_pending());
        assert!(q.poll_room(1000, &mut cx).is_ready(), "1000 more bytes fit");
        let mut tally = WriteTally::default();
        assert_eq!(q.flush_now(&mut tally), Flushed::Empty);
        assert_eq!(wakes(&count), 1, "woken once, however often it polled");
        assert!(q.poll_room(3000, &mut cx).is_ready());
        assert!(q.writers.room.borrow().is_empty(), "no waiter left behind");

        q.push(frame(1, 3000));
        assert!(q.poll_room(3000, &mut cx).is_pending());
        q.kill();
        assert_eq!(wakes(&count), 2, "a dead queue frees its waiters");
        assert!(q.poll_room(3000, &mut cx).is_ready());
        assert!(q.writers.room.borrow().is_empty());
        drop(peer);
        q.writers.queues.borrow_mut().clear();
    });
}
