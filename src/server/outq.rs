//! The bounded write queue of one socket, and the shard's flusher that
//! writes every queue.
//!
//! Fan-out pushes shared frames (`Bytes` clones) here and never waits. A
//! queue that receives a frame while idle puts itself on the shard's flush
//! list ([`Writers`], part of the shard state); one flusher task per shard
//! walks that list and writes each socket's frames with a single vectored
//! `sendmsg` straight from the shared buffers (no copy, no task per
//! connection). Only a socket whose kernel buffer is full gets a task of
//! its own, which waits for it to drain and exits. Which of these writes a
//! socket when is the rule written down in [`super::sock`].
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
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Poll, Waker};

use bytes::{Buf, Bytes};
use realtime_shards::ShardStats;

use super::sock::SharedStream;
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

/// Why a socket was closed, for the log (one byte in every queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed first; the server only answers it.
    Peer,
    /// The client broke the WebSocket protocol.
    ProtocolError,
    /// The queue outgrew its byte bound.
    SlowConsumer,
    /// A handler closed it (token expiry, say).
    Server,
    /// A refused join ends the socket.
    JoinRefused,
    /// The server is draining.
    ShuttingDown,
    /// The connection's handler panicked (1011, see `fault`).
    Panicked,
    /// Its tenant changed or went (1012, see `tenants`).
    TenantChanged,
}

impl CloseReason {
    /// The log text; empty for [`CloseReason::Peer`].
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Peer => "",
            CloseReason::ProtocolError => "websocket protocol error",
            CloseReason::SlowConsumer => "outbound queue over its byte bound (slow consumer)",
            CloseReason::Server => "closed by the server",
            CloseReason::JoinRefused => "join refused; socket disconnected",
            CloseReason::ShuttingDown => "server shutting down",
            CloseReason::Panicked => "handler panicked",
            CloseReason::TenantChanged => "tenant changed or removed",
        }
    }
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

/// A socket's outbound queue, shared by its session, the hub and the flusher.
pub struct OutQueue {
    /// Complete frames waiting to be written; the front one may be partly
    /// written already (its written prefix is cut off).
    queue: RefCell<VecDeque<Bytes>>,
    /// This queue, for putting itself on the flush list.
    me: Weak<OutQueue>,
    /// The shard's flush list and room waiters.
    writers: Rc<Writers>,
    /// The socket, held so its descriptor stays valid while frames may be
    /// written to it; dropped when the queue dies.
    stream: Cell<Option<SharedStream>>,
    /// The reader, waiting for the queue to stop being open.
    stop_waiter: Cell<Option<Waker>>,
    /// The session task's end, waiting for the queue to die.
    settle_waiter: Cell<Option<Waker>>,
    /// Bytes in `queue`.
    queued: Cell<u32>,
    /// Bound on `queued`.
    limit: u32,
    /// See [`Listing`].
    listing: Cell<Listing>,
    /// See [`OutState`].
    state: Cell<OutState>,
    /// The client sent a kind-0 frame, so binary kinds 0-2 are safe to send.
    kind0: Cell<bool>,
    /// Why the socket was closed, for the log.
    reason: Cell<Option<CloseReason>>,
    /// A producer waits in [`Writers`]' room list for this queue to shrink.
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
    /// An empty queue for `stream`, bounded at `limit` bytes, written by
    /// `writers`' flusher. From now on only the queue writes the socket.
    /// Allocates nothing more until a frame is pushed.
    pub fn new(limit: usize, stream: SharedStream, writers: &Rc<Writers>) -> Rc<Self> {
        Rc::new_cyclic(|me| Self {
            queue: RefCell::new(VecDeque::new()),
            me: me.clone(),
            writers: writers.clone(),
            stream: Cell::new(Some(stream)),
            stop_waiter: Cell::new(None),
            settle_waiter: Cell::new(None),
            queued: Cell::new(0),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            listing: Cell::new(Listing::Idle),
            state: Cell::new(OutState::Open),
            kind0: Cell::new(false),
            reason: Cell::new(None),
            room_wanted: Cell::new(false),
        })
    }

    /// Current state.
    pub fn state(&self) -> OutState {
        self.state.get()
    }

    /// Why the server closed the socket (`None` if it did not).
    pub fn reason(&self) -> Option<CloseReason> {
        self.reason.get().filter(|r| *r != CloseReason::Peer)
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

    /// The socket while the queue is alive (a clone of the handle).
    fn stream(&self) -> Option<SharedStream> {
        let s = self.stream.take();
        self.stream.set(s.clone());
        s
    }

    fn wake(waiter: &Cell<Option<Waker>>) {
        if let Some(w) = waiter.take() {
            w.wake();
        }
    }

    /// Puts the queue on the shard's flush list unless someone already
    /// owns its writing.
    fn schedule(&self) {
        if self.listing.get() == Listing::Idle {
            if let Some(me) = self.me.upgrade() {
                self.listing.set(Listing::Listed);
                self.writers.enlist(me);
            }
        }
    }

    /// Queues a close frame and stops accepting further frames.
    pub fn close_with(&self, code: u16, reason: CloseReason) {
        if self.state.get() != OutState::Open {
            return;
        }
        self.reason.set(Some(reason));
        let frame = ws::close_frame(code, "");
        self.queued
            .set(self.queued.get().saturating_add(frame.len() as u32));
        self.queue.borrow_mut().push_back(frame);
        self.state.set(OutState::Closing);
        Self::wake(&self.stop_waiter);
        self.notify_room();
        self.schedule();
    }

    /// The socket is gone or must go now: drop everything queued, shut the
    /// socket down (its reader sees EOF) and let go of it.
    pub fn kill(&self) {
        self.state.set(OutState::Dead);
        self.queue.borrow_mut().clear();
        self.queued.set(0);
        if let Some(stream) = self.stream.take() {
            stream.shutdown();
        }
        Self::wake(&self.stop_waiter);
        Self::wake(&self.settle_waiter);
        self.notify_room();
    }

    /// Writes as much as the kernel takes now, with one `sendmsg` per
    /// `sock::MAX_IOV` frames, straight from the shared frame buffers. A
    /// closing queue that empties is shut down.
    fn flush_now(&self, tally: &mut WriteTally) -> Flushed {
        loop {
            if self.state.get() == OutState::Dead {
                return Flushed::Dead;
            }
            let Some(stream) = self.stream.take() else {
                return Flushed::Dead;
            };
            let sent = {
                let q = self.queue.borrow();
                (!q.is_empty()).then(|| stream.send_gathered(q.iter().map(|f| &f[..])))
            };
            self.stream.set(Some(stream));
            let Some(sent) = sent else { break };
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
        let mut r = self.writers.room.borrow_mut();
        if !r
            .iter()
            .any(|(q, l, w)| *q == me && *l == len && w.will_wake(cx.waker()))
        {
            r.push((me, len, cx.waker().clone()));
        }
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
        let mut ready = Vec::new();
        self.writers.room.borrow_mut().retain(|(q, len, w)| {
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
        self.close_with(1008, CloseReason::SlowConsumer);
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
        self.settle_waiter.set(Some(cx.waker().clone()));
        Poll::Pending
    }

    /// Resolves once the reader should stop (closing or dead).
    pub fn poll_stopped(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.state.get() != OutState::Open {
            return Poll::Ready(());
        }
        self.stop_waiter.set(Some(cx.waker().clone()));
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
        self.close_with(code, CloseReason::Server);
    }
}

/// The shard's writing state, one per shard in its `ShardState`, shared by
/// every queue: the queues waiting for the flusher, and the producers
/// waiting for room in a queue. Kept per shard rather than per queue so an
/// idle queue pays nothing for them.
#[derive(Default)]
pub struct Writers {
    /// Queues with frames to write, in the order they asked.
    queues: RefCell<Vec<Rc<OutQueue>>>,
    /// The flusher, parked while `queues` is empty.
    flusher: Cell<Option<Waker>>,
    /// Producers waiting for room: (queue, frame length, waker). Entries go
    /// when the queue has room for them or stops being open.
    room: RefCell<Vec<(*const OutQueue, usize, Waker)>>,
}

impl Writers {
    fn enlist(&self, q: Rc<OutQueue>) {
        self.queues.borrow_mut().push(q);
        if let Some(w) = self.flusher.take() {
            w.wake();
        }
    }

    /// Moves the listed queues into `into` (empty), or parks the caller's
    /// task until there are some.
    fn poll_listed(
        &self,
        cx: &mut std::task::Context<'_>,
        into: &mut Vec<Rc<OutQueue>>,
    ) -> Poll<()> {
        let mut q = self.queues.borrow_mut();
        if q.is_empty() {
            self.flusher.set(Some(cx.waker().clone()));
            return Poll::Pending;
        }
        std::mem::swap(&mut *q, into);
        Poll::Ready(())
    }
}

/// The shard's flusher: writes every queue put on the flush list, for as
/// long as the shard runs. One `sendmsg` per socket per pass, counters
/// folded in once per pass into `stats[shard]`. It takes the shard's
/// parts rather than its state so this module stays beneath the shard state.
pub async fn flusher(writers: Rc<Writers>, stats: Arc<[ShardStats]>, shard: usize) {
    let mut listed = Vec::new();
    loop {
        poll_fn(|cx| writers.poll_listed(cx, &mut listed)).await;
        let mut tally = WriteTally::default();
        for q in listed.drain(..) {
            match q.flush_now(&mut tally) {
                Flushed::Blocked => {
                    q.listing.set(Listing::Blocked);
                    glommio::spawn_local(drain_blocked(stats.clone(), shard, q)).detach();
                }
                Flushed::Empty | Flushed::Dead => q.listing.set(Listing::Idle),
            }
        }
        add_tally(&stats[shard], tally);
    }
}

/// Owns a queue whose socket buffer filled up: waits until the kernel
/// takes more (through the stream's own readiness), then writes on until
/// the queue is empty or dead.
async fn drain_blocked(stats: Arc<[ShardStats]>, shard: usize, q: Rc<OutQueue>) {
    let mut tally = WriteTally::default();
    loop {
        let front = q.queue.borrow().front().cloned();
        let (Some(stream), Some(front)) = (q.stream(), front) else {
            break;
        };
        let wrote = poll_fn(|cx| stream.poll_write(cx, &front)).await;
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
    add_tally(&stats[shard], tally);
}

fn add_tally(stats: &ShardStats, tally: WriteTally) {
    if tally.bytes > 0 {
        ShardStats::add(&stats.messages_out, tally.frames);
        ShardStats::add(&stats.bytes_out, tally.bytes);
    }
}

#[cfg(test)]
#[path = "outq_tests.rs"]
mod tests;
