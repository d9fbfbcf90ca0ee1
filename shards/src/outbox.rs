//! Ordered, bounded, never-waiting queues from one shard to each other
//! shard, on top of the mesh.
//!
//! A message goes straight into the mesh queue of its target when that has
//! room. When it has none, it waits in this shard's overflow queue for that
//! target, in order, drained by [`Outbox::drain`] (a task per target that
//! waits for room). A sender never waits, and nothing sent later to the
//! same target overtakes what was sent before.
//!
//! The overflow queue holds at most `bound` bytes of the messages' own
//! accounting (their frames). A message that would pass it is dropped, and
//! the key it names (what its loss breaks: a topic, a channel) is marked:
//! later messages naming that key are dropped too, until a gap message made
//! from the key reaches the target, after everything queued before the
//! drop. Messages that name no key (control messages) are never dropped.
//!
//! Before the bound, a queue is *congested* from the moment it holds more
//! than half the bound until it is back under a quarter.
//! [`Outbox::poll_uncongested`] lets a producer that can wait (a socket
//! whose reads can pause) wait for that, so a target that is slow for a
//! while (its core busy with other shards) paces the producers instead of
//! losing their messages at the bound. A producer whose wait ran too long
//! says so ([`Outbox::overdue`]): then no producer waits until no queue is
//! congested, so a target stalled for good does not stall the others.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::task::{Poll, Waker};

use crate::{Shard, ShardStats};

/// What became of one message given to [`Outbox::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued to the target's mesh queue.
    Direct,
    /// Waiting in the overflow queue.
    Held,
    /// Dropped: the overflow queue was full (or its key already gapped).
    Dropped,
    /// The target shard is gone (stopping).
    Gone,
}

/// A message waiting (or a gap), its accounted bytes, and whether it
/// counts as forwarded once sent.
type Waiting<M, K> = (Result<M, K>, usize, bool);

struct Peer<M, K> {
    /// Waiting for room, oldest first, with their accounted bytes and
    /// whether they count as forwarded; `Err` holds a gap still to send.
    overflow: RefCell<VecDeque<Waiting<M, K>>>,
    bytes: Cell<usize>,
    /// The drain task holds a message it took from `overflow` and is
    /// sending it: nothing may take the direct path meanwhile.
    busy: Cell<bool>,
    gapped: RefCell<HashSet<K>>,
    waker: Cell<Option<Waker>>,
    /// Past half the bound, not yet back under a quarter.
    congested: Cell<bool>,
}

impl<M, K> Default for Peer<M, K> {
    fn default() -> Self {
        Self {
            overflow: RefCell::default(),
            bytes: Cell::new(0),
            busy: Cell::new(false),
            gapped: RefCell::new(HashSet::new()),
            waker: Cell::new(None),
            congested: Cell::new(false),
        }
    }
}

/// A shard's queues to every other shard.
pub struct Outbox<M, K> {
    peers: Box<[Peer<M, K>]>,
    bound: usize,
    gap: fn(K) -> M,
    /// Peers whose queue is congested.
    nr_congested: Cell<usize>,
    /// Producers waiting for no queue to be congested.
    uncongested: RefCell<Vec<Waker>>,
    /// A wait ran too long: none waits until no queue is congested.
    overdue: Cell<bool>,
}

impl<M: Send + 'static, K: Clone + Eq + Hash> Outbox<M, K> {
    /// Queues to `nr_shards` shards, each holding at most `bound` bytes
    /// waiting; `gap` makes the message that tells a target its key's
    /// messages were dropped.
    pub fn new(nr_shards: usize, bound: usize, gap: fn(K) -> M) -> Self {
        Self {
            peers: (0..nr_shards).map(|_| Peer::default()).collect(),
            bound,
            gap,
            nr_congested: Cell::new(0),
            uncongested: RefCell::default(),
            overdue: Cell::new(false),
        }
    }

    /// Sends `msg` (accounting `len` bytes) to shard `to` in order with
    /// everything sent there before, without waiting. With a `key`, it may
    /// be dropped (see the module doc); without, it is always kept.
    /// Drops are counted in `forward_drops`; messages with a key (data,
    /// not control) in `forwards_out` once sent.
    pub fn send(&self, shard: &Shard<M>, to: usize, msg: M, len: usize, key: Option<K>) -> Sent {
        let peer = &self.peers[to];
        let stats = shard.my_stats();
        if let Some(k) = &key {
            if peer.gapped.borrow().contains(k) {
                ShardStats::add(&stats.forward_drops, 1);
                return Sent::Dropped;
            }
        }
        let msg = if !peer.busy.get() && peer.overflow.borrow().is_empty() {
            match shard.try_send_to(to, msg) {
                Ok(()) => {
                    if key.is_some() {
                        ShardStats::add(&stats.forwards_out, 1);
                    }
                    return Sent::Direct;
                }
                Err((_, true)) => return Sent::Gone,
                Err((m, false)) => m,
            }
        } else {
            msg
        };
        let sent = match key {
            Some(k) if len > 0 && peer.bytes.get() + len > self.bound => {
                ShardStats::add(&stats.forward_drops, 1);
                if peer.gapped.borrow_mut().insert(k.clone()) {
                    peer.overflow.borrow_mut().push_back((Err(k), 0, false));
                }
                Sent::Dropped
            }
            _ => {
                peer.bytes.set(peer.bytes.get() + len);
                if !peer.congested.get() && peer.bytes.get() > self.bound / 2 {
                    peer.congested.set(true);
                    self.nr_congested.set(self.nr_congested.get() + 1);
                }
                let counted = key.is_some();
                peer.overflow
                    .borrow_mut()
                    .push_back((Ok(msg), len, counted));
                Sent::Held
            }
        };
        if let Some(w) = peer.waker.take() {
            w.wake();
        }
        sent
    }

    /// Bytes waiting for shard `to`.
    pub fn waiting(&self, to: usize) -> usize {
        self.peers[to].bytes.get()
    }

    /// Whether some queue is congested (see the module doc) and producers
    /// that can wait should.
    pub fn congested(&self) -> bool {
        self.nr_congested.get() > 0 && !self.overdue.get()
    }

    /// A producer waited for [`Outbox::poll_uncongested`] longer than it
    /// could: no producer waits until no queue is congested, and those
    /// waiting go on.
    pub fn overdue(&self) {
        if self.nr_congested.get() > 0 {
            self.overdue.set(true);
            for w in self.uncongested.take() {
                w.wake();
            }
        }
    }

    /// Ready once no queue is congested, or once a wait was overdue.
    pub fn poll_uncongested(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if !self.congested() {
            return Poll::Ready(());
        }
        let mut waiting = self.uncongested.borrow_mut();
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// `peer`'s queue shrank: ends its congestion under a quarter of the
    /// bound, and wakes the waiting producers once no queue is congested.
    fn shrank(&self, peer: &Peer<M, K>) {
        if !peer.congested.get() || peer.bytes.get() > self.bound / 4 {
            return;
        }
        peer.congested.set(false);
        self.nr_congested.set(self.nr_congested.get() - 1);
        if self.nr_congested.get() == 0 {
            self.overdue.set(false);
            for w in self.uncongested.take() {
                w.wake();
            }
        }
    }

    /// Sends what waits for shard `to` as its mesh queue makes room; runs
    /// for the life of the shard.
    pub async fn drain(&self, shard: &Shard<M>, to: usize) {
        let peer = &self.peers[to];
        loop {
            let (next, len, counted) =
                std::future::poll_fn(|cx| match peer.overflow.borrow_mut().pop_front() {
                    Some(next) => {
                        peer.busy.set(true);
                        Poll::Ready(next)
                    }
                    None => {
                        peer.waker.set(Some(cx.waker().clone()));
                        Poll::Pending
                    }
                })
                .await;
            let (msg, gap) = match next {
                Ok(m) => (m, None),
                Err(k) => ((self.gap)(k.clone()), Some(k)),
            };
            let sent = shard.send_to(to, msg).await.is_ok();
            peer.busy.set(false);
            peer.bytes.set(peer.bytes.get() - len);
            self.shrank(peer);
            match gap {
                Some(k) => {
                    peer.gapped.borrow_mut().remove(&k);
                }
                None if sent && counted => ShardStats::add(&shard.my_stats().forwards_out, 1),
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PoolBuilder;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[derive(Debug, PartialEq)]
    enum Msg {
        N(u32),
        Gap(u8),
    }

    /// Shard 0 sends 0..3000 to shard 1 while shard 1 is blocked: the
    /// mesh (capacity 16) fills, then the overflow queue (bound 100), then
    /// messages are dropped; shard 1 then sees a gap-free prefix in order,
    /// then the gap, then nothing of that key until the gap was sent.
    #[test]
    fn a_full_queue_keeps_order_and_tells_the_gap_once() {
        let ok = Arc::new(AtomicBool::new(false));
        let done = ok.clone();
        PoolBuilder::new(2)
            .pin(false)
            .mesh_capacity(16)
            .run(move |mut shard: Shard<Msg>| {
                let done = done.clone();
                async move {
                    let rx = shard.take_receivers().remove(0);
                    let shard = Rc::new(shard);
                    if shard.id == 0 {
                        let out = Rc::new(Outbox::new(2, 100, Msg::Gap));
                        let (o, s) = (out.clone(), shard.clone());
                        glommio::spawn_local(async move { o.drain(&s, 1).await }).detach();
                        let mut sent = Vec::new();
                        for i in 0..3000 {
                            // 10 bytes each: 16 in the mesh, 10 held.
                            sent.push(out.send(&shard, 1, Msg::N(i), 10, Some(7u8)));
                        }
                        assert_eq!(sent[..16], [Sent::Direct; 16]);
                        assert_eq!(sent[16..26], [Sent::Held; 10]);
                        assert!(sent[26..].iter().all(|s| *s == Sent::Dropped));
                        // Past half the bound: a producer may wait for it
                        // to drain under a quarter.
                        assert!(out.congested());
                        let o = out.clone();
                        let paced = glommio::spawn_local(async move {
                            std::future::poll_fn(|cx| o.poll_uncongested(cx)).await;
                            o.waiting(1)
                        });
                        // A control message is never dropped.
                        assert_eq!(out.send(&shard, 1, Msg::N(9999), 0, None), Sent::Held);
                        while out.waiting(1) > 0 {
                            glommio::yield_if_needed().await;
                            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                        }
                        assert!(paced.await <= 25, "woken once under a quarter");
                        assert!(!out.congested());
                        let _ = rx.recv().await;
                    } else {
                        // Blocked until everything above was sent or queued.
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        let mut got = Vec::new();
                        while let Some(m) = rx.recv().await {
                            let last = matches!(m, Msg::N(9999));
                            got.push(m);
                            if last {
                                break;
                            }
                        }
                        let want: Vec<Msg> = (0..26)
                            .map(Msg::N)
                            .chain([Msg::Gap(7), Msg::N(9999)])
                            .collect();
                        assert_eq!(got, want);
                        done.store(true, Ordering::SeqCst);
                        let _ = shard.send_to(0, Msg::N(0)).await;
                    }
                }
            })
            .unwrap();
        assert!(ok.load(Ordering::SeqCst));
    }
}
