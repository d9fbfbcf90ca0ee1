//! The per-tenant subscriber registry and the fan-out ("fastlane") path.
//!
//! A message is encoded once per wire form actually needed on the topic
//! (v2 text, v1 text, v2 binary) into a complete WebSocket frame (see
//! [`outgoing`](super::outgoing)), and every subscriber's queue gets a
//! clone of that `Bytes`: no per-subscriber JSON work and no
//! per-subscriber copy.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::cluster::NodeLink;
use super::interest::{self, Forward, ReadClass, ShardInterest};
use super::outgoing::{message_id, might_carry_id, FrameCache};
use super::presence::{PresenceSnapshot, ReplicaId, TopicPresence};
use crate::proto::phoenix::Vsn;

pub use super::outgoing::{encode, Outgoing};

/// Identifies one joined channel instance on a shard.
pub type ChannelId = u64;

/// Where frames for one connection go. The server implements it with the
/// socket's bounded write queue; tests with a vector.
pub trait Outbound {
    /// Queues one complete frame. Over the queue bound the connection is
    /// closed by the implementation; the caller never waits.
    fn push(&self, frame: Bytes);
    /// Whether this connection itself sent a kind-0 binary push, and so can
    /// decode binary kinds 0-2 (realtime-js cannot).
    fn speaks_kind0(&self) -> bool;
    /// Closes the connection with a WebSocket close code after what is queued.
    fn close(&self, code: u16);
    /// Whether [`Outbound::push`] of a `len`-byte frame would be queued
    /// now rather than close the connection as a slow consumer.
    fn has_room(&self, _len: usize) -> bool {
        true
    }
    /// Resolves once [`Outbound::has_room`] holds for `len`, for a
    /// producer that may wait for a subscriber that is still being written.
    fn poll_room(&self, _len: usize, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
    /// Closes the connection as a slow consumer, dropping what it has not
    /// read.
    fn overflow(&self) {
        self.close(1008);
    }
}

/// One subscriber of a topic.
pub struct Sub {
    /// The channel instance (for `self: false` and leaving).
    pub channel: ChannelId,
    /// The serializer its socket speaks.
    pub vsn: Vsn,
    /// Its connection's queue.
    pub out: Rc<dyn Outbound>,
    /// It may receive broadcasts: always on a public topic, on a private
    /// one only with the broadcast read policy.
    pub broadcast_read: bool,
    /// It may receive `presence_diff`s: always on a public topic, on a
    /// private one only with the presence read policy.
    pub presence_read: bool,
}

impl Sub {
    /// A subscriber of a public topic: it receives everything.
    pub fn public(channel: ChannelId, vsn: Vsn, out: Rc<dyn Outbound>) -> Sub {
        Sub {
            channel,
            vsn,
            out,
            broadcast_read: true,
            presence_read: true,
        }
    }

    /// Whether this subscriber may receive `msg`.
    fn reads(&self, msg: &Outgoing<'_>) -> bool {
        self.reads_class(msg.read_class())
    }

    fn reads_class(&self, class: ReadClass) -> bool {
        match class {
            ReadClass::Presence => self.presence_read,
            ReadClass::Broadcast => self.broadcast_read,
            ReadClass::Any => true,
        }
    }
}

/// Which topic of a tenant: its client name (`realtime:<name>`) and
/// whether it is the private one. Public and private topics of the same
/// name are disjoint (PROTOCOL 3.1): nothing sent on one reaches the
/// other. A plain `&str` names the public topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicKey<'a> {
    /// `realtime:<name>` as clients join it.
    pub topic: &'a str,
    /// The private namespace.
    pub private: bool,
}

impl<'a> From<&'a str> for TopicKey<'a> {
    fn from(topic: &'a str) -> Self {
        TopicKey {
            topic,
            private: false,
        }
    }
}

/// A topic: its subscribers and its presence state.
#[derive(Default)]
pub struct Topic {
    /// Joined channels, in join order.
    pub subs: Vec<Sub>,
    /// Presence entries tracked on this topic.
    pub presence: TopicPresence,
}

/// The ids of the messages replayed to one channel on its join (at most
/// 25, sorted): their live copies are not delivered to it again.
pub type ReplayedIds = Box<[Box<str>]>;

/// All topics of one tenant on one shard, keyed by the client topic
/// (`realtime:<name>`), public and private apart. With several shards a
/// hub is linked to the others: it announces its topics in the interest
/// table and forwards what it fans out to the shards with subscribers of
/// the topic (see [`interest`]).
#[derive(Default)]
pub struct Hub {
    topics: HashMap<Box<str>, Topic>,
    /// Private topics: a separate map, so no key of one can name the other.
    private: HashMap<Box<str>, Topic>,
    /// Channels that joined with a replay, and what was replayed to them
    /// (PROTOCOL 4.7). Kept beside the subscribers rather than in each
    /// [`Sub`], which stays small for the many that never replay; fan-out
    /// looks here only while it is not empty.
    replayed: HashMap<ChannelId, ReplayedIds>,
    /// Its link to the other shards; `None` with one shard.
    link: Option<Link>,
}

/// A hub's link to the other shards and to the other nodes.
struct Link {
    /// This shard's side of the interest table (`None` with one shard).
    shard: Option<Rc<ShardInterest>>,
    /// This shard's side of the cluster (`None` on a single node).
    node: Option<Rc<dyn NodeLink>>,
    /// The tenant's id, as forwarded messages name it.
    tenant: Arc<str>,
    /// The tenant's part of the slot hash.
    seed: u64,
}

impl Link {
    fn slot(&self, key: TopicKey<'_>) -> u32 {
        interest::slot(self.seed, key.private, key.topic)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // A tenant's state can go with subscribers still in it (a tenant
        // change closes them all): the shard's counts must not keep them.
        let Some(link) = &self.link else { return };
        for (private, space) in [(false, &self.topics), (true, &self.private)] {
            for (topic, t) in space {
                let key = TopicKey { topic, private };
                if let Some(shard) = &link.shard {
                    let slot = link.slot(key);
                    for s in &t.subs {
                        shard.lost(slot, s.vsn);
                    }
                }
                if let (Some(node), false) = (&link.node, t.subs.is_empty()) {
                    node.lost(&link.tenant, key.topic, key.private);
                }
            }
        }
    }
}

impl Hub {
    /// A hub of tenant `tenant` that shares its topics with the other
    /// shards through `shard` and with the other nodes through `node`.
    pub fn linked(
        shard: Option<Rc<ShardInterest>>,
        node: Option<Rc<dyn NodeLink>>,
        tenant: &str,
    ) -> Hub {
        Hub {
            topics: HashMap::new(),
            private: HashMap::new(),
            replayed: HashMap::new(),
            link: Some(Link {
                shard,
                node,
                tenant: tenant.into(),
                seed: interest::tenant_seed(tenant),
            }),
        }
    }

    fn space(&self, private: bool) -> &HashMap<Box<str>, Topic> {
        if private {
            &self.private
        } else {
            &self.topics
        }
    }

    fn space_mut(&mut self, private: bool) -> &mut HashMap<Box<str>, Topic> {
        if private {
            &mut self.private
        } else {
            &mut self.topics
        }
    }

    /// Adds a subscriber to a topic.
    pub fn subscribe<'k>(&mut self, key: impl Into<TopicKey<'k>>, sub: Sub) {
        let key = key.into();
        if let Some(shard) = self.link.as_ref().and_then(|l| l.shard.as_ref()) {
            shard.gained(self.link.as_ref().unwrap().slot(key), sub.vsn);
        }
        let replica = self.replica();
        let space = self.space_mut(key.private);
        let first = match space.get_mut(key.topic) {
            Some(t) => {
                t.subs.push(sub);
                t.subs.len() == 1
            }
            None => {
                let mut t = new_topic(replica);
                t.subs.push(sub);
                space.insert(key.topic.into(), t);
                true
            }
        };
        if let (true, Some(link)) = (first, &self.link) {
            if let Some(node) = &link.node {
                node.gained(&link.tenant, key.topic, key.private);
            }
        }
    }

    /// Withholds from `channel` the live copies of the messages whose ids
    /// were replayed to it, for as long as it is subscribed.
    pub fn set_replayed(&mut self, channel: ChannelId, mut ids: ReplayedIds) {
        if !ids.is_empty() {
            // Sorted, so that fan-out finds an id by bisection.
            ids.sort_unstable();
            self.replayed.insert(channel, ids);
        }
    }

    /// Removes a channel from a topic; the topic goes when nothing is left.
    pub fn unsubscribe<'k>(&mut self, key: impl Into<TopicKey<'k>>, channel: ChannelId) {
        let key = key.into();
        if !self.replayed.is_empty() {
            self.replayed.remove(&channel);
        }
        let slot = self
            .link
            .as_ref()
            .and_then(|l| Some((l.slot(key), l.shard.clone()?)));
        let space = self.space_mut(key.private);
        let mut last = false;
        if let Some(t) = space.get_mut(key.topic) {
            if let Some(i) = t.subs.iter().position(|s| s.channel == channel) {
                let gone = t.subs.swap_remove(i);
                if let Some((slot, shard)) = &slot {
                    shard.lost(*slot, gone.vsn);
                }
                last = t.subs.is_empty();
            }
            if t.subs.is_empty() && t.presence.is_empty() {
                space.remove(key.topic);
            }
        }
        let deaf = match (last, &self.link) {
            (true, Some(link)) => link
                .node
                .as_ref()
                .is_some_and(|node| node.lost(&link.tenant, key.topic, key.private)),
            _ => false,
        };
        if deaf {
            self.forget_other_nodes(key);
        }
    }

    /// Sets what a subscriber of a topic may read (its policies changed).
    pub fn set_reads<'k>(
        &mut self,
        key: impl Into<TopicKey<'k>>,
        channel: ChannelId,
        broadcast: bool,
        presence: bool,
    ) {
        let key = key.into();
        if let Some(t) = self.space_mut(key.private).get_mut(key.topic) {
            if let Some(s) = t.subs.iter_mut().find(|s| s.channel == channel) {
                s.broadcast_read = broadcast;
                s.presence_read = presence;
            }
        }
    }

    /// A topic, if anyone is on it.
    pub fn topic<'k>(&self, key: impl Into<TopicKey<'k>>) -> Option<&Topic> {
        let key = key.into();
        self.space(key.private).get(key.topic)
    }

    /// A topic, created if needed.
    pub fn topic_mut<'k>(&mut self, key: impl Into<TopicKey<'k>>) -> &mut Topic {
        let key = key.into();
        let replica = self.replica();
        self.space_mut(key.private)
            .entry(key.topic.into())
            .or_insert_with(|| new_topic(replica))
    }

    /// Number of topics with subscribers or presence.
    pub fn nr_topics(&self) -> usize {
        self.topics.len() + self.private.len()
    }

    /// Fans `msg` out to every subscriber of a topic except `exclude`
    /// (and those whose read policy withholds it). Returns the number of
    /// frames queued.
    pub fn fanout<'k>(
        &self,
        key: impl Into<TopicKey<'k>>,
        msg: &Outgoing<'_>,
        exclude: Option<ChannelId>,
    ) -> u64 {
        let key = key.into();
        let topic = key.topic;
        let Some(t) = self.space(key.private).get(topic) else {
            self.forward(key, msg, &mut FrameCache::default(), false);
            return 0;
        };
        let mut cache = FrameCache::default();
        let mut id = None;
        let mut n = 0;
        for s in &t.subs {
            if Some(s.channel) == exclude || !s.reads(msg) || self.was_replayed(s, msg, &mut id) {
                continue;
            }
            if let Some(f) = cache.frame(topic, msg, s.vsn, || s.out.speaks_kind0()) {
                s.out.push(f);
                n += 1;
            }
        }
        self.forward(key, msg, &mut cache, false);
        n
    }
}

/// A subscriber that has no room for a message now, with the length of
/// the frame it would get.
pub struct NoRoom {
    /// The subscriber's connection.
    pub out: Rc<dyn Outbound>,
    /// Length of its frame.
    pub len: usize,
}

impl Hub {
    /// [`Hub::fanout`] for a producer that waits rather than overflow a
    /// queue: when every subscriber has room for its frame, the message is
    /// queued to all and the number of frames returned; otherwise nothing
    /// is queued and the first subscriber without room is returned, to be
    /// waited for (or closed) before trying again.
    pub fn fanout_if_room<'k>(
        &self,
        key: impl Into<TopicKey<'k>>,
        msg: &Outgoing<'_>,
        exclude: Option<ChannelId>,
    ) -> Result<u64, NoRoom> {
        let key = key.into();
        let topic = key.topic;
        let Some(t) = self.space(key.private).get(topic) else {
            self.forward(key, msg, &mut FrameCache::default(), true);
            return Ok(0);
        };
        let mut cache = FrameCache::default();
        let mut id = None;
        for s in &t.subs {
            if Some(s.channel) == exclude || !s.reads(msg) || self.was_replayed(s, msg, &mut id) {
                continue;
            }
            if let Some(f) = cache.frame(topic, msg, s.vsn, || s.out.speaks_kind0()) {
                if !s.out.has_room(f.len()) {
                    return Err(NoRoom {
                        out: s.out.clone(),
                        len: f.len(),
                    });
                }
            }
        }
        let mut n = 0;
        for s in &t.subs {
            if Some(s.channel) == exclude || !s.reads(msg) || self.was_replayed(s, msg, &mut id) {
                continue;
            }
            if let Some(f) = cache.frame(topic, msg, s.vsn, || s.out.speaks_kind0()) {
                s.out.push(f);
                n += 1;
            }
        }
        self.forward(key, msg, &mut cache, true);
        Ok(n)
    }
}

impl Hub {
    /// Whether `msg` is the live copy of a message replayed to `sub`.
    /// `id` caches the message's id across the subscribers of one fan-out:
    /// it is read at most once, and only if some subscriber replayed.
    fn was_replayed(&self, sub: &Sub, msg: &Outgoing<'_>, id: &mut Option<Option<String>>) -> bool {
        if self.replayed.is_empty() {
            return false;
        }
        let Some(ids) = self.replayed.get(&sub.channel) else {
            return false;
        };
        match id.get_or_insert_with(|| message_id(msg)) {
            Some(id) => ids.binary_search_by(|r| (**r).cmp(id.as_str())).is_ok(),
            None => false,
        }
    }
}

impl Hub {
    /// Sends `msg` on to the other shards with subscribers of its topic,
    /// as the frames `cache` holds (or encodes now for the forms only
    /// they need).
    fn forward(
        &self,
        key: TopicKey<'_>,
        msg: &Outgoing<'_>,
        cache: &mut FrameCache,
        patient: bool,
    ) {
        let Some(link) = &self.link else { return };
        let (v1, v2) = match &link.shard {
            Some(shard) => shard.others(link.slot(key)),
            None => (0, 0),
        };
        // Presence travels between nodes as state, not as diff frames.
        let node = link
            .node
            .as_ref()
            .filter(|_| msg.read_class() != ReadClass::Presence);
        if v1 | v2 == 0 && node.is_none() {
            return;
        }
        // Other nodes' subscribers are unknown here: they get every form
        // (a kind-0 re-fan has no v1 form).
        let kind0 = matches!(msg, Outgoing::Kind0 { .. });
        let v1f = ((v1 != 0 || node.is_some()) && !kind0)
            .then(|| cache.form(Vsn::V1, key.topic, msg))
            .flatten();
        let v2f = (v2 != 0 || node.is_some())
            .then(|| cache.form(Vsn::V2, key.topic, msg))
            .flatten();
        let targets = if v1f.is_some() { v1 } else { 0 } | if v2f.is_some() { v2 } else { 0 };
        if targets == 0 && (node.is_none() || v1f.is_none() && v2f.is_none()) {
            return;
        }
        let id = might_carry_id(msg).then(|| message_id(msg)).flatten();
        let fwd = Forward {
            tenant: link.tenant.clone(),
            topic: key.topic.into(),
            private: key.private,
            v1: v1f,
            v2: v2f,
            class: msg.read_class(),
            kind0,
            id: id.map(String::into_boxed_str),
            patient,
        };
        if let Some(node) = node {
            node.publish(&fwd);
        }
        if let (Some(shard), true) = (&link.shard, targets != 0) {
            shard.forwarder.forward(targets, Arc::new(fwd));
        }
    }

    /// Fans out a message another shard forwarded, to this shard's
    /// subscribers of its topic only (never forwarded again). Returns the
    /// number of frames queued.
    pub fn deliver(&self, fwd: &Forward) -> u64 {
        let mut n = 0;
        self.each_receiver(fwd, |s, f| {
            s.out.push(f.clone());
            n += 1;
        });
        n
    }

    /// [`Hub::deliver`] for a patient message ([`Forward::patient`]): when
    /// every receiver has room, as `deliver`; otherwise nothing is queued
    /// and the first receiver without room is returned.
    pub fn deliver_if_room(&self, fwd: &Forward) -> Result<u64, NoRoom> {
        let mut full = None;
        self.each_receiver(fwd, |s, f| {
            if full.is_none() && !s.out.has_room(f.len()) {
                full = Some(NoRoom {
                    out: s.out.clone(),
                    len: f.len(),
                });
            }
        });
        match full {
            Some(full) => Err(full),
            None => Ok(self.deliver(fwd)),
        }
    }

    /// Calls `each` with every subscriber here that receives `fwd`, and its
    /// frame.
    fn each_receiver(&self, fwd: &Forward, mut each: impl FnMut(&Sub, &Bytes)) {
        let Some(t) = self.space(fwd.private).get(&*fwd.topic) else {
            return;
        };
        for s in &t.subs {
            if !s.reads_class(fwd.class) {
                continue;
            }
            if fwd.kind0 && (s.vsn != Vsn::V2 || !s.out.speaks_kind0()) {
                continue;
            }
            if let Some(id) = &fwd.id {
                if self
                    .replayed
                    .get(&s.channel)
                    .is_some_and(|ids| ids.binary_search_by(|r| (**r).cmp(id)).is_ok())
                {
                    continue;
                }
            }
            let frame = match s.vsn {
                Vsn::V1 => &fwd.v1,
                Vsn::V2 => &fwd.v2,
            };
            if let Some(f) = frame {
                each(s, f);
            }
        }
    }

    /// Messages of a topic forwarded to this shard were lost on the way
    /// (the queue between shards overflowed): its subscribers here are
    /// closed with the slow-consumer code (1008), as one that overflows
    /// its own queue is, rather than go on with a gap they cannot see.
    /// What reached them before the gap is written first. Returns how
    /// many.
    pub fn lost<'k>(&self, key: impl Into<TopicKey<'k>>) -> usize {
        let key = key.into();
        let Some(t) = self.space(key.private).get(key.topic) else {
            return 0;
        };
        for s in &t.subs {
            s.out.close(1008);
        }
        t.subs.len()
    }
}

/// A subscriber queue for unit tests of fan-out: keeps every frame.
#[cfg(test)]
pub(crate) mod test_sink {
    use std::cell::RefCell;

    use bytes::Bytes;

    use super::Outbound;

    /// Keeps every frame pushed.
    #[derive(Default)]
    pub(crate) struct Sink(pub(crate) RefCell<Vec<Bytes>>);

    impl Outbound for Sink {
        fn push(&self, frame: Bytes) {
            self.0.borrow_mut().push(frame);
        }
        fn speaks_kind0(&self) -> bool {
            false
        }
        fn close(&self, _: u16) {}
    }

    /// The payload of an unmasked server frame.
    pub(crate) fn payload(f: &[u8]) -> &[u8] {
        match f[1] & 0x7f {
            126 => &f[4..],
            127 => &f[10..],
            _ => &f[2..],
        }
    }
}

/// A topic's snapshot as it crosses: (topic, private, entries).
pub type TopicSnapshot = (Arc<str>, bool, PresenceSnapshot);

/// An empty topic whose presence is replica `replica` of it.
fn new_topic(replica: ReplicaId) -> Topic {
    Topic {
        subs: Vec::new(),
        presence: TopicPresence::new(replica),
    }
}

#[path = "hub_presence.rs"]
mod presence;
#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
