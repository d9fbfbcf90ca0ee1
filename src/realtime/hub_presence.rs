//! Presence of a topic over replicas: the shards of a `spread` tenant,
//! and the nodes of a cluster (see `presence/replica.rs` for the
//! protocol).
//!
//! Between shards, each shard is the replica of record for its own
//! channels' entries and sends every change to the tenant's other shards
//! (all of them, so a shard has the state when a subscriber joins); a
//! shard new to the tenant first takes the others' snapshots (the
//! server's `forward`). `presence_diff` frames travel as any fan-out
//! does.
//!
//! Between nodes, every shard is a replica too, named by its node and
//! shard ([`ReplicaId::of`]), but only while it has subscribers of the
//! topic: its changes go to the nodes subscribed to the topic as deltas
//! (never as frames), and each receiving shard works out the diff for
//! its own subscribers. A shard that loses its last subscriber of a topic
//! drops the other nodes' entries of it (it hears no more of them); one
//! that gains a first subscriber asks the others for theirs.

use std::sync::Arc;

use super::{FrameCache, Hub, Outgoing, TopicKey, TopicSnapshot};
use crate::realtime::cluster::NodePresence;
use crate::realtime::presence::{Diff, OwnerId, PresenceDelta, PresenceSnapshot, ReplicaId};

impl Hub {
    /// The replica this hub's presence is: its shard, of its node.
    pub(super) fn replica(&self) -> ReplicaId {
        let Some(link) = &self.link else {
            return ReplicaId(0);
        };
        let shard = link.shard.as_ref().map_or(0, |s| s.me);
        let node = link.node.as_ref().map_or(0, |n| n.node_id());
        ReplicaId::of(node, shard)
    }

    /// Sends the change `owner`'s entry on `key` just went through (its
    /// whole state now) to the other nodes with subscribers of the topic,
    /// and, when `to_shards` (a spread tenant), to the tenant's other
    /// shards.
    pub fn replicate_presence(&self, key: TopicKey<'_>, owner: OwnerId, to_shards: bool) {
        let Some(link) = &self.link else { return };
        let Some(t) = self.space(key.private).get(key.topic) else {
            return;
        };
        let delta = t.presence.local_delta(owner);
        if let Some(node) = &link.node {
            let body = NodePresence::Delta(delta.clone());
            node.presence(&link.tenant, key.topic, key.private, body);
        }
        if let (Some(shard), true) = (&link.shard, to_shards) {
            shard
                .forwarder
                .presence(&link.tenant, key.topic.into(), key.private, delta);
        }
    }

    /// Applies another shard's delta. Its `presence_diff` frames come on
    /// their own (to the shards with subscribers), so no diff is sent here.
    pub fn apply_presence(&mut self, topic: &str, private: bool, delta: &PresenceDelta) {
        let key = TopicKey { topic, private };
        let _ = self.topic_mut(key).presence.apply_delta(delta);
        self.prune(key);
    }

    /// Applies another node's delta, telling this shard's subscribers of
    /// the topic what changed (that node's frames do not cross). Call it
    /// only while this shard hears about the topic (see
    /// [`Hub::forget_other_nodes`]). Returns the number of frames queued.
    pub fn apply_node_delta(&mut self, topic: &str, private: bool, delta: &PresenceDelta) -> u64 {
        let key = TopicKey { topic, private };
        let diff = self.topic_mut(key).presence.apply_delta(delta);
        let n = self.tell_here(key, &diff);
        self.prune(key);
        n
    }

    /// This shard's own entries of every topic that has some.
    pub fn presence_snapshots(&self) -> Vec<TopicSnapshot> {
        let mut out = Vec::new();
        for (private, space) in [(false, &self.topics), (true, &self.private)] {
            for (topic, t) in space {
                let snap = t.presence.snapshot();
                if !snap.is_empty() {
                    out.push((Arc::from(&**topic), private, snap));
                }
            }
        }
        out
    }

    /// This shard's own entries of one topic (none if it has none).
    pub fn presence_snapshot(&self, key: TopicKey<'_>) -> PresenceSnapshot {
        match self.topic(key) {
            Some(t) => t.presence.snapshot(),
            None => PresenceSnapshot::from_entries(self.replica(), Vec::new()),
        }
    }

    /// Takes another replica's entries of a topic as they are now; what
    /// changed for this shard's subscribers (who may have joined before
    /// the snapshot came) is sent to them as a `presence_diff`, here only.
    /// Returns the number of frames queued.
    pub fn apply_snapshot(&mut self, topic: &str, private: bool, snap: &PresenceSnapshot) -> u64 {
        let key = TopicKey { topic, private };
        let diff = self.topic_mut(key).presence.replace_origin(snap);
        let n = self.tell_here(key, &diff);
        self.prune(key);
        n
    }

    /// A replica (another node's shard) is gone: its entries leave every
    /// topic, told to this shard's subscribers. Returns the number of
    /// frames queued.
    pub fn remove_replica(&mut self, replica: ReplicaId) -> u64 {
        let mut touched = Vec::new();
        for (private, space) in [(false, &mut self.topics), (true, &mut self.private)] {
            for (topic, t) in space.iter_mut() {
                let diff = t.presence.remove_origin(replica);
                if !diff.is_empty() {
                    touched.push((topic.clone(), private, diff));
                }
            }
        }
        let mut n = 0;
        for (topic, private, diff) in touched {
            let key = TopicKey {
                topic: &topic,
                private,
            };
            n += self.tell_here(key, &diff);
            self.prune(key);
        }
        n
    }

    /// Drops, without telling anyone, the entries other nodes hold in a
    /// topic this shard stopped hearing about (its link unsubscribed:
    /// later changes would not reach it, and a new subscription asks for
    /// every entry again).
    pub fn forget_other_nodes(&mut self, key: TopicKey<'_>) {
        let me = self.replica().node();
        if let Some(t) = self.space_mut(key.private).get_mut(key.topic) {
            for origin in t.presence.remote_origins() {
                if origin.node() != me {
                    let _ = t.presence.remove_origin(origin);
                }
            }
        }
        self.prune(key);
    }

    /// Sends `diff` to this shard's subscribers of a topic that may read
    /// presence.
    fn tell_here(&self, key: TopicKey<'_>, diff: &Diff) -> u64 {
        if diff.is_empty() {
            return 0;
        }
        let mut body = Vec::with_capacity(128);
        diff.to_json(&mut body);
        let msg = Outgoing::Json {
            event: "presence_diff",
            payload: &body,
        };
        self.fanout_here(key, &msg)
    }

    /// Fans `msg` out to this shard's subscribers of a topic only.
    fn fanout_here(&self, key: TopicKey<'_>, msg: &Outgoing<'_>) -> u64 {
        let Some(t) = self.space(key.private).get(key.topic) else {
            return 0;
        };
        let mut cache = FrameCache::default();
        let mut n = 0;
        for s in t.subs.iter().filter(|s| s.reads(msg)) {
            if let Some(f) = cache.frame(key.topic, msg, s.vsn, || s.out.speaks_kind0()) {
                s.out.push(f);
                n += 1;
            }
        }
        n
    }

    /// Drops a topic left with neither subscribers nor presence.
    pub(super) fn prune(&mut self, key: TopicKey<'_>) {
        let space = self.space_mut(key.private);
        if space
            .get(key.topic)
            .is_some_and(|t| t.subs.is_empty() && t.presence.is_empty())
        {
            space.remove(key.topic);
        }
    }
}
