//! Before any shard serves: the control database brought to the schema
//! the Elixir server's last migration leaves, and, with `SEED_SELF_HOST`,
//! the self-hosted tenant written into it. Runs on a short-lived executor
//! of its own, so shards never see a half-migrated store.

use std::time::Duration;

use super::control::{self, migrate, store, ControlError};
use super::pgconn::PgError;
use super::shard::now_unix;
use crate::config::Config;
use crate::realtime::secrets::SecretKeys;
use crate::realtime::tenant::params;
use crate::realtime::tenant::record::TenantDefaults;
use crate::realtime::tenant::row;
use crate::server::pgconn::PgConn;

/// Attempts before giving up on an unreachable control database.
const ATTEMPTS: u32 = 6;

/// Migrates (and seeds) the control database, retrying with backoff while
/// it is unreachable. An error means the server must not start.
pub fn prepare(config: &Config) -> Result<(), String> {
    if !config.uses_control_db() {
        return Ok(());
    }
    let config = config.clone();
    glommio::LocalExecutorBuilder::default()
        .name("control-setup")
        .spawn(move || async move { prepare_with_retries(&config).await })
        .map_err(|e| format!("cannot start the control-database executor: {e}"))?
        .join()
        .map_err(|e| format!("control-database setup stopped: {e}"))?
}

async fn prepare_with_retries(config: &Config) -> Result<(), String> {
    let mut backoff = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match prepare_once(config).await {
            Ok(()) => return Ok(()),
            // The database answered and said no: retrying will not help.
            Err(e @ (ControlError::Pg(PgError::Db { .. }) | ControlError::Migration(_))) => {
                return Err(e.to_string())
            }
            Err(e) if attempt >= ATTEMPTS => {
                return Err(format!(
                    "control database unreachable after {ATTEMPTS} attempts: {e}"
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, retry_in_ms = backoff.as_millis() as u64, "control database not ready");
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

async fn prepare_once(config: &Config) -> Result<(), ControlError> {
    let pg = control::pg_config(config)
        .ok_or_else(|| PgError::Protocol("no control database host".into()))?;
    let mut conn = control::connect(&pg, config.db_after_connect_query.as_deref()).await?;
    let migrated = migrate::migrate(&mut conn).await?;
    if !migrated.applied.is_empty() {
        tracing::info!(applied = ?migrated.applied, "control database migrated");
    }
    if !migrated.unknown.is_empty() {
        tracing::warn!(versions = ?migrated.unknown, "the control database has migrations this server does not know (a newer server ran them); left alone");
    }
    if config.seed_self_host {
        seed(config, &mut conn).await?;
    }
    conn.terminate().await;
    Ok(())
}

/// Writes the self-hosted tenant (`SELF_HOST_TENANT_NAME`, its database
/// the `DB_*` settings), replacing one of that name.
async fn seed(config: &Config, conn: &mut PgConn) -> Result<(), ControlError> {
    let keys = SecretKeys::new(
        config.db_enc_key.as_deref(),
        config.db_enc_key_gcm.as_deref(),
        config.db_enc_write_gcm,
    )
    .map_err(|e| ControlError::Row(e.to_string()))?;
    let defaults = TenantDefaults::from_config(config);
    let now = row::timestamp_text(now_unix());
    let record = params::seed_record(config, &defaults, || row::uuid_v4(rand::random()), &now);
    let row = record
        .to_row(&keys, rand::random)
        .map_err(|e| ControlError::Row(e.to_string()))?;
    let (_, created) = store::upsert(conn, &row).await?;
    tracing::info!(
        tenant = %config.self_host_tenant_name,
        created,
        "self-hosted tenant seeded"
    );
    Ok(())
}
