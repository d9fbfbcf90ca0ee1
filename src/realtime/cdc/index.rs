//! Which ready subscriptions have a binding on each relation of a batch.
//!
//! Whether a binding names a table depends only on the table's schema and
//! name (matched with SQL `LIKE`), never on the row, so it is decided once
//! per distinct relation of a batch instead of once per change: a batch of
//! 500 changes to one table evaluates each binding's patterns once. The
//! index holds positions into the registry's subscriptions and is rebuilt
//! by each pass over a batch (access, plan, deliver), because subscriptions
//! may come and go while the driver awaits the database in between.

use std::collections::HashMap;

use super::CdcSub;
use crate::realtime::postgres_changes::change::Change;

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

    /// Number of distinct relations indexed.
    pub fn nr_relations(&self) -> usize {
        self.slots.len()
    }
}
