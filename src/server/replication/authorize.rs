//! The database's side of a batch: table access (row security, column
//! privileges per role, column types) cached briefly, and the answers to a
//! batch's [`Questions`] in one round trip.
//!
//! The round trip is one simple query in a read-only transaction:
//!
//! ```sql
//! BEGIN READ ONLY;
//! SELECT <filter 1>, <filter 2>, ...;                -- as the server's user
//! SELECT set_config('role', 'authenticated', true),
//!        set_config('request.jwt.claims', '{...}', true);
//! SELECT EXISTS (SELECT 1 FROM "public"."todos" WHERE "id" = '1'), ...;
//! ...                                                -- one pair per claims group
//! COMMIT;
//! ```
//!
//! so a transaction of N rows seen by G claims groups costs one query, not
//! N x subscribers. Each row check asks whether the row, looked up by its
//! primary key, is visible under the group's policies, as the Elixir
//! server's `apply_rls` does. If the query fails (a policy raised, a role
//! was dropped), each part is asked on its own and a failing part counts
//! as "not visible".

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::proto::pg::pgoutput::Relation;
use crate::proto::pg::sql::{ident, literal};
use crate::proto::pg::tuple::Column;
use crate::proto::pg::Oid;
use crate::realtime::cdc::access::{AccessView, Answers, Questions, TableAccess};
use crate::realtime::cdc::SubClaims;
use crate::realtime::postgres_changes::change::Change;
use crate::server::pgconn::{PgConn, PgError};

/// How long table access is trusted before it is read again. Policies
/// themselves are evaluated live by every row check; this bounds how long
/// a change of `relrowsecurity` or of column grants takes to apply.
pub const ACCESS_TTL: Duration = Duration::from_secs(1);

/// Most expressions in one SELECT list (Postgres allows 1664 columns).
const MAX_SELECT_ITEMS: usize = 1000;

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

/// The `EXISTS` check of one row: is it, looked up by its primary key,
/// visible under the current role and claims? `None` when the change has
/// no primary key value to look up.
fn row_check(c: &Change<'_>) -> Option<String> {
    let mut conds = Vec::new();
    for (i, col) in c.columns() {
        if !c.is_pkey(i) {
            continue;
        }
        let name = &c.rel.columns.get(i)?.name;
        let value = match col {
            Column::Text(t) => literal(&String::from_utf8_lossy(t))?,
            Column::Null => "NULL".to_owned(),
            _ => return None,
        };
        conds.push(format!("{} = {value}", ident(name)?));
    }
    if conds.is_empty() {
        return None;
    }
    Some(format!(
        "EXISTS (SELECT 1 FROM {}.{} WHERE {})",
        ident(&c.rel.schema)?,
        ident(&c.rel.name)?,
        conds.join(" AND ")
    ))
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
            tracing::warn!(
                xid,
                "transaction not visible after 5 s; checking rows anyway"
            );
            return Ok(());
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

/// One piece of the round trip: SELECT lists whose boolean results answer
/// `targets`, run after `setup` (if any).
struct Part {
    setup: Option<String>,
    selects: Vec<(String, Vec<Target>)>,
}

/// Boolean SELECT items and what each answers.
type SelectItems = Vec<(String, Target)>;

#[derive(Clone, Copy)]
enum Target {
    Expr(usize),
    Row(usize),
}

fn selects(items: SelectItems) -> Vec<(String, Vec<Target>)> {
    items
        .chunks(MAX_SELECT_ITEMS)
        .map(|chunk| {
            let sql = chunk
                .iter()
                .map(|(s, _)| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            (
                format!("SELECT {sql}"),
                chunk.iter().map(|(_, t)| *t).collect(),
            )
        })
        .collect()
}

/// Answers `q` about `changes` with one query (or, if that fails, part by
/// part). Only connection trouble is an error.
pub async fn answer(
    sql: &mut PgConn,
    changes: &[Change<'_>],
    q: &Questions,
) -> Result<Answers, PgError> {
    let mut answers = q.unanswered();
    let mut parts = Vec::new();
    if !q.exprs.is_empty() {
        let items = q
            .exprs
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("({e}) IS TRUE"), Target::Expr(i)))
            .collect();
        // Filters run as the server's own user, before any role is set.
        parts.push(Part {
            setup: None,
            selects: selects(items),
        });
    }
    // Row checks grouped by claims, in first-asked order.
    let mut groups: Vec<(&Rc<SubClaims>, SelectItems)> = Vec::new();
    for (i, (change, claims)) in q.rows.iter().enumerate() {
        let Some(check) = changes.get(*change).and_then(row_check) else {
            continue;
        };
        match groups.iter_mut().find(|(c, _)| *c == claims) {
            Some((_, items)) => items.push((check, Target::Row(i))),
            None => groups.push((claims, vec![(check, Target::Row(i))])),
        }
    }
    for (claims, items) in groups {
        // Claims that cannot be quoted (a NUL byte) see no rows.
        let (Some(role), Some(json)) = (literal(&claims.role), literal(&claims.json)) else {
            continue;
        };
        parts.push(Part {
            setup: Some(format!(
                "SELECT set_config('role', {role}, true), set_config('request.jwt.claims', {json}, true)"
            )),
            selects: selects(items),
        });
    }
    if parts.is_empty() {
        return Ok(answers);
    }
    let mut text = String::from("BEGIN READ ONLY;\n");
    for p in &parts {
        push_part(&mut text, p);
    }
    text.push_str("COMMIT;");
    match sql.simple_query(&text).await {
        Ok(results) => {
            // BEGIN, then per part: setup (if any) and its SELECTs.
            let mut k = 1;
            for p in &parts {
                k += usize::from(p.setup.is_some());
                for (_, targets) in &p.selects {
                    record(&mut answers, q, targets, results.get(k));
                    k += 1;
                }
            }
            Ok(answers)
        }
        Err(PgError::Db { message, code, .. }) => {
            tracing::warn!(%code, %message, "batched access check failed; checking part by part");
            sql.simple_query("ROLLBACK").await?;
            for p in &parts {
                let mut text = String::from("BEGIN READ ONLY;\n");
                push_part(&mut text, p);
                text.push_str("COMMIT;");
                match sql.simple_query(&text).await {
                    Ok(results) => {
                        let first = 1 + usize::from(p.setup.is_some());
                        for (k, (_, targets)) in (first..).zip(&p.selects) {
                            record(&mut answers, q, targets, results.get(k));
                        }
                    }
                    Err(PgError::Db { message, code, .. }) => {
                        tracing::warn!(%code, %message, "access check failed; rows not delivered to this group");
                        sql.simple_query("ROLLBACK").await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(answers)
        }
        Err(e) => Err(e),
    }
}

fn push_part(text: &mut String, p: &Part) {
    if let Some(s) = &p.setup {
        text.push_str(s);
        text.push_str(";\n");
    }
    for (s, _) in &p.selects {
        text.push_str(s);
        text.push_str(";\n");
    }
}

fn record(
    answers: &mut Answers,
    q: &Questions,
    targets: &[Target],
    rows: Option<&crate::server::pgconn::Rows>,
) {
    let Some(row) = rows.and_then(|r| r.rows.first()) else {
        return;
    };
    for (t, v) in targets.iter().zip(row) {
        let v = v.as_deref() == Some("t");
        match *t {
            Target::Expr(i) => answers.set_expr(q, i, v),
            Target::Row(i) => answers.set_row(q, i, v),
        }
    }
}
