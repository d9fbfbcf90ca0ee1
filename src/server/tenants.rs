//! Tenants on a shard: which tenant a request names, its settings (the
//! shard's catalog, filled from the directory or the control database),
//! its live state and the tasks that work for it, and what a change to it
//! does.
//!
//! Every shard keeps its own catalog: a lookup is a hash probe with no lock
//! and no message. A change made through the admin API is a message to
//! every shard ([`ShardMsg::TenantChanged`]), never a poll: each shard
//! forgets the tenant and acts on its live state. A lookup that was reading
//! the control database while a change went by reads again, so nothing
//! stale is kept (see [`ShardState::catalog_epoch`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use realtime_shards::ShardStats;

use super::control::store;
use super::outq::CloseReason;
use super::replication;
use super::shard::{LookupWait, ShardMsg, ShardState, TenantChange, TenantView};
use super::tenant_db;
use crate::realtime::auth::ClaimValidators;
use crate::realtime::secrets::SecretKeys;
use crate::realtime::tenant::record::{self, TenantDefaults, TenantRecord};
use crate::realtime::tenant::{Placement, Tenant, TenantConfig};

/// Entries a shard's catalog holds before it forgets the hosts it found
/// no tenant for (tenants that exist are never forgotten this way).
const CATALOG_CAP: usize = 65_536;

/// The outcome of looking a tenant up.
pub enum Resolved {
    /// Its settings.
    Found(Arc<TenantConfig>),
    /// There is no such tenant.
    NotFound,
    /// The control database could not say (unreachable, failing).
    Unavailable(String),
}

/// The external id a request's Host names (PROTOCOL 1.3): its first label,
/// or the default tenant for hosts without one (IP addresses, localhost).
pub fn id_for_host(state: &ShardState, host: &str) -> String {
    state.directory.tenant_id_for_host(host).into_owned()
}

/// The lookup of one tenant under way on a shard; dropped (done, failed
/// or cancelled with its socket), it wakes whoever waits for it.
struct Leader<'a> {
    state: &'a ShardState,
    id: String,
}

impl<'a> Leader<'a> {
    fn new(state: &'a ShardState, id: &str) -> Self {
        state
            .lookups
            .borrow_mut()
            .insert(id.to_owned(), Rc::new(LookupWait::default()));
        Self {
            state,
            id: id.to_owned(),
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if let Some(wait) = self.state.lookups.borrow_mut().remove(&self.id) {
            wait.finish();
        }
    }
}

/// The settings of tenant `id`: from the catalog, or else from where
/// tenants are kept, then remembered.
pub async fn resolve(state: &Rc<ShardState>, id: &str) -> Resolved {
    loop {
        if let Some(entry) = state.catalog.borrow().get(id) {
            return match entry {
                Some(cfg) => Resolved::Found(cfg.clone()),
                None => Resolved::NotFound,
            };
        }
        let epoch = state.catalog_epoch.get();
        let found = if state.config.uses_control_db() {
            // Many sockets of one tenant arrive together (a reconnect
            // wave): one of them reads the store, the others wait for it
            // and then find the catalog filled.
            let existing = state.lookups.borrow().get(id).cloned();
            if let Some(wait) = existing {
                wait.finished().await;
                continue;
            }
            let _leader = Leader::new(state, id);
            match control_lookup(state, id).await {
                Ok(found) => found,
                Err(e) => return Resolved::Unavailable(e),
            }
        } else {
            state.directory.get(id).cloned()
        };
        // A change arrived while the lookup was away: what it read may
        // predate the change, so read again.
        if state.catalog_epoch.get() != epoch {
            continue;
        }
        let mut catalog = state.catalog.borrow_mut();
        if found.is_none() && catalog.len() >= CATALOG_CAP {
            // Hosts that name no tenant cost an entry each; a flood of
            // made-up names must not grow the shard without bound.
            catalog.retain(|_, entry| entry.is_some());
        }
        catalog.insert(id.to_owned(), found.clone());
        drop(catalog);
        return match found {
            Some(cfg) => Resolved::Found(cfg),
            None => Resolved::NotFound,
        };
    }
}

/// The live state of a tenant on this shard, made active (with its
/// database work, on its home shard) if it was not.
pub fn activate(state: &Rc<ShardState>, cfg: &Arc<TenantConfig>) -> Rc<RefCell<Tenant>> {
    if let Some(t) = state.tenant(&cfg.external_id) {
        return t;
    }
    // The registry's lock, once per activation (never per message).
    let now = state.now_ms();
    let shared = state.shared_tenants.attach(&cfg.external_id, now);
    let mut tenant = Tenant::on_shard(cfg.clone(), shared, state.shard.id, now);
    if state.interest.is_some() || state.cluster.is_some() {
        let node = state
            .cluster
            .clone()
            .map(|c| c as Rc<dyn crate::realtime::cluster::NodeLink>);
        tenant.hub =
            crate::realtime::hub::Hub::linked(state.interest.clone(), node, &cfg.external_id);
    }
    let home = state.home_of(&cfg.external_id);
    if cfg.has_database && home != state.shard.id {
        let relay = super::cdc_relay::ShardRelay::new(state, cfg.clone());
        tenant.cdc.set_relay(Box::new(relay));
        // Its database work (schema, streams, authorization pool) runs on
        // its home shard, which may serve none of its sockets.
        let msg = ShardMsg::Activate(cfg.clone());
        state.outbox.send(&state.shard, home, msg, 0, None);
    }
    if cfg.placement == Placement::Spread {
        super::forward::ask_presence(state, &cfg.external_id);
    }
    let t = Rc::new(RefCell::new(tenant));
    state
        .tenants
        .borrow_mut()
        .insert(cfg.external_id.clone(), t.clone());
    ShardStats::gauge(&state.stats().tenants_active, 1);
    start_database_work(state, cfg);
    t
}

/// Starts the replication stream and subscription checker of a tenant
/// with a database, on its home shard (they wait for a first subscriber),
/// its messages stream (Broadcast from Database: it waits for the schema
/// and a first joined channel),
/// and its schema task (migrations, then partitions), which nothing waits
/// for.
fn start_database_work(state: &Rc<ShardState>, cfg: &TenantConfig) {
    let id = cfg.external_id.clone();
    if state.home_of(&id) != state.shard.id {
        return;
    }
    let Some(settings) = replication::ReplicationSettings::for_tenant(&state.config, cfg) else {
        return;
    };
    let checker = glommio::spawn_local(replication::subscribe::run(
        state.clone(),
        id.clone(),
        settings.clone(),
    ))
    .detach();
    let messages = glommio::spawn_local(super::db_broadcast::run(
        state.clone(),
        id.clone(),
        super::db_broadcast::settings(&state.config, &settings),
    ))
    .detach();
    let stream =
        glommio::spawn_local(replication::run(state.clone(), id.clone(), settings)).detach();
    let mut tasks = vec![checker, stream, messages];
    if let Some(pg) = tenant_db::pg_config(&state.config, cfg) {
        tasks.push(glommio::spawn_local(tenant_db::run(state.clone(), id.clone(), pg)).detach());
    }
    ShardStats::gauge(&state.stats().tenant_tasks, tasks.len() as i64);
    state.tenant_tasks.borrow_mut().insert(id, tasks);
}

/// Stops the database work of tenant `id` on this shard: its tasks are
/// cancelled, which drops (closes) their connections, and its
/// authorization pool closes.
fn stop_database_work(state: &ShardState, id: &str) -> bool {
    state.tenant_schemas.borrow_mut().remove(id);
    super::rls::close_pool(state, id);
    let Some(tasks) = state.tenant_tasks.borrow_mut().remove(id) else {
        return false;
    };
    for t in &tasks {
        t.cancel();
    }
    ShardStats::gauge(&state.stats().tenant_tasks, -(tasks.len() as i64));
    true
}

/// Longest an announcement waits for the other shards to act on it. A
/// shard is never busy that long (its work is cut into short steps), so
/// only one that is stopping is waited out.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// Tells every shard, this one included, that tenant `id` changed, with
/// its settings now (`None`: gone, or only acted upon), and returns once
/// each has acted on it: whoever hears the admin API's answer and
/// reconnects meets the new settings on every shard.
pub async fn announce(
    state: &Rc<ShardState>,
    id: &str,
    change: TenantChange,
    config: Option<Arc<TenantConfig>>,
) {
    let others = state.shard.nr_shards - 1;
    let ticket = state.next_ticket.get();
    state.next_ticket.set(ticket + 1);
    if others > 0 {
        state
            .pending_acks
            .borrow_mut()
            .insert(ticket, (others, None));
    }
    on_change(state, id, change, config.clone());
    for target in (0..state.shard.nr_shards).filter(|&t| t != state.shard.id) {
        let msg = ShardMsg::TenantChanged {
            id: id.to_owned(),
            change,
            config: config.clone(),
            reply_to: (state.shard.id, ticket),
        };
        // A shard that is gone (stopping) has nothing left to act on.
        if state.shard.send_to(target, msg).await.is_err() {
            acknowledged(state, ticket);
        }
    }
    let all_done = std::future::poll_fn(|cx| {
        let mut acks = state.pending_acks.borrow_mut();
        match acks.get_mut(&ticket) {
            None => Poll::Ready(()),
            Some((_, waker)) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    });
    if super::deadline::within(ACK_WAIT, all_done).await.is_none() {
        state.pending_acks.borrow_mut().remove(&ticket);
        tracing::warn!(
            tenant = id,
            "a shard did not confirm a tenant change in time"
        );
    }
}

/// What tenant `id`'s home shard sees of it: asked of that shard when it
/// is another one; a default view (no users, not streaming) when it does
/// not answer within [`ACK_WAIT`].
pub async fn view(state: &Rc<ShardState>, id: &str) -> TenantView {
    let home = state.home_of(id);
    if home == state.shard.id {
        return local_view(state, id);
    }
    let asked = state
        .ask(&state.pending_views, home, ACK_WAIT, |reply_to| {
            ShardMsg::ViewTenant {
                id: id.to_owned(),
                reply_to,
            }
        })
        .await;
    asked.unwrap_or_else(|| {
        tracing::warn!(
            tenant = id,
            home,
            "a tenant's home shard did not answer in time"
        );
        TenantView::default()
    })
}

/// The users figure is the tenant's on every shard (from its shared
/// gauge, through the registry when the tenant is not active here).
fn local_view(state: &ShardState, id: &str) -> TenantView {
    match state.tenant(id) {
        Some(t) => {
            let t = t.borrow();
            TenantView {
                users: t.nr_users(),
                streaming: t.cdc.is_streaming(),
            }
        }
        None => TenantView {
            users: state.shared_tenants.get(id).map_or(0, |s| s.nr_users()),
            streaming: false,
        },
    }
}

/// Answers another shard's [`ShardMsg::ViewTenant`].
pub fn answer_view(state: &Rc<ShardState>, id: &str, (origin, ticket): (usize, u64)) {
    let view = local_view(state, id);
    let st = state.clone();
    glommio::spawn_local(async move {
        let _ = st
            .shard
            .send_to(origin, ShardMsg::Viewed(ticket, view))
            .await;
    })
    .detach();
}

/// The answer to question `ticket` came.
pub fn viewed(state: &ShardState, ticket: u64, view: TenantView) {
    state.pending_views.answered(ticket, view);
}

/// Answers an announcement from another shard.
pub fn acknowledge(state: &Rc<ShardState>, (origin, ticket): (usize, u64)) {
    let st = state.clone();
    glommio::spawn_local(async move {
        let _ = st.shard.send_to(origin, ShardMsg::Done(ticket)).await;
    })
    .detach();
}

/// One more shard has acted on announcement `ticket`.
pub fn acknowledged(state: &ShardState, ticket: u64) {
    let mut acks = state.pending_acks.borrow_mut();
    let Some((left, waker)) = acks.get_mut(&ticket) else {
        return;
    };
    *left -= 1;
    if *left == 0 {
        if let Some(w) = waker.take() {
            w.wake();
        }
        acks.remove(&ticket);
    }
}

/// Acts on a change to tenant `id` on this shard. The catalog takes the
/// new settings only where it already knew the tenant (present or
/// missing): the rest read them on first use.
pub fn on_change(
    state: &Rc<ShardState>,
    id: &str,
    change: TenantChange,
    config: Option<Arc<TenantConfig>>,
) {
    state.catalog_epoch.set(state.catalog_epoch.get() + 1);
    {
        let mut catalog = state.catalog.borrow_mut();
        match (&config, catalog.get_mut(id)) {
            (Some(cfg), Some(entry)) => *entry = Some(cfg.clone()),
            _ => {
                catalog.remove(id);
            }
        }
    }
    match change {
        TenantChange::Disconnect => disconnect(state, id),
        TenantChange::Shutdown => {
            // Closed now; reopened at once if subscribers still need them.
            if stop_database_work(state, id) {
                if let Some(t) = state.tenant(id) {
                    let cfg = t.borrow().config.clone();
                    start_database_work(state, &cfg);
                }
            }
        }
        TenantChange::Updated => {
            if let Some(cfg) = config {
                take_settings(state, id, cfg);
            }
        }
    }
}

/// An active tenant whose settings changed without a disconnect takes the
/// new ones: limits and switches apply from the next message on. If its
/// database moved, its database work starts again there.
fn take_settings(state: &Rc<ShardState>, id: &str, cfg: Arc<TenantConfig>) {
    let Some(t) = state.tenant(id) else { return };
    let moved = {
        let mut t = t.borrow_mut();
        let moved = t.config.database_differs(&cfg);
        t.cdc.enabled = cfg.has_database;
        t.join_tokens = Default::default();
        t.config = cfg.clone();
        moved
    };
    if moved {
        stop_database_work(state, id);
        start_database_work(state, &cfg);
    }
}

/// Every socket of tenant `id` on this shard is told `Server requested
/// disconnect` on each channel and closed with 1012; its database work
/// stops and its live state goes, so whatever comes next starts afresh
/// from the tenant's current settings.
pub fn disconnect(state: &Rc<ShardState>, id: &str) {
    stop_database_work(state, id);
    let Some(tenant) = state.tenants.borrow_mut().remove(id) else {
        return;
    };
    ShardStats::gauge(&state.stats().tenants_active, -1);
    let conns: Vec<_> = state
        .sessions
        .borrow()
        .values()
        .filter(|c| Rc::ptr_eq(&c.tenant, &tenant))
        .cloned()
        .collect();
    tracing::info!(
        tenant = id,
        sockets = conns.len(),
        "tenant changed: disconnecting its sockets"
    );
    for conn in conns {
        conn.session.borrow().push_server_disconnect();
        conn.out.close_with(1012, CloseReason::TenantChanged);
    }
}

/// Reads tenant `id` from the control database: its stored row,
/// decrypted and turned into a shard's settings.
/// The record of tenant `id` read again from the control database
/// (`None`: it is gone), for a change made on another node.
pub async fn lookup_again(
    state: &Rc<ShardState>,
    id: &str,
) -> Result<Option<Arc<TenantConfig>>, String> {
    if !state.config.uses_control_db() {
        return Ok(state.directory.get(id).cloned());
    }
    control_lookup(state, id).await
}

async fn control_lookup(
    state: &Rc<ShardState>,
    id: &str,
) -> Result<Option<Arc<TenantConfig>>, String> {
    ShardStats::add(&state.stats().tenant_lookups, 1);
    let row = state
        .control
        .with(async |c| store::get(c, id).await)
        .await
        .map_err(|e| e.to_string())?;
    let Some(row) = row else { return Ok(None) };
    let c = &state.config;
    let keys = SecretKeys::new(
        c.db_enc_key.as_deref(),
        c.db_enc_key_gcm.as_deref(),
        c.db_enc_write_gcm,
    )
    .map_err(|e| e.to_string())?;
    let rec = TenantRecord::from_row(row, &keys).map_err(|e| e.to_string())?;
    let validators = ClaimValidators::parse(&c.jwt_claim_validators)
        .map_err(|e| format!("JWT_CLAIM_VALIDATORS: {e}"))?;
    let cfg = record::to_config(&rec, &TenantDefaults::from_config(c), validators)
        .map_err(|e| e.to_string())?;
    Ok(Some(Arc::new(cfg)))
}
