//! The relation cache: what pgoutput told us about tables and types.
//!
//! pgoutput sends a Relation message before the first change to a table in a
//! session and again after its definition changes, and a Type message before
//! a Relation that uses a non-builtin type. Changes (Insert, Update, Delete)
//! only name the table by OID, so the decoder's caller keeps these here and
//! looks them up per change. Entries are `Arc`s: a consumer can hold the
//! layout a change was decoded with while a later Relation replaces it.
//!
//! A new replication session resends everything it uses, so the driver
//! calls [`RelCache::clear`] on reconnect.

use std::collections::HashMap;
use std::sync::Arc;

use super::pgoutput::{Message, Relation, RelationColumn, TypeMessage};
use super::Oid;

/// Relations and type names keyed by OID, updated from the stream.
#[derive(Debug, Default, Clone)]
pub struct RelCache {
    /// Latest Relation message per table OID.
    relations: HashMap<Oid, Arc<Relation>>,
    /// Latest Type message per type OID: (schema, typname).
    types: HashMap<Oid, (String, String)>,
}

impl RelCache {
    /// An empty cache.
    pub fn new() -> RelCache {
        RelCache::default()
    }

    /// Records a Relation or Type message; returns whether `msg` was one.
    /// Other messages are ignored.
    pub fn apply(&mut self, msg: &Message) -> bool {
        match msg {
            Message::Relation(r) => {
                self.insert_relation(r.clone());
                true
            }
            Message::Type(t) => {
                self.insert_type(t);
                true
            }
            _ => false,
        }
    }

    /// Stores (or replaces) a relation and returns the shared entry.
    pub fn insert_relation(&mut self, rel: Relation) -> Arc<Relation> {
        let rel = Arc::new(rel);
        self.relations.insert(rel.oid, Arc::clone(&rel));
        rel
    }

    /// Stores (or replaces) a type's schema and name.
    pub fn insert_type(&mut self, t: &TypeMessage) {
        self.types.insert(t.oid, (t.schema.clone(), t.name.clone()));
    }

    /// The relation with this OID, if announced.
    pub fn get(&self, oid: Oid) -> Option<&Arc<Relation>> {
        self.relations.get(&oid)
    }

    /// The relation named `schema.table`, if announced (a linear scan: for
    /// setup paths, not per change).
    pub fn find(&self, schema: &str, table: &str) -> Option<&Arc<Relation>> {
        self.relations
            .values()
            .find(|r| r.schema == schema && r.name == table)
    }

    /// `(schema, typname)` of a type announced by a Type message.
    pub fn type_name(&self, oid: Oid) -> Option<(&str, &str)> {
        self.types.get(&oid).map(|(s, n)| (s.as_str(), n.as_str()))
    }

    /// Forgets a relation (e.g. after the table was dropped).
    pub fn remove(&mut self, oid: Oid) -> Option<Arc<Relation>> {
        self.relations.remove(&oid)
    }

    /// Forgets everything (on reconnect).
    pub fn clear(&mut self) {
        self.relations.clear();
        self.types.clear();
    }

    /// Number of relations held.
    pub fn len(&self) -> usize {
        self.relations.len()
    }

    /// Whether no relation is held.
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }

    /// All relations held, in no particular order.
    pub fn relations(&self) -> impl Iterator<Item = &Arc<Relation>> {
        self.relations.values()
    }
}

impl Relation {
    /// Index and description of the column called `name`.
    pub fn column(&self, name: &str) -> Option<(usize, &RelationColumn)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }

    /// The replica identity key columns (the primary key under DEFAULT
    /// identity), with their indexes.
    pub fn key_columns(&self) -> impl Iterator<Item = (usize, &RelationColumn)> {
        self.columns.iter().enumerate().filter(|(_, c)| c.is_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::pg::pgoutput::{decode, ReplicaIdentity};
    use bytes::Bytes;

    fn rel(oid: u32, name: &str, cols: &[(&str, u32, bool)]) -> Relation {
        Relation {
            xid: None,
            oid: Oid(oid),
            schema: "public".into(),
            name: name.into(),
            replica_identity: ReplicaIdentity::Default,
            columns: cols
                .iter()
                .map(|&(n, t, k)| RelationColumn {
                    is_key: k,
                    name: n.into(),
                    type_oid: Oid(t),
                    type_modifier: -1,
                })
                .collect(),
        }
    }

    #[test]
    fn relations_are_replaced_and_snapshots_survive() {
        let mut c = RelCache::new();
        assert!(c.is_empty());
        assert!(c.apply(&Message::Relation(rel(1, "todos", &[("id", 23, true)]))));
        let before = Arc::clone(c.get(Oid(1)).unwrap());
        let r2 = rel(1, "todos", &[("id", 20, true), ("title", 25, false)]);
        c.apply(&Message::Relation(r2));
        assert_eq!(c.len(), 1);
        let now = c.get(Oid(1)).unwrap();
        assert_eq!(now.columns.len(), 2);
        assert_eq!(before.columns.len(), 1);
        assert_eq!(now.column("title").unwrap().0, 1);
        assert!(now.column("nope").is_none());
        let keys: Vec<_> = now
            .key_columns()
            .map(|(i, c)| (i, c.name.as_str()))
            .collect();
        assert_eq!(keys, vec![(0, "id")]);
        assert_eq!(c.find("public", "todos").unwrap().oid, Oid(1));
        assert!(c.find("other", "todos").is_none());
        assert_eq!(c.relations().count(), 1);
        assert!(c.remove(Oid(1)).is_some());
        assert!(c.get(Oid(1)).is_none());
    }

    #[test]
    fn types_from_type_messages() {
        let mut c = RelCache::new();
        // Y, oid 16390, "public", "mood"
        let mut raw = vec![b'Y', 0, 0, 0x40, 0x06];
        raw.extend_from_slice(b"public\0mood\0");
        let m = decode(Bytes::from(raw)).unwrap();
        assert!(c.apply(&m));
        assert_eq!(c.type_name(Oid(16390)), Some(("public", "mood")));
        assert!(!c.apply(&decode(Bytes::from_static(b"E")).unwrap()));
        c.insert_relation(rel(2, "t", &[]));
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.type_name(Oid(16390)), None);
    }
}
