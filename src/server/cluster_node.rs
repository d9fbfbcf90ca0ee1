//! What a shard does with what its cluster link receives (see
//! `cluster`): other nodes' messages go to its subscribers, tenant
//! notices become the same tenant change here; and the two places the
//! rest of the server meets the cluster: a join that waits for its
//! topic's subscription, an admin change told to the other nodes.

use std::rc::{Rc, Weak};
use std::sync::Arc;

use realtime_shards::ShardStats;

use super::cluster::{Incoming, TENANTS_SUBJECT};
use super::shard::{ShardState, TenantChange, TopicId};
use crate::realtime::cluster::{NodeLink, NodePresence, ASK_ALL, ASK_NONE};
use crate::realtime::hub::TopicKey;
use crate::realtime::presence::{PresenceSnapshot, ReplicaId};

/// Where shard `state`'s link hands what it receives.
pub fn sink(state: Weak<ShardState>) -> Box<dyn Fn(Incoming)> {
    let loads = std::cell::RefCell::new(super::cluster_load::Loads::default());
    Box::new(move |incoming| {
        let Some(state) = state.upgrade() else { return };
        match incoming {
            Incoming::Load(payload) => {
                super::cluster_load::received(&state, &mut loads.borrow_mut(), &payload);
            }
            Incoming::Beat => super::cluster_load::report(&state, &mut loads.borrow_mut()),
            Incoming::ReplicaGone(replica) => {
                super::cluster_load::replica_gone(&state, &mut loads.borrow_mut(), replica);
                replica_gone(&state, replica);
            }
            Incoming::Message(fwd) => super::forward::deliver(&state, Arc::new(fwd)),
            Incoming::TenantNotice(payload) => tenant_changed_elsewhere(&state, &payload),
            Incoming::Presence { id, body } => presence_from_node(&state, &id, body),
            Incoming::Sync { id, ask } => send_presence(&state, &id, ask),
            Incoming::Ask { id, from } => answer_presence(&state, &id, from),
        }
    })
}

/// Another node's presence of a topic this shard is subscribed to: applied
/// (its diff told to this shard's subscribers), and answered with this
/// shard's entries when the snapshot asks for them.
fn presence_from_node(state: &ShardState, id: &TopicId, body: NodePresence) {
    let Some(t) = state.tenant(&id.0) else { return };
    // Frames queued are counted where they are written.
    let _ = match &body {
        NodePresence::Delta(d) => t.borrow_mut().hub.apply_node_delta(&id.2, id.1, d),
        NodePresence::Snapshot { entries, .. } => {
            t.borrow_mut().hub.apply_snapshot(&id.2, id.1, entries)
        }
    };
    if let NodePresence::Snapshot { ask, .. } = body {
        let me = state.cluster.as_ref().map(|c| c.replica().0);
        if ask == ASK_ALL || Some(ask) == me {
            send_presence(state, id, ASK_NONE);
        }
    }
}

/// Sends this shard's entries of a topic to the other nodes subscribed to
/// it, asking `ask` for theirs.
fn send_presence(state: &ShardState, id: &TopicId, ask: u64) {
    let Some(c) = &state.cluster else { return };
    let entries = own_entries(state, c, id);
    c.presence(&id.0, &id.2, id.1, NodePresence::Snapshot { entries, ask });
}

/// Answers another node's shard that asked for this shard's entries of a
/// topic.
fn answer_presence(state: &ShardState, id: &TopicId, to: ReplicaId) {
    let Some(c) = &state.cluster else { return };
    c.answer(to, id, own_entries(state, c, id));
}

/// This shard's own entries of a topic (none if the tenant or topic is
/// not here).
fn own_entries(state: &ShardState, c: &super::cluster::Cluster, id: &TopicId) -> PresenceSnapshot {
    let key = TopicKey {
        topic: &id.2,
        private: id.1,
    };
    match state.tenant(&id.0) {
        Some(t) => t.borrow().hub.presence_snapshot(key),
        None => PresenceSnapshot::from_entries(c.replica(), Vec::new()),
    }
}

/// Another node's shard went unheard: its entries leave every topic here.
fn replica_gone(state: &ShardState, replica: ReplicaId) {
    let tenants: Vec<_> = state.tenants.borrow().values().cloned().collect();
    for t in tenants {
        let _ = t.borrow_mut().hub.remove_replica(replica);
    }
}

/// A tenant change made through this node's admin API, as the other
/// nodes hear it: which tenant, what to do; never its settings (they hold
/// secrets), which each node reads from the control database itself.
#[derive(serde::Serialize, serde::Deserialize)]
struct TenantNotice {
    origin: u64,
    id: String,
    change: TenantChange,
}

/// Tells the other nodes that tenant `id` changed (`change` as this node
/// applied it). Sent after the control database has the change, so a node
/// that reads it on hearing this reads the new record. Lost while NATS is
/// down: nodes then keep the settings they had until their sockets of the
/// tenant reconnect.
pub fn announce_tenant_change(state: &ShardState, id: &str, change: TenantChange) {
    let Some(c) = &state.cluster else { return };
    let notice = TenantNotice {
        origin: c.node(),
        id: id.to_owned(),
        change,
    };
    let payload = serde_json::to_vec(&notice).expect("a notice serializes");
    if !c.publish_raw(TENANTS_SUBJECT, &payload) {
        tracing::warn!(tenant = %id, "tenant change not told to the other nodes: NATS is down");
    }
}

/// Another node changed a tenant: this node reads the record again and
/// applies the same change on every shard (sockets of a tenant whose keys
/// changed close with 1012 here too).
fn tenant_changed_elsewhere(state: &Rc<ShardState>, payload: &[u8]) {
    let Ok(n) = serde_json::from_slice::<TenantNotice>(payload) else {
        ShardStats::add(&state.stats().nats_invalid, 1);
        return;
    };
    if state.cluster.as_ref().is_none_or(|c| n.origin == c.node()) {
        return;
    }
    let state = state.clone();
    glommio::spawn_local(async move {
        let config = match super::tenants::lookup_again(&state, &n.id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(tenant = %n.id, error = %e, "another node changed this tenant; cannot read it again, so its sockets here are disconnected");
                super::tenants::announce(&state, &n.id, TenantChange::Disconnect, None).await;
                return;
            }
        };
        tracing::info!(tenant = %n.id, change = ?n.change, "tenant changed on another node");
        let gone = config.is_none();
        super::tenants::announce(&state, &n.id, n.change, config).await;
        if gone {
            // Deleted: as the node that deleted it, its shared counters go.
            state.shared_tenants.remove(&n.id);
        }
    })
    .detach();
}

/// The topic of a `phx_join` in `msg` whose subscription on this shard
/// is not in effect yet, if it is one (see [`Cluster::join_ready`]).
pub fn join_to_wait_for(
    state: &ShardState,
    conn: &super::conns::Conn,
    msg: &crate::proto::ws::Message,
) -> Option<TopicId> {
    use crate::proto::phoenix::{self, InPayload};
    use crate::proto::ws::Message;
    let cluster = state.cluster.as_ref()?;
    let vsn = conn.session.borrow().vsn;
    let inbound = match msg {
        Message::Text(data) => phoenix::decode_text(vsn, data).ok()?,
        Message::Binary(data) if vsn == phoenix::Vsn::V2 => phoenix::decode_binary(data).ok()?,
        _ => return None,
    };
    if inbound.event != "phx_join" || !inbound.topic.starts_with("realtime:") {
        return None;
    }
    let private = match &inbound.payload {
        InPayload::Json(raw) => {
            let v: serde_json::Value = serde_json::from_str(raw.get()).unwrap_or_default();
            crate::realtime::join_config::JoinConfig::parse(&v).private
        }
        _ => false,
    };
    let tenant: Arc<str> = conn.tenant.borrow().config.external_id.as_str().into();
    let id = (tenant, private, Arc::from(&*inbound.topic));
    (!cluster.join_ready(&id)).then_some(id)
}
