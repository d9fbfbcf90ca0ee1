//! Matching a batch of changes against the subscriptions, and delivering
//! them.
//!
//! Both passes walk the same decision for every (change, subscription):
//! 1. bindings whose event and table match;
//! 2. the change as the subscriber's role sees it: an error row (no primary
//!    key, or a primary key the role may not select) goes to every such
//!    binding, as the Elixir server sends it, filters and policies aside;
//! 3. otherwise each binding's filters, in Rust where that is exact, else
//!    by the database ([`Questions::exprs`]);
//! 4. on a table with row level security, an INSERT or UPDATE reaches the
//!    subscription only if its claims group may see the row
//!    ([`Questions::rows`]). DELETEs cannot be checked and are sent with a
//!    primary-key-only `old_record`.
//!
//! [`CdcRegistry::plan`] runs it to collect the questions; after the
//! database answered, [`CdcRegistry::deliver`] runs it again (against the
//! subscriptions as they are then) and queues the frames. `data` is
//! rendered once per distinct (select, column privileges) and each frame
//! once per (topic, ids, serializer, rendering).

use std::rc::Rc;

use super::access::{privileges_of, AccessView, Answers, Privileges, Questions, SubClaims};
use super::{CdcRegistry, CdcSub};
use crate::proto::pg::types::{type_name, TypeResolver};
use crate::proto::pg::Oid;
use crate::proto::phoenix::Vsn;
use crate::realtime::frames;
use crate::realtime::postgres_changes::binding::Binding;
use crate::realtime::postgres_changes::change::{Change, ChangeKind};
use crate::realtime::postgres_changes::eval::{ColumnValue, Tri};
use crate::realtime::postgres_changes::payload::{
    row_error, write_change, write_message_payload, PayloadOptions,
};

/// Asks (planning) or looks up (delivery) what the database decides.
enum Oracle<'a> {
    Plan(&'a mut Questions),
    Deliver(&'a Answers),
}

impl Oracle<'_> {
    /// A filter expression: planning registers it and goes on as if it
    /// passed, so the row checks behind it are asked too.
    fn expr(&mut self, sql: String) -> bool {
        match self {
            Oracle::Plan(q) => {
                q.expr(sql);
                true
            }
            Oracle::Deliver(a) => a.expr(&sql),
        }
    }

    fn row(&mut self, change: usize, claims: &Rc<SubClaims>) -> bool {
        match self {
            Oracle::Plan(q) => {
                q.row(change, claims);
                true
            }
            Oracle::Deliver(a) => a.row(change, claims),
        }
    }
}

/// One subscription's share of a change: binding ids grouped by `select`.
type Groups<'s> = Vec<(Option<&'s [String]>, Vec<u64>)>;

impl CdcRegistry {
    /// For every table in `changes`, the roles of the ready subscriptions
    /// with a binding on it: whose access the driver must know.
    pub fn access_needs(&self, changes: &[Change<'_>]) -> Vec<(Oid, Vec<String>)> {
        let mut needs: Vec<(Oid, Vec<String>)> = Vec::new();
        for c in changes {
            let (schema, table) = (c.rel.schema.as_str(), c.rel.name.as_str());
            for s in self.subs.iter().filter(|s| s.ready) {
                if !s.bindings.iter().any(|b| b.matches_relation(schema, table)) {
                    continue;
                }
                let i = match needs.iter().position(|(o, _)| *o == c.rel.oid) {
                    Some(i) => i,
                    None => {
                        needs.push((c.rel.oid, Vec::new()));
                        needs.len() - 1
                    }
                };
                if !needs[i].1.contains(&s.claims.role) {
                    needs[i].1.push(s.claims.role.clone());
                }
            }
        }
        needs
    }

    /// The questions the database must answer before `changes` can be
    /// delivered.
    pub fn plan(
        &self,
        changes: &[Change<'_>],
        access: &dyn AccessView,
        types: &dyn TypeResolver,
    ) -> Questions {
        let mut q = Questions::default();
        for (i, c) in changes.iter().enumerate() {
            for s in self.subs.iter().filter(|s| s.ready) {
                let _ = groups_of(s, i, c, access, types, &mut Oracle::Plan(&mut q));
            }
        }
        q
    }

    /// Queues change number `idx` of its batch to every ready subscription
    /// it reaches. Returns frames queued.
    pub fn deliver(
        &self,
        idx: usize,
        change: &Change<'_>,
        access: &dyn AccessView,
        types: &dyn TypeResolver,
        answers: &Answers,
    ) -> u64 {
        let mut rendered: Vec<Rendered<'_>> = Vec::new();
        let mut sent: Vec<(&str, Vec<u64>, Vsn, usize, bytes::Bytes)> = Vec::new();
        let mut deliveries = 0;
        for sub in self.subs.iter().filter(|s| s.ready) {
            let mut oracle = Oracle::Deliver(answers);
            let Some((privileges, groups)) =
                groups_of(sub, idx, change, access, types, &mut oracle)
            else {
                continue;
            };
            let rls = access.table(change.rel.oid).is_none_or(|t| t.rls);
            for (select, mut ids) in groups {
                // The Elixir server lists matching ids in reverse join order.
                ids.reverse();
                let r = match rendered
                    .iter()
                    .position(|r| r.select == select && r.privileges == privileges)
                {
                    Some(r) => r,
                    None => {
                        let mut data = Vec::with_capacity(512);
                        let opts = PayloadOptions {
                            select,
                            column_privileges: privileges.flags(),
                            rls_enabled: rls,
                            ..PayloadOptions::default()
                        };
                        if let Err(e) = write_change(&mut data, change, types, &opts) {
                            tracing::warn!(error = %e, schema = %change.rel.schema,
                                table = %change.rel.name, "change not rendered");
                            return deliveries;
                        }
                        rendered.push(Rendered {
                            select,
                            privileges,
                            data,
                        });
                        rendered.len() - 1
                    }
                };
                if let Some((.., f)) = sent.iter().find(|(t, i, v, n, _)| {
                    *t == &*sub.topic && *i == ids && *v == sub.vsn && *n == r
                }) {
                    sub.out.push(f.clone());
                    deliveries += 1;
                    continue;
                }
                let data = &rendered[r].data;
                let frame = if sub.legacy {
                    frames::message(sub.vsn, None, None, &sub.topic, change.kind.as_str(), data)
                } else {
                    let mut payload = bytes::BytesMut::with_capacity(data.len() + 32);
                    write_message_payload(&mut payload, &ids, data);
                    frames::message(
                        sub.vsn,
                        None,
                        None,
                        &sub.topic,
                        "postgres_changes",
                        &payload,
                    )
                };
                sub.out.push(frame.clone());
                deliveries += 1;
                sent.push((&sub.topic, ids, sub.vsn, r, frame));
            }
        }
        deliveries
    }

    /// Plans, "answers" with `answers` and delivers one change: for tests
    /// and for tenants whose access needs no database.
    pub fn on_change(
        &self,
        change: &Change<'_>,
        access: &dyn AccessView,
        types: &dyn TypeResolver,
        answers: &Answers,
    ) -> u64 {
        self.deliver(0, change, access, types, answers)
    }
}

/// A change rendered for one (select, privileges) variant.
struct Rendered<'s> {
    select: Option<&'s [String]>,
    privileges: Privileges<'s>,
    data: Vec<u8>,
}

/// The binding groups of `s` that change `idx` reaches, with the role's
/// column privileges; `None` when it reaches none.
fn groups_of<'s>(
    s: &'s CdcSub,
    idx: usize,
    c: &Change<'_>,
    access: &'s dyn AccessView,
    types: &dyn TypeResolver,
    oracle: &mut Oracle<'_>,
) -> Option<(Privileges<'s>, Groups<'s>)> {
    let (schema, table) = (c.rel.schema.as_str(), c.rel.name.as_str());
    let mut on_table = s
        .bindings
        .iter()
        .filter(|b| b.event.matches(c.kind) && b.matches_relation(schema, table))
        .peekable();
    on_table.peek()?;
    let t = access.table(c.rel.oid);
    let privileges = privileges_of(t, &s.claims.role)?;
    let error = row_error(c, privileges.flags());
    let mut groups: Groups<'s> = Vec::new();
    for b in on_table {
        if error.is_none() && !filters_pass(b, c, t.map(|t| &t.column_types[..]), types, oracle) {
            continue;
        }
        let select = b.select.as_deref();
        match groups.iter_mut().find(|(sel, _)| *sel == select) {
            Some((_, ids)) => ids.push(b.id),
            None => groups.push((select, vec![b.id])),
        }
    }
    if groups.is_empty() {
        return None;
    }
    let rls = t.is_none_or(|t| t.rls);
    if error.is_none() && rls && c.kind != ChangeKind::Delete && !oracle.row(idx, &s.claims) {
        return None;
    }
    Some((privileges, groups))
}

/// Whether every filter of `b` passes on change `idx`.
fn filters_pass(
    b: &Binding,
    c: &Change<'_>,
    column_types: Option<&[String]>,
    types: &dyn TypeResolver,
    oracle: &mut Oracle<'_>,
) -> bool {
    if b.filters.is_empty() {
        return true;
    }
    let image = c.filter_image();
    for f in &b.filters {
        let value = c.value_in(&image, &f.column);
        match f.eval(value.as_ref()) {
            Tri::True => {}
            Tri::False => return false,
            Tri::NeedsDatabase => {
                let Some((i, col)) = c.rel.column(&f.column) else {
                    return false;
                };
                let type_sql = column_types
                    .and_then(|t| t.get(i))
                    .map(String::as_str)
                    .or_else(|| type_name(col.type_oid, types));
                let Some(type_sql) = type_sql else {
                    return false;
                };
                let lhs = match value {
                    Some(ColumnValue::Text(_, t)) => literal(&String::from_utf8_lossy(t)),
                    Some(ColumnValue::Null) => "NULL".to_owned(),
                    _ => return false,
                };
                let sql = splice(&f.sql(type_sql), &lhs, &literal(f.value.as_str()));
                if !oracle.expr(sql) {
                    return false;
                }
            }
        }
    }
    true
}

/// A SQL string literal (standard conforming strings).
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        if ch == '\'' {
            out.push('\'');
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

/// Replaces the `$1` and `$2` placeholders of `template` (our own SQL, see
/// `Filter::sql`) with `a` and `b`, in one pass so neither value is ever
/// scanned for placeholders.
pub fn splice(template: &str, a: &str, b: &str) -> String {
    let mut out = String::with_capacity(template.len() + a.len() + b.len());
    let mut rest = template;
    while let Some(p) = rest.find('$') {
        out.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        if let Some(tail) = after.strip_prefix('1') {
            out.push_str(a);
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('2') {
            out.push_str(b);
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
