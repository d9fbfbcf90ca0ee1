//! The SQL that answers a batch's [`Questions`], and the reading of its
//! results: one simple-query round trip, runtime-free so it is tested
//! without a database.
//!
//! ```sql
//! BEGIN READ ONLY;
//! SELECT (<filter 1>) IS TRUE, ...;                   -- as the server's user
//! SELECT set_config('realtime.rc_0_0', '{"1","2",...}', true), ...;
//! SELECT set_config('role', 'authenticated', true),
//!        set_config('request.jwt.claims', '{...}', true);
//! SELECT "id" FROM "public"."todos"
//!  WHERE "id" = ANY (current_setting('realtime.rc_0_0')::integer[]);
//! ...                                                 -- per claims group
//! COMMIT;
//! ```
//!
//! The primary keys of a table's changes are stated once per batch, as an
//! array in a transaction-local setting; each claims group then asks, in
//! one statement per table, which of those keys its policies let it see.
//! A batch of R rows seen by G groups costs G small index lookups of R
//! keys, not R x G statements: the earlier form, one `EXISTS` per row and
//! group, spent most of its time planning subqueries (0.3 ms each).
//! Every question is answered yes or no from the results; if the round
//! trip fails, nothing is answered and the caller must not deliver.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::proto::pg::sql::{ident, literal};
use crate::proto::pg::tuple::Column;
use crate::proto::pg::Oid;
use crate::realtime::cdc::access::{AccessView, Answers, Questions};
use crate::realtime::cdc::SubClaims;
use crate::realtime::postgres_changes::change::Change;

/// Most expressions in one SELECT list (Postgres allows 1664 columns).
const MAX_SELECT_ITEMS: usize = 1000;

/// Most changes whose rows one round trip checks. At 100 claims groups a
/// round trip of 1,000 keys takes a few seconds on a small database: far
/// from the query deadline, and short enough to keep the replication
/// stream's status updates flowing between round trips.
pub const MAX_CHANGES_PER_ROUND_TRIP: usize = 1000;

/// The primary keys of one table's checked changes.
struct TableKeys {
    /// `"schema"."table"`.
    name: String,
    /// Quoted key column names.
    columns: Vec<String>,
    /// Type of each key column as `regtype` prints it (empty: unknown).
    types: Vec<String>,
    /// Distinct keys, each the key columns' text values.
    keys: Vec<Vec<String>>,
    index: HashMap<Vec<String>, usize>,
}

/// A table (index into [`CheckPlan::tables`]) and the `(row question,
/// key)` pairs one claims group asks about it.
type TableChecks = (usize, Vec<(usize, usize)>);

/// What one statement's result answers.
enum Reads {
    /// Nothing (BEGIN, settings, COMMIT).
    Nothing,
    /// Boolean columns answering these expressions.
    Exprs(Vec<usize>),
    /// The visible keys of table `table`: row question `i` is answered by
    /// whether key `k` came back, for each `(i, k)`.
    Rows {
        table: usize,
        checks: Vec<(usize, usize)>,
    },
}

/// The statements of one round trip and what each result answers.
pub struct CheckPlan {
    statements: Vec<(String, Reads)>,
    tables: Vec<TableKeys>,
}

impl CheckPlan {
    /// The round trips that answer `q` about `changes`: the first also
    /// evaluates the filters, and each checks the rows of at most
    /// [`MAX_CHANGES_PER_ROUND_TRIP`] changes, so a transaction of any size
    /// is checked in steps that each end well within the database deadline.
    pub fn round_trips(
        changes: &[Change<'_>],
        q: &Questions,
        access: &impl AccessView,
    ) -> Vec<CheckPlan> {
        (0..changes.len().max(1))
            .step_by(MAX_CHANGES_PER_ROUND_TRIP)
            .map(|first| {
                let last = first + MAX_CHANGES_PER_ROUND_TRIP;
                CheckPlan::build(changes, q, access, first..last, first == 0)
            })
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// One round trip answering every question of `q` about `changes`. A
    /// row question whose change has no primary key value to look up stays
    /// unasked ("no").
    pub fn new(changes: &[Change<'_>], q: &Questions, access: &impl AccessView) -> CheckPlan {
        CheckPlan::build(changes, q, access, 0..usize::MAX, true)
    }

    /// The row questions about changes in `range`, and the filters if
    /// `with_exprs`.
    fn build(
        changes: &[Change<'_>],
        q: &Questions,
        access: &impl AccessView,
        range: std::ops::Range<usize>,
        with_exprs: bool,
    ) -> CheckPlan {
        let mut plan = CheckPlan {
            statements: vec![("BEGIN READ ONLY".into(), Reads::Nothing)],
            tables: Vec::new(),
        };
        // Filters run as the server's own user, before any role is set.
        let nr_exprs = if with_exprs { q.exprs.len() } else { 0 };
        let exprs: Vec<usize> = (0..nr_exprs).collect();
        for chunk in exprs.chunks(MAX_SELECT_ITEMS) {
            let items: Vec<String> = chunk
                .iter()
                .map(|&i| format!("({}) IS TRUE", q.exprs[i]))
                .collect();
            plan.statements.push((
                format!("SELECT {}", items.join(", ")),
                Reads::Exprs(chunk.to_vec()),
            ));
        }
        // Row questions grouped by claims (first-asked order), then table.
        let mut by_table: HashMap<Oid, usize> = HashMap::new();
        let mut groups: Vec<(&Rc<SubClaims>, Vec<TableChecks>)> = Vec::new();
        // By address: `q` holds every group's `Rc`, so addresses are unique.
        let mut by_claims: HashMap<*const SubClaims, usize> = HashMap::new();
        for (i, (change, claims)) in q.rows.iter().enumerate() {
            if !range.contains(change) {
                continue;
            }
            let Some(c) = changes.get(*change) else {
                continue;
            };
            let Some(key) = key_of(c) else { continue };
            let t = match by_table.get(&c.rel.oid) {
                Some(&t) => t,
                None => {
                    let Some(keys) = TableKeys::new(c, access) else {
                        continue;
                    };
                    plan.tables.push(keys);
                    by_table.insert(c.rel.oid, plan.tables.len() - 1);
                    plan.tables.len() - 1
                }
            };
            let k = plan.tables[t].key_index(key);
            let g = *by_claims.entry(Rc::as_ptr(claims)).or_insert_with(|| {
                groups.push((claims, Vec::new()));
                groups.len() - 1
            });
            let per_table = &mut groups[g].1;
            match per_table.iter_mut().find(|(pt, _)| *pt == t) {
                Some((_, checks)) => checks.push((i, k)),
                None => per_table.push((t, vec![(i, k)])),
            }
        }
        if !plan.tables.is_empty() {
            let settings: Vec<String> = plan
                .tables
                .iter()
                .enumerate()
                .flat_map(|(t, keys)| {
                    // Keys never hold a NUL (see `key_of`), so they quote.
                    (0..keys.columns.len()).filter_map(move |c| {
                        let value = literal(&keys.array_text(c))?;
                        Some(format!("set_config('{}', {value}, true)", setting(t, c)))
                    })
                })
                .collect();
            plan.statements
                .push((format!("SELECT {}", settings.join(", ")), Reads::Nothing));
        }
        for (claims, per_table) in groups {
            // Claims that cannot be quoted (a NUL byte) name no role the
            // database has: that group sees no rows.
            let (Some(role), Some(json)) = (literal(&claims.role), literal(&claims.json)) else {
                continue;
            };
            plan.statements.push((
                format!(
                    "SELECT set_config('role', {role}, true), set_config('request.jwt.claims', {json}, true)"
                ),
                Reads::Nothing,
            ));
            for (t, checks) in per_table {
                let sql = plan.tables[t].visible_keys_sql(t);
                plan.statements
                    .push((sql, Reads::Rows { table: t, checks }));
            }
        }
        plan.statements.push(("COMMIT".into(), Reads::Nothing));
        plan
    }

    /// Whether there is nothing to ask.
    pub fn is_empty(&self) -> bool {
        self.statements
            .iter()
            .all(|(_, r)| matches!(r, Reads::Nothing))
    }

    /// The whole round trip as one simple-query text.
    pub fn sql(&self) -> String {
        let mut text = String::new();
        for (s, _) in &self.statements {
            text.push_str(s);
            text.push_str(";\n");
        }
        text
    }

    /// Reads the answers from the round trip's results, one per statement
    /// in order (each a list of rows of nullable text values), into
    /// `answers`. `None` when the results do not match the plan (a
    /// statement's result is missing): then nothing is decided.
    pub fn read_answers(
        &self,
        q: &Questions,
        results: &[Vec<Vec<Option<String>>>],
        answers: &mut Answers,
    ) -> Option<()> {
        if results.len() != self.statements.len() {
            return None;
        }
        for ((_, reads), rows) in self.statements.iter().zip(results) {
            match reads {
                Reads::Nothing => {}
                Reads::Exprs(targets) => {
                    let row = rows.first()?;
                    if row.len() != targets.len() {
                        return None;
                    }
                    for (&i, v) in targets.iter().zip(row) {
                        answers.set_expr(q, i, v.as_deref() == Some("t"));
                    }
                }
                Reads::Rows { table, checks } => {
                    let keys = &self.tables[*table];
                    let mut seen = HashSet::new();
                    for row in rows {
                        let key: Option<Vec<String>> = row.iter().cloned().collect();
                        if let Some(&k) = key.and_then(|k| keys.index.get(&k)) {
                            seen.insert(k);
                        }
                    }
                    for &(i, k) in checks {
                        answers.set_row(q, i, seen.contains(&k));
                    }
                }
            }
        }
        Some(())
    }
}

/// The transaction-local setting holding key column `c` of table `t`.
fn setting(t: usize, c: usize) -> String {
    format!("realtime.rc_{t}_{c}")
}

/// The text values of a change's primary key (its new row's, else its old
/// key's); `None` when there is no key or a key value is not plain text.
fn key_of(c: &Change<'_>) -> Option<Vec<String>> {
    if c.primary_key.is_empty() {
        return None;
    }
    let mut cols = c.columns();
    if cols.is_empty() {
        cols = c.identity();
    }
    let mut key = Vec::with_capacity(c.primary_key.len());
    for &pk in c.primary_key {
        match cols.iter().find(|(i, _)| *i == pk) {
            // Postgres text never holds a NUL; a value that does cannot be
            // a row's key.
            Some((_, Column::Text(t))) if !t.contains(&0) => {
                key.push(String::from_utf8_lossy(t).into_owned())
            }
            _ => return None,
        }
    }
    Some(key)
}

impl TableKeys {
    /// `None` when a name cannot be quoted (never for names Postgres
    /// sent).
    fn new(c: &Change<'_>, access: &impl AccessView) -> Option<TableKeys> {
        let types = access.table(c.rel.oid).map(|a| &a.column_types);
        Some(TableKeys {
            name: format!("{}.{}", ident(&c.rel.schema)?, ident(&c.rel.name)?),
            columns: c
                .primary_key
                .iter()
                .map(|&i| ident(&c.rel.columns.get(i)?.name))
                .collect::<Option<_>>()?,
            types: c
                .primary_key
                .iter()
                .map(|&i| types.and_then(|t| t.get(i)).cloned().unwrap_or_default())
                .collect(),
            keys: Vec::new(),
            index: HashMap::new(),
        })
    }

    fn key_index(&mut self, key: Vec<String>) -> usize {
        if let Some(&k) = self.index.get(&key) {
            return k;
        }
        self.keys.push(key.clone());
        self.index.insert(key, self.keys.len() - 1);
        self.keys.len() - 1
    }

    /// Key column `c` of every key as a Postgres array literal of quoted
    /// elements (`{"1","2"}`).
    fn array_text(&self, c: usize) -> String {
        let mut s = String::from("{");
        for (n, key) in self.keys.iter().enumerate() {
            if n > 0 {
                s.push(',');
            }
            s.push('"');
            for ch in key[c].chars() {
                if ch == '"' || ch == '\\' {
                    s.push('\\');
                }
                s.push(ch);
            }
            s.push('"');
        }
        s.push('}');
        s
    }

    /// The key array of column `c` in its column's type (text when the
    /// type is unknown, compared as text).
    fn array_expr(&self, t: usize, c: usize) -> String {
        let ty = if self.types[c].is_empty() {
            "text"
        } else {
            &self.types[c]
        };
        format!("current_setting('{}')::{ty}[]", setting(t, c))
    }

    fn column_expr(&self, c: usize) -> String {
        if self.types[c].is_empty() {
            format!("{}::text", self.columns[c])
        } else {
            self.columns[c].clone()
        }
    }

    /// Which of the batch's keys of this table (number `t`) are visible.
    fn visible_keys_sql(&self, t: usize) -> String {
        let cols = self.columns.join(", ");
        if self.columns.len() == 1 {
            return format!(
                "SELECT {cols} FROM {} WHERE {} = ANY ({})",
                self.name,
                self.column_expr(0),
                self.array_expr(t, 0)
            );
        }
        let lhs: Vec<String> = (0..self.columns.len())
            .map(|c| self.column_expr(c))
            .collect();
        let arrays: Vec<String> = (0..self.columns.len())
            .map(|c| self.array_expr(t, c))
            .collect();
        format!(
            "SELECT {cols} FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))",
            self.name,
            lhs.join(", "),
            arrays.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::rc::Rc;

    use super::*;
    use crate::realtime::cdc::access::TableAccess;
    use crate::realtime::postgres_changes::test_support as ts;

    fn claims(sub: &str) -> Rc<SubClaims> {
        Rc::new(SubClaims {
            role: "authenticated".into(),
            json: format!("{{\"sub\":\"{sub}\"}}"),
        })
    }

    fn access(oid: Oid) -> HashMap<Oid, TableAccess> {
        let mut a = TableAccess {
            rls: true,
            ..Default::default()
        };
        a.column_types = vec!["integer".into(), "text".into()];
        HashMap::from([(oid, a)])
    }

    #[test]
    fn each_group_asks_once_per_table_for_the_batch_keys() {
        let rel = ts::relation("notes", b'd', &[("id", 23, true), ("body", 25, false)]);
        let msgs = [
            ts::insert(&["1", "a"]),
            ts::insert(&["2", "b"]),
            ts::insert(&["1", "c"]),
        ];
        let pk = vec![0];
        let changes: Vec<Change<'_>> = msgs
            .iter()
            .map(|m| Change::from_message(m, &rel, &pk, Default::default()).unwrap())
            .collect();
        let (alice, bob) = (claims("alice"), claims("bob"));
        let mut q = Questions::default();
        for i in 0..3 {
            q.row(i, &alice);
            q.row(i, &bob);
        }
        let plan = CheckPlan::new(&changes, &q, &access(rel.oid));
        let sql = plan.sql();
        // BEGIN, the key setting, two groups of (claims, lookup), COMMIT.
        assert_eq!(sql.lines().count(), 7, "{sql}");
        assert!(
            sql.contains(r#"set_config('realtime.rc_0_0', E'{"1","2"}', true)"#),
            "{sql}"
        );
        assert_eq!(
            sql.matches("WHERE \"id\" = ANY (current_setting('realtime.rc_0_0')::integer[])")
                .count(),
            2,
            "{sql}"
        );
        // Alice sees row 1 (both of its changes), Bob sees nothing.
        let one = |v: &str| vec![Some(v.to_owned())];
        let results = vec![
            vec![],
            vec![vec![Some(String::new())]],
            vec![vec![Some("authenticated".into()), Some("{}".into())]],
            vec![one("1")],
            vec![vec![Some("authenticated".into()), Some("{}".into())]],
            vec![],
            vec![],
        ];
        let mut a = q.unanswered();
        plan.read_answers(&q, &results, &mut a).unwrap();
        assert!(a.row(0, &alice) && !a.row(1, &alice) && a.row(2, &alice));
        assert!(!a.row(0, &bob) && !a.row(1, &bob) && !a.row(2, &bob));
        // A result missing (the round trip was cut) decides nothing.
        assert!(plan.read_answers(&q, &results[..6], &mut a).is_none());
        // Small batches take one round trip.
        assert_eq!(
            CheckPlan::round_trips(&changes, &q, &access(rel.oid)).len(),
            1
        );
    }

    #[test]
    fn large_batches_take_several_round_trips_and_filters_one() {
        let rel = ts::relation("notes", b'd', &[("id", 23, true), ("body", 25, false)]);
        let ids: Vec<String> = (0..2_500).map(|i| i.to_string()).collect();
        let msgs: Vec<_> = ids.iter().map(|i| ts::insert(&[i, "x"])).collect();
        let pk = vec![0];
        let changes: Vec<Change<'_>> = msgs
            .iter()
            .map(|m| Change::from_message(m, &rel, &pk, Default::default()).unwrap())
            .collect();
        let alice = claims("alice");
        let mut q = Questions::default();
        q.expr("'a' = 'a'".into());
        for i in 0..changes.len() {
            q.row(i, &alice);
        }
        let trips = CheckPlan::round_trips(&changes, &q, &access(rel.oid));
        assert_eq!(trips.len(), 3);
        let sql: Vec<String> = trips.iter().map(|p| p.sql()).collect();
        assert!(sql[0].contains("IS TRUE") && !sql[1].contains("IS TRUE"));
        // Each trip states only its own keys.
        assert!(sql[1].contains(r#""1000""#) && !sql[1].contains(r#""999""#));
        assert!(sql[2].contains(r#""2499""#) && !sql[2].contains(r#""1999""#));
    }

    #[test]
    fn key_values_are_quoted_as_array_elements() {
        let rel = ts::relation("notes", b'd', &[("id", 25, true), ("body", 25, false)]);
        let msg = ts::insert(&[r#"a"b\c'd,{}"#, "x"]);
        let pk = vec![0];
        let change = Change::from_message(&msg, &rel, &pk, Default::default()).unwrap();
        let mut q = Questions::default();
        q.row(0, &claims("alice"));
        let mut t = TableKeys::new(&change, &access(rel.oid)).unwrap();
        t.key_index(key_of(&change).unwrap());
        assert_eq!(t.array_text(0), r#"{"a\"b\\c'd,{}"}"#);
    }
}
