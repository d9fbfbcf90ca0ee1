//! Brings the control database's schema up to date: the
//! [runner](crate::server::migrator) over [`HISTORY`], every step carried
//! (a fresh database gets them one by one, no baseline script).

use super::migrations::MIGRATIONS;
use super::ControlError;
use crate::server::migrator::{self, History, Migration};
use crate::server::pgconn::PgConn;

pub use crate::server::migrator::Migrated;

/// Advisory lock key of a migration run (`realtime` in ASCII).
pub const LOCK_KEY: i64 = 0x7265_616c_7469_6d65;

const VERSIONS: [i64; MIGRATIONS.len()] = migrator::versions_of(MIGRATIONS);

/// The control database's history: `_realtime.schema_migrations`.
pub const HISTORY: History<'static> = History {
    schema: "_realtime",
    lock_key: LOCK_KEY,
    versions: &VERSIONS,
    steps: MIGRATIONS,
    baseline: None,
    roles: &[],
};

/// Applies every missing step.
pub async fn migrate(conn: &mut PgConn) -> Result<Migrated, ControlError> {
    Ok(migrator::migrate(conn, &HISTORY).await?)
}

/// Applies the missing steps of `steps` (a prefix of the history, in tests
/// that need an older schema).
pub async fn migrate_steps(
    conn: &mut PgConn,
    steps: &[Migration],
) -> Result<Migrated, ControlError> {
    // The prefix's versions: what the other versions' absence means
    // (nothing to do yet) is the prefix's business, not a gap.
    let versions: Vec<i64> = steps.iter().map(|m| m.version).collect();
    let h = History {
        versions: &versions,
        steps,
        ..HISTORY
    };
    Ok(migrator::migrate(conn, &h).await?)
}
