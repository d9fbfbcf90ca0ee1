//! Messages fanned out on one shard, on their way to the other shards with
//! subscribers of their topic (see `realtime::interest`), and their
//! delivery there.
//!
//! Each message crosses as one `Arc` holding the frames the sending
//! shard's own subscribers got: nothing is encoded again. It goes through
//! the shard's outbox (`realtime_shards::outbox`): straight into the
//! target's mesh queue when that has room, else into an overflow queue
//! for that target, in order, so one publisher's messages keep their
//! order; the sender never waits. The same queues carry, in order with
//! them, what a non-home shard and a tenant's home shard say about
//! Postgres Changes subscriptions (see `cdc_relay`).
//!
//! The overflow queue is bounded (`SHARD_QUEUE_BYTES`). A message that
//! would pass the bound is dropped, counted, and its topic marked: later
//! messages of that topic to that shard are dropped too, until a `Gap`
//! reaches the shard, which then closes its subscribers of the topic
//! with the slow-consumer code (1008), after what did arrive: the rule a
//! socket that overflows its own queue meets. So no subscriber goes on
//! with a gap it cannot see.

use std::rc::{Rc, Weak};
use std::sync::Arc;

use realtime_shards::ShardStats;

use super::shard::{GapKey, ShardMsg, ShardState};
use crate::realtime::hub::TopicKey;
use crate::realtime::interest::{Forward, Forwarder};

/// This shard's [`Forwarder`]: forwarded messages go into its outbox
/// (`ShardState::outbox`), one ordered queue per other shard.
pub struct MeshForwarder {
    /// The shard's state (weak: the state holds this forwarder).
    pub state: Weak<ShardState>,
}

impl Forwarder for MeshForwarder {
    fn forward(&self, targets: u64, msg: Arc<Forward>) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let len = msg.len();
        let gap = GapKey::Topic(msg.tenant.clone(), msg.private, msg.topic.clone());
        let mut rest = targets;
        while rest != 0 {
            let to = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if to < state.shard.nr_shards && to != state.shard.id {
                let m = ShardMsg::Fanout(msg.clone());
                state
                    .outbox
                    .send(&state.shard, to, m, len, Some(gap.clone()));
            }
        }
    }
}

/// Sends what waits in this shard's outbox for shard `to`; runs for the
/// life of the shard.
pub async fn drain(state: Rc<ShardState>, to: usize) {
    state.outbox.drain(&state.shard, to).await;
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
