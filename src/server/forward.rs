//! Messages fanned out on one shard, on their way to the other shards with
//! subscribers of their topic (see `realtime::interest`), and their
//! delivery there.
//!
//! Each message crosses as one `Arc` holding the frames the sending
//! shard's own subscribers got: nothing is encoded again. It goes through
//! the shard's outbox (`realtime_shards::outbox`): straight into the
//! target's mesh queue when that has room, else into an overflow queue
//! for that target, in order, so one publisher's messages keep their
//! order; sending never waits, but a socket or REST batch that forwarded
//! is paced while a queue is congested ([`pace`]). The same queues carry, in order with
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

use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use realtime_shards::ShardStats;

use super::deadline::within;
use super::shard::{GapKey, ShardMsg, ShardState, TopicId, WaitingTopic};
use crate::realtime::hub::TopicSnapshot;
use crate::realtime::hub::{NoRoom, TopicKey};
use crate::realtime::interest::{Forward, Forwarder};
use crate::realtime::presence::PresenceDelta;

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
        state.forwarded.set(state.forwarded.get() + 1);
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

    fn presence(&self, tenant: &Arc<str>, topic: Arc<str>, private: bool, delta: PresenceDelta) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        // Never dropped (it names no gap key): presence changes are few
        // (rate-limited per tenant) and each shard's view must stay whole.
        MeshForwarder::to_all(&state, || ShardMsg::Presence {
            tenant: tenant.clone(),
            topic: topic.clone(),
            private,
            delta: delta.clone(),
        });
    }
}

impl MeshForwarder {
    fn to_all(state: &ShardState, make: impl Fn() -> ShardMsg) {
        for to in (0..state.shard.nr_shards).filter(|&to| to != state.shard.id) {
            state.outbox.send(&state.shard, to, make(), 0, None);
        }
    }
}

/// Pauses a reader (or a REST batch) that forwarded messages to other
/// shards while one of this shard's queues to them is congested (more
/// than half of `SHARD_QUEUE_BYTES` waiting), until they drain or `limit`
/// has passed.
///
/// A publisher on one shard can write faster than a shard busy with other
/// work (sharing its core) takes in what it forwards; on one shard, the
/// same publisher is paced by the writes to its subscribers, which run
/// between its reads. Without this, such a burst would fill the queue and
/// close the other shard's subscribers as slow consumers, though they read
/// as fast as they can. The pause is bounded: past `limit`, no reader or
/// request of this shard waits until the queues were uncongested once, so
/// a shard stalled for longer does not stall the publishers of others;
/// their messages go on to the bound, and past it the rule above applies.
pub async fn pace(state: &ShardState, limit: Duration) {
    let drained = within(limit, poll_fn(|cx| state.outbox.poll_uncongested(cx))).await;
    if drained.is_none() {
        state.outbox.overdue();
    }
}

/// Sends what waits in this shard's outbox for shard `to`; runs for the
/// life of the shard.
pub async fn drain(state: Rc<ShardState>, to: usize) {
    state.outbox.drain(&state.shard, to).await;
}

/// Delivers a message another shard forwarded to this shard's subscribers
/// of its topic.
///
/// A patient message (from the REST API, whose sender waits for its own
/// subscribers' room) that finds a subscriber here without room waits for
/// it as the sender would: up to `REST_QUEUE_WAIT_MS`, then that
/// subscriber is closed as a slow consumer. Later messages of the topic
/// queue behind it, in order; past `SHARD_QUEUE_BYTES` of them the topic's
/// subscribers here are closed as a gap would close them.
pub fn deliver(state: &Rc<ShardState>, msg: Arc<Forward>) {
    #[cfg(feature = "fault-injection")]
    super::fault::stall_if_marked(msg.v2.as_deref().or(msg.v1.as_deref()).unwrap_or(b""));
    let id: TopicId = (msg.tenant.clone(), msg.private, msg.topic.clone());
    if let Some(w) = state.waiting_topics.borrow_mut().get_mut(&id) {
        w.bytes += msg.len();
        w.queue.push_back(msg);
        if w.bytes > state.config.shard_queue_bytes {
            w.queue.clear();
            w.bytes = 0;
            gap(state, GapKey::Topic(id.0, id.1, id.2));
        }
        return;
    }
    if try_deliver(state, &msg).is_err() {
        let w = WaitingTopic {
            bytes: msg.len(),
            queue: [msg].into(),
        };
        state.waiting_topics.borrow_mut().insert(id.clone(), w);
        glommio::spawn_local(deliver_waiting(state.clone(), id)).detach();
    }
}

/// Delivers `msg` now, unless it is patient and a receiver has no room
/// (returned, nothing delivered).
fn try_deliver(state: &ShardState, msg: &Forward) -> Result<(), NoRoom> {
    let Some(tenant) = state.tenant(&msg.tenant) else {
        return Ok(());
    };
    let mut t = tenant.borrow_mut();
    let n = if msg.patient {
        t.hub.deliver_if_room(msg)?
    } else {
        t.hub.deliver(msg)
    };
    if n > 0 {
        // Deliveries count toward the tenant's events, as local ones do.
        t.events.add(n, state.now_ms());
    }
    Ok(())
}

/// Delivers the messages waiting for topic `id`, in order, each once its
/// receivers have room (see [`deliver`]).
async fn deliver_waiting(state: Rc<ShardState>, id: TopicId) {
    let wait = Duration::from_millis(state.config.rest_queue_wait_ms);
    let mut deadline = None;
    loop {
        let front = {
            let topics = state.waiting_topics.borrow();
            topics.get(&id).and_then(|w| w.queue.front().cloned())
        };
        let Some(msg) = front else {
            state.waiting_topics.borrow_mut().remove(&id);
            return;
        };
        let Err(NoRoom { out, len }) = try_deliver(&state, &msg) else {
            if let Some(w) = state.waiting_topics.borrow_mut().get_mut(&id) {
                if w.queue.front().is_some_and(|f| Arc::ptr_eq(f, &msg)) {
                    w.queue.pop_front();
                    w.bytes = w.bytes.saturating_sub(msg.len());
                }
            }
            deadline = None;
            continue;
        };
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + wait);
        room_or_overflow(&NoRoom { out, len }, deadline).await;
    }
}

/// Waits until the subscriber `full` names has room for its frame; one
/// still without room at `deadline` is closed as a slow consumer.
pub async fn room_or_overflow(full: &NoRoom, deadline: Instant) {
    let wait = deadline.saturating_duration_since(Instant::now());
    if within(wait, poll_fn(|cx| full.out.poll_room(full.len, cx)))
        .await
        .is_none()
    {
        full.out.overflow();
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

/// A spread tenant became active on this shard: asks every other shard
/// for its presence entries, and notes how many answers to wait for
/// ([`presence_synced`]).
pub fn ask_presence(state: &ShardState, tenant: &str) {
    if state.shard.nr_shards < 2 {
        return;
    }
    let others = state.shard.nr_shards - 1;
    state
        .presence_syncs
        .borrow_mut()
        .insert(tenant.to_owned(), (others, Vec::new()));
    let id: Arc<str> = tenant.into();
    let from = state.shard.id;
    MeshForwarder::to_all(state, || ShardMsg::PresenceAsk {
        tenant: id.clone(),
        from,
    });
}

/// Waits (at most `wait`) until every other shard answered this shard's
/// presence question about `tenant`, so that a joiner's `presence_state`
/// holds every shard's entries.
pub async fn presence_synced(state: &ShardState, tenant: &str, wait: std::time::Duration) {
    let synced = poll_fn(|cx| {
        let mut syncs = state.presence_syncs.borrow_mut();
        match syncs.get_mut(tenant) {
            Some((_, wakers)) => {
                wakers.push(cx.waker().clone());
                std::task::Poll::Pending
            }
            None => std::task::Poll::Ready(()),
        }
    });
    if within(wait, synced).await.is_none() {
        tracing::warn!(
            tenant,
            "presence of the tenant's other shards did not arrive in time"
        );
    }
}

/// Answers another shard's presence question with this shard's entries
/// of the tenant (none if it is not active here), behind every delta sent
/// there before.
pub fn answer_presence(state: &ShardState, tenant: Arc<str>, from: usize) {
    let topics = state
        .tenant(&tenant)
        .map(|t| t.borrow().hub.presence_snapshots())
        .unwrap_or_default();
    let msg = ShardMsg::PresenceSync { tenant, topics };
    state.outbox.send(&state.shard, from, msg, 0, None);
}

/// Another shard's entries of a tenant, asked at its activation here.
pub fn presence_answered(state: &ShardState, tenant: &str, topics: Vec<TopicSnapshot>) {
    if let Some(t) = state.tenant(tenant) {
        let mut t = t.borrow_mut();
        for (topic, private, snap) in &topics {
            t.hub.apply_snapshot(topic, *private, snap);
        }
    }
    let mut syncs = state.presence_syncs.borrow_mut();
    if let Some((left, _)) = syncs.get_mut(tenant) {
        *left -= 1;
        if *left == 0 {
            if let Some((_, wakers)) = syncs.remove(tenant) {
                wakers.into_iter().for_each(std::task::Waker::wake);
            }
        }
    }
}

/// Another shard's presence change of a tenant's topic.
pub fn presence_changed(
    state: &ShardState,
    tenant: &str,
    topic: &str,
    private: bool,
    delta: &PresenceDelta,
) {
    if let Some(t) = state.tenant(tenant) {
        t.borrow_mut().hub.apply_presence(topic, private, delta);
    }
}
