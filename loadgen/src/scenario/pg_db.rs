//! The database side of `postgres-changes`: administrative statements and
//! the row writer.
//!
//! Both use the server crate's own Postgres client
//! ([`realtime::server::pgconn::PgConn`], glommio sockets, SCRAM), each on a
//! short-lived glommio executor thread of its own, so the loadgen needs no
//! second client library and the writer never shares a reactor with the
//! subscribers' reads.
//!
//! Rows carry their intended commit time in a fixed-width text column
//! `lg_t` (16 digits of loadgen-clock nanoseconds). The server renders it as
//! `"lg_t":"<digits>"` in the delivered record, which is exactly the marker
//! the loadgen's receivers already scan for, so deliveries are timed without
//! decoding their JSON. (A bigint column would render as a bare number and
//! need a second scanner for no gain.)

use std::fmt::Write;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use realtime::server::pgconn::{PgConfig, PgConn, Rows};

use crate::cli::PgArgs;
use crate::phx::{write_ts, TS_DIGITS};
use crate::runner::{Shared, RUN};
use crate::sched::Schedule;
use crate::stats::{self, bump, now_ns};

/// How to reach the tenant database, and which core its threads run on.
#[derive(Debug, Clone)]
pub struct Db {
    /// Connection settings (a plain, non-replication session).
    pub cfg: PgConfig,
    /// Core for the database threads (a loadgen core).
    pub cpu: usize,
}

impl Db {
    /// Settings from the scenario's `--db-*` options (or `DB_*` variables).
    pub fn new(a: &PgArgs, cpu: usize) -> Db {
        Db {
            cfg: PgConfig {
                host: a.db_host.clone(),
                port: a.db_port,
                dbname: a.db_name.clone(),
                user: a.db_user.clone(),
                password: a.db_password.clone(),
                replication: false,
                application_name: "realtime-loadgen".into(),
                // Deadline of the connect and of each query: generous, as
                // a backlog write is one long multi-row INSERT.
                timeout: Duration::from_secs(60),
                // The server's default (`prefer`): TLS when offered.
                tls: Default::default(),
            },
            cpu,
        }
    }

    /// Starts `f` on a fresh connection in its own executor thread.
    pub fn spawn<T, F, Fut>(
        &self,
        name: &str,
        f: F,
    ) -> Result<ExecutorJoinHandle<Result<T, String>>, String>
    where
        T: Send + 'static,
        F: FnOnce(PgConn) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, String>> + 'static,
    {
        let cfg = self.cfg.clone();
        LocalExecutorBuilder::new(Placement::Fixed(self.cpu))
            .name(name)
            .io_memory(256 << 10)
            .ring_depth(64)
            .spawn(move || async move {
                let conn = PgConn::connect(&cfg).await.map_err(|e| {
                    format!(
                        "connecting to the database at {}:{} as {}: {e}",
                        cfg.host, cfg.port, cfg.user
                    )
                })?;
                f(conn).await
            })
            .map_err(|e| format!("starting the {name} thread: {e}"))
    }

    /// Runs `sql` (one or more statements) and waits for the result.
    pub fn exec(&self, sql: &str) -> Result<Vec<Rows>, String> {
        let owned = sql.to_owned();
        let h = self.spawn("loadgen-db", move |mut c| async move {
            let r = c.simple_query(&owned).await.map_err(|e| e.to_string());
            c.terminate().await;
            r
        })?;
        h.join()
            .map_err(|e| format!("database thread: {e}"))?
            .map_err(|e| format!("{e} (in: {})", first_line(sql)))
    }

    /// The first value of the first row of `sql`'s result.
    pub fn scalar(&self, sql: &str) -> Result<Option<String>, String> {
        let rows = self.exec(sql)?;
        Ok(rows
            .into_iter()
            .find(|r| !r.rows.is_empty())
            .and_then(|r| r.rows.into_iter().next())
            .and_then(|row| row.into_iter().next().flatten()))
    }
}

/// The first line of a statement, for error messages.
fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or_default()
}

/// `create table` for a load table named `table` (in `public`); with
/// `owner`, a `uuid` column naming the user each row belongs to. Autovacuum
/// is off for it: an autoanalyze after a few thousand rows would add its
/// transactions and CPU to the database figures of the run.
pub fn create_table_sql(table: &str, owner: bool) -> String {
    let owner = if owner { "owner uuid not null," } else { "" };
    format!(
        "drop table if exists public.{table};
         create table public.{table} (
           id bigint generated always as identity primary key,
           {owner}
           lg_t text not null,
           pad text not null
         ) with (autovacuum_enabled = false);"
    )
}

/// Row level security on `table` (created with an owner): role
/// `authenticated` may read the rows whose owner is the `sub` of its JWT
/// claims. The claims are read the way the server states them
/// (`request.jwt.claims`), since the development database has no `auth`
/// schema and so no `auth.uid()`.
pub fn rls_sql(table: &str) -> String {
    format!(
        "alter table public.{table} enable row level security;
         create policy lg_owner on public.{table} for select to authenticated
           using (owner = (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')::uuid);"
    )
}

/// The id of user `u` (of `--users`), a fixed version-4-shaped UUID.
pub fn user_uuid(u: u64) -> String {
    format!("00000000-0000-4000-8000-{u:012x}")
}

/// How the writer paces its commits.
#[derive(Debug, Clone)]
pub enum Pace {
    /// Open loop: row `k` is intended at `start + offset_of(k)`; a commit
    /// goes out when its last row is due.
    Schedule(Schedule),
    /// Max rate: this many rows, commits back to back, each stamped when
    /// it is built.
    Burst(u64),
}

/// What the writer does.
#[derive(Debug, Clone)]
pub struct WriteJob {
    /// Table in `public`.
    pub table: String,
    /// Rows per transaction.
    pub rows_per_commit: u64,
    /// Filler bytes per row.
    pub pad: usize,
    /// Pacing.
    pub pace: Pace,
    /// Text put in the last row's `pad` (so a byte stream can spot it).
    pub end_marker: Option<String>,
    /// Counter slot the writer bumps (`sends` = rows committed).
    pub slot: usize,
    /// `Some(U)`: the table has an `owner` column and row `k` belongs to
    /// user `k % U` ([`user_uuid`]).
    pub owners: Option<u64>,
    /// `Some(topic)`: each row is a `realtime.send()` of `{lg_t, pad}` to
    /// public `topic` (Broadcast from Database) instead of a table row.
    pub send_topic: Option<String>,
}

/// What the writer did.
#[derive(Debug, Clone)]
pub struct WriteOut {
    /// Rows committed.
    pub rows: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Clock time the first commit was sent.
    pub first_ns: u64,
    /// Clock time the last commit returned.
    pub last_ns: u64,
    /// How late commits went out against the schedule.
    pub lag: Histogram<u64>,
    /// Commit round trips.
    pub commit_rtt: Histogram<u64>,
    /// `pg_current_wal_lsn()` after the last commit.
    pub end_lsn: Option<String>,
}

/// Starts the writer; it waits for the run phase (its schedule origin is
/// `shared.start_ns`) and ends with the schedule, the burst, or the run.
pub fn spawn_writer(
    db: &Db,
    job: WriteJob,
    shared: Arc<Shared>,
) -> Result<ExecutorJoinHandle<Result<WriteOut, String>>, String> {
    db.spawn("loadgen-writer", move |conn| write(conn, job, shared))
}

/// The writer loop.
async fn write(mut conn: PgConn, job: WriteJob, shared: Arc<Shared>) -> Result<WriteOut, String> {
    while shared.phase() < RUN {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let start = shared.start_ns.load(std::sync::atomic::Ordering::Acquire);
    let c = &shared.counters[job.slot];
    let rpc = job.rows_per_commit.max(1);
    let pad = "x".repeat(job.pad);
    let mut out = WriteOut {
        rows: 0,
        commits: 0,
        first_ns: 0,
        last_ns: 0,
        lag: stats::new_hist(),
        commit_rtt: stats::new_hist(),
        end_lsn: None,
    };
    let total = match &job.pace {
        Pace::Schedule(s) => s.total_events(),
        Pace::Burst(n) => *n,
    };
    let mut sql = String::new();
    let mut k = 0u64;
    while k < total && shared.phase() == RUN {
        let end = (k + rpc).min(total);
        // Intended time of each row in this commit.
        let due_of = |i: u64| match &job.pace {
            Pace::Schedule(s) => s.offset_of(i).map(|o| start + o),
            Pace::Burst(_) => None,
        };
        let due = due_of(end - 1);
        if let Some(due) = due {
            let now = now_ns();
            if due > now {
                glommio::timer::sleep(Duration::from_nanos(due - now)).await;
                continue;
            }
        }
        let built = now_ns();
        sql.clear();
        let owner_col = if job.owners.is_some() { "owner, " } else { "" };
        match &job.send_topic {
            Some(_) => sql.push_str(
                "select count(realtime.send(jsonb_build_object('lg_t', v.t, 'pad', v.p), 'lg', v.topic, false)) from (values ",
            ),
            None => {
                let _ = write!(
                    sql,
                    "insert into public.{} ({owner_col}lg_t, pad) values ",
                    job.table
                );
            }
        }
        for i in k..end {
            let mut digits = [0u8; TS_DIGITS];
            write_ts(&mut digits, due_of(i).unwrap_or(built));
            let last = i + 1 == total;
            let fill = match (&job.end_marker, last) {
                (Some(m), true) => m.as_str(),
                _ => pad.as_str(),
            };
            let sep = if i == k { "" } else { "," };
            let owner = job
                .owners
                .map(|u| format!("'{}',", user_uuid(i % u.max(1))))
                .unwrap_or_default();
            // Digits, UUIDs, filler and the topic are plain ASCII with no
            // quotes.
            let topic = job
                .send_topic
                .as_ref()
                .map(|t| format!(",'{t}'"))
                .unwrap_or_default();
            let _ = write!(
                sql,
                "{sep}({owner}'{}','{fill}'{topic})",
                std::str::from_utf8(&digits).unwrap_or_default()
            );
        }
        if job.send_topic.is_some() {
            sql.push_str(") v(t, p, topic)");
        }
        if let Some(due) = due {
            stats::record(&mut out.lag, built.saturating_sub(due));
        }
        if out.first_ns == 0 {
            out.first_ns = built;
        }
        if let Err(e) = conn.simple_query(&sql).await {
            shared.reasons.note(format!("writer: {e}"));
            bump(&c.push_errors, 1);
            break;
        }
        let done = now_ns();
        stats::record(&mut out.commit_rtt, done - built);
        out.last_ns = done;
        out.rows += end - k;
        out.commits += 1;
        bump(&c.sends, end - k);
        k = end;
    }
    out.end_lsn = conn
        .simple_query("select pg_current_wal_lsn()::text")
        .await
        .ok()
        .and_then(|r| r.into_iter().next())
        .and_then(|r| r.rows.into_iter().next())
        .and_then(|row| row.into_iter().next().flatten());
    conn.terminate().await;
    Ok(out)
}
