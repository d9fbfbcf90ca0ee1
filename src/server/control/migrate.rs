//! Brings the control database's schema up to date: applies each step of
//! [`MIGRATIONS`] whose version `_realtime.schema_migrations` lacks, and
//! records it there the way Ecto does (`version`, `inserted_at` as UTC to
//! the second). A database the Elixir server migrated is recognised as up
//! to date; one it migrated long ago gets only what it misses; one migrated
//! here can go back to the Elixir server, which finds its versions.
//!
//! One run is one transaction: under a transaction-scoped advisory lock on
//! a fixed key, so two servers of this kind wait for each other, and with
//! `schema_migrations` locked in the mode Ecto's migrator takes, so an
//! Elixir server migrating at the same moment waits too. A failing step
//! rolls the whole run back.

use super::migrations::{Migration, MIGRATIONS};
use super::ControlError;
use crate::server::pgconn::{PgConn, PgError};

/// Advisory lock key of a migration run (`realtime` in ASCII).
pub const LOCK_KEY: i64 = 0x7265_616c_7469_6d65;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Versions applied by this run, oldest first.
    pub applied: Vec<i64>,
    /// Versions recorded that this server does not know (a newer server
    /// migrated the database); left alone.
    pub unknown: Vec<i64>,
}

/// Applies every missing step.
pub async fn migrate(conn: &mut PgConn) -> Result<Migrated, ControlError> {
    migrate_steps(conn, MIGRATIONS).await
}

/// Applies the missing steps of `steps` (a prefix of the history, in tests
/// that need an older schema).
pub async fn migrate_steps(
    conn: &mut PgConn,
    steps: &[Migration],
) -> Result<Migrated, ControlError> {
    conn.simple_query("begin").await?;
    let r = run(conn, steps).await;
    let end = if r.is_ok() { "commit" } else { "rollback" };
    match (r, conn.simple_query(end).await) {
        (Ok(m), Ok(_)) => Ok(m),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
    }
}

async fn run(conn: &mut PgConn, steps: &[Migration]) -> Result<Migrated, ControlError> {
    let key = LOCK_KEY.to_string();
    conn.query("select pg_advisory_xact_lock($1::bigint)", &[Some(&key)])
        .await?;
    // Created only when missing: `create ... if not exists` checks the
    // privilege to create before it checks existence, and a role that may
    // use an existing schema need not be allowed to create one.
    let present = conn
        .query(
            "select (select count(*) from pg_namespace where nspname = '_realtime')::text,
                    (to_regclass('_realtime.schema_migrations') is not null)::text",
            &[],
        )
        .await?;
    let row = present.rows.first().map(Vec::as_slice).unwrap_or_default();
    if row.first().and_then(|v| v.as_deref()) == Some("0") {
        conn.simple_query("create schema _realtime").await?;
    }
    if row.get(1).and_then(|v| v.as_deref()) != Some("true") {
        // The table as Ecto creates it, in the schema the Elixir server's
        // search_path points at.
        conn.simple_query(
            "create table _realtime.schema_migrations (
                 version bigint,
                 inserted_at timestamp(0),
                 primary key (version)
             )",
        )
        .await?;
    }
    conn.simple_query("lock table _realtime.schema_migrations in share update exclusive mode")
        .await?;
    let done = conn
        .query("select version::text from _realtime.schema_migrations", &[])
        .await?;
    let mut have = Vec::with_capacity(done.rows.len());
    for row in &done.rows {
        let v = row
            .first()
            .and_then(|v| v.as_deref())
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| ControlError::Row(format!("schema_migrations version {row:?}")))?;
        have.push(v);
    }
    let mut out = Migrated {
        unknown: have
            .iter()
            .copied()
            .filter(|v| !MIGRATIONS.iter().any(|m| m.version == *v))
            .collect(),
        ..Migrated::default()
    };
    out.unknown.sort_unstable();
    for step in steps.iter().filter(|m| !have.contains(&m.version)) {
        apply(conn, step)
            .await
            .map_err(|source| ControlError::Migration {
                version: step.version,
                name: step.name,
                source,
            })?;
        out.applied.push(step.version);
    }
    Ok(out)
}

async fn apply(conn: &mut PgConn, step: &Migration) -> Result<(), PgError> {
    conn.simple_query(step.sql).await?;
    let version = step.version.to_string();
    conn.query(
        "insert into _realtime.schema_migrations (version, inserted_at)
         values ($1::bigint, date_trunc('second', clock_timestamp() at time zone 'utc'))",
        &[Some(&version)],
    )
    .await?;
    Ok(())
}
