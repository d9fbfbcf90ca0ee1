//! A shard's connections to the control database: a few, opened when
//! first needed and kept while they work. Tenant lookups on a cache miss
//! and admin API writes share them; at most [`PER_SHARD`] at a time, so a
//! burst of unknown hosts cannot open a connection each.

use std::cell::RefCell;
use std::time::Duration;

use glommio::sync::Semaphore;

use super::pgconn::{PgConfig, PgConn, PgError};
use crate::config::Config;
use crate::server::tls::DbTls;

/// Connections one shard may hold to the control database.
pub const PER_SHARD: u64 = 2;

/// The shard's pool.
pub struct Pool {
    /// Where the control database is; `None` without one.
    cfg: Option<PgConfig>,
    /// Run first on every new connection (`DB_AFTER_CONNECT_QUERY`).
    after_connect: Option<String>,
    /// Idle connections.
    idle: RefCell<Vec<PgConn>>,
    /// One permit per connection in use.
    permits: Semaphore,
}

impl Pool {
    /// The pool for `config`'s control database (none unless it uses one).
    pub fn new(config: &Config) -> Self {
        Self {
            cfg: config.uses_control_db().then(|| settings(config)).flatten(),
            after_connect: config.db_after_connect_query.clone(),
            idle: RefCell::new(Vec::new()),
            permits: Semaphore::new(PER_SHARD),
        }
    }

    /// Runs `f` on a connection. The connection goes back to the pool
    /// unless `f` failed for another reason than a database error (the
    /// connection's state in the protocol is then unknown).
    pub async fn with<T>(
        &self,
        f: impl AsyncFnOnce(&mut PgConn) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        let Some(cfg) = &self.cfg else {
            return Err(PgError::Protocol(
                "no control database is configured".into(),
            ));
        };
        let _permit = self
            .permits
            .acquire_permit(1)
            .await
            .map_err(|e| PgError::Protocol(format!("control pool closed: {e}")))?;
        let idle = self.idle.borrow_mut().pop();
        let mut conn = match idle {
            Some(c) => c,
            None => self.open(cfg).await?,
        };
        let result = f(&mut conn).await;
        match &result {
            Ok(_) | Err(PgError::Db { .. }) => self.idle.borrow_mut().push(conn),
            Err(_) => conn.terminate().await,
        }
        result
    }

    async fn open(&self, cfg: &PgConfig) -> Result<PgConn, PgError> {
        let mut conn = PgConn::connect(cfg).await?;
        if let Some(q) = &self.after_connect {
            conn.simple_query(q).await?;
        }
        Ok(conn)
    }
}

/// The control database's connection settings: the `DB_*` variables, as
/// the Elixir server reads them for its own repository.
pub fn settings(c: &Config) -> Option<PgConfig> {
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
