//! The SQL that answers a batch's [`Questions`], and the reading of its
//! results: simple-query round trips, runtime-free so they are tested
//! without a database.
//!
//! ```sql
//! BEGIN READ ONLY;
//! SELECT (<filter 1>) IS TRUE, ...;                   -- as the server's user
//! PREPARE realtime_rc_<hash> AS SELECT "id" FROM "public"."todos"
//!  WHERE "id" = ANY (current_setting('realtime.rc_16384_0')::integer[]);
//! SELECT set_config('realtime.rc_16384_0', '{"1","2",...}', true), ...;
//! SELECT set_config('role', 'authenticated', true),
//!        set_config('request.jwt.claims', '{...}', true);
//! EXECUTE realtime_rc_<hash>;
//! SELECT set_config('request.jwt.claims', '{...}', true);
//! EXECUTE realtime_rc_<hash>;                         -- per claims group
//! COMMIT;
//! ```
//!
//! The primary keys of a table's changes are stated once per batch, as an
//! array in a transaction-local setting named after the table; each claims
//! group then asks, with one statement per table, which of those keys its
//! policies let it see. A batch of R rows seen by G groups costs G small
//! index lookups of R keys, not R x G statements: the earlier form, one
//! `EXISTS` per row and group, spent most of its time planning subqueries
//! (0.3 ms each). The lookup is a prepared statement (one per table and
//! connection, prepared by the first round trip that needs it), so it is
//! planned once per connection rather than once per group; groups are
//! ordered by role so the role changes, and the plan is redone, as seldom
//! as possible.
//!
//! A batch's groups may be split over several connections ([`CheckPlan::
//! round_trips`] with `parts` > 1), each part a transaction of its own that
//! states the keys it needs, so the database checks them on several cores.
//! Every question is answered yes or no from the results; if a round trip
//! fails, nothing is answered and the caller must not deliver.

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
    /// The table.
    oid: Oid,
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
    /// Each step is split into at most `prepared.len()` parts, one per
    /// connection, that may run at once: part `p` runs on the connection
    /// whose prepared statement names are `prepared[p]`, which the plan
    /// extends with the statements it prepares.
    pub fn round_trips(
        changes: &[Change<'_>],
        q: &Questions,
        access: &impl AccessView,
        prepared: &mut [HashSet<String>],
    ) -> Vec<Vec<(usize, CheckPlan)>> {
        let parts = prepared.len().max(1);
        (0..changes.len().max(1))
            .step_by(MAX_CHANGES_PER_ROUND_TRIP)
            .map(|first| {
                let last = first + MAX_CHANGES_PER_ROUND_TRIP;
                (0..parts)
                    .filter_map(|part| {
                        let names = prepared.get_mut(part)?;
                        let span = Span {
                            changes: first..last,
                            with_exprs: first == 0 && part == 0,
                            part,
                            parts,
                        };
                        let plan = CheckPlan::build(changes, q, access, span, names);
                        (!plan.is_empty()).then_some((part, plan))
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|step| !step.is_empty())
            .collect()
    }

    /// One round trip answering every question of `q` about `changes`, on
    /// a connection that has prepared nothing. A row question whose change
    /// has no primary key value to look up stays unasked ("no").
    pub fn new(changes: &[Change<'_>], q: &Questions, access: &impl AccessView) -> CheckPlan {
        let span = Span {
            changes: 0..usize::MAX,
            with_exprs: true,
            part: 0,
            parts: 1,
        };
        CheckPlan::build(changes, q, access, span, &mut HashSet::new())
    }

    /// The row questions of `span`, and the filters if it says so;
    /// `prepared`: the connection's prepared statements, extended with
    /// those this plan prepares.
    fn build(
        changes: &[Change<'_>],
        q: &Questions,
        access: &impl AccessView,
        span: Span,
        prepared: &mut HashSet<String>,
    ) -> CheckPlan {
        let mut plan = CheckPlan {
            statements: vec![("BEGIN READ ONLY".into(), Reads::Nothing)],
            tables: Vec::new(),
        };
        // Filters run as the server's own user, before any role is set.
        let nr_exprs = if span.with_exprs { q.exprs.len() } else { 0 };
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
            if !span.changes.contains(change) {
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
        // Few role changes: each one replans the prepared lookups.
        groups.sort_by(|a, b| a.0.role.cmp(&b.0.role));
        let groups: Vec<_> = groups
            .into_iter()
            .enumerate()
            .filter(|(n, _)| n % span.parts == span.part)
            .map(|(_, g)| g)
            .collect();
        let mut used = vec![false; plan.tables.len()];
        for (_, per_table) in &groups {
            for (t, _) in per_table {
                used[*t] = true;
            }
        }
        let mut settings: Vec<String> = Vec::new();
        for keys in plan
            .tables
            .iter()
            .zip(&used)
            .filter(|(_, u)| **u)
            .map(|(k, _)| k)
        {
            let (name, body) = keys.lookup();
            if !prepared.contains(&name) {
                plan.statements
                    .push((format!("PREPARE {name} AS {body}"), Reads::Nothing));
                prepared.insert(name);
            }
            // Keys never hold a NUL (see `key_of`), so they quote.
            for c in 0..keys.columns.len() {
                if let Some(value) = literal(&keys.array_text(c)) {
                    settings.push(format!(
                        "set_config('{}', {value}, true)",
                        setting(keys.oid, c)
                    ));
                }
            }
        }
        if !settings.is_empty() {
            plan.statements
                .push((format!("SELECT {}", settings.join(", ")), Reads::Nothing));
        }
        let mut role_set: Option<&str> = None;
        for (claims, per_table) in groups {
            // Claims that cannot be quoted (a NUL byte) name no role the
            // database has: that group sees no rows.
            let (Some(role), Some(json)) = (literal(&claims.role), literal(&claims.json)) else {
                continue;
            };
            let sql = if role_set == Some(claims.role.as_str()) {
                format!("SELECT set_config('request.jwt.claims', {json}, true)")
            } else {
                format!(
                    "SELECT set_config('role', {role}, true), set_config('request.jwt.claims', {json}, true)"
                )
            };
            role_set = Some(&claims.role);
            plan.statements.push((sql, Reads::Nothing));
            for (t, checks) in per_table {
                let (name, _) = plan.tables[t].lookup();
                plan.statements
                    .push((format!("EXECUTE {name}"), Reads::Rows { table: t, checks }));
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

/// Which part of a batch one plan checks.
struct Span {
    /// Changes whose rows it checks.
    changes: std::ops::Range<usize>,
    /// It evaluates the filters.
    with_exprs: bool,
    /// Its claims groups are those whose position (ordered by role) is
    /// `part` modulo `parts`.
    part: usize,
    parts: usize,
}

/// The transaction-local setting holding key column `c` of table `rel`.
fn setting(rel: Oid, c: usize) -> String {
    format!("realtime.rc_{}_{c}", rel.0)
}

/// FNV-1a: a stable name for a statement's text (the same in every build
/// and process, unlike std's hasher).
fn fnv64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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
            oid: c.rel.oid,
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
    fn array_expr(&self, c: usize) -> String {
        let ty = if self.types[c].is_empty() {
            "text"
        } else {
            &self.types[c]
        };
        format!("current_setting('{}')::{ty}[]", setting(self.oid, c))
    }

    fn column_expr(&self, c: usize) -> String {
        if self.types[c].is_empty() {
            format!("{}::text", self.columns[c])
        } else {
            self.columns[c].clone()
        }
    }

    /// The prepared lookup of this table: its name (from its text, so a
    /// table whose layout or key types changed gets a new one) and text.
    fn lookup(&self) -> (String, String) {
        let body = self.visible_keys_sql();
        (format!("realtime_rc_{:016x}", fnv64(&body)), body)
    }

    /// Which of the batch's keys of this table are visible.
    fn visible_keys_sql(&self) -> String {
        let cols = self.columns.join(", ");
        if self.columns.len() == 1 {
            return format!(
                "SELECT {cols} FROM {} WHERE {} = ANY ({})",
                self.name,
                self.column_expr(0),
                self.array_expr(0)
            );
        }
        let lhs: Vec<String> = (0..self.columns.len())
            .map(|c| self.column_expr(c))
            .collect();
        let arrays: Vec<String> = (0..self.columns.len())
            .map(|c| self.array_expr(c))
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
    use std::collections::{HashMap, HashSet};
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
        // BEGIN, the lookup prepared, the key setting, two groups of
        // (claims, lookup) with the role set once, COMMIT.
        assert_eq!(sql.lines().count(), 8, "{sql}");
        let setting = format!("realtime.rc_{}_0", rel.oid.0);
        assert!(
            sql.contains(&format!(r#"set_config('{setting}', E'{{"1","2"}}', true)"#)),
            "{sql}"
        );
        let lookup = format!(
            "AS SELECT \"id\" FROM \"public\".\"notes\" WHERE \"id\" = ANY (current_setting('{setting}')::integer[])"
        );
        assert_eq!(sql.matches(&lookup).count(), 1, "{sql}");
        assert_eq!(sql.matches("EXECUTE realtime_rc_").count(), 2, "{sql}");
        assert_eq!(sql.matches("set_config('role'").count(), 1, "{sql}");
        // Alice sees row 1 (both of its changes), Bob sees nothing.
        let one = |v: &str| vec![Some(v.to_owned())];
        let results = vec![
            vec![],
            vec![],
            vec![vec![Some(String::new())]],
            vec![vec![Some("authenticated".into()), Some("{}".into())]],
            vec![one("1")],
            vec![vec![Some("{}".into())]],
            vec![],
            vec![],
        ];
        let mut a = q.unanswered();
        plan.read_answers(&q, &results, &mut a).unwrap();
        assert!(a.row(0, &alice) && !a.row(1, &alice) && a.row(2, &alice));
        assert!(!a.row(0, &bob) && !a.row(1, &bob) && !a.row(2, &bob));
        // A result missing (the round trip was cut) decides nothing.
        assert!(plan.read_answers(&q, &results[..7], &mut a).is_none());
        // Small batches take one round trip, which prepares the lookup once
        // per connection.
        let mut prepared = [HashSet::new()];
        let trips = CheckPlan::round_trips(&changes, &q, &access(rel.oid), &mut prepared);
        assert_eq!(trips.len(), 1);
        assert_eq!(prepared[0].len(), 1);
        let again = CheckPlan::round_trips(&changes, &q, &access(rel.oid), &mut prepared);
        assert!(!again[0][0].1.sql().contains("PREPARE"));
    }

    #[test]
    fn groups_split_over_connections_each_state_their_keys() {
        let rel = ts::relation("notes", b'd', &[("id", 23, true), ("body", 25, false)]);
        let msgs = [ts::insert(&["1", "a"]), ts::insert(&["2", "b"])];
        let pk = vec![0];
        let changes: Vec<Change<'_>> = msgs
            .iter()
            .map(|m| Change::from_message(m, &rel, &pk, Default::default()).unwrap())
            .collect();
        let users: Vec<Rc<SubClaims>> = (0..5).map(|u| claims(&format!("u{u}"))).collect();
        let mut q = Questions::default();
        q.expr("'a' = 'a'".into());
        for i in 0..2 {
            for u in &users {
                q.row(i, u);
            }
        }
        let mut prepared = [HashSet::new(), HashSet::new()];
        let trips = CheckPlan::round_trips(&changes, &q, &access(rel.oid), &mut prepared);
        assert_eq!(trips.len(), 1);
        let parts = &trips[0];
        assert_eq!(parts.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [0, 1]);
        let sql: Vec<String> = parts.iter().map(|(_, plan)| plan.sql()).collect();
        // Groups 0, 2, 4 on the first connection, 1 and 3 on the second;
        // each prepares its lookup and states the keys; filters once.
        assert_eq!(sql[0].matches("EXECUTE").count(), 3, "{}", sql[0]);
        assert_eq!(sql[1].matches("EXECUTE").count(), 2, "{}", sql[1]);
        for s in &sql {
            assert!(s.contains("PREPARE") && s.contains(r#"{"1","2"}"#), "{s}");
        }
        assert!(sql[0].contains("IS TRUE") && !sql[1].contains("IS TRUE"));
        assert_eq!(prepared[0], prepared[1]);
        // Every question is answered by exactly one part.
        let mut asked: Vec<String> = sql
            .iter()
            .flat_map(|s| s.matches(r#""sub":"u"#).map(str::to_owned))
            .collect();
        asked.sort();
        assert_eq!(asked.len(), 5, "{sql:?}");
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
        let mut prepared = [HashSet::new()];
        let trips = CheckPlan::round_trips(&changes, &q, &access(rel.oid), &mut prepared);
        assert_eq!(trips.len(), 3);
        let sql: Vec<String> = trips.iter().map(|p| p[0].1.sql()).collect();
        assert!(sql[0].contains("PREPARE") && !sql[1].contains("PREPARE"));
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
