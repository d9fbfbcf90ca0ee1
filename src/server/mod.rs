//! The glommio drivers: one [`ShardState`] per executor, the listener that
//! routes sockets to their tenant's home shard, the WebSocket connection
//! driver, the REST API, shutdown, and the tenant database connections.
//!
//! - [`listener`]: accept, read the request head, hand the socket over.
//! - [`connection`]: WebSocket upgrade and read loop.
//! - [`outq`]: the bounded per-socket write queue, and the shard's one
//!   flusher that writes every queue with vectored sends.
//! - [`http_api`]: REST broadcast, health, ping, metrics.
//! - [`shutdown`]: signal handling, the drain and the token-expiry sweep.
//! - [`pgconn`]: a Postgres client connection (startup, authentication,
//!   simple queries, the replication copy stream).
//! - [`tls`]: TLS to tenant databases (`DB_SSL_MODE`).
//! - [`replication`]: one logical replication stream per tenant database,
//!   its subscription checks, RLS row checks and confirmations.

pub mod connection;
pub mod http_api;
pub mod listener;
pub mod outq;
pub mod pgconn;
pub mod replication;
pub mod shutdown;
pub mod sock;
pub mod tls;

use std::cell::{Cell, RefCell};
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use realtime_shards::{Shard, ShardStats};

use crate::config::Config;
use crate::realtime::session::{Session, Settings};
use crate::realtime::tenant::{Directory, Tenant, Tenants};

/// Messages between shards.
pub enum ShardMsg {
    /// A socket whose tenant lives on the receiving shard, with the request
    /// head the accepting shard read from it.
    Adopt(Box<listener::Handoff>),
}

/// Everything one shard owns.
pub struct ShardState {
    /// Shard handle: id, mesh, stats table.
    pub shard: Shard<ShardMsg>,
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Known tenants (shared, read-only).
    pub directory: Arc<Directory>,
    /// Handler switches derived from the config.
    pub settings: Settings,
    /// Tenants active on this shard.
    pub tenants: RefCell<Tenants>,
    /// The sockets' flush list and room waiters (see `outq`).
    pub writers: Rc<outq::Writers>,
    /// Live sessions by connection id (for token expiry and shutdown).
    pub sessions: RefCell<HashMap<u64, Rc<connection::Conn>>>,
    /// Next connection id.
    pub next_conn_id: Cell<u64>,
    /// Next channel id.
    pub next_channel_id: Cell<u64>,
    /// (expiry unix seconds, connection id), earliest first; entries may be
    /// stale and are re-checked when popped.
    pub expiries: RefCell<BinaryHeap<std::cmp::Reverse<(i64, u64)>>>,
    /// Set when the server is draining.
    pub shutting_down: Cell<bool>,
    /// Monotonic origin for `now_ms`.
    pub started: Instant,
}

impl ShardState {
    /// Milliseconds since the shard started (monotonic).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// This shard's counters.
    pub fn stats(&self) -> &ShardStats {
        self.shard.my_stats()
    }

    /// The live state of a tenant whose home is this shard, created on first use.
    pub fn tenant(&self, id: &str) -> Option<Rc<RefCell<Tenant>>> {
        if let Some(t) = self.tenants.borrow().get(id) {
            return Some(t.clone());
        }
        let cfg = self.directory.get(id)?.clone();
        let t = Rc::new(RefCell::new(Tenant::new(cfg, self.now_ms())));
        self.tenants.borrow_mut().insert(id.to_owned(), t.clone());
        Some(t)
    }

    /// Which shard owns `tenant`.
    pub fn home_of(&self, tenant: &str) -> usize {
        realtime_shards::home_shard(tenant, self.shard.nr_shards)
    }

    /// Remembers to check a session's tokens at `exp`.
    pub fn schedule_expiry(&self, session: &Session) {
        if let Some(exp) = session.earliest_expiry() {
            self.expiries
                .borrow_mut()
                .push(std::cmp::Reverse((exp, session.id)));
        }
    }
}

/// Wall-clock Unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs the server until a signal asks it to stop and the drain finishes.
pub fn run(config: Config, directory: Directory) -> std::io::Result<()> {
    shutdown::raise_memlock_limit();
    shutdown::install_signal_handlers()?;
    let config = Arc::new(config);
    let directory = Arc::new(directory);
    let nr = config.nr_shards();
    realtime_shards::PoolBuilder::new(nr).run(move |shard: Shard<ShardMsg>| {
        let config = config.clone();
        let directory = directory.clone();
        async move {
            let state = Rc::new(ShardState {
                settings: Settings {
                    channel_error_backoff_ms: config.channel_error_backoff_ms,
                },
                shard,
                config,
                directory,
                tenants: RefCell::new(HashMap::new()),
                writers: Rc::default(),
                sessions: RefCell::new(HashMap::new()),
                next_conn_id: Cell::new(0),
                next_channel_id: Cell::new(0),
                expiries: RefCell::new(BinaryHeap::new()),
                shutting_down: Cell::new(false),
                started: Instant::now(),
            });
            if let Err(e) = shard_main(state).await {
                tracing::error!(error = %e, "shard stopped with an error");
            }
        }
    })
}

async fn shard_main(mut state: Rc<ShardState>) -> std::io::Result<()> {
    let receivers = Rc::get_mut(&mut state)
        .expect("no other references yet")
        .shard
        .take_receivers();
    let listener = glommio::net::TcpListener::bind((state.config.bind, state.config.port))?;
    if state.shard.id == 0 {
        tracing::info!(
            addr = %listener.local_addr()?,
            shards = state.shard.nr_shards,
            "listening"
        );
    }
    for rx in receivers {
        let st = state.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                handle_shard_msg(&st, msg);
            }
        })
        .detach();
    }
    glommio::spawn_local(outq::flusher(state.clone())).detach();
    glommio::spawn_local(shutdown::expiry_sweeper(state.clone())).detach();
    glommio::spawn_local(shutdown::channelless_sweeper(state.clone())).detach();
    glommio::spawn_local(shutdown::idle_sweeper(state.clone())).detach();
    let tenant = state.config.self_host_tenant_name.clone();
    if state.home_of(&tenant) == state.shard.id {
        if let Some(settings) = replication::ReplicationSettings::from_config(&state.config) {
            glommio::spawn_local(replication::subscribe::run(
                state.clone(),
                tenant.clone(),
                settings.clone(),
            ))
            .detach();
            glommio::spawn_local(replication::run(state.clone(), tenant, settings)).detach();
        }
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
    }
}

/// The tenant directory when no tenant store is configured: the single
/// self-hosted tenant, keyed by `SELF_HOST_TENANT_NAME`, with the API secret.
pub fn directory_from_config(config: &Config) -> Result<Directory, String> {
    use crate::realtime::auth::{ClaimValidators, JwtKeys};
    use crate::realtime::tenant::{Limits, TenantConfig};
    let validators = ClaimValidators::parse(&config.jwt_claim_validators)
        .map_err(|e| format!("JWT_CLAIM_VALIDATORS: {e}"))?;
    Ok(Directory::single(TenantConfig {
        external_id: config.self_host_tenant_name.clone(),
        jwt: JwtKeys {
            secret: (!config.api_jwt_secret.is_empty()).then(|| config.api_jwt_secret.clone()),
            jwks: config.api_jwt_jwks.clone(),
        },
        validators,
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
    }))
}
