//! An [`Outbound`] that does per push what the server's socket queue does:
//! check the state, add to a byte counter against a bound, push the shared
//! frame onto a `VecDeque<Bytes>` behind a `RefCell`, and take the writer's
//! waker (none here). No socket, no task.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

use bytes::Bytes;
use realtime::realtime::hub::Outbound;

/// A bounded, byte-counted queue of complete frames.
pub struct BenchQueue {
    /// Frames waiting, as shared `Bytes` (the fan-out's clones).
    frames: RefCell<VecDeque<Bytes>>,
    /// Bytes in `frames`, checked against `limit` on every push.
    nr_bytes: Cell<usize>,
    /// Byte bound; a push past it drops the queue (a slow consumer).
    limit: usize,
    /// Set once the bound was hit; later pushes are ignored.
    closed: Cell<bool>,
    /// Stands in for the writer task's waker, taken on every push.
    writer: Cell<Option<Waker>>,
    /// Answer to [`Outbound::speaks_kind0`].
    kind0: bool,
}

impl BenchQueue {
    /// An empty queue bounded at `limit` bytes.
    pub fn new(limit: usize) -> Rc<BenchQueue> {
        Rc::new(BenchQueue {
            frames: RefCell::new(VecDeque::new()),
            nr_bytes: Cell::new(0),
            limit,
            closed: Cell::new(false),
            writer: Cell::new(None),
            kind0: false,
        })
    }

    /// Number of frames waiting.
    pub fn len(&self) -> usize {
        self.frames.borrow().len()
    }

    /// Whether no frame waits.
    pub fn is_empty(&self) -> bool {
        self.frames.borrow().is_empty()
    }

    /// Bytes waiting.
    pub fn nr_bytes(&self) -> usize {
        self.nr_bytes.get()
    }

    /// Whether the byte bound was hit.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Pops every waiting frame and drops it, as the writer does once the
    /// frames are on the wire (each drop is a refcount decrement). Keeps the
    /// deque's capacity, like the server does for small queues.
    pub fn drain(&self) {
        let mut frames = self.frames.borrow_mut();
        while let Some(f) = frames.pop_front() {
            self.nr_bytes.set(self.nr_bytes.get() - f.len());
            drop(f);
        }
    }
}

impl Outbound for BenchQueue {
    fn push(&self, frame: Bytes) {
        if self.closed.get() {
            return;
        }
        let nr_bytes = self.nr_bytes.get() + frame.len();
        if nr_bytes > self.limit {
            self.frames.borrow_mut().clear();
            self.nr_bytes.set(0);
            self.closed.set(true);
            return;
        }
        self.nr_bytes.set(nr_bytes);
        self.frames.borrow_mut().push_back(frame);
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    fn speaks_kind0(&self) -> bool {
        self.kind0
    }

    fn close(&self, _code: u16) {
        self.closed.set(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bounds_and_drains() {
        let q = BenchQueue::new(10);
        q.push(Bytes::from_static(b"abcd"));
        q.push(Bytes::from_static(b"efgh"));
        assert_eq!((q.len(), q.nr_bytes()), (2, 8));
        q.drain();
        assert!(q.is_empty());
        assert_eq!(q.nr_bytes(), 0);
        q.push(Bytes::from_static(b"0123456789"));
        q.push(Bytes::from_static(b"x"));
        assert!(q.is_closed());
        assert_eq!(q.len(), 0);
    }
}
