//! Which ready subscriptions have a binding on each relation of a batch.
//!
//! Whether a binding names a table depends only on the table's schema and
//! name (matched with SQL `LIKE`), never on the row, so it is decided once
//! per distinct relation of a batch instead of once per change: a batch of
//! 500 changes to one table evaluates each binding's patterns once. The
//! index holds positions into the registry's subscriptions and is rebuilt
//! by each pass over a batch (access, plan, deliver), because subscriptions
//! may come and go while the driver awaits the database in between.
//!
//! Per relation the index also groups the subscriptions by claims
//! ([`ClaimsGroup`]): under row level security a change's fate is mostly
//! decided per claims group (may this role see the row?), so planning and
//! delivery visit each group once per change and its members only when the
//! row may reach them. With 1,000 subscribers over 100 users, a row is
//! looked at 100 times plus 10 deliveries instead of 1,000 times.

use std::collections::HashMap;
use std::rc::Rc;

use super::{CdcSub, SubClaims};
use crate::realtime::postgres_changes::change::{Change, ChangeKind};

/// The subscriptions sharing one claims value on one relation.
#[derive(Debug)]
pub struct ClaimsGroup {
    /// Their shared claims.
    pub claims: Rc<SubClaims>,
    /// Some member's binding on the relation has filters: those decide per
    /// member, so the group cannot be decided as one.
    pub filtered: bool,
    /// Per [`ChangeKind`] (in declaration order), whether some member's
    /// binding on the relation wants that kind.
    kinds: [bool; 3],
    /// Its members' runs of (subscription, binding) entries: a range of
    /// the index's `runs`.
    runs: (u32, u32),
}

impl ClaimsGroup {
    /// Whether some member wants changes of `kind`.
    pub fn wants(&self, kind: ChangeKind) -> bool {
        self.kinds[kind_slot(kind)]
    }
}

fn kind_slot(kind: ChangeKind) -> usize {
    match kind {
        ChangeKind::Insert => 0,
        ChangeKind::Update => 1,
        ChangeKind::Delete => 2,
    }
}

/// Per change of a batch: the ready subscriptions with bindings on its
/// table, and which bindings.
#[derive(Debug, Default)]
pub struct RelationIndex {
    /// Per change: its relation's slot in `slots`.
    of_change: Vec<u32>,
    /// Per distinct relation (schema, name): its range of `entries`.
    slots: Vec<(u32, u32)>,
    /// (subscription, binding) positions, per relation, in join order and
    /// binding order.
    entries: Vec<(u32, u32)>,
    /// Per relation slot: its range of `groups`.
    group_slots: Vec<(u32, u32)>,
    /// Claims groups, per relation in order of first member.
    groups: Vec<ClaimsGroup>,
    /// Per group, its members' runs of `entries` (start, end), in join
    /// order.
    runs: Vec<(u32, u32)>,
}

impl RelationIndex {
    /// Indexes the ready subscriptions of `subs` against the relations of
    /// `changes`.
    pub fn build(subs: &[CdcSub], changes: &[Change<'_>]) -> RelationIndex {
        let mut index = RelationIndex {
            of_change: Vec::with_capacity(changes.len()),
            ..RelationIndex::default()
        };
        let mut seen: HashMap<(&str, &str), u32> = HashMap::new();
        let mut last: Option<(&str, &str, u32)> = None;
        for c in changes {
            let (schema, table) = (c.rel.schema.as_str(), c.rel.name.as_str());
            let slot = match last {
                // Batches are mostly runs of one table.
                Some((s, t, slot)) if s == schema && t == table => slot,
                _ => *seen.entry((schema, table)).or_insert_with(|| {
                    let start = index.entries.len() as u32;
                    for (si, s) in subs.iter().enumerate().filter(|(_, s)| s.ready) {
                        for (bi, b) in s.bindings.iter().enumerate() {
                            if b.matches_relation(schema, table) {
                                index.entries.push((si as u32, bi as u32));
                            }
                        }
                    }
                    index.slots.push((start, index.entries.len() as u32));
                    index.group(subs, start as usize);
                    (index.slots.len() - 1) as u32
                }),
            };
            last = Some((schema, table, slot));
            index.of_change.push(slot);
        }
        index
    }

    /// The (subscription, binding) positions on change `idx`'s table,
    /// grouped by subscription in join order (empty for an index out of
    /// range).
    pub fn entries(&self, idx: usize) -> &[(u32, u32)] {
        let Some(&slot) = self.of_change.get(idx) else {
            return &[];
        };
        let (start, end) = self.slots[slot as usize];
        &self.entries[start as usize..end as usize]
    }

    /// Per subscription with a binding on change `idx`'s table, in join
    /// order: its position and its (subscription, binding) entries.
    pub fn subs_on(&self, idx: usize) -> impl Iterator<Item = (usize, &[(u32, u32)])> {
        self.entries(idx)
            .chunk_by(|a, b| a.0 == b.0)
            .map(|run| (run[0].0 as usize, run))
    }

    /// Groups the entries of the relation slot just added (from `start`)
    /// by claims.
    fn group(&mut self, subs: &[CdcSub], start: usize) {
        let first_group = self.groups.len();
        // Per group: its members' runs, gathered before they are laid out
        // contiguously in `runs`.
        let mut members: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut by_claims: HashMap<*const SubClaims, usize> = HashMap::new();
        let mut at = start;
        for run in self.entries[start..].chunk_by(|a, b| a.0 == b.0) {
            let s = &subs[run[0].0 as usize];
            let g = *by_claims.entry(Rc::as_ptr(&s.claims)).or_insert_with(|| {
                self.groups.push(ClaimsGroup {
                    claims: s.claims.clone(),
                    filtered: false,
                    kinds: [false; 3],
                    runs: (0, 0),
                });
                members.push(Vec::new());
                members.len() - 1
            });
            let group = &mut self.groups[first_group + g];
            for &(_, b) in run {
                let Some(b) = s.bindings.get(b as usize) else {
                    continue;
                };
                group.filtered |= !b.filters.is_empty();
                for kind in [ChangeKind::Insert, ChangeKind::Update, ChangeKind::Delete] {
                    group.kinds[kind_slot(kind)] |= b.event.matches(kind);
                }
            }
            members[g].push((at as u32, (at + run.len()) as u32));
            at += run.len();
        }
        for (g, runs) in members.into_iter().enumerate() {
            let first = self.runs.len() as u32;
            self.runs.extend(runs);
            self.groups[first_group + g].runs = (first, self.runs.len() as u32);
        }
        self.group_slots
            .push((first_group as u32, self.groups.len() as u32));
    }

    /// The claims groups of change `idx`'s table (empty for an index out
    /// of range).
    pub fn groups_on(&self, idx: usize) -> &[ClaimsGroup] {
        let Some(&slot) = self.of_change.get(idx) else {
            return &[];
        };
        let (start, end) = self.group_slots[slot as usize];
        &self.groups[start as usize..end as usize]
    }

    /// The members of group `g` (of [`groups_on`](Self::groups_on)), each
    /// as in [`subs_on`](Self::subs_on), in join order.
    pub fn members<'a>(
        &'a self,
        g: &ClaimsGroup,
    ) -> impl Iterator<Item = (usize, &'a [(u32, u32)])> + 'a {
        self.runs[g.runs.0 as usize..g.runs.1 as usize]
            .iter()
            .map(|&(s, e)| {
                let run = &self.entries[s as usize..e as usize];
                (run[0].0 as usize, run)
            })
    }

    /// Number of distinct relations indexed.
    pub fn nr_relations(&self) -> usize {
        self.slots.len()
    }
}
