//! The database's side of a batch: table access (row security, column
//! privileges per role, column types) cached briefly, and the answers to a
//! batch's [`Questions`] in one round trip planned by [`CheckPlan`]: each
//! claims group asks which of the batch's primary keys its policies let it
//! see, as the Elixir server's `apply_rls` asks per row. A round trip that
//! fails (a policy raised, a role was dropped) decides nothing: the batch
//! is neither delivered nor confirmed, and the stream retries it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::keepalive::KeepAlive;
use crate::proto::pg::pgoutput::Relation;
use crate::proto::pg::sql::literal;
use crate::proto::pg::Oid;
use crate::realtime::cdc::access::{AccessView, Answers, Questions, TableAccess};
use crate::realtime::cdc::rowcheck::CheckPlan;
use crate::realtime::postgres_changes::change::Change;
use crate::server::pgconn::{PgConfig, PgConn, PgError};

/// How long table access is trusted before it is read again. Policies
/// themselves are evaluated live by every row check; this bounds how long
/// a change of `relrowsecurity` or of column grants takes to apply.
pub const ACCESS_TTL: Duration = Duration::from_secs(1);

/// Table access by relation, refreshed when stale.
#[derive(Default)]
pub struct AccessCache {
    tables: HashMap<Oid, (TableAccess, Instant)>,
}

impl AccessView for AccessCache {
    fn table(&self, rel: Oid) -> Option<&TableAccess> {
        self.tables.get(&rel).map(|(a, _)| a)
    }
}

impl AccessCache {
    /// Forgets a table (its layout changed).
    pub fn forget(&mut self, rel: Oid) {
        self.tables.remove(&rel);
    }

    /// Makes sure the access of every table in `needs` is fresh and knows
    /// each listed role. `rel` finds a table's replicated layout.
    pub async fn refresh<'r>(
        &mut self,
        sql: &mut PgConn,
        needs: &[(Oid, Vec<String>)],
        rel: impl Fn(Oid) -> Option<&'r Relation>,
    ) -> Result<(), PgError> {
        let now = Instant::now();
        let mut stale: Vec<(&Relation, Vec<String>)> = Vec::new();
        for (oid, roles) in needs {
            let fresh = self.tables.get(oid).is_some_and(|(a, at)| {
                now.duration_since(*at) < ACCESS_TTL
                    && roles.iter().all(|r| a.selectable.contains_key(r))
            });
            if fresh {
                continue;
            }
            let Some(r) = rel(*oid) else { continue };
            let mut roles = roles.clone();
            if let Some((a, _)) = self.tables.get(oid) {
                for known in a.selectable.keys() {
                    if !roles.contains(known) {
                        roles.push(known.clone());
                    }
                }
            }
            stale.push((r, roles));
        }
        if stale.is_empty() {
            return Ok(());
        }

        let mut pairs = Vec::new();
        for (r, roles) in &stale {
            // A role name that cannot be quoted (NUL) is asked about
            // under no name: it selects nothing.
            for role in roles.iter().filter_map(|r| literal(r)) {
                pairs.push(format!("({}::oid, {role})", r.oid.0));
            }
        }
        if pairs.is_empty() {
            return Ok(());
        }
        let q = format!(
            "SELECT w.rel, c.relrowsecurity, w.role, a.attname, a.atttypid::regtype::text, \
             coalesce(has_column_privilege(ro.oid, c.oid, a.attnum, 'SELECT'), false) \
             FROM (VALUES {}) AS w(rel, role) \
             JOIN pg_class c ON c.oid = w.rel \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             LEFT JOIN pg_roles ro ON ro.rolname = w.role",
            pairs.join(", ")
        );
        let rows = sql.simple_query(&q).await?;
        let rows = rows.first().map(|r| &r.rows[..]).unwrap_or(&[]);
        for (r, roles) in &stale {
            let oid_text = r.oid.0.to_string();
            let mine = rows
                .iter()
                .filter(|row| row[0].as_deref() == Some(oid_text.as_str()));
            let mut access = TableAccess {
                rls: false,
                selectable: HashMap::new(),
                column_types: vec![String::new(); r.columns.len()],
            };
            let mut flags: HashMap<&str, Vec<bool>> = roles
                .iter()
                .map(|role| (role.as_str(), vec![false; r.columns.len()]))
                .collect();
            let mut seen = false;
            for row in mine {
                seen = true;
                access.rls = row[1].as_deref() == Some("t");
                let name = row[3].as_deref().unwrap_or_default();
                let Some(i) = r.columns.iter().position(|c| c.name == name) else {
                    continue;
                };
                access.column_types[i] = row[4].clone().unwrap_or_default();
                if let Some(f) = row[2].as_deref().and_then(|role| flags.get_mut(role)) {
                    f[i] = row[5].as_deref() == Some("t");
                }
            }
            if !seen {
                // Dropped meanwhile: nobody sees it.
                self.tables.remove(&r.oid);
                continue;
            }
            for (role, f) in flags {
                access.selectable.insert(role.to_owned(), Rc::from(f));
            }
            self.tables.insert(r.oid, (access, now));
        }
        Ok(())
    }
}

/// Waits until transaction `xid` (pgoutput's 32-bit id) is visible to new
/// snapshots. Its commit record is flushed, and so streamed, before the
/// committing backend leaves the proc array; a row check in that window
/// would not see the row. The 64-bit id is rebuilt from the epoch of the
/// current snapshot's `xmax` (the previous epoch if the low bits wrapped).
pub async fn wait_visible(sql: &mut PgConn, xid: u32) -> Result<(), PgError> {
    let q = format!(
        "SELECT pg_visible_in_snapshot(((s.e - CASE WHEN {xid} > s.lo THEN 4294967296 ELSE 0 END) \
         + {xid})::text::xid8, s.snap) FROM (SELECT snap, \
         (pg_snapshot_xmax(snap)::text::bigint >> 32) << 32 AS e, \
         pg_snapshot_xmax(snap)::text::bigint & 4294967295 AS lo \
         FROM (SELECT pg_current_snapshot() AS snap) q) s"
    );
    let started = Instant::now();
    loop {
        let rows = sql.simple_query(&q).await?;
        let visible = rows
            .first()
            .and_then(|r| r.rows.first())
            .and_then(|row| row.first().cloned().flatten())
            .is_some_and(|v| v == "t");
        if visible {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(5) {
            // Checking now could wrongly find its rows invisible: give up
            // the session, so the batch is retried and never confirmed
            // undecided.
            return Err(PgError::Protocol(format!(
                "transaction {xid} not visible after 5 s; its rows cannot be checked yet"
            )));
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

/// The connections a tenant's row checks use besides the driver's own,
/// opened when a batch first needs them, and the lookups each connection
/// has prepared. Dropped with the session: a new session prepares again.
pub struct CheckPool {
    cfg: PgConfig,
    /// Connections in all, the driver's own included.
    size: usize,
    /// The prepared lookups of the driver's own connection, then of each
    /// extra connection.
    prepared: Vec<HashSet<String>>,
    extra: Vec<PgConn>,
}

impl CheckPool {
    /// A pool of `size` connections (at least 1: the driver's own) to the
    /// database of `cfg`.
    pub fn new(cfg: PgConfig, size: usize) -> CheckPool {
        CheckPool {
            cfg,
            size: size.max(1),
            prepared: vec![HashSet::new()],
            extra: Vec::new(),
        }
    }

    /// Opens the extra connections a batch asked by `groups` claims groups
    /// can use (at least two groups per connection: a part costs a round
    /// trip and the keys stated again); returns how many to use.
    async fn open_for(&mut self, groups: usize) -> Result<usize, PgError> {
        let want = self.size.min(groups.div_ceil(2)).max(1);
        while self.extra.len() + 1 < want {
            self.extra.push(PgConn::connect(&self.cfg).await?);
            self.prepared.push(HashSet::new());
        }
        Ok(want)
    }
}

/// Answers `q` about `changes`, in as many round trips as
/// [`CheckPlan::round_trips`] plans, each split over the pool's
/// connections (`sql`, the driver's own, first) and run at once. Any error
/// means some question is undecided: the caller must neither deliver nor
/// confirm the batch, and retries it on a new session.
pub async fn answer(
    sql: &mut PgConn,
    pool: &mut CheckPool,
    changes: &[Change<'_>],
    q: &Questions,
    access: &AccessCache,
    keep: &mut KeepAlive<'_>,
) -> Result<Answers, PgError> {
    let groups = q
        .rows
        .iter()
        .map(|(_, c)| Rc::as_ptr(c))
        .collect::<HashSet<_>>()
        .len();
    let parts = pool.open_for(groups).await?;
    let mut answers = q.unanswered();
    let steps = CheckPlan::round_trips(changes, q, access, &mut pool.prepared[..parts]);
    for (n, step) in steps.into_iter().enumerate() {
        if n > 0 {
            keep.ping().await?;
        }
        let mut conns: Vec<Option<&mut PgConn>> = std::iter::once(&mut *sql)
            .chain(pool.extra.iter_mut())
            .map(Some)
            .collect();
        let runs: Vec<_> = step
            .iter()
            .filter_map(|(part, plan)| Some(run_part(conns.get_mut(*part)?.take()?, plan)))
            .collect();
        if runs.len() != step.len() {
            return Err(PgError::Protocol(
                "access check: a part has no connection".into(),
            ));
        }
        for ((_, plan), results) in step.iter().zip(join_all(runs).await) {
            plan.read_answers(q, &results?, &mut answers)
                .ok_or_else(|| {
                    PgError::Protocol("access check: results do not match the statements".into())
                })?;
        }
    }
    Ok(answers)
}

/// One part of a round trip on its connection: the rows of each
/// statement's result.
async fn run_part(
    conn: &mut PgConn,
    plan: &CheckPlan,
) -> Result<Vec<Vec<Vec<Option<String>>>>, PgError> {
    match conn.simple_query(&plan.sql()).await {
        Ok(results) => Ok(results.into_iter().map(|r| r.rows).collect()),
        Err(e @ PgError::Db { .. }) => {
            // The transaction is aborted; leave it before the error ends
            // the session.
            let _ = conn.simple_query("ROLLBACK").await;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Polls every future until all are done; their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
