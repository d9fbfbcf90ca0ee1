//! The control database: where tenants live when `control_db` is on, in the
//! `_realtime` schema the Elixir server keeps (`tenants`, `extensions`,
//! `feature_flags`, `schema_migrations`), so either server can run on it.
//!
//! - [`migrations`]: the schema's history, step by step, under the Elixir
//!   server's version numbers.
//! - [`migrate`]: applies the missing steps, one server at a time.
//! - [`pool`]: each shard's few connections to it.
//! - [`store`]: reads and writes tenant rows
//!   ([`TenantRow`](crate::realtime::tenant::row::TenantRow)), every value
//!   a bound parameter.

pub mod migrate;
pub mod migrations;
pub mod pool;
pub mod store;

use std::time::Duration;

use crate::config::Config;
use crate::server::migrator::MigrateError;
use crate::server::pgconn::{PgConfig, PgConn, PgError};
use crate::server::tls::DbTls;

/// What went wrong with the control database.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The connection or a statement failed.
    #[error("control database: {0}")]
    Pg(#[from] PgError),
    /// A migration run failed; nothing of it was kept.
    #[error("control database: {0}")]
    Migration(MigrateError),
    /// A row did not have the shape the schema promises.
    #[error("control database: unexpected row: {0}")]
    Row(String),
}

impl From<MigrateError> for ControlError {
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::Pg(e) => ControlError::Pg(e),
            MigrateError::Row(r) => ControlError::Row(r),
            e => ControlError::Migration(e),
        }
    }
}

/// Connection settings of the control database: the `db_*` fields, TLS per
/// `db_ssl_mode`, each operation bounded by `db_query_timeout_ms`.
pub fn pg_config(c: &Config) -> Option<PgConfig> {
    Some(PgConfig {
        host: c.db_host.clone()?,
        port: c.db_port,
        dbname: c.db_name.clone(),
        user: c.db_user.clone(),
        password: c.db_password.clone().unwrap_or_default(),
        replication: false,
        application_name: "realtime_control".into(),
        timeout: Duration::from_millis(c.db_query_timeout_ms),
        tls: DbTls {
            mode: c.db_ssl_mode,
            root_cert: c.db_ssl_root_cert.clone(),
        },
    })
}

/// Opens a connection to the control database and runs
/// `after_connect_query` (`DB_AFTER_CONNECT_QUERY`) on it first, if set.
pub async fn connect(
    cfg: &PgConfig,
    after_connect_query: Option<&str>,
) -> Result<PgConn, ControlError> {
    let mut conn = PgConn::connect(cfg).await?;
    if let Some(q) = after_connect_query.filter(|q| !q.trim().is_empty()) {
        conn.simple_query(q).await?;
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SslMode;

    #[test]
    fn the_connection_comes_from_the_db_settings() {
        assert!(pg_config(&Config::default()).is_none());
        let c = Config {
            db_host: Some("db.internal".into()),
            db_port: 6543,
            db_name: "control".into(),
            db_user: "admin".into(),
            db_password: Some("pw".into()),
            db_ssl_mode: SslMode::Require,
            db_query_timeout_ms: 1234,
            ..Config::default()
        };
        let p = pg_config(&c).unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.dbname.as_str(), p.user.as_str()),
            ("db.internal", 6543, "control", "admin")
        );
        assert_eq!(p.password, "pw");
        assert!(!p.replication);
        assert_eq!(p.tls.mode, SslMode::Require);
        assert_eq!(p.timeout, Duration::from_millis(1234));
    }
}
