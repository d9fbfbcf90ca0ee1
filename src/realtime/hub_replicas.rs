//! Presence of a `spread` tenant across shards: each shard is the replica
//! of record for the entries of its own channels and sends a delta of
//! every change to the tenant's other shards; every shard holds the
//! merged view, so a joiner's `presence_state` is complete and local. A
//! shard that starts serving the tenant asks the others for snapshots
//! of their entries first (see the server's `forward`). The frames of a
//! `presence_diff` travel as any fanned-out message does, to the shards
//! with subscribers of the topic; the deltas go to every shard, so that
//! a shard without subscribers now has the state when one joins.

use std::sync::Arc;

use super::{FrameCache, Hub, Outgoing, TopicKey};
use crate::realtime::presence::{OwnerId, PresenceDelta, PresenceSnapshot, ReplicaId};

/// A topic's snapshot as it crosses: (topic, private, entries).
pub type TopicSnapshot = (Arc<str>, bool, PresenceSnapshot);

impl Hub {
    /// The replica this hub's presence is: its shard.
    pub(super) fn replica(&self) -> ReplicaId {
        ReplicaId(self.link.as_ref().map_or(0, |l| l.shard.me as u32))
    }

    /// Sends the tenant's other shards the change `owner`'s entry on
    /// `key` just went through (its whole state now).
    pub fn replicate_presence(&self, key: TopicKey<'_>, owner: OwnerId) {
        let Some(link) = &self.link else { return };
        let Some(t) = self.space(key.private).get(key.topic) else {
            return;
        };
        let delta = t.presence.local_delta(owner);
        link.shard
            .forwarder
            .presence(&link.tenant, key.topic.into(), key.private, delta);
    }

    /// Applies another shard's delta. Its `presence_diff` frames come on
    /// their own (to the shards with subscribers), so no diff is sent here.
    pub fn apply_presence(&mut self, topic: &str, private: bool, delta: &PresenceDelta) {
        let key = TopicKey { topic, private };
        let _ = self.topic_mut(key).presence.apply_delta(delta);
        self.prune(key);
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

    /// Takes another shard's entries of a topic as they are now; what
    /// changed for this shard's subscribers (who may have joined before
    /// the snapshot came) is sent to them as a `presence_diff`, here only.
    /// Returns the number of frames queued.
    pub fn apply_snapshot(&mut self, topic: &str, private: bool, snap: &PresenceSnapshot) -> u64 {
        let key = TopicKey { topic, private };
        let diff = self.topic_mut(key).presence.replace_origin(snap);
        let mut n = 0;
        if !diff.is_empty() {
            let mut body = Vec::with_capacity(128);
            diff.to_json(&mut body);
            let msg = Outgoing::Json {
                event: "presence_diff",
                payload: &body,
            };
            n = self.fanout_here(key, &msg);
        }
        self.prune(key);
        n
    }

    /// Fans `msg` out to this shard's subscribers of a topic only.
    fn fanout_here(&self, key: TopicKey<'_>, msg: &Outgoing<'_>) -> u64 {
        let Some(t) = self.space(key.private).get(key.topic) else {
            return 0;
        };
        let mut cache = FrameCache::default();
        let mut n = 0;
        for s in t.subs.iter().filter(|s| s.reads(msg)) {
            if let Some(f) = cache.frame(key.topic, msg, s) {
                s.out.push(f);
                n += 1;
            }
        }
        n
    }

    /// Drops a topic left with neither subscribers nor presence.
    fn prune(&mut self, key: TopicKey<'_>) {
        let space = self.space_mut(key.private);
        if space
            .get(key.topic)
            .is_some_and(|t| t.subs.is_empty() && t.presence.is_empty())
        {
            space.remove(key.topic);
        }
    }
}
