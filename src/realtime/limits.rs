//! Rolling-average rate counters, the way the Elixir server's `RateCounter`
//! measures tenant limits: events are summed per tick, the last
//! `nr_buckets` ticks are kept, and the average rate is recomputed once per
//! tick. A limit is *triggered* while that average is at or above it.
//!
//! A tenant's counters are kept across the shards that serve it: each
//! shard writes its own buckets into a [`SharedRate`], and at each of its
//! ticks sums every shard's, so every shard's average is the tenant's.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Length of one bucket of a tenant limit (the Elixir default).
pub const TENANT_TICK_MS: u64 = 5_000;
/// Finished buckets a tenant limit averages over (12 x 5 s = 60 s).
pub const TENANT_NR_BUCKETS: usize = 12;

/// Entries of a shard's ring in a [`SharedRate`]: the window, the bucket
/// being filled, and one spare for a shard a tick ahead of the reader;
/// 16 x 8 bytes is exactly one 128-byte slot.
pub const RING: usize = 16;

/// One shard's buckets, by tick number modulo [`RING`]. Each entry packs
/// the tick's number (its low 32 bits, high half) and the shard's count in
/// that tick (low half, saturating). 128-aligned: a slot shares no cache
/// line (nor the adjacent-line prefetch pair) with another shard's.
#[repr(align(128))]
struct Slot {
    ring: [AtomicU64; RING],
}

/// A rate counter kept across the shards of one process: one padded
/// [`Slot`] per shard, written only by that shard's thread (a plain load
/// and store, not a read-modify-write: there is no other writer), read by
/// every shard once per tick. Ticks are numbered from `epoch_ms` on the
/// process-wide clock, so all shards' buckets line up.
///
/// Tolerance, exactly: a shard's average at its tick `k` is the sum of all
/// shards' counts for ticks `k - n ..= k - 1` as stored at the moment it
/// crosses into `k` (`n` = ticks since `epoch_ms`, at most the window).
/// Each shard stores its count on every `add`, so the only events missed
/// are those another shard counts in tick `k - 1` after that moment (the
/// shards cross a tick boundary when each next looks at its clock): they
/// are missed by that one recomputation and counted from tick `k + 1` on,
/// never lost and never counted twice. A shard that stops writing (its
/// tenant gone from it, the shard stalled) is an idle shard: its buckets
/// drop out of the window tick by tick and count nothing once the last is
/// `nr_buckets` ticks old (60 s for tenant limits). Counts saturate at
/// `u32::MAX` per shard and tick; tick numbers compare modulo 2^32 (680
/// years of 5 s ticks).
pub struct SharedRate {
    /// Start of tick 0 on the process-wide clock.
    epoch_ms: u64,
    /// Length of one tick.
    tick_ms: u64,
    /// One per shard, indexed by shard id.
    slots: Box<[Slot]>,
    /// The other nodes' counts of a cluster, as they report them, written
    /// by the one shard that hears their reports.
    remote: Slot,
}

impl std::fmt::Debug for SharedRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRate")
            .field("epoch_ms", &self.epoch_ms)
            .field("tick_ms", &self.tick_ms)
            .field("nr_shards", &self.slots.len())
            .finish()
    }
}

fn pack(tick: u64, count: u64) -> u64 {
    (tick << 32) | count.min(u32::MAX as u64)
}

fn entry_count(entry: u64, tick: u64) -> u64 {
    if entry >> 32 == tick & 0xffff_ffff {
        entry & 0xffff_ffff
    } else {
        0
    }
}

impl SharedRate {
    /// A counter for `nr_shards` shards whose tick 0 starts at `epoch_ms`.
    pub fn new(nr_shards: usize, tick_ms: u64, epoch_ms: u64) -> Self {
        Self {
            epoch_ms,
            tick_ms: tick_ms.max(1),
            slots: (0..nr_shards.max(1))
                .map(|_| Slot {
                    ring: std::array::from_fn(|_| AtomicU64::new(0)),
                })
                .collect(),
            remote: Slot {
                ring: std::array::from_fn(|_| AtomicU64::new(0)),
            },
        }
    }

    /// Number of shards with a slot.
    pub fn nr_shards(&self) -> usize {
        self.slots.len()
    }

    /// The tick `now_ms` falls in (tick 0 before the epoch).
    pub fn tick_of(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.epoch_ms) / self.tick_ms
    }

    /// Counts `n` events of shard `shard` in tick `tick`. Only that
    /// shard's thread may call this (see the type's doc).
    pub fn add(&self, shard: usize, tick: u64, n: u64) {
        let cell = &self.slots[shard].ring[tick as usize % RING];
        let before = entry_count(cell.load(Ordering::Relaxed), tick);
        cell.store(pack(tick, before.saturating_add(n)), Ordering::Relaxed);
    }

    /// Events counted by shard `shard` in tick `tick`, if the ring still
    /// holds that tick.
    pub fn count(&self, shard: usize, tick: u64) -> u64 {
        entry_count(
            self.slots[shard].ring[tick as usize % RING].load(Ordering::Relaxed),
            tick,
        )
    }

    /// Events all shards, and the other nodes, counted in ticks `ticks`.
    pub fn sum(&self, ticks: std::ops::Range<u64>) -> u64 {
        let remote = ticks.clone().map(|t| {
            entry_count(
                self.remote.ring[t as usize % RING].load(Ordering::Relaxed),
                t,
            )
        });
        self.local_sum(ticks)
            .saturating_add(remote.fold(0u64, u64::saturating_add))
    }

    /// Events this process's shards counted in ticks `ticks` (what a node
    /// reports to the others).
    pub fn local_sum(&self, ticks: std::ops::Range<u64>) -> u64 {
        (0..self.slots.len())
            .flat_map(|s| ticks.clone().map(move |t| (s, t)))
            .map(|(s, t)| self.count(s, t))
            .fold(0u64, u64::saturating_add)
    }

    /// Counts `n` events other nodes reported, in tick `tick` (the tick
    /// the report arrived in). Only the one thread that hears reports may
    /// call this.
    pub fn add_remote(&self, tick: u64, n: u64) {
        let cell = &self.remote.ring[tick as usize % RING];
        let before = entry_count(cell.load(Ordering::Relaxed), tick);
        cell.store(pack(tick, before.saturating_add(n)), Ordering::Relaxed);
    }
}

/// Where a shared counter writes: the tenant's counter and this shard's
/// slot in it.
#[derive(Debug, Clone)]
struct Published {
    rate: Arc<SharedRate>,
    shard: usize,
}

/// A per-tick event counter with a rolling window: this shard's alone
/// ([`RateCounter::new`]), or a tenant's across shards
/// ([`RateCounter::shared`]).
#[derive(Debug, Clone)]
pub struct RateCounter {
    /// Length of one bucket (the Elixir default for tenant limits is 5 s).
    tick_ms: u64,
    /// How many finished buckets the average spans (default 12, i.e. 60 s).
    nr_buckets: usize,
    /// Start of the bucket being filled.
    tick_start_ms: u64,
    /// Events in the bucket being filled (alone).
    current: u64,
    /// Finished buckets, newest first (alone).
    buckets: VecDeque<u64>,
    /// Average events per second over `buckets`, updated at each tick.
    avg: f64,
    /// The tenant's counter this one writes to and averages over, when
    /// kept across shards; `buckets` and `current` are then unused.
    shared: Option<Published>,
}

impl RateCounter {
    /// The tenant-limit counter of this shard alone: 5 s ticks, 12 buckets.
    pub fn tenant(now_ms: u64) -> Self {
        Self::new(TENANT_TICK_MS, TENANT_NR_BUCKETS, now_ms)
    }

    /// A counter with the given tick and window.
    pub fn new(tick_ms: u64, nr_buckets: usize, now_ms: u64) -> Self {
        Self {
            tick_ms: tick_ms.max(1),
            nr_buckets: nr_buckets.max(1),
            tick_start_ms: now_ms,
            current: 0,
            buckets: VecDeque::with_capacity(nr_buckets.max(1)),
            avg: 0.0,
            shared: None,
        }
    }

    /// Shard `shard`'s view of the tenant counter `rate` (its ticks, its
    /// epoch), averaging over `nr_buckets` ticks of every shard's events.
    /// The window is the tenant's: it spans the ticks since `rate`'s epoch
    /// (at most `nr_buckets`), whatever this shard did, so every shard
    /// computes the same average (see [`SharedRate`] for the tolerance).
    pub fn shared(rate: Arc<SharedRate>, shard: usize, nr_buckets: usize, now_ms: u64) -> Self {
        assert!(shard < rate.nr_shards(), "shard {shard} has no slot");
        let nr_buckets = nr_buckets.clamp(1, RING - 2);
        let tick_ms = rate.tick_ms;
        let tick_start_ms = rate.epoch_ms + rate.tick_of(now_ms) * tick_ms;
        let mut c = Self::new(tick_ms, nr_buckets, now_ms);
        c.tick_start_ms = tick_start_ms;
        c.shared = Some(Published { rate, shard });
        c.recompute_shared();
        c
    }

    /// The tenant-limit counter of shard `shard` over `rate`.
    pub fn tenant_shared(rate: Arc<SharedRate>, shard: usize, now_ms: u64) -> Self {
        Self::shared(rate, shard, TENANT_NR_BUCKETS, now_ms)
    }

    fn recompute_shared(&mut self) {
        let Some(p) = &self.shared else { return };
        let tick = p.rate.tick_of(self.tick_start_ms);
        let n = tick.min(self.nr_buckets as u64);
        let sum = p.rate.sum(tick - n..tick);
        self.avg = sum as f64 / n.max(1) as f64 / (self.tick_ms as f64 / 1000.0);
    }

    fn roll(&mut self, now_ms: u64) {
        if self.shared.is_some() {
            if now_ms >= self.tick_start_ms + self.tick_ms {
                self.tick_start_ms = now_ms - (now_ms - self.tick_start_ms) % self.tick_ms;
                self.recompute_shared();
            }
            return;
        }
        while now_ms >= self.tick_start_ms + self.tick_ms {
            self.buckets.push_front(std::mem::take(&mut self.current));
            self.buckets.truncate(self.nr_buckets);
            self.tick_start_ms += self.tick_ms;
            // After a long quiet spell, skip whole empty windows at once.
            if now_ms - self.tick_start_ms > self.tick_ms * self.nr_buckets as u64 {
                self.buckets.clear();
                self.tick_start_ms = now_ms - (now_ms - self.tick_start_ms) % self.tick_ms;
            }
            let sum: u64 = self.buckets.iter().sum();
            let n = self.buckets.len().max(1) as f64;
            self.avg = sum as f64 / n / (self.tick_ms as f64 / 1000.0);
        }
    }

    /// Counts `n` events at `now_ms`.
    pub fn add(&mut self, n: u64, now_ms: u64) {
        self.roll(now_ms);
        match &self.shared {
            Some(p) => p.rate.add(p.shard, p.rate.tick_of(self.tick_start_ms), n),
            None => self.current += n,
        }
    }

    /// Average events per second as of the last finished tick.
    pub fn avg(&mut self, now_ms: u64) -> f64 {
        self.roll(now_ms);
        self.avg
    }

    /// Whether the average is at or above `limit`.
    pub fn triggered(&mut self, limit: u64, now_ms: u64) -> bool {
        self.avg(now_ms) >= limit as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_updates_per_tick() {
        // Alone, and as the one shard of a shared counter: the same figures.
        let shared = RateCounter::tenant_shared(Arc::new(SharedRate::new(1, 5_000, 0)), 0, 0);
        for mut c in [RateCounter::tenant(0), shared] {
            c.add(600, 1_000);
            assert_eq!(c.avg(4_999), 0.0, "no finished tick yet");
            assert_eq!(c.avg(5_000), 120.0);
            assert!(c.triggered(100, 5_000));
            assert!(!c.triggered(121, 5_000));
            // A quiet second tick halves the average over two buckets.
            assert_eq!(c.avg(10_000), 60.0);
        }
    }

    #[test]
    fn window_forgets_old_buckets() {
        let mut c = RateCounter::new(1_000, 3, 0);
        c.add(30, 0);
        assert_eq!(c.avg(1_000), 30.0);
        assert_eq!(c.avg(3_000), 10.0);
        assert_eq!(c.avg(4_000), 0.0);
        assert_eq!(c.avg(1_000_000), 0.0);
        c.add(5, 1_000_000);
        assert_eq!(
            c.avg(1_001_000),
            5.0,
            "average over the buckets filled so far"
        );
    }

    #[test]
    fn a_shared_slot_is_one_padded_block_per_shard() {
        assert_eq!(std::mem::size_of::<Slot>(), 128);
        assert_eq!(std::mem::align_of::<Slot>(), 128);
    }

    #[test]
    fn shared_counts_saturate_per_tick() {
        let rate = SharedRate::new(2, 1_000, 0);
        rate.add(1, 3, u64::MAX);
        rate.add(1, 3, 5);
        assert_eq!(rate.count(1, 3), u32::MAX as u64);
        assert_eq!(rate.count(0, 3), 0);
        assert_eq!(rate.sum(0..4), u32::MAX as u64);
    }
}
