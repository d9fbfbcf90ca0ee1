//! Tenant limits over the nodes of a cluster: each node reports its
//! tenants' users and rate counts, and adds the others' to its own.
//!
//! Shard 0 of every node publishes, once per heartbeat (a fifth of
//! `NODE_TIMEOUT_MS`), one report on `rt.load`: for each tenant with
//! users here or events since the last report, its users on this node and
//! the joins, events and presence events its shards counted in the rate
//! ticks completed since (`SharedRate::local_sum`: never what other nodes
//! reported, so nothing is counted twice). Shard 0 of every other node
//! keeps each node's last report: a tenant's other-node users are the sum
//! of the latest reports (`SharedTenant::set_remote_users`), and reported
//! counts go into the rate counters' slot for other nodes, in the tick
//! the report arrived in (`SharedRate::add_remote`).
//!
//! So `max_concurrent_users` holds cluster-wide as of the other nodes'
//! last reports (one heartbeat old at most, 1 s by default), and the
//! rates as of their last completed tick (a 5 s tick, counted on arrival:
//! up to two ticks late in a 60 s average). A node gone (its shard 0
//! unheard for the timeout) takes its users with it. Reports name
//! tenants and numbers only, never settings.

use std::collections::{HashMap, HashSet};

use realtime_shards::ShardStats;

use super::cluster::LOAD_SUBJECT;
use super::shard::ShardState;
use crate::realtime::presence::ReplicaId;

/// One node's report.
#[derive(serde::Serialize, serde::Deserialize)]
struct Report {
    /// The reporting node's id.
    node: u64,
    /// Its tenants with users or new events.
    tenants: Vec<TenantLoad>,
}

/// One tenant on the reporting node.
#[derive(serde::Serialize, serde::Deserialize)]
struct TenantLoad {
    id: String,
    /// Connections with a joined channel there, now.
    users: u64,
    /// Counted there in the ticks completed since its last report.
    joins: u64,
    events: u64,
    presence: u64,
}

/// What shard 0 keeps of the cluster's load.
#[derive(Default)]
pub struct Loads {
    /// Each other node's users per tenant, from its last report.
    users: HashMap<u64, HashMap<String, u64>>,
    /// Per tenant, the first rate tick not reported yet.
    reported: HashMap<String, u64>,
}

/// Publishes this node's report (shard 0, once per heartbeat).
pub fn report(state: &ShardState, loads: &mut Loads) {
    let Some(c) = &state.cluster else { return };
    let now = state.now_ms();
    let all = state.shared_tenants.all();
    let mut tenants = Vec::new();
    for (id, t) in &all {
        // The three rates share their epoch and tick length.
        let tick = t.joins.tick_of(now);
        let from = *loads.reported.entry(id.clone()).or_insert(tick);
        loads.reported.insert(id.clone(), tick);
        let ticks = from..tick;
        let load = TenantLoad {
            id: id.clone(),
            users: t.local_users(),
            joins: t.joins.local_sum(ticks.clone()),
            events: t.events.local_sum(ticks.clone()),
            presence: t.presence_events.local_sum(ticks),
        };
        if load.users + load.joins + load.events + load.presence > 0 {
            tenants.push(load);
        }
    }
    if loads.reported.len() > all.len() {
        let live: HashSet<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
        loads.reported.retain(|id, _| live.contains(id.as_str()));
    }
    let payload = serde_json::to_vec(&Report {
        node: c.node(),
        tenants,
    })
    .expect("a report serializes");
    // Lost while NATS is down: the others then count without this node.
    let _ = c.publish_raw(LOAD_SUBJECT, &payload);
}

/// Another node's report: its users replace what it said before, its
/// counts are added.
pub fn received(state: &ShardState, loads: &mut Loads, payload: &[u8]) {
    let Ok(r) = serde_json::from_slice::<Report>(payload) else {
        ShardStats::add(&state.stats().nats_invalid, 1);
        return;
    };
    if state.cluster.as_ref().is_none_or(|c| c.node() == r.node) {
        return;
    }
    let now = state.now_ms();
    for t in &r.tenants {
        // A tenant with users elsewhere is known here before its first
        // socket arrives, so that socket's check counts them.
        let shared = match (state.shared_tenants.get(&t.id), t.users) {
            (Some(s), _) => s,
            (None, 0) => continue,
            (None, _) => state.shared_tenants.attach(&t.id, now),
        };
        let tick = shared.joins.tick_of(now);
        shared.joins.add_remote(tick, t.joins);
        shared.events.add_remote(tick, t.events);
        shared.presence_events.add_remote(tick, t.presence);
    }
    let users: HashMap<String, u64> = r.tenants.into_iter().map(|t| (t.id, t.users)).collect();
    let mut touched: HashSet<String> = users.keys().cloned().collect();
    if let Some(before) = loads.users.insert(r.node, users) {
        touched.extend(before.into_keys());
    }
    recount(state, loads, touched);
}

/// A node's shard went unheard: if it was the one that reports (shard
/// 0), its users no longer count.
pub fn replica_gone(state: &ShardState, loads: &mut Loads, replica: ReplicaId) {
    if replica != ReplicaId::of(replica.node(), 0) {
        return;
    }
    if let Some(before) = loads.users.remove(&replica.node()) {
        recount(state, loads, before.into_keys().collect());
    }
}

/// Sets the other-node users of each tenant in `ids` from the reports.
fn recount(state: &ShardState, loads: &Loads, ids: HashSet<String>) {
    for id in ids {
        let Some(shared) = state.shared_tenants.get(&id) else {
            continue;
        };
        let n = loads
            .users
            .values()
            .filter_map(|m| m.get(&id))
            .fold(0u64, |a, b| a.saturating_add(*b));
        shared.set_remote_users(n);
    }
}
