//! The `realtime` schema in each tenant's database, which private
//! channels, Broadcast from Database and replay need (this server's
//! Postgres Changes do not use it): its migrations, when they run, and the
//! daily partitions of `realtime.messages`.
//!
//! - [`migrations`]: the history under the Elixir server's versions, a
//!   baseline for fresh databases and the last steps one by one.
//! - [`partitions`]: yesterday to today + 3 created, past 72 h dropped.
//!
//! When: on the admin API's creation of a tenant with a database (before
//! the answer, as the Elixir server does), and on a tenant's activation on
//! its home shard, as one of its database tasks ([`run`]): migrated off
//! any request, retried with backoff until it succeeds, then partitions
//! kept hourly. Postgres Changes start beside it and never wait for it.
//! The outcome is on the home shard, per tenant ([`schema_state`]), for a
//! join that needs the schema to answer with.

pub mod migrations;
pub mod partitions;

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::realtime::tenant::schema::SchemaState;
use crate::realtime::tenant::TenantConfig;
use crate::server::migrator::{self, MigrateError, Migrated};
use crate::server::pgconn::{PgConfig, PgConn, PgError};
use crate::server::replication::ReplicationSettings;
use crate::server::shard::{now_unix, ShardState};

/// The schema state of tenant `id`, on its home shard (`None` elsewhere,
/// and for tenants without a database or not active). Sockets live on
/// their tenant's home shard (the listener hands them over), so a join
/// reads it here; another shard would ask the home shard (as the admin
/// API's health does with `tenants::view`).
pub fn schema_state(state: &ShardState, id: &str) -> Option<SchemaState> {
    state.tenant_schemas.borrow().get(id).cloned()
}

/// How often [`wait_ready`] looks again.
const READY_POLL: Duration = Duration::from_millis(10);

/// Waits up to `max` for tenant `id`'s schema to be ready on this shard
/// (its home) and returns its state then; `None` when no schema task
/// tracks it (no database, or another shard). A private join that arrives
/// while the tenant's first migration runs (a server just started, a
/// tenant just activated) waits for it instead of meeting a half-made
/// schema. Polled: the wait happens only in that first window.
pub async fn wait_ready(state: &ShardState, id: &str, max: Duration) -> Option<SchemaState> {
    let until = Instant::now() + max;
    loop {
        let s = schema_state(state, id)?;
        if s == SchemaState::Ready || Instant::now() >= until {
            return Some(s);
        }
        glommio::timer::sleep(READY_POLL).await;
    }
}

/// Connection settings for tenant `cfg`'s database (`None`: it has none).
pub fn pg_config(c: &Config, cfg: &TenantConfig) -> Option<PgConfig> {
    let s = ReplicationSettings::for_tenant(c, cfg)?;
    Some(PgConfig {
        application_name: "realtime_migrations".into(),
        ..s.sql
    })
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum TenantDbError {
    /// The migration run.
    #[error("tenant database: {0}")]
    Migrate(#[from] MigrateError),
    /// The whole run took longer than its deadline.
    #[error("tenant database: migration not done within {0} ms")]
    Deadline(u128),
}

impl From<PgError> for TenantDbError {
    fn from(e: PgError) -> Self {
        TenantDbError::Migrate(e.into())
    }
}

/// One migration run against `pg`: each network wait bounded by the
/// connection's timeout (`DB_QUERY_TIMEOUT_MS`), the whole by twice that.
pub async fn migrate(pg: &PgConfig) -> Result<Migrated, TenantDbError> {
    let deadline = pg.timeout * 2;
    let run = async {
        let mut conn = PgConn::connect(pg).await?;
        let r = migrator::migrate(&mut conn, &migrations::HISTORY).await;
        conn.terminate().await;
        Ok::<_, TenantDbError>(r?)
    };
    crate::server::deadline::within(deadline, run)
        .await
        .unwrap_or(Err(TenantDbError::Deadline(deadline.as_millis())))
}

/// First wait before retrying a failed run; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between runs.
const RETRY_MAX: Duration = Duration::from_secs(300);
/// Between partition passes.
const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);
/// Before retrying a failed partition pass.
const MAINTAIN_RETRY: Duration = Duration::from_secs(60);

/// The schema task of tenant `id` on its home shard: migrates until it
/// succeeds, then keeps the partitions. Cancelled with the tenant's other
/// database tasks.
pub async fn run(state: Rc<ShardState>, id: String, pg: PgConfig) {
    let set = |s: SchemaState| {
        state.tenant_schemas.borrow_mut().insert(id.clone(), s);
    };
    set(SchemaState::Migrating { last_error: None });
    let mut wait = RETRY_FIRST;
    loop {
        let started = Instant::now();
        match migrate(&pg).await {
            Ok(m) => {
                log_migrated(&id, &m, started);
                break;
            }
            Err(e) => {
                tracing::warn!(
                    tenant = %id,
                    duration_ms = started.elapsed().as_millis() as u64,
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "MigrationsFailedToRun: tenant database schema not migrated"
                );
                set(SchemaState::Migrating {
                    last_error: Some(e.to_string()),
                });
                glommio::timer::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
    // Ready once today's partition had its first chance: a private join
    // let through earlier would meet `MissingPartition`.
    let mut first = true;
    loop {
        let next = match maintain_once(&pg).await {
            Ok(m) => {
                if !m.created.is_empty() || !m.dropped.is_empty() {
                    tracing::info!(tenant = %id, created = ?m.created, dropped = ?m.dropped, "messages partitions maintained");
                }
                MAINTAIN_EVERY
            }
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "PartitionCreationFailed: messages partitions not maintained");
                MAINTAIN_RETRY
            }
        };
        if std::mem::take(&mut first) {
            set(SchemaState::Ready);
        }
        glommio::timer::sleep(next).await;
    }
}

/// One partition pass on a connection of its own.
pub async fn maintain_once(pg: &PgConfig) -> Result<partitions::Maintained, PgError> {
    let mut conn = PgConn::connect(pg).await?;
    let r = partitions::maintain(&mut conn, now_unix()).await;
    conn.terminate().await;
    r
}

/// Logs a successful run: what it applied and how long it took.
pub fn log_migrated(id: &str, m: &Migrated, started: Instant) {
    let duration_ms = started.elapsed().as_millis() as u64;
    if m.applied.is_empty() {
        tracing::debug!(tenant = %id, duration_ms, "tenant database schema up to date");
    } else {
        tracing::info!(
            tenant = %id,
            duration_ms,
            nr_applied = m.applied.len(),
            baseline = m.baseline,
            last = m.applied.last().copied(),
            "tenant database schema migrated"
        );
    }
    if !m.unknown.is_empty() {
        tracing::warn!(tenant = %id, versions = ?m.unknown, "the tenant database has schema versions this server does not know (a newer server ran them); left alone");
    }
}
