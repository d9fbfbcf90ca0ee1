//! One migration runner for both databases this server keeps a schema in:
//! the control database (`_realtime`) and each tenant's database
//! (`realtime`). A [`History`] says where the bookkeeping table is, which
//! advisory lock serializes runs, the versions (the Elixir server's numbers)
//! and the steps this server can apply.
//!
//! Versions are recorded in `<schema>.schema_migrations` the way Ecto does
//! (`version`, `inserted_at` as UTC to the second), so a database the
//! Elixir server migrated is recognised as up to date, one it migrated
//! earlier gets only what it misses, and one migrated here can go back to
//! the Elixir server, which finds its versions.
//!
//! A history may carry fewer steps than versions: a database holding none
//! of the versions gets the [`History::baseline`] script (the schema as the
//! last version leaves it) and every version recorded; one holding some
//! gets the missing steps, which must all be among those carried, else the
//! run stops with [`MigrateError::TooOld`].
//!
//! One run is one transaction: under a transaction-scoped advisory lock on
//! the history's key, so two servers of this kind wait for each other, and
//! with `schema_migrations` locked in the mode Ecto's migrator takes, so an
//! Elixir server migrating at the same moment waits too. A failing step
//! rolls the whole run back.

use crate::server::pgconn::{PgConn, PgError};

/// One migration: its version and the SQL that applies it (one or more
/// statements, run inside the migration transaction).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version as recorded in `schema_migrations`.
    pub version: i64,
    /// The Elixir migration's name, for logs.
    pub name: &'static str,
    /// Statements.
    pub sql: &'static str,
}

/// Shorthand for a [`Migration`] in a step list.
pub const fn m(version: i64, name: &'static str, sql: &'static str) -> Migration {
    Migration { version, name, sql }
}

/// The versions of `steps`, for a [`History`] that carries every step.
pub const fn versions_of<const N: usize>(steps: &[Migration]) -> [i64; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = steps[i].version;
        i += 1;
    }
    out
}

/// A schema's history and where it is kept.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    /// Schema of the bookkeeping table (created with it if missing).
    pub schema: &'static str,
    /// Key of the transaction-scoped advisory lock a run holds.
    pub lock_key: i64,
    /// Every version of the history, oldest first.
    pub versions: &'a [i64],
    /// The steps this server can apply: the last ones of `versions`.
    pub steps: &'a [Migration],
    /// The whole schema in one script, for a database with none of the
    /// versions; `None`: such a database gets every step (they must then
    /// be all of `versions`).
    pub baseline: Option<&'static str>,
    /// Roles the baseline and steps grant to or own things as; checked
    /// before anything is applied.
    pub roles: &'static [&'static str],
}

impl History<'_> {
    /// The newest version a database must hold every version up to for
    /// the carried steps to finish it (`None`: they go back to the start).
    pub fn oldest_upgradable(&self) -> Option<i64> {
        let first = self.steps.first()?.version;
        self.versions
            .iter()
            .copied()
            .take_while(|&v| v < first)
            .last()
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Versions recorded by this run, oldest first.
    pub applied: Vec<i64>,
    /// Versions recorded that this server does not know (a newer server
    /// migrated the database); left alone.
    pub unknown: Vec<i64>,
    /// Whether the schema was laid down by the baseline script.
    pub baseline: bool,
}

/// Why a run applied nothing.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The connection or a statement of the runner's own failed.
    #[error("{0}")]
    Pg(#[from] PgError),
    /// A step (or the baseline, under the last version) failed.
    #[error("migration {version} ({name}): {source}")]
    Step {
        /// The step's version.
        version: i64,
        /// The step's name.
        name: &'static str,
        /// Why.
        source: PgError,
    },
    /// A row did not have the shape the schema promises.
    #[error("unexpected row: {0}")]
    Row(String),
    /// Roles the schema grants to are missing from the database.
    #[error("missing roles {0:?}: the schema grants to them (a Supabase database has them; create them, e.g. as NOLOGIN roles)")]
    MissingRoles(Vec<String>),
    /// The database lacks versions older than the steps carried here.
    #[error("schema at an old partial version (missing {missing}); this server upgrades from version {oldest} or newer: let the Elixir server migrate it first")]
    TooOld {
        /// The oldest version missing.
        missing: i64,
        /// The version a database must hold (with all before it).
        oldest: i64,
    },
}

/// Applies every missing step of `history`.
pub async fn migrate(conn: &mut PgConn, history: &History<'_>) -> Result<Migrated, MigrateError> {
    conn.transaction(async |c| run(c, history).await).await
}

async fn run(conn: &mut PgConn, h: &History<'_>) -> Result<Migrated, MigrateError> {
    let key = h.lock_key.to_string();
    conn.query("select pg_advisory_xact_lock($1::bigint)", &[Some(&key)])
        .await?;
    let table = format!("{}.schema_migrations", h.schema);
    // Created only when missing: `create ... if not exists` checks the
    // privilege to create before it checks existence, and a role that may
    // use an existing schema need not be allowed to create one.
    let present = conn
        .query(
            "select (select count(*) from pg_namespace where nspname = $1)::text,
                    (to_regclass($2) is not null)::text",
            &[Some(h.schema), Some(&table)],
        )
        .await?;
    let row = present.rows.first().map(Vec::as_slice).unwrap_or_default();
    if row.first().and_then(|v| v.as_deref()) == Some("0") {
        conn.simple_query(&format!("create schema {}", h.schema))
            .await?;
    }
    if row.get(1).and_then(|v| v.as_deref()) != Some("true") {
        // The table as Ecto creates it.
        conn.simple_query(&format!(
            "create table {table} (
                 version bigint,
                 inserted_at timestamp(0),
                 primary key (version)
             )"
        ))
        .await?;
    }
    conn.simple_query(&format!(
        "lock table {table} in share update exclusive mode"
    ))
    .await?;
    let done = conn
        .query(&format!("select version::text from {table}"), &[])
        .await?;
    let mut have = Vec::with_capacity(done.rows.len());
    for row in &done.rows {
        let v = row
            .first()
            .and_then(|v| v.as_deref())
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| MigrateError::Row(format!("{table} version {row:?}")))?;
        have.push(v);
    }
    let mut out = Migrated {
        unknown: have
            .iter()
            .copied()
            .filter(|v| !h.versions.contains(v))
            .collect(),
        ..Migrated::default()
    };
    out.unknown.sort_unstable();
    let missing: Vec<i64> = h
        .versions
        .iter()
        .copied()
        .filter(|v| !have.contains(v))
        .collect();
    if missing.is_empty() {
        return Ok(out);
    }
    check_roles(conn, h.roles).await?;
    let fresh = missing.len() == h.versions.len();
    if let (true, Some(script)) = (fresh, h.baseline) {
        let last = h
            .steps
            .last()
            .map_or(("baseline", 0), |s| (s.name, s.version));
        conn.simple_query(script)
            .await
            .map_err(|source| MigrateError::Step {
                version: last.1,
                name: last.0,
                source,
            })?;
        for &v in h.versions {
            record(conn, &table, v).await?;
        }
        out.applied = h.versions.to_vec();
        out.baseline = true;
        return Ok(out);
    }
    if let Some(&old) = missing
        .iter()
        .find(|&&v| !h.steps.iter().any(|s| s.version == v))
    {
        return Err(MigrateError::TooOld {
            missing: old,
            oldest: h.oldest_upgradable().unwrap_or(old),
        });
    }
    for step in h.steps.iter().filter(|s| missing.contains(&s.version)) {
        conn.simple_query(step.sql)
            .await
            .map_err(|source| MigrateError::Step {
                version: step.version,
                name: step.name,
                source,
            })?;
        record(conn, &table, step.version).await?;
        out.applied.push(step.version);
    }
    Ok(out)
}

/// Fails naming the roles of `roles` the database lacks.
async fn check_roles(conn: &mut PgConn, roles: &[&str]) -> Result<(), MigrateError> {
    if roles.is_empty() {
        return Ok(());
    }
    let list = roles.join(",");
    let r = conn
        .query(
            "select r from unnest(string_to_array($1, ',')) r
             where not exists (select 1 from pg_roles where rolname = r)
             order by r",
            &[Some(&list)],
        )
        .await?;
    let missing = first_column(&r.rows);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MigrateError::MissingRoles(missing))
    }
}

/// The first column of each row, leaving out NULLs.
pub fn first_column(rows: &[Vec<Option<String>>]) -> Vec<String> {
    rows.iter()
        .filter_map(|row| row.first().cloned().flatten())
        .collect()
}

async fn record(conn: &mut PgConn, table: &str, version: i64) -> Result<(), PgError> {
    let version = version.to_string();
    conn.query(
        &format!(
            "insert into {table} (version, inserted_at)
             values ($1::bigint, date_trunc('second', clock_timestamp() at time zone 'utc'))"
        ),
        &[Some(&version)],
    )
    .await?;
    Ok(())
}
