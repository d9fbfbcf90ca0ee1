//! Liveness of the other nodes' shards (see the parent's "Presence and
//! liveness"): heartbeats out, heartbeats and presence in, and the
//! replicas let go after `NODE_TIMEOUT_MS` unheard.

use std::rc::Rc;
use std::time::Instant;

use super::{Cluster, Incoming, TopicId, HEARTBEAT_SUBJECT};
use crate::realtime::presence::ReplicaId;

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
            realtime_shards::ShardStats::gauge(&self.stats().nats_peers, 1);
            tracing::info!(replica = format_args!("{:x}", replica.0), client = %self.name, "another node's shard heard");
            let mut i = self.inner.borrow_mut();
            let held: Vec<TopicId> = i.topics.keys().cloned().collect();
            i.sync.extend(held.into_iter().map(|id| (id, replica.0)));
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
            for r in gone {
                realtime_shards::ShardStats::gauge(&self.stats().nats_peers, -1);
                tracing::warn!(replica = format_args!("{:x}", r.0), client = %self.name, "another node's shard unheard for NODE_TIMEOUT_MS: its presence leaves");
                (self.sink)(Incoming::ReplicaGone(r));
            }
        }
    }
}
