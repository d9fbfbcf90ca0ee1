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
//! Subscriptions are visited per claims group ([`ClaimsGroup`]): a group
//! without filters asks its row check once, and delivery skips a group the
//! row may not reach without looking at its members.
//!
//! [`CdcRegistry::plan`] runs it to collect the questions; after the
//! database answered, [`CdcRegistry::deliver`] runs it again (against the
//! subscriptions as they are then) and queues the frames. `data` is
//! rendered once per distinct (select, column privileges) and each frame
//! once per (topic, ids, serializer, rendering).

use std::ops::Range;
use std::rc::Rc;

use super::access::{
    privileges_of, AccessView, Answers, Privileges, Questions, SubClaims, TableAccess,
};
use super::index::{ClaimsGroup, RelationIndex};
use super::{CdcRegistry, CdcSub};
use crate::proto::pg::sql;
use crate::proto::pg::types::{type_name, TypeResolver};
use crate::proto::pg::{Oid, PgTimestamp};
use crate::proto::phoenix::Vsn;
use crate::realtime::frames;
use crate::realtime::postgres_changes::binding::Binding;
use crate::realtime::postgres_changes::change::{Change, ChangeKind};
use crate::realtime::postgres_changes::eval::{ColumnValue, Tri};
use crate::realtime::postgres_changes::filter::Filter;
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

/// One subscription's share of a change: the ids of the bindings it
/// reaches, grouped by `select`. Scratch space reused across the
/// subscriptions and changes of a batch, so matching allocates nothing
/// once warm.
#[derive(Default)]
struct Groups<'s> {
    /// (select, id) of every binding that passed, in join order.
    passed: Vec<(Option<&'s [String]>, u64)>,
    /// Per distinct select, in order of first appearance: its ids, a
    /// range of `ids`.
    groups: Vec<(Option<&'s [String]>, Range<usize>)>,
    /// The groups' ids, each group in reverse join order (the Elixir
    /// server lists matching ids that way).
    ids: Vec<u64>,
}

impl<'s> Groups<'s> {
    fn clear(&mut self) {
        self.passed.clear();
        self.groups.clear();
        self.ids.clear();
    }

    /// Groups `passed` by select.
    fn group(&mut self) {
        for k in 0..self.passed.len() {
            let select = self.passed[k].0;
            if self.passed[..k].iter().any(|&(s, _)| s == select) {
                continue;
            }
            let start = self.ids.len();
            let same = self.passed[k..].iter().filter(|&&(s, _)| s == select);
            self.ids.extend(same.map(|&(_, id)| id));
            self.ids[start..].reverse();
            self.groups.push((select, start..self.ids.len()));
        }
    }
}

/// The commit time of the changes being rendered, as text: the same for
/// every change of a transaction, so written once per transaction.
#[derive(Default)]
struct CommitStamp {
    /// The time `text` holds.
    at: Option<PgTimestamp>,
    /// `write_iso_millis` of it.
    text: Vec<u8>,
}

impl CommitStamp {
    fn text(&mut self, t: PgTimestamp) -> &[u8] {
        if self.at != Some(t) {
            self.text.clear();
            t.write_iso_millis(&mut self.text);
            self.at = Some(t);
        }
        &self.text
    }
}

/// A frame already built for one change: subscriptions with the same
/// topic, ids, serializer and rendering share it.
struct Sent<'s> {
    topic: &'s str,
    /// Range of the batch's `sent_ids`.
    ids: Range<usize>,
    vsn: Vsn,
    /// Index into `rendered`.
    rendering: usize,
    frame: bytes::Bytes,
}

impl CdcRegistry {
    /// For every table in `changes`, the roles of the ready subscriptions
    /// with a binding on it: whose access the driver must know.
    pub fn access_needs(&self, changes: &[Change<'_>]) -> Vec<(Oid, Vec<String>)> {
        let index = RelationIndex::build(&self.subs, changes);
        let mut needs: Vec<(Oid, Vec<String>)> = Vec::new();
        let mut last: Option<(Oid, *const (u32, u32))> = None;
        for (i, c) in changes.iter().enumerate() {
            let entries = index.entries(i);
            // A run of changes to one table asks the same.
            if last == Some((c.rel.oid, entries.as_ptr())) {
                continue;
            }
            last = Some((c.rel.oid, entries.as_ptr()));
            for (sub, _) in index.subs_on(i) {
                let s = &self.subs[sub];
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
        let index = RelationIndex::build(&self.subs, changes);
        let mut q = Questions::default();
        let mut g = Groups::default();
        for (i, c) in changes.iter().enumerate() {
            let t = access.table(c.rel.oid);
            for group in index.groups_on(i) {
                if !group.filtered {
                    // Without filters every member asks the same: the
                    // group's row check, if some member wants the change.
                    if group.wants(c.kind) && row_checked(group, c, t) {
                        q.row(i, &group.claims);
                    }
                    continue;
                }
                for (sub, on_table) in index.members(group) {
                    let s = &self.subs[sub];
                    let mut oracle = Oracle::Plan(&mut q);
                    let _ = groups_of(s, on_table, i, c, access, types, &mut oracle, &mut g);
                }
            }
        }
        q
    }

    /// Queues every change of a batch, in order, to every ready
    /// subscription it reaches (`answers` are the database's answers to
    /// [`plan`](Self::plan) of the same batch). Returns frames queued.
    pub fn deliver(
        &self,
        changes: &[Change<'_>],
        access: &dyn AccessView,
        types: &dyn TypeResolver,
        answers: &Answers,
    ) -> u64 {
        self.deliver_part(changes, 0..changes.len(), access, types, answers)
    }

    /// [`deliver`](Self::deliver) for the changes of the batch at
    /// positions `part` only: a large batch goes out in parts, so a stream
    /// whose frames cross to other shards can wait between them for room
    /// (`server::replication::pace_relay`).
    pub fn deliver_part(
        &self,
        changes: &[Change<'_>],
        part: std::ops::Range<usize>,
        access: &dyn AccessView,
        types: &dyn TypeResolver,
        answers: &Answers,
    ) -> u64 {
        let index = RelationIndex::build(&self.subs, changes);
        let mut g = Groups::default();
        let mut rendered: Vec<Rendered<'_>> = Vec::new();
        // Buffers of earlier changes' renderings, reused.
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut sent: Vec<Sent<'_>> = Vec::new();
        let mut sent_ids: Vec<u64> = Vec::new();
        let mut stamp = CommitStamp::default();
        let mut deliveries = 0;
        let parts = changes.iter().enumerate().take(part.end).skip(part.start);
        'changes: for (idx, change) in parts {
            spare.extend(rendered.drain(..).map(|r| r.data));
            sent.clear();
            sent_ids.clear();
            let groups = index.groups_on(idx);
            if groups.is_empty() {
                continue;
            }
            let t = access.table(change.rel.oid);
            let rls = t.is_none_or(|t| t.rls);
            let commit_timestamp = stamp.text(change.commit_time);
            // A group the row may not reach is passed over whole: each of
            // its members would find the same "no".
            let reachable = groups.iter().filter(|group| {
                privileges_of(t, &group.claims.role).is_some()
                    && (!row_checked(group, change, t) || answers.row(idx, &group.claims))
            });
            for (sub_i, on_table) in reachable.flat_map(|group| index.members(group)) {
                let sub = &self.subs[sub_i];
                let mut oracle = Oracle::Deliver(answers);
                let Some(privileges) = groups_of(
                    sub,
                    on_table,
                    idx,
                    change,
                    access,
                    types,
                    &mut oracle,
                    &mut g,
                ) else {
                    continue;
                };
                for (select, ids) in &g.groups {
                    let ids = &g.ids[ids.clone()];
                    let r = match rendered
                        .iter()
                        .position(|r| r.select == *select && r.privileges == privileges)
                    {
                        Some(r) => r,
                        None => {
                            let mut data = spare.pop().unwrap_or_else(|| Vec::with_capacity(512));
                            data.clear();
                            let opts = PayloadOptions {
                                select: *select,
                                column_privileges: privileges.flags(),
                                rls_enabled: rls,
                                commit_timestamp: Some(commit_timestamp),
                                ..PayloadOptions::default()
                            };
                            if let Err(e) = write_change(&mut data, change, types, &opts) {
                                tracing::warn!(error = %e, schema = %change.rel.schema,
                                    table = %change.rel.name, "change not rendered");
                                spare.push(data);
                                continue 'changes;
                            }
                            rendered.push(Rendered {
                                select: *select,
                                privileges,
                                data,
                            });
                            rendered.len() - 1
                        }
                    };
                    if let Some(s) = sent.iter().find(|s| {
                        s.topic == &*sub.topic
                            && sent_ids[s.ids.clone()] == *ids
                            && s.vsn == sub.vsn
                            && s.rendering == r
                    }) {
                        sub.out.push(s.frame.clone());
                        deliveries += 1;
                        continue;
                    }
                    let data = &rendered[r].data;
                    let frame = if sub.legacy {
                        frames::message(sub.vsn, None, None, &sub.topic, change.kind.as_str(), data)
                    } else {
                        // The payload is written straight into the frame.
                        let hint = data.len() + 16 + 21 * ids.len();
                        frames::message_with(sub.vsn, &sub.topic, "postgres_changes", hint, |out| {
                            write_message_payload(out, ids, data)
                        })
                    };
                    sub.out.push(frame.clone());
                    deliveries += 1;
                    let start = sent_ids.len();
                    sent_ids.extend_from_slice(ids);
                    sent.push(Sent {
                        topic: &sub.topic,
                        ids: start..sent_ids.len(),
                        vsn: sub.vsn,
                        rendering: r,
                        frame,
                    });
                }
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
        self.deliver(std::slice::from_ref(change), access, types, answers)
    }
}

/// A change rendered for one (select, privileges) variant.
struct Rendered<'s> {
    select: Option<&'s [String]>,
    privileges: Privileges<'s>,
    data: Vec<u8>,
}

/// Whether the members of `group` that a change `c` reaches (a binding
/// wants it, its filters pass) are owed it only if their claims may see
/// the row: the table has row level security, the change is not a DELETE
/// (those cannot be checked), and the row is not an error row (sent
/// whatever the policies say). `t`: the table's access.
fn row_checked(group: &ClaimsGroup, c: &Change<'_>, t: Option<&TableAccess>) -> bool {
    let Some(privileges) = privileges_of(t, &group.claims.role) else {
        return false;
    };
    t.is_none_or(|t| t.rls)
        && c.kind != ChangeKind::Delete
        && row_error(c, privileges.flags()).is_none()
}

/// Fills `g` with the binding groups of `s` that change `idx` reaches
/// (`on_table`: the index's entries of `s` for the change's table) and
/// returns the role's column privileges; `None` when it reaches none.
#[allow(clippy::too_many_arguments)]
fn groups_of<'s>(
    s: &'s CdcSub,
    on_table: &[(u32, u32)],
    idx: usize,
    c: &Change<'_>,
    access: &'s dyn AccessView,
    types: &dyn TypeResolver,
    oracle: &mut Oracle<'_>,
    g: &mut Groups<'s>,
) -> Option<Privileges<'s>> {
    g.clear();
    let mut on_table = on_table
        .iter()
        .filter_map(|&(_, b)| s.bindings.get(b as usize))
        .filter(|b| b.event.matches(c.kind))
        .peekable();
    on_table.peek()?;
    let t = access.table(c.rel.oid);
    let privileges = privileges_of(t, &s.claims.role)?;
    let error = row_error(c, privileges.flags());
    for b in on_table {
        if error.is_none() && !filters_pass(b, c, t.map(|t| &t.column_types[..]), types, oracle) {
            continue;
        }
        g.passed.push((b.select.as_deref(), b.id));
    }
    if g.passed.is_empty() {
        return None;
    }
    let rls = t.is_none_or(|t| t.rls);
    if error.is_none() && rls && c.kind != ChangeKind::Delete && !oracle.row(idx, &s.claims) {
        return None;
    }
    g.group();
    Some(privileges)
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
                    Some(ColumnValue::Text(_, t)) => Some(t),
                    Some(ColumnValue::Null) => None,
                    _ => return false,
                };
                let Some(sql) = filter_expr(f, type_sql, lhs) else {
                    return false;
                };
                if !oracle.expr(sql) {
                    return false;
                }
            }
        }
    }
    true
}

/// The boolean SQL the database evaluates for filter `f` on a column of
/// type `type_sql` (from the catalog) holding `lhs` (`None`: NULL): the
/// filter's template with both values quoted by [`sql::literal`], so the
/// client's value and the row's value are each one string constant.
/// `None` when a value cannot be quoted (a NUL byte): the filter fails.
pub fn filter_expr(f: &Filter, type_sql: &str, lhs: Option<&[u8]>) -> Option<String> {
    let lhs = match lhs {
        Some(t) => sql::literal(&String::from_utf8_lossy(t))?,
        None => "NULL".to_owned(),
    };
    Some(splice(
        &f.sql(type_sql),
        &lhs,
        &sql::literal(f.value.as_str())?,
    ))
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
