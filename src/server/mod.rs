//! The glommio drivers: one [`ShardState`] per executor, the listener that
//! routes sockets to the shard that serves their tenant, the WebSocket connection
//! driver, the REST API, shutdown, and the tenant database connections.
//!
//! - [`shard`]: the state every driver on a shard shares, and the
//!   messages between shards; [`conns`] and [`handoff`] hold the plain
//!   types it keeps, so it depends on no driver.
//! - [`listener`]: accept, read the request head, hand the socket over.
//! - [`connection`]: WebSocket upgrade and read loop.
//! - [`fault`]: where a panic in one tenant's work is caught, and the rule
//!   that keeps shared state whole after it.
//! - [`outq`]: the bounded per-socket write queue, and the shard's one
//!   flusher that writes every queue with vectored sends.
//! - [`http_api`]: REST broadcast, health, ping; [`metrics`]: `/metrics`;
//!   [`inspector`]: the browser page at `/`.
//! - [`forward`]: messages fanned out on one shard, queued to the other
//!   shards with subscribers of their topic; [`cdc_relay`]: a spread
//!   tenant's Postgres Changes subscriptions on other shards than its home.
//! - [`shutdown`]: signal handling, the drain and the token-expiry sweep.
//! - [`pgconn`]: a Postgres client connection (startup, authentication,
//!   simple queries, the replication copy stream).
//! - [`pgerror`]: the errors of both.
//! - [`tls`]: TLS to tenant databases (`DB_SSL_MODE`).
//! - [`control`]: the control database (tenants), its migrations.
//! - [`migrator`]: the one migration runner both schemas use (versions,
//!   baseline, advisory lock, Ecto's bookkeeping).
//! - [`tenant_db`]: the `realtime` schema in each tenant's database: its
//!   migrations, when they run, the daily `realtime.messages` partitions.
//! - [`replication`]: one logical replication stream per tenant database,
//!   its subscription checks, RLS row checks and confirmations.
//! - [`db_broadcast`]: Broadcast from Database, a stream of
//!   `realtime.messages` per tenant database, its publication and slot.
//! - [`rls`]: the RLS checks of private channels on `realtime.messages`;
//!   [`rls_pool`]: each tenant's authorization connections they borrow;
//!   [`replay`]: a private join's stored messages, read on that pool.

pub mod admin_api;
pub mod ask;
pub mod bootstrap;
pub mod cdc_relay;
pub mod cluster;
pub mod cluster_load;
pub mod cluster_node;
pub mod connection;
pub mod conns;
pub mod control;
pub mod db_broadcast;
pub mod deadline;
pub mod fault;
pub mod forward;
pub mod handoff;
pub mod http_api;
pub mod inspector;
pub mod listener;
pub mod metrics;
pub mod migrator;
pub mod nats;
pub mod outq;
pub mod pgconn;
pub mod pgerror;
pub mod rehome;
pub mod replay;
pub mod replication;
pub mod resp;
pub mod rls;
pub mod rls_batch;
pub mod rls_pool;
pub mod rls_script;
pub mod shard;
pub mod shutdown;
pub mod sock;
pub mod tenant_db;
pub mod tenants;
pub mod tls;

use std::cell::{Cell, RefCell};
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use realtime_shards::{Shard, ShardStats};

use crate::config::Config;
use crate::realtime::session::Settings;
use crate::realtime::tenant::shared::SharedTenants;
use crate::realtime::tenant::Directory;

use shard::{ShardMsg, ShardState};

/// Runs the server until a signal asks it to stop and the drain finishes.
pub fn run(config: Config, directory: Directory) -> std::io::Result<()> {
    shutdown::raise_memlock_limit();
    shutdown::install_signal_handlers()?;
    bootstrap::prepare(&config).map_err(std::io::Error::other)?;
    let config = Arc::new(config);
    let directory = Arc::new(directory);
    let nr = config.nr_shards();
    let table = Arc::new(crate::realtime::interest::InterestTable::default());
    // One clock origin for every shard: tenant rate counters kept across
    // shards number their ticks on it.
    let started = Instant::now();
    let shared_tenants = Arc::new(SharedTenants::new(nr));
    let node = Arc::new(cluster::Node::of(&config));
    if !config.nats_url.is_empty() {
        tracing::info!(node = %node.name, region = %config.region, nats = %config.nats_url, "joining the cluster");
    }
    startup_watchdog(nr);
    realtime_shards::PoolBuilder::new(nr).run(move |mut shard: Shard<ShardMsg>| {
        let config = config.clone();
        let directory = directory.clone();
        let table = table.clone();
        let shared_tenants = shared_tenants.clone();
        let node = node.clone();
        async move {
            let control = control::pool::Pool::new(&config);
            let first_channel = first_channel_id(shard.id);
            let receivers = shard.take_receivers();
            let state = Rc::new_cyclic(|me| {
                let outbox = realtime_shards::outbox::Outbox::new(
                    shard.nr_shards,
                    config.shard_queue_bytes,
                    ShardMsg::Gap,
                );
                let interest = (shard.nr_shards > 1).then(|| {
                    let fwd = Rc::new(forward::MeshForwarder { state: me.clone() });
                    Rc::new(crate::realtime::interest::ShardInterest::new(
                        table, shard.id, fwd,
                    ))
                });
                let cluster = (!config.nats_url.is_empty()).then(|| {
                    cluster::Cluster::new(
                        node.id,
                        &node.name,
                        (shard.id, shard.stats.clone()),
                        config.nats_servers(),
                        (
                            config.shard_queue_bytes,
                            std::time::Duration::from_millis(config.node_timeout_ms),
                        ),
                        cluster_node::sink(me.clone()),
                    )
                });
                ShardState {
                    interest,
                    cluster,
                    outbox,
                    control,
                    settings: Settings {
                        channel_error_backoff_ms: config.channel_error_backoff_ms,
                        replication_ready_timeout_ms: config.replication_ready_timeout_ms,
                    },
                    shard,
                    config,
                    directory,
                    catalog: RefCell::new(HashMap::new()),
                    catalog_epoch: Cell::new(0),
                    tenant_tasks: RefCell::new(HashMap::new()),
                    tenant_schemas: RefCell::new(HashMap::new()),
                    auth_pools: RefCell::new(HashMap::new()),
                    lookups: RefCell::new(HashMap::new()),
                    pending_acks: RefCell::new(HashMap::new()),
                    pending_views: Default::default(),
                    pending_auths: Default::default(),
                    pending_replays: Default::default(),
                    next_ticket: Cell::new(0),
                    tenants: RefCell::new(HashMap::new()),
                    writers: Rc::default(),
                    sessions: RefCell::new(HashMap::new()),
                    next_conn_id: Cell::new(0),
                    next_channel_id: Cell::new(first_channel),
                    expiries: RefCell::new(BinaryHeap::new()),
                    replication_waiting: RefCell::default(),
                    presence_syncs: RefCell::default(),
                    shutting_down: Cell::new(false),
                    forwarded: Cell::new(0),
                    waiting_topics: RefCell::default(),
                    shared_tenants,
                    started,
                }
            });
            if let Err(e) = shard_main(state, receivers).await {
                tracing::error!(error = %e, "shard stopped with an error");
            }
        }
    })
}

/// Shards listening so far.
static LISTENING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How long the shards have, together, to join and listen.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// Exit status of a start that stalled (`EX_TEMPFAIL`: try again).
pub const EXIT_STARTUP_STALLED: i32 = 75;

/// Ends the process, loudly, when its shards are not all listening within
/// [`STARTUP_DEADLINE`].
///
/// Joining the shards takes milliseconds, but one four-shard start in
/// 400 to 1,500 on two busy cores stalls in it for good: one executor sleeps
/// before it has taken a turn, and the others wait for it (threads taken
/// with gdb: perf/DECISIONS.md, "A start that stalls"). Until that is
/// found, a stalled start exits with [`EXIT_STARTUP_STALLED`], which a
/// supervisor (systemd's `Restart=on-failure`) answers with a new start,
/// rather than sit silent and unserving.
fn startup_watchdog(nr: usize) {
    use std::sync::atomic::Ordering;
    let started = Instant::now();
    let _ = std::thread::Builder::new()
        .name("startup-watchdog".into())
        .spawn(move || loop {
            let listening = LISTENING.load(Ordering::Acquire);
            if listening >= nr {
                return;
            }
            if started.elapsed() >= STARTUP_DEADLINE {
                eprintln!(
                    "realtime: only {listening} of {nr} shards were listening {} s after start \
                     (a shard's executor stalled while the shards joined); exiting with status \
                     {EXIT_STARTUP_STALLED} to be started again",
                    STARTUP_DEADLINE.as_secs()
                );
                std::process::exit(EXIT_STARTUP_STALLED);
            }
            std::thread::sleep(Duration::from_millis(10));
        });
}

/// Bits of a channel id below the shard's number.
pub const CHANNEL_ID_SHARD_SHIFT: u32 = 48;

/// The first channel id of shard `shard`: ids are unique across shards
/// (the shard in the top bits), so a presence entry names its owner
/// wherever it is replicated, and each shard still hands its ids out in
/// increasing order (the presence order within a key).
pub fn first_channel_id(shard: usize) -> u64 {
    (shard as u64) << CHANNEL_ID_SHARD_SHIFT
}

async fn shard_main(
    state: Rc<ShardState>,
    receivers: Vec<glommio::channels::shared_channel::ConnectedReceiver<ShardMsg>>,
) -> std::io::Result<()> {
    #[cfg(feature = "fault-injection")]
    if state.shard.id == 1 && std::env::var_os(fault::STALL_SHARD_START).is_some() {
        // A shard that never comes up (the stall the watchdog is for).
        std::thread::sleep(STARTUP_DEADLINE * 2);
    }
    let (bind, port) = (state.config.bind, state.config.port);
    let listener = match glommio::net::TcpListener::bind((bind, port)) {
        Ok(l) => l,
        Err(e) => {
            // Nothing is served yet, and a server that cannot listen
            // serves nothing: it stops, says why, and fails.
            eprintln!("realtime: cannot listen on {bind}:{port}: {e}");
            std::process::exit(1);
        }
    };
    LISTENING.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    if state.shard.id == 0 {
        if state.config.db_enc_write_gcm && state.config.db_enc_key_gcm.is_none() {
            tracing::warn!(
                "DB_ENC_WRITE_GCM asks for AES-256-GCM but DB_ENC_KEY_GCM is unset: \
                 new secrets are written with the legacy AES-128-ECB"
            );
        }
        tracing::info!(
            addr = %listener.local_addr()?,
            shards = state.shard.nr_shards,
            "listening"
        );
    }
    for rx in receivers {
        let st = state.clone();
        glommio::spawn_local(async move {
            // Frame bytes delivered since the last pause: forwarded
            // messages that come back to back are paced like a busy
            // socket's reads, so the flusher writes the first before the
            // next joins its subscribers' queues.
            let mut burst = 0usize;
            while let Some(msg) = rx.recv().await {
                match &msg {
                    ShardMsg::Fanout(f) => burst += f.len(),
                    ShardMsg::ToChannel { frame, .. } => burst += frame.len(),
                    _ => {}
                }
                handle_shard_msg(&st, msg);
                if burst >= connection::READ_BURST as usize {
                    burst = 0;
                    connection::let_writers_run().await;
                }
            }
        })
        .detach();
    }
    glommio::spawn_local(outq::flusher(
        state.writers.clone(),
        state.shard.stats.clone(),
        state.shard.id,
    ))
    .detach();
    for peer in (0..state.shard.nr_shards).filter(|&p| p != state.shard.id) {
        glommio::spawn_local(forward::drain(state.clone(), peer)).detach();
    }
    glommio::spawn_local(shutdown::expiry_sweeper(state.clone())).detach();
    glommio::spawn_local(shutdown::replication_ready_sweeper(state.clone())).detach();
    glommio::spawn_local(shutdown::channelless_sweeper(state.clone())).detach();
    glommio::spawn_local(shutdown::idle_sweeper(state.clone())).detach();
    // Without a control database the environment's tenant is active from
    // the start on its home shard, so its replication stream waits there
    // for a first subscriber as before.
    if !state.config.uses_control_db() {
        let id = state.config.self_host_tenant_name.clone();
        if state.home_of(&id) == state.shard.id {
            if let Some(cfg) = state.directory.get(&id).cloned() {
                tenants::activate(&state, &cfg);
            }
        }
    }
    if let Some(c) = &state.cluster {
        glommio::spawn_local(c.clone().run()).detach();
    }
    let accept = glommio::spawn_local(listener::accept_loop(state.clone(), listener));
    shutdown::wait_for_signal().await;
    state.shutting_down.set(true);
    accept.cancel().await;
    shutdown::drain(
        &state,
        Duration::from_millis(state.config.shutdown_drain_ms),
    )
    .await;
    Ok(())
}

fn handle_shard_msg(state: &Rc<ShardState>, msg: ShardMsg) {
    match msg {
        ShardMsg::Adopt(handoff) => {
            ShardStats::add(&state.stats().handoffs_in, 1);
            glommio::spawn_local(listener::adopt(state.clone(), *handoff)).detach();
        }
        ShardMsg::TenantChanged {
            id,
            change,
            config,
            reply_to,
        } => {
            tenants::on_change(state, &id, change, config);
            tenants::acknowledge(state, reply_to);
        }
        ShardMsg::Done(ticket) => tenants::acknowledged(state, ticket),
        ShardMsg::ViewTenant { id, reply_to } => tenants::answer_view(state, &id, reply_to),
        ShardMsg::Viewed(ticket, view) => tenants::viewed(state, ticket, view),
        ShardMsg::Authorize {
            config,
            question,
            reply_to,
        } => {
            // A spread tenant's home may serve none of its sockets: its
            // database work (the schema the check waits for) starts here.
            tenants::activate(state, &config);
            rls::answer_remote(state, config, *question, reply_to)
        }
        ShardMsg::Authorized(ticket, answer) => rls::answered(state, ticket, answer),
        ShardMsg::Replay {
            config,
            request,
            reply_to,
        } => replay::answer_remote(state, config, *request, reply_to),
        ShardMsg::Replayed(ticket, answer) => state.pending_replays.answered(ticket, answer),
        ShardMsg::Fanout(msg) => forward::deliver(state, msg),
        ShardMsg::Gap(key) => forward::gap(state, key),
        ShardMsg::Presence {
            tenant,
            topic,
            private,
            delta,
        } => forward::presence_changed(state, &tenant, &topic, private, &delta),
        ShardMsg::PresenceAsk { tenant, from } => forward::answer_presence(state, tenant, from),
        ShardMsg::PresenceSync { tenant, topics } => {
            forward::presence_answered(state, &tenant, topics)
        }
        ShardMsg::Activate(config) => {
            tenants::activate(state, &config);
        }
        ShardMsg::CdcAdd {
            config,
            origin,
            sub,
        } => {
            let tenant = tenants::activate(state, &config);
            cdc_relay::added(state, &tenant, origin, *sub)
        }
        ShardMsg::CdcRemove { tenant, channel } => cdc_relay::removed(state, &tenant, channel),
        ShardMsg::CdcClaims {
            tenant,
            channel,
            claims,
        } => cdc_relay::claims(state, &tenant, channel, claims),
        ShardMsg::ToChannel {
            tenant,
            channel,
            frame,
        } => cdc_relay::frame(state, &tenant, channel, frame),
        ShardMsg::CloseChannel {
            tenant,
            channel,
            code,
        } => cdc_relay::close(state, &tenant, channel, code),
    }
}

/// The tenant directory: without a control database the self-hosted
/// tenant, keyed by `SELF_HOST_TENANT_NAME`, with the API secret, and the
/// config file's `[[tenants]]` beside it; with one, only the bare-host
/// default's name.
pub fn directory_from_config(config: &Config) -> Result<Directory, String> {
    use crate::config::SslMode;
    use crate::realtime::auth::{ClaimValidators, JwtKeys};
    use crate::realtime::tenant::record::{self, TenantDefaults, DEFAULT_SLOT};
    use crate::realtime::tenant::TenantDb;
    use crate::realtime::tenant::{Limits, Placement, TenantConfig};
    let validators = ClaimValidators::parse(&config.jwt_claim_validators)
        .map_err(|e| format!("JWT_CLAIM_VALIDATORS: {e}"))?;
    if config.uses_control_db() {
        return Ok(Directory::default_only(&config.self_host_tenant_name));
    }
    let defaults = TenantDefaults::from_config(config);
    let mut directory = Directory::single(TenantConfig {
        external_id: config.self_host_tenant_name.clone(),
        jwt: JwtKeys {
            secret: (!config.api_jwt_secret.is_empty()).then(|| config.api_jwt_secret.clone()),
            jwks: config.api_jwt_jwks.clone(),
        },
        validators: validators.clone(),
        limits: Limits {
            max_concurrent_users: config.max_concurrent_users,
            max_events_per_second: config.max_events_per_second,
            max_presence_events_per_second: config.max_presence_events_per_second,
            max_payload_size_in_kb: config.max_payload_size_in_kb,
            max_channels_per_client: config.max_channels_per_client,
            max_joins_per_second: config.max_joins_per_second,
            client_presence_max_calls: config.client_presence_max_calls,
            client_presence_window_ms: config.client_presence_window_ms,
            max_topic_bytes: config.max_topic_bytes,
            max_presence_meta_bytes: config.max_presence_meta_bytes,
            max_presence_bytes_per_client: config.max_presence_bytes_per_client,
        },
        suspended: false,
        private_only: config.private_only,
        presence_enabled: config.presence_enabled,
        has_database: config.db_host.is_some(),
        db: config.db_host.as_ref().map(|host| TenantDb {
            host: host.clone(),
            port: config.db_port,
            name: config.db_name.clone(),
            user: config.db_user.clone(),
            password: config.db_password.clone().unwrap_or_default(),
            publication: config.db_publication.clone(),
            slot_name: DEFAULT_SLOT.to_owned(),
            ssl_enforced: matches!(config.db_ssl_mode, SslMode::Require | SslMode::VerifyFull),
            region: None,
            db_pool: None,
            subscriber_pool_size: None,
        }),
        // Checked by `Config::validate`.
        placement: Placement::parse(&config.self_host_tenant_placement).unwrap_or_default(),
    });
    let from_file = crate::config::tenants::file_tenants(config).map_err(|e| e.to_string())?;
    for rec in &from_file {
        let cfg =
            record::to_config(rec, &defaults, validators.clone()).map_err(|e| e.to_string())?;
        directory = directory.with(cfg);
    }
    Ok(directory)
}

#[cfg(test)]
mod tests {
    use crate::realtime::tenant::Placement;

    /// The environment's tenant is placed by `SELF_HOST_TENANT_PLACEMENT`.
    #[test]
    fn the_environments_tenant_takes_its_placement_from_the_setting() {
        for (value, want) in [
            (None, Placement::Spread),
            (Some("spread"), Placement::Spread),
            (Some("home"), Placement::Home),
        ] {
            let env = |k: &str| {
                value
                    .filter(|_| k == "SELF_HOST_TENANT_PLACEMENT")
                    .map(Into::into)
            };
            let config = crate::config::load_from(["realtime"], &env).unwrap().config;
            let dir = super::directory_from_config(&config).unwrap();
            assert_eq!(
                dir.get("realtime-dev").unwrap().placement,
                want,
                "{value:?}"
            );
        }
    }
}
