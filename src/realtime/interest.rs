//! Which shards have subscribers of a topic, known to every shard without
//! a message or a lock, and what crosses to them.
//!
//! # The interest table
//!
//! One table per process, shared by every shard: a slot per hash of
//! (tenant, private, topic) holding two bit sets (a bit per shard), one for
//! shards with v1 subscribers in that slot, one for v2. A shard sets its
//! bit when it gains its first local subscriber of the slot and clears it
//! when it loses its last ([`ShardInterest`] counts per slot on each
//! shard, because topics of different tenants can share a slot). A
//! publisher reads the two words of its slot and sends the frames once to
//! each other shard whose bit is set, encoding only the wire forms those
//! shards need.
//!
//! The bit is set before the join that caused it is answered, so a
//! broadcast sent after a client saw its join reply finds it: no
//! announcement message, no wait. Two topics sharing a slot only cost a
//! shard a frame it finds no subscriber for. With one shard there is no
//! table at all.
//!
//! Shards are at most 64 (one bit each in a `u64`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::proto::phoenix::Vsn;
use crate::realtime::presence::PresenceDelta;

/// A tenant's topic: (tenant, private, `realtime:<name>`).
pub type TopicId = (Arc<str>, bool, Arc<str>);

/// Most shards one table serves.
pub const MAX_SHARDS: usize = 64;

/// Slots in a table: 2 x 8 bytes each, 1 MiB in all.
pub const SLOTS: usize = 1 << 16;

/// The process-wide table: per slot, the shards with v1 and with v2
/// subscribers.
pub struct InterestTable {
    /// `[slot * 2 + form]`, form 0 = v1, 1 = v2.
    bits: Box<[AtomicU64]>,
}

impl Default for InterestTable {
    fn default() -> Self {
        Self {
            bits: (0..SLOTS * 2).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl InterestTable {
    /// The shards with subscribers of `slot`: (v1, v2).
    #[inline]
    pub fn shards(&self, slot: u32) -> (u64, u64) {
        let i = slot as usize * 2;
        (
            self.bits[i].load(Ordering::SeqCst),
            self.bits[i + 1].load(Ordering::SeqCst),
        )
    }

    fn set(&self, slot: u32, form: usize, shard: usize, on: bool) {
        let word = &self.bits[slot as usize * 2 + form];
        let bit = 1u64 << shard;
        // SeqCst: a join is answered after this store, and a publisher that
        // heard of the join (through any socket) must see it.
        if on {
            word.fetch_or(bit, Ordering::SeqCst);
        } else {
            word.fetch_and(!bit, Ordering::SeqCst);
        }
    }
}

/// The slot of a tenant's topic.
pub fn slot(tenant_seed: u64, private: bool, topic: &str) -> u32 {
    let mut h = tenant_seed ^ u64::from(private);
    h = h.wrapping_mul(0x0100_0000_01b3);
    for b in topic.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Fold the high bits in: FNV's low bits alone mix poorly.
    ((h ^ (h >> 29) ^ (h >> 47)) % SLOTS as u64) as u32
}

/// The part of a slot hash that depends on the tenant (FNV-1a of its id
/// and a separator no id contains).
pub fn tenant_seed(tenant: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tenant.as_bytes().iter().chain(&[0xff]) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn form(vsn: Vsn) -> usize {
    match vsn {
        Vsn::V1 => 0,
        Vsn::V2 => 1,
    }
}

/// What reading a message takes (the same rule as a local subscriber's
/// read policies, carried with a forwarded message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadClass {
    /// A broadcast: needs broadcast read on a private topic.
    Broadcast,
    /// A `presence_diff`: needs presence read.
    Presence,
    /// Anything else (`system`...): everyone reads it.
    Any,
}

/// A message encoded on one shard, on its way to the other shards with
/// subscribers of its topic: the very frames the local subscribers got.
#[derive(Debug)]
pub struct Forward {
    /// The tenant's external id.
    pub tenant: Arc<str>,
    /// `realtime:<name>` as clients join it.
    pub topic: Arc<str>,
    /// The private namespace.
    pub private: bool,
    /// The frame for v1 subscribers (`None`: they get nothing).
    pub v1: Option<Bytes>,
    /// The frame for v2 subscribers (`None`: they get nothing).
    pub v2: Option<Bytes>,
    /// Which read policy it needs.
    pub class: ReadClass,
    /// A kind-0 re-fan: only to v2 sockets that speak kind 0.
    pub kind0: bool,
    /// Its id, for channels that were replayed it (PROTOCOL 4.7).
    pub id: Option<Box<str>>,
    /// From a producer that waits for its subscribers' room (the REST
    /// API): the receiving shard waits for its own subscribers' room too,
    /// rather than close one whose queue is still being written.
    pub patient: bool,
}

impl Forward {
    /// Bytes its frames take (what a queue of them holds).
    pub fn len(&self) -> usize {
        self.v1.as_ref().map_or(0, Bytes::len) + self.v2.as_ref().map_or(0, Bytes::len)
    }

    /// Whether it carries no frame at all.
    pub fn is_empty(&self) -> bool {
        self.v1.is_none() && self.v2.is_none()
    }
}

/// Sends forwarded messages to other shards; the server implements it
/// with its queues between shards. It never waits: a message it cannot
/// queue is accounted for by the implementation (see the server's
/// `forward` module).
pub trait Forwarder {
    /// Queues `msg` once to each shard in `targets` (a bit per shard).
    fn forward(&self, targets: u64, msg: Arc<Forward>);
    /// Queues a presence delta of a tenant's topic to every other shard.
    fn presence(&self, tenant: &Arc<str>, topic: Arc<str>, private: bool, delta: PresenceDelta);
}

/// One shard's side of the table: its counts per slot, and how it sends.
pub struct ShardInterest {
    /// The shared table.
    pub table: Arc<InterestTable>,
    /// This shard's number.
    pub me: usize,
    /// Local subscribers per slot and form, over all tenants of this shard.
    counts: RefCell<HashMap<u32, [u32; 2]>>,
    /// Where forwarded messages go.
    pub forwarder: Rc<dyn Forwarder>,
}

impl ShardInterest {
    /// Shard `me`'s side of `table`.
    pub fn new(table: Arc<InterestTable>, me: usize, forwarder: Rc<dyn Forwarder>) -> Self {
        assert!(me < MAX_SHARDS, "at most {MAX_SHARDS} shards");
        Self {
            table,
            me,
            counts: RefCell::default(),
            forwarder,
        }
    }

    /// A `vsn` subscriber of `slot` joined on this shard.
    pub fn gained(&self, slot: u32, vsn: Vsn) {
        let f = form(vsn);
        let mut counts = self.counts.borrow_mut();
        let c = counts.entry(slot).or_default();
        c[f] += 1;
        if c[f] == 1 {
            self.table.set(slot, f, self.me, true);
        }
    }

    /// A `vsn` subscriber of `slot` left this shard.
    pub fn lost(&self, slot: u32, vsn: Vsn) {
        let f = form(vsn);
        let mut counts = self.counts.borrow_mut();
        let Some(c) = counts.get_mut(&slot) else {
            debug_assert!(false, "a subscriber left a slot it never joined");
            return;
        };
        c[f] = c[f].saturating_sub(1);
        if c[f] == 0 {
            self.table.set(slot, f, self.me, false);
            if c[1 - f] == 0 {
                counts.remove(&slot);
            }
        }
    }

    /// The other shards with subscribers of `slot`: (v1, v2).
    #[inline]
    pub fn others(&self, slot: u32) -> (u64, u64) {
        let (v1, v2) = self.table.shards(slot);
        let not_me = !(1u64 << self.me);
        (v1 & not_me, v2 & not_me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nowhere;
    impl Forwarder for Nowhere {
        fn forward(&self, _: u64, _: Arc<Forward>) {}
        fn presence(&self, _: &Arc<str>, _: Arc<str>, _: bool, _: PresenceDelta) {}
    }

    #[test]
    fn first_and_last_subscriber_set_and_clear_the_bit() {
        let table = Arc::new(InterestTable::default());
        let a = ShardInterest::new(table.clone(), 0, Rc::new(Nowhere));
        let b = ShardInterest::new(table.clone(), 3, Rc::new(Nowhere));
        let s = slot(tenant_seed("t"), false, "realtime:room");
        assert_eq!(a.others(s), (0, 0));
        b.gained(s, Vsn::V2);
        b.gained(s, Vsn::V2);
        b.gained(s, Vsn::V1);
        assert_eq!(a.others(s), (1 << 3, 1 << 3));
        assert_eq!(b.others(s), (0, 0), "a shard never sends to itself");
        b.lost(s, Vsn::V1);
        assert_eq!(a.others(s), (0, 1 << 3));
        b.lost(s, Vsn::V2);
        assert_eq!(a.others(s), (0, 1 << 3), "one v2 subscriber is left");
        b.lost(s, Vsn::V2);
        assert_eq!(a.others(s), (0, 0));
        assert!(b.counts.borrow().is_empty());
    }

    #[test]
    fn slots_separate_tenants_and_namespaces() {
        let t = tenant_seed("t");
        assert_ne!(slot(t, false, "realtime:a"), slot(t, true, "realtime:a"));
        assert_ne!(
            slot(t, false, "realtime:a"),
            slot(tenant_seed("u"), false, "realtime:a")
        );
        // A tenant id cannot run into the topic: "ab" + "c" is not "a" + "bc".
        assert_ne!(
            slot(tenant_seed("ab"), false, "c"),
            slot(tenant_seed("a"), false, "bc")
        );
        assert!((0..1000).all(|i| (slot(t, false, &format!("realtime:{i}")) as usize) < SLOTS));
    }
}
