//! What the shards serving one tenant share: its users gauge and its rate
//! counters, kept with atomics only (no lock, no runtime), so a tenant's
//! limits hold for the tenant whichever shards its sockets are on.
//!
//! One [`SharedTenant`] per tenant per process, found through the
//! [`SharedTenants`] registry when the tenant becomes active on a shard;
//! each shard's [`super::Tenant`] then holds it and never looks it up again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::realtime::limits::{RateCounter, SharedRate, TENANT_TICK_MS};

/// The users gauge on a cache line of its own: every shard updates it on
/// a first join and a close, and the rate slots must not share its line.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Gauge(AtomicU64);

/// A tenant's state shared by every shard of the process that serves it.
///
/// Users: connections with a joined channel, summed over shards. A join
/// checks the gauge and a successful join then adds itself, so the limit
/// (`max_concurrent_users`) holds exactly but for joins that pass the
/// check before another's addition lands: joins racing on different
/// shards at the same instant, or (as on one shard) joins waiting for
/// their authorization between check and addition. Rates: see
/// [`SharedRate`] for what a shard's average sees of the others (one tick
/// of lag at most, for the last tick only).
///
/// In a cluster, the other nodes' users and rate counts are added as
/// they report them (the server's `cluster_load`: users once per
/// heartbeat, rate counts once per completed tick): the limits hold
/// cluster-wide, later by that report's delay.
#[derive(Debug)]
pub struct SharedTenant {
    /// Connections with a joined channel, on every shard.
    users: Gauge,
    /// The same on the other nodes of a cluster, as last reported.
    remote_users: AtomicU64,
    /// Connects and joins.
    pub joins: Arc<SharedRate>,
    /// Broadcast events (client pushes, deliveries, REST, database).
    pub events: Arc<SharedRate>,
    /// Presence events.
    pub presence_events: Arc<SharedRate>,
    /// Its Broadcast from Database stream (on its home shard) is
    /// streaming: `broadcast.replication_ready` channels on any shard wait
    /// for it.
    messages_streaming: std::sync::atomic::AtomicBool,
}

impl SharedTenant {
    /// Fresh state for `nr_shards` shards, its ticks counted from
    /// `now_ms` on the process-wide clock.
    pub fn new(nr_shards: usize, now_ms: u64) -> Self {
        let rate = || Arc::new(SharedRate::new(nr_shards, TENANT_TICK_MS, now_ms));
        Self {
            users: Gauge::default(),
            remote_users: AtomicU64::new(0),
            joins: rate(),
            events: rate(),
            presence_events: rate(),
            messages_streaming: Default::default(),
        }
    }

    /// Whether its Broadcast from Database stream is streaming.
    pub fn messages_streaming(&self) -> bool {
        self.messages_streaming
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Its Broadcast from Database stream went up or down.
    pub fn set_messages_streaming(&self, up: bool) {
        self.messages_streaming
            .store(up, std::sync::atomic::Ordering::Release);
    }

    /// Number of shards with a slot in the rate counters.
    pub fn nr_shards(&self) -> usize {
        self.joins.nr_shards()
    }

    /// Connections with a joined channel, on every shard and on the
    /// other nodes of a cluster (as they last reported them).
    pub fn nr_users(&self) -> u64 {
        self.local_users()
            .saturating_add(self.remote_users.load(Ordering::Relaxed))
    }

    /// Connections with a joined channel on this process's shards.
    pub fn local_users(&self) -> u64 {
        self.users.0.load(Ordering::Relaxed)
    }

    /// The other nodes' users, as they last reported them.
    pub fn set_remote_users(&self, n: u64) {
        self.remote_users.store(n, Ordering::Relaxed);
    }

    /// Shard `shard`'s counters over the tenant's: joins, events and
    /// presence events.
    pub fn counters(&self, shard: usize, now_ms: u64) -> [RateCounter; 3] {
        [&self.joins, &self.events, &self.presence_events]
            .map(|r| RateCounter::tenant_shared(r.clone(), shard, now_ms))
    }
}

/// One shard's part of a tenant's users gauge: what it added, taken back
/// when the shard's tenant state goes (a `Tenant` dropped with sockets
/// still counted leaves the gauge right).
#[derive(Debug)]
pub struct UsersShare {
    /// The tenant's gauge.
    shared: Arc<SharedTenant>,
    /// Users this share added and has not removed.
    here: u64,
}

impl UsersShare {
    /// The tenant's state shared by its shards.
    pub fn tenant(&self) -> &Arc<SharedTenant> {
        &self.shared
    }

    /// A share of `shared`'s gauge with no users yet.
    pub fn new(shared: Arc<SharedTenant>) -> Self {
        Self { shared, here: 0 }
    }

    /// Users on every shard.
    pub fn nr_users(&self) -> u64 {
        self.shared.nr_users()
    }

    /// Users this share counts.
    pub fn here(&self) -> u64 {
        self.here
    }

    /// A connection joined its first channel.
    pub fn add(&mut self) {
        self.here += 1;
        self.shared.users.0.fetch_add(1, Ordering::Relaxed);
    }

    /// A counted connection closed (nothing if this share counts none).
    pub fn remove(&mut self) {
        if self.here > 0 {
            self.here -= 1;
            self.shared.users.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for UsersShare {
    fn drop(&mut self) {
        self.shared.users.0.fetch_sub(self.here, Ordering::Relaxed);
    }
}

/// The process-wide registry of [`SharedTenant`]s by tenant id, made once
/// by the server and handed to every shard.
///
/// Its mutex is the one lock of tenant state, taken only when a tenant
/// becomes active on a shard ([`SharedTenants::attach`]), when it is
/// deleted ([`SharedTenants::remove`]) and when the admin API asks for a
/// tenant not active on the asking shard ([`SharedTenants::get`]): never
/// per message. The counters it hands out are lock-free.
#[derive(Debug)]
pub struct SharedTenants {
    /// Shards of the process: slots per rate counter.
    nr_shards: usize,
    /// Tenants by external id.
    by_id: Mutex<HashMap<String, Arc<SharedTenant>>>,
}

impl SharedTenants {
    /// An empty registry for `nr_shards` shards.
    pub fn new(nr_shards: usize) -> Self {
        Self {
            nr_shards: nr_shards.max(1),
            by_id: Mutex::default(),
        }
    }

    /// Number of shards.
    pub fn nr_shards(&self) -> usize {
        self.nr_shards
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SharedTenant>>> {
        // Nothing panics while holding it; a poisoned map is still whole.
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tenant `id`'s shared state, made (ticks counted from `now_ms`) if it
    /// has none: called when the tenant becomes active on a shard. The
    /// state outlives a disconnect or reload of the tenant (its users and
    /// rates carry on, as the Elixir server's counters do); only
    /// [`SharedTenants::remove`] ends it.
    pub fn attach(&self, id: &str, now_ms: u64) -> Arc<SharedTenant> {
        self.map()
            .entry(id.to_owned())
            .or_insert_with(|| Arc::new(SharedTenant::new(self.nr_shards, now_ms)))
            .clone()
    }

    /// Every tenant's shared state (a copy of the registry, taken under
    /// its lock once).
    pub fn all(&self) -> Vec<(String, Arc<SharedTenant>)> {
        self.map()
            .iter()
            .map(|(id, t)| (id.clone(), t.clone()))
            .collect()
    }

    /// Tenant `id`'s shared state, if any shard made it.
    pub fn get(&self, id: &str) -> Option<Arc<SharedTenant>> {
        self.map().get(id).cloned()
    }

    /// Forgets tenant `id` (deleted): shards still holding its state keep
    /// it until their tenant state goes; the next activation starts afresh.
    pub fn remove(&self, id: &str) -> Option<Arc<SharedTenant>> {
        self.map().remove(id)
    }
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
