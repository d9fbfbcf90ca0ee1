//! Liveness of the other nodes' shards (see the parent's "Presence and
//! liveness"): heartbeats out, heartbeats and presence in, and the
//! replicas let go after `NODE_TIMEOUT_MS` unheard. And the asks of a
//! shard new to a topic: it asks every live shard of the other nodes for
//! its entries (`rt.ask`), each answers on the asker's inbox, even with
//! none, and a join of the topic waits for them all (or for
//! `JOIN_WAIT`), so its `presence_state` holds every node's entries, as
//! the Elixir server's does.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use realtime_shards::ShardStats;

use super::{inbox_of, Cluster, Incoming, TopicId, ASK_SUBJECT, HEARTBEAT_SUBJECT};
use crate::proto::nats as wire;
use crate::realtime::cluster::{self, NodePresence, Received, ASK_NONE};
use crate::realtime::presence::{PresenceSnapshot, ReplicaId};

/// An ask, as it crosses.
#[derive(serde::Serialize, serde::Deserialize)]
struct Ask {
    /// The asking shard.
    from: u64,
    tenant: String,
    private: bool,
    topic: String,
}

impl Cluster {
    /// Another node's shard is alive. One not heard of before (new, or
    /// gone and back: paused, cut off) is asked for its entries of every
    /// topic held here, and sent these: each may have dropped the other's.
    pub(super) fn heard(&self, replica: ReplicaId) {
        if replica.node() == self.node || replica.node() == 0 {
            return;
        }
        let new = self
            .peers
            .borrow_mut()
            .insert(replica, Instant::now())
            .is_none();
        if new {
            ShardStats::gauge(&self.stats().nats_peers, 1);
            tracing::info!(replica = format_args!("{:x}", replica.0), client = %self.name, "another node's shard heard");
            let mut i = self.inner.borrow_mut();
            let held: Vec<TopicId> = i.topics.keys().cloned().collect();
            i.sync.extend(held.into_iter().map(|id| (id, replica.0)));
            // A heartbeat back at once: a shard that just connected learns
            // of this one within a round trip, not a beat.
            if i.up {
                let me = self.replica().0.to_le_bytes();
                let _ = wire::write_pub(&mut i.out, HEARTBEAT_SUBJECT.as_bytes(), None, &me);
            }
            drop(i);
            self.wake_writer();
        }
    }

    /// Says this shard is alive, five times per timeout, and lets the
    /// other nodes' shards go that were not heard from for the timeout;
    /// for the life of the shard, connected or not.
    pub(super) async fn beat(self: Rc<Self>) {
        let every = self.timeout / 5;
        let mut last = Instant::now();
        loop {
            glommio::timer::sleep(every).await;
            let now = Instant::now();
            // Back from a stall of its own (a stopped process, a starved
            // core): what the others said meanwhile is still unread, so
            // nobody is let go this turn.
            let stalled = now - last > self.timeout / 2;
            last = now;
            if self.is_up() {
                let me = self.replica().0.to_le_bytes();
                self.publish_raw(HEARTBEAT_SUBJECT, &me);
                if self.tenants {
                    (self.sink)(Incoming::Beat);
                }
            }
            if stalled {
                continue;
            }
            let mut gone = Vec::new();
            self.peers.borrow_mut().retain(|&r, seen| {
                let alive = now.duration_since(*seen) < self.timeout;
                if !alive {
                    gone.push(r);
                }
                alive
            });
            if !gone.is_empty() {
                // Their answers will not come.
                let mut i = self.inner.borrow_mut();
                i.pending.retain(|_, waiting| {
                    waiting.retain(|r| !gone.contains(r));
                    !waiting.is_empty()
                });
                drop(i);
                self.wake_waiters();
            }
            for r in gone {
                ShardStats::gauge(&self.stats().nats_peers, -1);
                tracing::warn!(replica = format_args!("{:x}", r.0), client = %self.name, "another node's shard unheard for NODE_TIMEOUT_MS: its presence leaves");
                (self.sink)(Incoming::ReplicaGone(r));
            }
        }
    }

    /// Asks every other node's shard heard now for its entries of `id`,
    /// newly subscribed to here; joins of it wait for the answers.
    pub(super) fn ask(&self, id: &TopicId) {
        let waiting: std::collections::HashSet<ReplicaId> =
            self.peers.borrow().keys().copied().collect();
        if waiting.is_empty() {
            return;
        }
        let ask = Ask {
            from: self.replica().0,
            tenant: id.0.to_string(),
            private: id.1,
            topic: id.2.to_string(),
        };
        let payload = serde_json::to_vec(&ask).expect("an ask serializes");
        let mut i = self.inner.borrow_mut();
        if wire::write_pub(&mut i.out, ASK_SUBJECT.as_bytes(), None, &payload).is_ok() {
            i.pending.insert(id.clone(), waiting);
        }
        drop(i);
        self.wake_writer();
    }

    /// Another shard's ask: answered by the shard with its entries.
    pub(super) fn asked(&self, payload: &[u8]) {
        let Ok(ask) = serde_json::from_slice::<Ask>(payload) else {
            ShardStats::add(&self.stats().nats_invalid, 1);
            return;
        };
        let from = ReplicaId(ask.from);
        if from.node() == self.node {
            return;
        }
        self.heard(from);
        let id = (Arc::from(ask.tenant), ask.private, Arc::from(ask.topic));
        (self.sink)(Incoming::Ask { id, from });
    }

    /// Sends `to` this shard's entries of `id`, in answer to its ask.
    pub fn answer(&self, to: ReplicaId, id: &TopicId, entries: PresenceSnapshot) {
        #[cfg(feature = "fault-injection")]
        if id.2.contains(super::super::fault::SLOW_ANSWER) {
            if let Some(me) = self.me.upgrade() {
                let id = id.clone();
                glommio::spawn_local(async move {
                    let late = super::super::fault::SLOW_SUBSCRIBE_MS;
                    glommio::timer::sleep(std::time::Duration::from_millis(late)).await;
                    me.answer_now(to, &id, entries);
                })
                .detach();
                return;
            }
        }
        self.answer_now(to, id, entries);
    }

    fn answer_now(&self, to: ReplicaId, id: &TopicId, entries: PresenceSnapshot) {
        let body = NodePresence::Snapshot {
            entries,
            ask: ASK_NONE,
        };
        let payload = cluster::encode_presence(&id.0, &id.2, id.1, &body);
        let mut i = self.inner.borrow_mut();
        if !i.up || payload.len() > i.max_payload {
            ShardStats::add(&self.stats().nats_drops, 1);
            return;
        }
        let _ = wire::write_pub(&mut i.out, inbox_of(to).as_bytes(), None, &payload);
        drop(i);
        self.wake_writer();
    }

    /// An answer to this shard's ask: applied, and no longer waited for.
    pub(super) fn answered(&self, payload: &bytes::Bytes) {
        let Ok(Received::Presence {
            tenant,
            topic,
            private,
            body: body @ NodePresence::Snapshot { .. },
        }) = cluster::decode(payload)
        else {
            ShardStats::add(&self.stats().nats_invalid, 1);
            return;
        };
        let NodePresence::Snapshot { entries, .. } = &body else {
            return;
        };
        let from = entries.origin();
        if from.node() == self.node {
            return;
        }
        let id: TopicId = (tenant, private, topic);
        self.heard(from);
        let mut i = self.inner.borrow_mut();
        if !i.topics.contains_key(&id) {
            // Unsubscribed meanwhile: nothing of it is kept.
            return;
        }
        let done = i.pending.get_mut(&id).is_some_and(|waiting| {
            waiting.remove(&from);
            waiting.is_empty()
        });
        if done {
            i.pending.remove(&id);
        }
        drop(i);
        ShardStats::add(&self.stats().nats_in, 1);
        (self.sink)(Incoming::Presence { id, body });
        if done {
            self.wake_waiters();
        }
    }
}
