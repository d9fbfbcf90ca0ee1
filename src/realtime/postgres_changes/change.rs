//! One row change and the two row images the Elixir server works from.
//!
//! The Elixir server reads changes through wal2json (format 2), whose
//! output fixes what `record`, `old_record` and the filters see:
//! - `columns` (INSERT, UPDATE): the new row, unchanged TOAST values left
//!   out.
//! - `identity` (UPDATE, DELETE): the old tuple when the change carries one
//!   (replica identity FULL, or the key changed), else for an UPDATE the new
//!   tuple when the table has a primary key or a replica identity index.
//!   Restricted to the replica identity index columns (the primary key
//!   under DEFAULT); all columns under FULL and NOTHING. Unchanged TOAST
//!   values left out.
//! - `pk`: the primary key columns, whatever the replica identity.
//!
//! pgoutput carries the same tuples; [`Change`] applies those rules to them.
//! Under FULL identity pgoutput flags every column as a key column, so the
//! primary key has to come from the catalog
//! ([`primary_key_from_identity`] says when the flags suffice).

use super::eval::ColumnValue;
use crate::proto::pg::pgoutput::{Message, Relation, ReplicaIdentity};
use crate::proto::pg::tuple::{Column, OldTuple, TupleData};
use crate::proto::pg::PgTimestamp;

/// The kind of row change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
}

impl ChangeKind {
    /// `INSERT`, `UPDATE` or `DELETE`: the payload's `type`, and the event
    /// name legacy (no `config`) subscribers receive.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "INSERT",
            ChangeKind::Update => "UPDATE",
            ChangeKind::Delete => "DELETE",
        }
    }
}

/// A row change with everything the payload and the filters need.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// The table's layout when the change was decoded.
    pub rel: &'a Relation,
    /// INSERT, UPDATE or DELETE.
    pub kind: ChangeKind,
    /// The new row (INSERT, UPDATE).
    pub new: Option<&'a TupleData>,
    /// The old key or row (DELETE always; UPDATE when sent).
    pub old: Option<&'a OldTuple>,
    /// Indexes into `rel.columns` of the primary key (empty: no primary
    /// key). From [`primary_key_from_identity`] or the catalog.
    pub primary_key: &'a [usize],
    /// Commit time of the transaction.
    pub commit_time: PgTimestamp,
}

/// The primary key columns, when pgoutput's key flags are the primary key:
/// under REPLICA IDENTITY DEFAULT (no flags: no primary key). `None` under
/// FULL, INDEX and NOTHING: read `pg_index.indisprimary` instead.
pub fn primary_key_from_identity(rel: &Relation) -> Option<Vec<usize>> {
    (rel.replica_identity == ReplicaIdentity::Default)
        .then(|| rel.key_columns().map(|(i, _)| i).collect())
}

impl<'a> Change<'a> {
    /// The change carried by an Insert, Update or Delete message (`None`
    /// for any other message). `rel` must be the message's relation.
    pub fn from_message(
        msg: &'a Message,
        rel: &'a Relation,
        primary_key: &'a [usize],
        commit_time: PgTimestamp,
    ) -> Option<Change<'a>> {
        let (kind, new, old) = match msg {
            Message::Insert(m) => (ChangeKind::Insert, Some(&m.new), None),
            Message::Update(m) => (ChangeKind::Update, Some(&m.new), m.old.as_ref()),
            Message::Delete(m) => (ChangeKind::Delete, None, Some(&m.old)),
            _ => return None,
        };
        Some(Change {
            rel,
            kind,
            new,
            old,
            primary_key,
            commit_time,
        })
    }

    /// Whether column `i` is part of the primary key.
    pub fn is_pkey(&self, i: usize) -> bool {
        self.primary_key.contains(&i)
    }

    /// wal2json's `columns`: the new row's values (INSERT, UPDATE), in
    /// attribute order, unchanged TOAST values left out.
    pub fn columns(&self) -> Vec<(usize, Column<'a>)> {
        match (self.kind, self.new) {
            (ChangeKind::Delete, _) | (_, None) => Vec::new(),
            (_, Some(t)) => image(t, |_| true),
        }
    }

    /// wal2json's `identity`: the old values an UPDATE or DELETE reports
    /// (see the module doc), in attribute order.
    pub fn identity(&self) -> Vec<(usize, Column<'a>)> {
        let rel = self.rel;
        let keyed = matches!(
            rel.replica_identity,
            ReplicaIdentity::Default | ReplicaIdentity::Index
        );
        let in_identity = |i: usize| !keyed || rel.columns.get(i).is_some_and(|c| c.is_key);
        match (self.kind, self.old, self.new) {
            (ChangeKind::Insert, ..) => Vec::new(),
            (_, Some(old), _) => image(old.tuple(), in_identity),
            (ChangeKind::Update, None, Some(new)) => {
                let has_index =
                    !self.primary_key.is_empty() || rel.replica_identity == ReplicaIdentity::Index;
                if has_index {
                    image(new, in_identity)
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        }
    }

    /// The row image filters are checked against: `identity` for a DELETE,
    /// `columns` otherwise.
    pub fn filter_image(&self) -> Vec<(usize, Column<'a>)> {
        match self.kind {
            ChangeKind::Delete => self.identity(),
            _ => self.columns(),
        }
    }

    /// The value a filter on column `name` sees: `None` when the column
    /// is not in [`filter_image`](Self::filter_image).
    pub fn filter_value(&self, name: &str) -> Option<ColumnValue<'a>> {
        self.value_in(&self.filter_image(), name)
    }

    /// The value of column `name` in `image` (one of this change's images),
    /// as a filter sees it; `None` when the column is not in it.
    pub fn value_in(&self, image: &[(usize, Column<'a>)], name: &str) -> Option<ColumnValue<'a>> {
        let (i, col) = self.rel.column(name)?;
        let &(_, value) = image.iter().find(|&&(j, _)| j == i)?;
        Some(match value {
            Column::Null => ColumnValue::Null,
            Column::Text(t) => ColumnValue::Text(col.type_oid, t),
            Column::Binary(_) | Column::UnchangedToast => ColumnValue::Opaque,
        })
    }
}

/// The entries of `t` kept by `keep`, unchanged TOAST values dropped.
fn image<'a>(t: &'a TupleData, keep: impl Fn(usize) -> bool) -> Vec<(usize, Column<'a>)> {
    t.iter()
        .enumerate()
        .filter(|&(i, c)| keep(i) && c != Column::UnchangedToast)
        .collect()
}
