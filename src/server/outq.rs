//! The bounded write queue of one socket, and the shard's flusher that
//! writes every queue.
//!
//! Fan-out pushes shared frames (`Bytes` clones) here and never waits. A
//! queue that receives a frame while idle puts itself on the shard's flush
//! list; one flusher task per shard walks that list and writes each socket's
//! frames with a single vectored `sendmsg` straight from the shared buffers
//! (no copy, no task per connection). Only a socket whose kernel buffer is
//! full gets a task of its own, which waits for it to drain and exits.
//!
//! A queue that grows past its byte bound marks the socket as a slow
//! consumer: the queue is dropped and the socket closed, so one slow reader
//! never holds memory without bound or slows anyone else. The bound is on
//! the backlog a frame joins: an empty queue takes any frame, since a
//! reader with nothing pending is keeping up whatever the frame's size.
//! A producer that can afford to wait (the REST API) asks for room first
//! ([`OutQueue::poll_room`]) instead of overflowing a queue that is still
//! being written.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

use bytes::{Buf, Bytes};
use futures_lite::io::AsyncWrite;
use realtime_shards::ShardStats;

use super::connection::SharedStream;
use super::ShardState;
use crate::proto::ws;
use crate::realtime::hub::Outbound;

/// Lifecycle of the write side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// Frames flow.
    Open,
    /// A close frame is queued; flush and shut the socket.
    Closing,
    /// The socket is gone; pushes are dropped.
    Dead,
}

/// Who is responsible for writing a queue's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    /// Nothing queued, or nobody needs to act yet.
    Idle,
    /// On the shard's flush list.
    Listed,
    /// The kernel buffer was full; a drain task owns the queue.
    Blocked,
}

/// Iovecs gathered per `sendmsg`.
const MAX_IOV: usize = 64;
/// Bytes gathered per `sendmsg`.
const MAX_SEND: usize = 256 * 1024;

/// A socket's outbound queue, shared by its session, the hub and the flusher.
pub struct OutQueue {
    /// Complete frames waiting to be written; the front one may be partly
    /// written already (its written prefix is cut off).
    queue: RefCell<VecDeque<Bytes>>,
    /// This queue, for putting itself on the flush list.
    me: Weak<OutQueue>,
    /// The socket, held so its descriptor stays valid while frames may be
    /// written to it; dropped when the queue dies.
    stream: Cell<Option<SharedStream>>,
    /// The session task: woken when its reader must stop, and again when
    /// the queue dies (it waits for that at its end).
    waiter: Cell<Option<Waker>>,
    /// Bytes in `queue`.
    queued: Cell<u32>,
    /// Bound on `queued`.
    limit: u32,
    /// The socket's descriptor, -1 once dead.
    fd: Cell<RawFd>,
    /// See [`Listing`].
    listing: Cell<Listing>,
    /// See [`OutState`].
    state: Cell<OutState>,
    /// The client sent a kind-0 frame, so binary kinds 0-2 are safe to send.
    kind0: Cell<bool>,
    /// Why the socket was closed, for the log.
    reason: Cell<&'static str>,
    /// A producer waits in [`ROOM`] for this queue to shrink.
    room_wanted: Cell<bool>,
}

/// What one flush of a queue achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flushed {
    /// Everything was written.
    Empty,
    /// The kernel took less than offered; wait for writability.
    Blocked,
    /// The socket is gone.
    Dead,
}

/// Frames and bytes written, folded into the shard counters by the caller.
#[derive(Debug, Default, Clone, Copy)]
struct WriteTally {
    /// Complete frames written.
    frames: u64,
    /// Bytes written.
    bytes: u64,
}

impl OutQueue {
    /// An empty queue for `stream`, bounded at `limit` bytes. Allocates
    /// nothing more until a frame is pushed.
    pub fn new(limit: usize, stream: SharedStream) -> Rc<Self> {
        let fd = stream.borrow().as_raw_fd();
        Rc::new_cyclic(|me| Self {
            queue: RefCell::new(VecDeque::new()),
            me: me.clone(),
            stream: Cell::new(Some(stream)),
            waiter: Cell::new(None),
            queued: Cell::new(0),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            fd: Cell::new(fd),
            listing: Cell::new(Listing::Idle),
            state: Cell::new(OutState::Open),
            kind0: Cell::new(false),
            reason: Cell::new(""),
            room_wanted: Cell::new(false),
        })
    }

    /// Current state.
    pub fn state(&self) -> OutState {
        self.state.get()
    }

    /// Why the server closed the socket ("" if it did not).
    pub fn reason(&self) -> &'static str {
        self.reason.get()
    }

    /// Records that the client speaks binary kind 0.
    pub fn set_kind0(&self) {
        self.kind0.set(true);
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.queue.borrow().is_empty()
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.queued.get() as usize
    }

    fn wake_waiter(&self) {
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }

    /// Puts the queue on the shard's flush list unless someone already
    /// owns its writing.
    fn schedule(&self) {
        if self.listing.get() == Listing::Idle {
            if let Some(me) = self.me.upgrade() {
                self.listing.set(Listing::Listed);
                enlist(me);
            }
        }
    }

    /// Queues a close frame and stops accepting further frames.
    pub fn close_with(&self, code: u16, reason: &'static str) {
        if self.state.get() != OutState::Open {
            return;
        }
        self.reason.set(reason);
        let frame = ws::close_frame(code, "");
        self.queued
            .set(self.queued.get().saturating_add(frame.len() as u32));
        self.queue.borrow_mut().push_back(frame);
        self.state.set(OutState::Closing);
        self.wake_waiter();
        self.notify_room();
        self.schedule();
    }

    /// The socket is gone or must go now: drop everything queued, shut the
    /// socket down (its reader sees EOF) and let go of it.
    pub fn kill(&self) {
        self.state.set(OutState::Dead);
        self.queue.borrow_mut().clear();
        self.queued.set(0);
        let fd = self.fd.replace(-1);
        if fd >= 0 {
            // SAFETY: shutdown(2) on a descriptor kept open by `stream`,
            // which is released only below.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        self.stream.take();
        self.wake_waiter();
        self.notify_room();
    }

    /// Writes as much as the kernel takes now, with one `sendmsg` per
    /// `MAX_IOV` frames, straight from the shared frame buffers. A closing
    /// queue that empties is shut down.
    fn flush_now(&self, tally: &mut WriteTally) -> Flushed {
        loop {
            let fd = self.fd.get();
            if self.state.get() == OutState::Dead || fd < 0 {
                return Flushed::Dead;
            }
            let sent = {
                let q = self.queue.borrow();
                if q.is_empty() {
                    break;
                }
                // Left uninitialised: zeroing 1 KiB of iovecs per send would
                // cost more than the usual single frame it describes.
                let mut iov = [const { std::mem::MaybeUninit::<libc::iovec>::uninit() }; MAX_IOV];
                let mut n = 0;
                let mut offered = 0;
                for f in q.iter() {
                    if n == MAX_IOV || (n > 0 && offered + f.len() > MAX_SEND) {
                        break;
                    }
                    iov[n].write(libc::iovec {
                        iov_base: f.as_ptr() as *mut libc::c_void,
                        iov_len: f.len(),
                    });
                    offered += f.len();
                    n += 1;
                }
                // SAFETY: the first `n` entries were written above, and
                // MaybeUninit<T> has T's layout.
                let iov =
                    unsafe { std::slice::from_raw_parts(iov.as_ptr().cast::<libc::iovec>(), n) };
                send_iov(fd, iov).map(|sent| (sent, offered))
            };
            match sent {
                Ok((sent, offered)) => {
                    self.consume(sent, tally);
                    if sent < offered {
                        return Flushed::Blocked;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Flushed::Blocked,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.kill();
                    return Flushed::Dead;
                }
            }
        }
        {
            let mut q = self.queue.borrow_mut();
            if q.capacity() > 64 {
                // Give a burst's memory back instead of keeping it per socket.
                *q = VecDeque::new();
            }
        }
        if self.state.get() == OutState::Closing {
            self.kill();
            return Flushed::Dead;
        }
        Flushed::Empty
    }

    /// Drops `n` written bytes from the front of the queue.
    fn consume(&self, mut n: usize, tally: &mut WriteTally) {
        tally.bytes += n as u64;
        self.queued.set(
            self.queued
                .get()
                .saturating_sub(n.try_into().unwrap_or(u32::MAX)),
        );
        let mut q = self.queue.borrow_mut();
        while n > 0 {
            let Some(front) = q.front_mut() else { break };
            if front.len() <= n {
                n -= front.len();
                q.pop_front();
                tally.frames += 1;
            } else {
                front.advance(n);
                n = 0;
            }
        }
        drop(q);
        self.notify_room();
    }

    /// Whether a frame of `len` bytes can be pushed now without closing
    /// the socket as a slow consumer (a queue that is not open drops
    /// pushes, so it has room).
    pub fn has_room(&self, len: usize) -> bool {
        let queued = self.queued.get();
        self.state.get() != OutState::Open
            || queued == 0
            || u64::from(queued) + len as u64 <= u64::from(self.limit)
    }

    /// Resolves once [`OutQueue::has_room`] holds for `len`: when the
    /// flusher has written enough, or the socket is closing or gone.
    pub fn poll_room(&self, len: usize, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.has_room(len) {
            return Poll::Ready(());
        }
        let me: *const OutQueue = self;
        ROOM.with(|r| {
            let mut r = r.borrow_mut();
            if !r
                .iter()
                .any(|(q, l, w)| *q == me && *l == len && w.will_wake(cx.waker()))
            {
                r.push((me, len, cx.waker().clone()));
            }
        });
        self.room_wanted.set(true);
        Poll::Pending
    }

    /// Wakes the producers waiting for room that now have it.
    fn notify_room(&self) {
        if !self.room_wanted.get() {
            return;
        }
        let me: *const OutQueue = self;
        let mut still = false;
        let ready: Vec<Waker> = ROOM.with(|r| {
            let mut r = r.borrow_mut();
            let mut ready = Vec::new();
            r.retain(|(q, len, w)| {
                if *q != me {
                    return true;
                }
                if self.has_room(*len) {
                    ready.push(w.clone());
                    false
                } else {
                    still = true;
                    true
                }
            });
            ready
        });
        self.room_wanted.set(still);
        for w in ready {
            w.wake();
        }
    }

    /// Closes the socket as a slow consumer (1008): what it has not read
    /// is dropped.
    pub fn overflow(&self) {
        if self.state.get() != OutState::Open {
            return;
        }
        self.drop_unsent();
        self.close_with(1008, "outbound queue over its byte bound (slow consumer)");
    }

    /// Releases the buffer of an empty queue (it keeps its capacity between
    /// frames otherwise).
    pub fn trim(&self) {
        let mut q = self.queue.borrow_mut();
        if q.is_empty() && q.capacity() > 0 {
            *q = VecDeque::new();
        }
    }

    /// Drops queued frames, except a front frame a blocked socket may have
    /// partly written: the close frame must start on a frame boundary.
    fn drop_unsent(&self) {
        let mut q = self.queue.borrow_mut();
        let keep = if self.listing.get() == Listing::Blocked {
            q.pop_front()
        } else {
            None
        };
        q.clear();
        self.queued.set(keep.as_ref().map_or(0, |f| f.len() as u32));
        q.extend(keep);
    }

    /// Resolves once the queue is dead (its last frame written, or dropped).
    pub fn poll_settled(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.state.get() == OutState::Dead {
            return Poll::Ready(());
        }
        self.waiter.set(Some(cx.waker().clone()));
        Poll::Pending
    }

    /// Resolves once the reader should stop (closing or dead).
    pub fn poll_stopped(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.state.get() != OutState::Open {
            return Poll::Ready(());
        }
        self.waiter.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Outbound for OutQueue {
    fn push(&self, frame: Bytes) {
        if self.state.get() != OutState::Open {
            return;
        }
        if !self.has_room(frame.len()) {
            // Slow consumer: drop what it has not read and close it.
            self.overflow();
            return;
        }
        let queued = u64::from(self.queued.get()) + frame.len() as u64;
        self.queued.set(u32::try_from(queued).unwrap_or(u32::MAX));
        self.queue.borrow_mut().push_back(frame);
        self.schedule();
    }

    fn has_room(&self, len: usize) -> bool {
        OutQueue::has_room(self, len)
    }

    fn poll_room(&self, len: usize, cx: &mut std::task::Context<'_>) -> Poll<()> {
        OutQueue::poll_room(self, len, cx)
    }

    fn overflow(&self) {
        OutQueue::overflow(self);
    }

    fn speaks_kind0(&self) -> bool {
        self.kind0.get()
    }

    fn close(&self, code: u16) {
        self.close_with(code, "closed by the server");
    }
}

/// One non-blocking vectored send.
fn send_iov(fd: RawFd, iov: &[libc::iovec]) -> std::io::Result<usize> {
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: `msg` points at `iov`, whose buffers are live `Bytes` borrowed
    // for the duration of the call; `fd` is held open by the queue.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// The shard's queues with frames to write.
struct FlushList {
    queues: RefCell<Vec<Rc<OutQueue>>>,
    /// The flusher, parked while the list is empty.
    flusher: Cell<Option<Waker>>,
}

thread_local! {
    /// Producers waiting for room in a queue: (queue, frame length, waker).
    /// Kept per shard rather than per queue so an idle queue pays nothing;
    /// entries go when the queue has room for them or stops being open.
    static ROOM: RefCell<Vec<(*const OutQueue, usize, Waker)>> = const { RefCell::new(Vec::new()) };
    static FLUSH: FlushList = const {
        FlushList {
            queues: RefCell::new(Vec::new()),
            flusher: Cell::new(None),
        }
    };
}

fn enlist(q: Rc<OutQueue>) {
    FLUSH.with(|f| {
        f.queues.borrow_mut().push(q);
        if let Some(w) = f.flusher.take() {
            w.wake();
        }
    });
}

/// Moves the listed queues into `into` (empty), or parks the caller's task
/// until there are some.
fn poll_listed(cx: &mut std::task::Context<'_>, into: &mut Vec<Rc<OutQueue>>) -> Poll<()> {
    FLUSH.with(|f| {
        let mut q = f.queues.borrow_mut();
        if q.is_empty() {
            f.flusher.set(Some(cx.waker().clone()));
            return Poll::Pending;
        }
        std::mem::swap(&mut *q, into);
        Poll::Ready(())
    })
}

/// The shard's flusher: writes every queue put on the flush list, for as
/// long as the shard runs. One `sendmsg` per socket per pass, counters
/// folded in once per pass.
pub async fn flusher(state: Rc<ShardState>) {
    let mut listed = Vec::new();
    loop {
        poll_fn(|cx| poll_listed(cx, &mut listed)).await;
        let mut tally = WriteTally::default();
        for q in listed.drain(..) {
            match q.flush_now(&mut tally) {
                Flushed::Blocked => {
                    q.listing.set(Listing::Blocked);
                    glommio::spawn_local(drain_blocked(state.clone(), q)).detach();
                }
                Flushed::Empty | Flushed::Dead => q.listing.set(Listing::Idle),
            }
        }
        add_tally(&state, tally);
    }
}

/// Owns a queue whose socket buffer filled up: waits until the kernel
/// takes more (through the stream's own readiness), then writes on until
/// the queue is empty or dead.
async fn drain_blocked(state: Rc<ShardState>, q: Rc<OutQueue>) {
    let mut tally = WriteTally::default();
    loop {
        let front = q.queue.borrow().front().cloned();
        let stream = q.stream.take();
        q.stream.set(stream.clone());
        let (Some(stream), Some(front)) = (stream, front) else {
            break;
        };
        let wrote = poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, &front)).await;
        match wrote {
            Ok(n) if n > 0 => q.consume(n, &mut tally),
            _ => {
                q.kill();
                break;
            }
        }
        if q.flush_now(&mut tally) != Flushed::Blocked {
            break;
        }
    }
    q.listing.set(Listing::Idle);
    add_tally(&state, tally);
}

fn add_tally(state: &ShardState, tally: WriteTally) {
    if tally.bytes > 0 {
        let stats = state.stats();
        ShardStats::add(&stats.messages_out, tally.frames);
        ShardStats::add(&stats.bytes_out, tally.bytes);
    }
}

#[cfg(test)]
#[path = "outq_tests.rs"]
mod tests;
