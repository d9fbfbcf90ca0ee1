//! Messages fanned out on one shard, on their way to the other shards with
//! subscribers of their topic (see `realtime::interest`), and their
//! delivery there.
//!
//! Each message crosses as one `Arc` holding the frames the sending
//! shard's own subscribers got: nothing is encoded again. It goes straight
//! into the mesh queue of the target shard when that has room. When it has
//! none, the message waits in this shard's overflow queue for that shard
//! (FIFO, so the order of one publisher's messages holds), drained by a
//! task that waits for room. The sender itself never waits.
//!
//! The same queues carry, in order with them, what a non-home shard and a
//! tenant's home shard say about Postgres Changes subscriptions (see
//! `cdc_relay`).
//!
//! The overflow queue is bounded (`SHARD_QUEUE_BYTES`). A message that
//! would pass the bound is dropped, counted, and its topic marked: later
//! messages of that topic to that shard are dropped too, until a `Gap`
//! marker reaches the shard, which then closes its subscribers of the
//! topic as slow consumers (1008), the rule a socket that overflows its
//! own queue meets. So no subscriber goes on with a gap it cannot see.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Poll, Waker};

use realtime_shards::ShardStats;

use super::shard::{ShardMsg, ShardState};
use crate::realtime::hub::TopicKey;
use crate::realtime::interest::{Forward, Forwarder};

/// What lost messages name: a tenant's topic (its subscribers on the
/// receiving shard are closed), or one channel whose Postgres Changes
/// frames cross from the home shard (see `cdc_relay`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GapKey {
    /// (tenant, private, topic).
    Topic(Arc<str>, bool, Arc<str>),
    /// (tenant, channel).
    Channel(Arc<str>, u64),
}

/// What this shard holds for one other shard.
#[derive(Default)]
struct Peer {
    /// Waiting for room in the mesh queue, oldest first, with the frame
    /// bytes each holds.
    overflow: RefCell<VecDeque<(ShardMsg, usize)>>,
    /// Frame bytes in `overflow`.
    bytes: Cell<usize>,
    /// The drain task is sending a message it took from `overflow`:
    /// nothing may take the direct path meanwhile.
    busy: Cell<bool>,
    /// What is dropped until its gap is sent.
    gapped: RefCell<HashSet<GapKey>>,
    /// The drain task, waiting for `overflow` to fill.
    waker: Cell<Option<Waker>>,
}

/// This shard's [`Forwarder`]: a FIFO queue per other shard, for
/// forwarded messages and for whatever else must keep its order with
/// them (Postgres Changes registrations and frames).
pub struct ShardForwarder {
    state: Weak<ShardState>,
    peers: Box<[Peer]>,
    bound: usize,
}

impl ShardForwarder {
    /// The forwarder of the shard whose state `state` will be, for
    /// `nr_shards` shards, holding at most `bound` frame bytes per peer.
    pub fn new(state: Weak<ShardState>, nr_shards: usize, bound: usize) -> Self {
        Self {
            state,
            peers: (0..nr_shards).map(|_| Peer::default()).collect(),
            bound,
        }
    }

    /// Queues `msg` (holding `len` frame bytes) to shard `to` in order
    /// with everything queued before; never waits. A message with frames
    /// that would pass the bound is dropped: `gap` names what then goes
    /// wrong for its receivers, told once, after what was queued before.
    /// Messages without frames (`len` 0) are never dropped.
    pub fn send(&self, to: usize, msg: ShardMsg, len: usize, gap: Option<GapKey>) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let peer = &self.peers[to];
        let stats = state.stats();
        if let Some(key) = &gap {
            if peer.gapped.borrow().contains(key) {
                ShardStats::add(&stats.forward_drops, 1);
                return;
            }
        }
        if !peer.busy.get() && peer.overflow.borrow().is_empty() {
            match state.shard.try_send_to(to, msg) {
                Ok(()) => {
                    ShardStats::add(&stats.forwards_out, 1);
                    return;
                }
                // That shard is stopping: it has nothing left to serve.
                Err((_, true)) => return,
                Err((m, false)) => return self.hold(peer, stats, m, len, gap),
            }
        }
        self.hold(peer, stats, msg, len, gap);
    }

    /// Puts `msg` in the overflow queue, or drops it and queues its gap
    /// when the queue is full.
    fn hold(
        &self,
        peer: &Peer,
        stats: &ShardStats,
        msg: ShardMsg,
        len: usize,
        gap: Option<GapKey>,
    ) {
        match gap {
            Some(key) if len > 0 && peer.bytes.get() + len > self.bound => {
                ShardStats::add(&stats.forward_drops, 1);
                if peer.gapped.borrow_mut().insert(key.clone()) {
                    peer.overflow
                        .borrow_mut()
                        .push_back((ShardMsg::Gap(key), 0));
                }
            }
            _ => {
                peer.bytes.set(peer.bytes.get() + len);
                peer.overflow.borrow_mut().push_back((msg, len));
            }
        }
        if let Some(w) = peer.waker.take() {
            w.wake();
        }
    }
}

impl Forwarder for ShardForwarder {
    fn forward(&self, targets: u64, msg: Arc<Forward>) {
        let Some(me) = self.state.upgrade().map(|s| s.shard.id) else {
            return;
        };
        let len = msg.len();
        let gap = GapKey::Topic(msg.tenant.clone(), msg.private, msg.topic.clone());
        let mut rest = targets;
        while rest != 0 {
            let to = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if to < self.peers.len() && to != me {
                self.send(to, ShardMsg::Fanout(msg.clone()), len, Some(gap.clone()));
            }
        }
    }
}

/// Drains this shard's overflow queue for shard `to`, waiting for room in
/// the mesh; runs for the life of the shard.
pub async fn drain(state: Rc<ShardState>, to: usize) {
    let fwd = state.forwarder.clone();
    loop {
        let (msg, len) = std::future::poll_fn(|cx| {
            let peer = &fwd.peers[to];
            match peer.overflow.borrow_mut().pop_front() {
                Some(next) => {
                    peer.busy.set(true);
                    Poll::Ready(next)
                }
                None => {
                    peer.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            }
        })
        .await;
        let gap = match &msg {
            ShardMsg::Gap(k) => Some(k.clone()),
            _ => None,
        };
        let sent = state.shard.send_to(to, msg).await.is_ok();
        let peer = &fwd.peers[to];
        peer.busy.set(false);
        peer.bytes.set(peer.bytes.get() - len);
        if let Some(k) = gap {
            peer.gapped.borrow_mut().remove(&k);
        } else if sent {
            ShardStats::add(&state.stats().forwards_out, 1);
        }
    }
}

/// Delivers a message another shard forwarded to this shard's subscribers
/// of its topic.
pub fn deliver(state: &ShardState, msg: &Forward) {
    #[cfg(feature = "fault-injection")]
    super::fault::stall_if_marked(msg.v2.as_deref().or(msg.v1.as_deref()).unwrap_or(b""));
    let Some(tenant) = state.tenant(&msg.tenant) else {
        return;
    };
    let mut t = tenant.borrow_mut();
    let n = t.hub.deliver(msg);
    if n > 0 {
        // Deliveries count toward the tenant's events, as local ones do.
        t.events.add(n, state.now_ms());
    }
}

/// Messages were dropped on their way here: the subscribers of their
/// topic on this shard, or their channel, are closed as slow consumers.
pub fn gap(state: &ShardState, key: GapKey) {
    let (tenant, private, topic) = match key {
        GapKey::Topic(tenant, private, topic) => (tenant, private, topic),
        GapKey::Channel(tenant, channel) => {
            if let Some(t) = state.tenant(&tenant) {
                if t.borrow().cdc.relayed_close(channel, 1008) {
                    ShardStats::add(&state.stats().forward_gap_closes, 1);
                }
            }
            return;
        }
    };
    let Some(t) = state.tenant(&tenant) else {
        return;
    };
    let closed = t.borrow().hub.lost(TopicKey {
        topic: &topic,
        private,
    });
    if closed > 0 {
        tracing::warn!(
            tenant = &*tenant,
            topic = &*topic,
            closed,
            "messages from another shard were dropped (its queue to this shard was full); \
             closing this topic's subscribers here as slow consumers"
        );
        ShardStats::add(&state.stats().forward_gap_closes, closed as u64);
    }
}
