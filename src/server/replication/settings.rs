//! Where a tenant database is and what to stream from it. A leaf shared by
//! the replication driver and its steps (`lag`, `subscribe`).

use std::time::Duration;

use crate::config::{Config, SslMode};
use crate::realtime::tenant::TenantConfig;
use crate::server::pgconn::PgConfig;
use crate::server::tls::DbTls;

/// Bytes in the slot lag cap's unit (MB as Postgres counts them: 2^20).
pub const MB: u64 = 1 << 20;

/// Where the tenant database is and what to stream from it.
#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    /// Connection for catalog queries.
    pub sql: PgConfig,
    /// Connection for the stream (`replication=database`).
    pub stream: PgConfig,
    /// Publication streamed (never created here).
    pub publication: String,
    /// Permanent logical slot.
    pub slot: String,
    /// Status update period.
    pub status_interval: Duration,
    /// WAL the slot may retain before it is recreated, in bytes (0: no cap).
    pub max_slot_lag_bytes: u64,
    /// Stream silence before a reply is requested ([`silence`]); `None`:
    /// half of the database's `wal_sender_timeout`.
    pub idle_timeout: Option<Duration>,
    /// Connections that check a batch's rows at once (the catalog
    /// connection and `check_connections - 1` more, opened when needed).
    pub check_connections: usize,
}

impl ReplicationSettings {
    /// Settings of `tenant`'s database, if it has one: the `DB_*` settings
    /// for the environment's tenant, else its CDC extension's (a tenant of
    /// the control database or of the config file).
    pub fn for_tenant(c: &Config, tenant: &TenantConfig) -> Option<Self> {
        // The config file's tenants never take the environment's tenant's
        // id (refused at start), so the id tells them apart.
        if !c.uses_control_db() && tenant.external_id == c.self_host_tenant_name {
            return Self::from_config(c);
        }
        let db = tenant.db.as_ref()?;
        // Not `from_config`: a file tenant's database is there without
        // `DB_HOST`.
        let mut s = Self::server_wide(c, db.host.clone());
        s.sql.port = db.port;
        s.sql.dbname = db.name.clone();
        s.sql.user = db.user.clone();
        s.sql.password = db.password.clone();
        // `ssl_enforced` asks for TLS without verifying it, as the Elixir
        // server does; otherwise TLS is used when the database offers it.
        s.sql.tls.mode = if db.ssl_enforced {
            SslMode::Require
        } else {
            SslMode::Prefer
        };
        s.stream = PgConfig {
            replication: true,
            application_name: "realtime_replication".into(),
            ..s.sql.clone()
        };
        s.publication = db.publication.clone();
        s.slot = format!("{}{}", db.slot_name, c.slot_name_suffix);
        Some(s)
    }

    /// Settings of the default tenant, if a database is configured.
    pub fn from_config(c: &Config) -> Option<Self> {
        let host = c.db_host.clone()?;
        Some(Self::server_wide(c, host))
    }

    /// The `DB_*` and replication settings, with the database at `host`.
    fn server_wide(c: &Config, host: String) -> Self {
        let sql = PgConfig {
            host,
            port: c.db_port,
            dbname: c.db_name.clone(),
            user: c.db_user.clone(),
            password: c.db_password.clone().unwrap_or_default(),
            replication: false,
            application_name: "realtime".into(),
            timeout: Duration::from_millis(c.db_query_timeout_ms),
            tls: DbTls {
                mode: c.db_ssl_mode,
                root_cert: c.db_ssl_root_cert.clone(),
            },
        };
        let stream = PgConfig {
            replication: true,
            application_name: "realtime_replication".into(),
            ..sql.clone()
        };
        Self {
            sql,
            stream,
            publication: c.db_publication.clone(),
            slot: format!("supabase_realtime_replication_slot{}", c.slot_name_suffix),
            status_interval: Duration::from_millis(c.replication_status_interval_ms),
            max_slot_lag_bytes: c.replication_max_slot_lag_mb.saturating_mul(MB),
            check_connections: c.db_check_connections.clamp(1, 16) as usize,
            idle_timeout: match c.replication_idle_timeout_ms {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
        }
    }
}
