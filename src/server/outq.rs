//! The bounded write queue of one socket.
//!
//! Fan-out pushes shared frames (`Bytes` clones) here and never waits; the
//! connection's writer drains the queue in batches. A queue that grows past
//! its byte bound marks the socket as a slow consumer: the queue is dropped
//! and the socket closed, so one slow reader never holds memory without
//! bound or slows anyone else.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::Bytes;

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

/// A socket's outbound queue, shared by its session, the hub and the writer.
pub struct OutQueue {
    /// Complete frames waiting to be written.
    queue: RefCell<VecDeque<Bytes>>,
    /// Bytes in `queue`.
    queued: Cell<usize>,
    /// Bound on `queued`.
    limit: usize,
    /// Writer task to wake when frames arrive.
    writer: Cell<Option<Waker>>,
    /// Reader task to wake when the socket must stop.
    reader: Cell<Option<Waker>>,
    /// See [`OutState`].
    state: Cell<OutState>,
    /// The client sent a kind-0 frame, so binary kinds 0-2 are safe to send.
    kind0: Cell<bool>,
    /// Why the socket was closed, for the log.
    reason: Cell<&'static str>,
}

impl OutQueue {
    /// An empty queue bounded at `limit` bytes. Allocates nothing more until
    /// a frame is pushed.
    pub fn new(limit: usize) -> Rc<Self> {
        Rc::new(Self {
            queue: RefCell::new(VecDeque::new()),
            queued: Cell::new(0),
            limit,
            writer: Cell::new(None),
            reader: Cell::new(None),
            state: Cell::new(OutState::Open),
            kind0: Cell::new(false),
            reason: Cell::new(""),
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
        self.queued.get()
    }

    fn wake_all(&self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Queues a close frame and stops accepting further frames.
    pub fn close_with(&self, code: u16, reason: &'static str) {
        if self.state.get() != OutState::Open {
            return;
        }
        self.reason.set(reason);
        self.queue.borrow_mut().push_back(ws::close_frame(code, ""));
        self.state.set(OutState::Closing);
        self.wake_all();
    }

    /// The socket is gone: drop everything.
    pub fn kill(&self) {
        self.state.set(OutState::Dead);
        self.queue.borrow_mut().clear();
        self.queued.set(0);
        self.wake_all();
    }

    /// Moves up to `max_bytes` of frames (at least one) into `batch`, or
    /// returns the single frame when only one is waiting (no copy).
    pub fn take_batch(&self, batch: &mut Vec<Bytes>, max_bytes: usize) {
        let mut q = self.queue.borrow_mut();
        let mut taken = 0;
        while let Some(f) = q.front() {
            if taken > 0 && taken + f.len() > max_bytes {
                break;
            }
            taken += f.len();
            batch.push(q.pop_front().expect("front exists"));
        }
        self.queued.set(self.queued.get().saturating_sub(taken));
        if q.is_empty() && q.capacity() > 64 {
            // Give a burst's memory back instead of keeping it per socket.
            *q = VecDeque::new();
        }
    }

    /// Waits until there are frames to write or the queue is dead.
    pub fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<OutState> {
        if !self.queue.borrow().is_empty() || self.state.get() == OutState::Dead {
            return Poll::Ready(self.state.get());
        }
        self.writer.set(Some(cx.waker().clone()));
        Poll::Pending
    }

    /// Resolves once the reader should stop (closing or dead).
    pub fn poll_stopped(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.state.get() != OutState::Open {
            return Poll::Ready(());
        }
        self.reader.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Outbound for OutQueue {
    fn push(&self, frame: Bytes) {
        if self.state.get() != OutState::Open {
            return;
        }
        let queued = self.queued.get() + frame.len();
        if queued > self.limit {
            // Slow consumer: drop what it has not read and close it.
            self.queue.borrow_mut().clear();
            self.queued.set(0);
            self.close_with(1008, "outbound queue over its byte bound (slow consumer)");
            return;
        }
        self.queued.set(queued);
        self.queue.borrow_mut().push_back(frame);
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    fn speaks_kind0(&self) -> bool {
        self.kind0.get()
    }

    fn close(&self, code: u16) {
        self.close_with(code, "closed by the server");
    }
}
