//! Presence as a replicated state: every replica (a shard; later a node)
//! holds the merged view of a topic, and is authoritative for the entries
//! of its own channels.
//!
//! A replica's entries are tagged with its [`ReplicaId`] (the *origin*),
//! given explicitly and never derived from owner ids, so nodes can reuse
//! this code. The protocol, per topic:
//!
//! - A local change (track, update, untrack, leave) is fanned out locally
//!   as a [`Diff`] as before, and, when other replicas are interested in
//!   the topic, sent to them as a [`PresenceDelta`] built by
//!   [`TopicPresence::local_delta`] (nothing is built otherwise; metas are
//!   shared bytes, so building one serializes nothing).
//! - A [`Change`] states the owner's whole new state (put key+meta, or
//!   remove), not a step from the previous one: applying it twice, or over
//!   a snapshot that already contains it, changes nothing.
//! - A [`PresenceSnapshot`] is one origin's entries of the topic;
//!   [`TopicPresence::replace_origin`] makes the receiver's copy of that
//!   origin equal to it. A replica sends one when another becomes
//!   interested in the topic, after it had to drop a delta for it (a full
//!   queue), or on request (a replica that dropped its remote state).
//! - [`TopicPresence::remove_origin`] drops a replica that died.
//!
//! Convergence needs deltas and snapshots of one origin to arrive in the
//! order they were sent (one FIFO queue per origin and receiver), and,
//! after `remove_origin`, no more messages of the old queue to be applied.
//! Nothing is assumed across origins: their entries are disjoint, so their
//! messages commute. A lost delta is repaired by the next snapshot, which
//! the sender, knowing it dropped one, owes the receiver.
//!
//! Every replica writes the same bytes for the same entries: metas travel
//! with their `phx_ref`/`phx_ref_prev` and serialized members, and one
//! key's metas are listed by (owner, origin).

use std::sync::Arc;

use super::topic::{Diff, Meta, OwnerId, ReplicaId, TopicPresence};

/// The new state of one owner of a delta's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The owner tracks `meta` under `key` (a join, an update, or nothing
    /// new if the receiver already holds exactly that).
    Put {
        /// The tracking channel.
        owner: OwnerId,
        /// Its presence key.
        key: Box<str>,
        /// Its meta, bytes as the origin wrote them.
        meta: Meta,
    },
    /// The owner tracks nothing (untrack or leave).
    Remove {
        /// The channel that stopped tracking.
        owner: OwnerId,
    },
}

impl Change {
    /// The owner the change is about.
    pub fn owner(&self) -> OwnerId {
        match self {
            Change::Put { owner, .. } | Change::Remove { owner } => *owner,
        }
    }
}

/// Changes of one topic from one origin, applied in order. The topic is
/// the transport's business (it sends `(topic, delta)`). Cloning shares
/// the changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceDelta {
    /// The replica authoritative for every changed entry.
    origin: ReplicaId,
    /// The owners' new states, in the order they happened.
    changes: Arc<[Change]>,
}

impl PresenceDelta {
    /// A delta of `origin`'s `changes`, in order.
    pub fn new(origin: ReplicaId, changes: Vec<Change>) -> PresenceDelta {
        PresenceDelta {
            origin,
            changes: changes.into(),
        }
    }

    /// The replica the changes come from.
    pub fn origin(&self) -> ReplicaId {
        self.origin
    }

    /// The changes, in order.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// All entries of one topic from one origin at one moment. Cloning shares
/// the entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceSnapshot {
    /// The replica authoritative for the entries.
    origin: ReplicaId,
    /// (owner, key, meta), owners increasing and distinct.
    entries: Arc<[(OwnerId, Box<str>, Meta)]>,
}

impl PresenceSnapshot {
    /// A snapshot of `origin` holding `entries` (as decoded from another
    /// node); of one owner listed twice, the last entry counts.
    pub fn from_entries(
        origin: ReplicaId,
        mut entries: Vec<(OwnerId, Box<str>, Meta)>,
    ) -> PresenceSnapshot {
        // Stable: equal owners keep their order, and the last one stays.
        entries.sort_by_key(|e| e.0);
        let mut deduped: Vec<(OwnerId, Box<str>, Meta)> = Vec::with_capacity(entries.len());
        for e in entries {
            match deduped.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => deduped.push(e),
            }
        }
        PresenceSnapshot {
            origin,
            entries: deduped.into(),
        }
    }

    /// The replica the entries come from.
    pub fn origin(&self) -> ReplicaId {
        self.origin
    }

    /// (owner, key, meta), owners increasing.
    pub fn entries(&self) -> impl Iterator<Item = (OwnerId, &str, &Meta)> {
        self.entries.iter().map(|(o, k, m)| (*o, &**k, m))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the origin tracks nothing in the topic.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl TopicPresence {
    /// The local `owner`'s current state as a change: what to send after
    /// `track`/`untrack`/`leave` returned a diff.
    pub fn local_change(&self, owner: OwnerId) -> Change {
        match self.get(owner) {
            Some((key, meta)) => Change::Put {
                owner,
                key: key.into(),
                meta: meta.clone(),
            },
            None => Change::Remove { owner },
        }
    }

    /// The delta carrying the local `owner`'s current state; call it only
    /// when another replica is interested in the topic.
    pub fn local_delta(&self, owner: OwnerId) -> PresenceDelta {
        PresenceDelta::new(self.local, vec![self.local_change(owner)])
    }

    /// One delta carrying the current state of several local owners (the
    /// channels of a closed socket, or changes batched per tick).
    pub fn local_delta_of(&self, owners: impl IntoIterator<Item = OwnerId>) -> PresenceDelta {
        let changes = owners.into_iter().map(|o| self.local_change(o)).collect();
        PresenceDelta::new(self.local, changes)
    }

    /// Applies a delta from another replica, returning the diff it made on
    /// this copy (what local subscribers would need to hear). A delta
    /// claiming to come from this replica is ignored: this copy is the
    /// authority for its own entries.
    pub fn apply_delta(&mut self, delta: &PresenceDelta) -> Diff {
        let mut diff = Diff::default();
        if delta.origin == self.local {
            return diff;
        }
        for change in delta.changes() {
            match change {
                Change::Put { owner, key, meta } => {
                    self.put(delta.origin, *owner, key, meta.clone(), &mut diff);
                }
                Change::Remove { owner } => {
                    if let Some(left) = self.remove(delta.origin, *owner) {
                        diff.leaves.push(left);
                    }
                }
            }
        }
        diff
    }

    /// The local replica's entries, to send to a replica that needs them.
    pub fn snapshot(&self) -> PresenceSnapshot {
        self.snapshot_of(self.local)
    }

    /// The entries this copy holds for `origin`.
    pub fn snapshot_of(&self, origin: ReplicaId) -> PresenceSnapshot {
        let entries = self
            .origin_owners(origin)
            .map(|(owner, key)| {
                let (_, meta) = self
                    .get_from(origin, owner)
                    .expect("owner index is consistent");
                (owner, key.into(), meta.clone())
            })
            .collect::<Vec<_>>();
        PresenceSnapshot {
            origin,
            entries: entries.into(),
        }
    }

    /// Makes this copy's entries of the snapshot's origin equal to it:
    /// entries not in it leave, new or changed ones join, equal ones stay.
    /// Applying it again changes nothing. A snapshot of this replica itself
    /// is ignored.
    pub fn replace_origin(&mut self, snapshot: &PresenceSnapshot) -> Diff {
        let origin = snapshot.origin;
        let mut diff = Diff::default();
        if origin == self.local {
            return diff;
        }
        let gone: Vec<OwnerId> = {
            let mut incoming = snapshot.entries.iter().map(|e| e.0).peekable();
            self.origin_owners(origin)
                .map(|(owner, _)| owner)
                .filter(|&owner| {
                    while incoming.next_if(|&o| o < owner).is_some() {}
                    incoming.peek() != Some(&owner)
                })
                .collect()
        };
        for owner in gone {
            if let Some(left) = self.remove(origin, owner) {
                diff.leaves.push(left);
            }
        }
        for (owner, key, meta) in snapshot.entries.iter() {
            self.put(origin, *owner, key, meta.clone(), &mut diff);
        }
        diff
    }

    /// Drops every entry of `origin` (a replica that died): all leave.
    pub fn remove_origin(&mut self, origin: ReplicaId) -> Diff {
        let owners: Vec<OwnerId> = self.origin_owners(origin).map(|(o, _)| o).collect();
        let mut diff = Diff::default();
        for owner in owners {
            if let Some(left) = self.remove(origin, owner) {
                diff.leaves.push(left);
            }
        }
        diff
    }

    /// The other replicas this copy holds entries of, increasing.
    pub fn remote_origins(&self) -> Vec<ReplicaId> {
        let mut out = Vec::new();
        let mut next = Some(ReplicaId(0));
        while let Some(from) = next {
            let Some((&(origin, _), _)) = self.owners.range((from, 0)..).next() else {
                break;
            };
            if origin != self.local {
                out.push(origin);
            }
            next = origin.0.checked_add(1).map(ReplicaId);
        }
        out
    }

    /// Drops the entries of every other replica (before re-syncing from
    /// their snapshots): all of them leave.
    pub fn remove_remote(&mut self) -> Diff {
        let mut diff = Diff::default();
        for origin in self.remote_origins() {
            let d = self.remove_origin(origin);
            diff.leaves.extend(d.leaves);
        }
        diff
    }

    /// `origin`'s (owner, key) pairs, owners increasing.
    fn origin_owners(&self, origin: ReplicaId) -> impl Iterator<Item = (OwnerId, &str)> {
        self.owners
            .range((origin, 0)..=(origin, OwnerId::MAX))
            .map(|(&(_, owner), key)| (owner, &**key))
    }
}
