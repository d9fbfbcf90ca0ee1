//! A shard's connections to the control database: a few, opened when
//! first needed and kept while they work. Tenant lookups on a cache miss
//! and admin API writes share them; at most [`PER_SHARD`] at a time, so a
//! burst of unknown hosts cannot open a connection each.

use std::cell::RefCell;

use glommio::sync::Semaphore;

use super::ControlError;
use crate::config::Config;
use crate::server::pgconn::{PgConfig, PgConn, PgError};

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
            cfg: config
                .uses_control_db()
                .then(|| super::pg_config(config))
                .flatten(),
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
        f: impl AsyncFnOnce(&mut PgConn) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let Some(cfg) = &self.cfg else {
            return Err(PgError::Protocol("no control database is configured".into()).into());
        };
        let _permit = self
            .permits
            .acquire_permit(1)
            .await
            .map_err(|e| PgError::Protocol(format!("control pool closed: {e}")))?;
        let idle = self.idle.borrow_mut().pop();
        let mut conn = match idle {
            Some(c) => c,
            None => super::connect(cfg, self.after_connect.as_deref()).await?,
        };
        let result = f(&mut conn).await;
        match &result {
            Ok(_) | Err(ControlError::Pg(PgError::Db { .. })) | Err(ControlError::Row(_)) => {
                self.idle.borrow_mut().push(conn)
            }
            Err(_) => conn.terminate().await,
        }
        result
    }
}
