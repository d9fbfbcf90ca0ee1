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

/// A topic of a tenant, as a gap names it.
pub type GapKey = (Arc<str>, bool, Arc<str>);

/// What waits in an overflow queue.
#[derive(Clone)]
enum Queued {
    /// A forwarded message.
    Msg(Arc<Forward>),
    /// Messages of this topic were dropped after the ones before.
    Gap(GapKey),
}

impl Queued {
    fn into_msg(self) -> ShardMsg {
        match self {
            Queued::Msg(m) => ShardMsg::Fanout(m),
            Queued::Gap(k) => ShardMsg::Gap(k),
        }
    }

    fn len(&self) -> usize {
        match self {
            Queued::Msg(m) => m.len(),
            Queued::Gap(_) => 0,
        }
    }
}

/// What this shard holds for one other shard.
#[derive(Default)]
struct Peer {
    /// Waiting for room in the mesh queue, oldest first.
    overflow: RefCell<VecDeque<Queued>>,
    /// Frame bytes in `overflow`.
    bytes: Cell<usize>,
    /// Topics whose messages are dropped until their gap is sent.
    gapped: RefCell<HashSet<GapKey>>,
    /// The drain task, waiting for `overflow` to fill.
    waker: Cell<Option<Waker>>,
}

/// This shard's [`Forwarder`]: a queue per other shard.
pub struct ShardForwarder {
    state: Weak<ShardState>,
    peers: Box<[Peer]>,
    bound: usize,
}

impl ShardForwarder {
    /// The forwarder of the shard whose state `state` will be, for
    /// `nr_shards` shards, holding at most `bound` bytes per peer.
    pub fn new(state: Weak<ShardState>, nr_shards: usize, bound: usize) -> Self {
        Self {
            state,
            peers: (0..nr_shards).map(|_| Peer::default()).collect(),
            bound,
        }
    }

    fn queue(&self, state: &ShardState, to: usize, msg: Arc<Forward>) {
        let peer = &self.peers[to];
        let stats = state.stats();
        if !peer.gapped.borrow().is_empty() {
            let key = gap_key(&msg);
            if peer.gapped.borrow().contains(&key) {
                ShardStats::add(&stats.forward_drops, 1);
                return;
            }
        }
        if peer.overflow.borrow().is_empty() {
            match state.shard.try_send_to(to, ShardMsg::Fanout(msg)) {
                Ok(()) => {
                    ShardStats::add(&stats.forwards_out, 1);
                    return;
                }
                // That shard is stopping: it has no subscribers to serve.
                Err((_, true)) => return,
                Err((ShardMsg::Fanout(m), false)) => return self.hold(peer, stats, m),
                Err(_) => unreachable!("the mesh gives back what it was given"),
            }
        }
        self.hold(peer, stats, msg);
    }

    /// Puts `msg` in the overflow queue, or drops it and marks its topic
    /// when the queue is full.
    fn hold(&self, peer: &Peer, stats: &ShardStats, msg: Arc<Forward>) {
        let len = msg.len();
        if peer.bytes.get() + len > self.bound {
            ShardStats::add(&stats.forward_drops, 1);
            let key = gap_key(&msg);
            if peer.gapped.borrow_mut().insert(key.clone()) {
                peer.overflow.borrow_mut().push_back(Queued::Gap(key));
            }
        } else {
            peer.bytes.set(peer.bytes.get() + len);
            peer.overflow.borrow_mut().push_back(Queued::Msg(msg));
        }
        if let Some(w) = peer.waker.take() {
            w.wake();
        }
    }
}

fn gap_key(msg: &Forward) -> GapKey {
    (msg.tenant.clone(), msg.private, msg.topic.clone())
}

impl Forwarder for ShardForwarder {
    fn forward(&self, targets: u64, msg: Arc<Forward>) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let mut rest = targets;
        while rest != 0 {
            let to = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if to < self.peers.len() && to != state.shard.id {
                self.queue(&state, to, msg.clone());
            }
        }
    }
}

/// Drains this shard's overflow queue for shard `to`, waiting for room in
/// the mesh; runs for the life of the shard.
pub async fn drain(state: Rc<ShardState>, to: usize) {
    let fwd = state.forwarder.clone();
    loop {
        let next = std::future::poll_fn(|cx| {
            let peer = &fwd.peers[to];
            match peer.overflow.borrow().front() {
                Some(q) => Poll::Ready(q.clone()),
                None => {
                    peer.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            }
        })
        .await;
        let len = next.len();
        let gap = match &next {
            Queued::Gap(k) => Some(k.clone()),
            Queued::Msg(_) => None,
        };
        // Kept at the front while it waits, so that nothing queued after
        // it can overtake it through the direct path.
        let sent = state.shard.send_to(to, next.into_msg()).await.is_ok();
        let peer = &fwd.peers[to];
        peer.overflow.borrow_mut().pop_front();
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

/// Messages of a topic were dropped on their way here: its subscribers on
/// this shard are closed as slow consumers.
pub fn gap(state: &ShardState, (tenant, private, topic): GapKey) {
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
