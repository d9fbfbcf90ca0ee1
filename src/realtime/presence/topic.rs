//! One topic's presence entries, merged over replicas, and the diffs
//! their changes make (see the module doc of `presence`).

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use serde_json::{Map, Value};

use super::key::new_phx_ref;
use super::meta::{into_string, write_object_members};
use crate::proto::json::write_str_buf;

/// A replica of presence state: one shard of one node. Its entries are
/// tagged with it (their *origin*). The low 16 bits are the shard, the
/// rest the node (0 on a single node; a cluster node's random id, whose
/// low 16 bits are 0, otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(pub u64);

impl ReplicaId {
    /// Shard `shard` of node `node` (whose low 16 bits are ignored).
    pub fn of(node: u64, shard: usize) -> ReplicaId {
        ReplicaId((node & !0xffff) | (shard as u64 & 0xffff))
    }

    /// The node part.
    pub fn node(self) -> u64 {
        self.0 & !0xffff
    }
}

/// A joined channel instance; the server assigns these in increasing order.
pub type OwnerId = u64;

/// One tracked meta, ready to be written: its JSON object rendered once,
/// shared (cloning is a reference-count bump, so diffs, deltas and the
/// replicas of a topic share one copy of the bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// `{"phx_ref":"..",["phx_ref_prev":"..",]<members>}` exactly as sent.
    json: Arc<str>,
    /// End of the `phx_ref` value (it starts at [`REF_START`]).
    ref_end: u32,
    /// `phx_ref_prev` value span; empty when there is none.
    prev: (u32, u32),
    /// Start of the user's members (at the closing brace when `{}`).
    members_start: u32,
}

/// Length of `{"phx_ref":"`, where every meta's reference starts.
const REF_START: usize = 12;

impl Meta {
    /// A meta from its parts as another replica (or a test) holds them:
    /// `members` is the user's object as Jason writes it, without braces
    /// (`"a":1,"b":"x"`, empty for `{}`); the parts are written verbatim.
    pub fn from_parts(phx_ref: &str, phx_ref_prev: Option<&str>, members: &str) -> Meta {
        let prev_len = phx_ref_prev.map_or(0, |p| p.len() + 18);
        let mut json =
            String::with_capacity(REF_START + phx_ref.len() + prev_len + members.len() + 4);
        json.push_str("{\"phx_ref\":\"");
        json.push_str(phx_ref);
        let ref_end = json.len();
        json.push('"');
        let mut prev = (0, 0);
        if let Some(p) = phx_ref_prev {
            json.push_str(",\"phx_ref_prev\":\"");
            let start = json.len();
            json.push_str(p);
            prev = (offset(start), offset(json.len()));
            json.push('"');
        }
        if !members.is_empty() {
            json.push(',');
        }
        let members_start = offset(json.len());
        json.push_str(members);
        json.push('}');
        Meta {
            json: json.into(),
            ref_end: offset(ref_end),
            prev,
            members_start,
        }
    }

    /// The meta's `phx_ref`.
    pub fn phx_ref(&self) -> &str {
        &self.json[REF_START..self.ref_end as usize]
    }

    /// The meta's `phx_ref_prev`, set on metas produced by an update.
    pub fn phx_ref_prev(&self) -> Option<&str> {
        let (start, end) = self.prev;
        (start != 0).then(|| &self.json[start as usize..end as usize])
    }

    /// The user's meta members as serialized (`"a":1,"b":"x"`).
    pub fn members_json(&self) -> &str {
        &self.json[self.members_start as usize..self.json.len() - 1]
    }

    /// The whole meta object as written by [`write_json`](Self::write_json).
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// Writes `{"phx_ref":"..",["phx_ref_prev":"..",]<members>}`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.json.as_bytes());
    }
}

fn offset(n: usize) -> u32 {
    u32::try_from(n).expect("a meta is smaller than 4 GiB")
}

/// One owner's entry under a key.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// The channel that tracked it (sort key within the key's list).
    pub(super) owner: OwnerId,
    /// The replica authoritative for it (tie-break after the owner).
    pub(super) origin: ReplicaId,
    /// What it tracked.
    pub(super) meta: Meta,
}

/// Presence entries of one topic, merged over every replica that has some
/// (see `replica.rs` for the delta protocol); local changes are made as
/// replica `local`.
#[derive(Debug, Default)]
pub struct TopicPresence {
    /// The replica this copy is authoritative for: local tracks are stored
    /// and sent as its entries.
    pub(super) local: ReplicaId,
    /// key -> entries in (owner, origin) order; keys iterate bytewise-sorted,
    /// which is the order `presence_state` lists them in.
    pub(super) keys: BTreeMap<Box<str>, Vec<Entry>>,
    /// (origin, owner) -> the key it tracks under, to find its entry;
    /// ordered so one origin's entries are a range.
    pub(super) owners: BTreeMap<(ReplicaId, OwnerId), Box<str>>,
}

impl TopicPresence {
    /// An empty topic whose local changes are `local`'s.
    pub fn new(local: ReplicaId) -> TopicPresence {
        TopicPresence {
            local,
            ..TopicPresence::default()
        }
    }

    /// The replica local changes belong to.
    pub fn local(&self) -> ReplicaId {
        self.local
    }

    /// Tracks `meta` for `owner` under `key`, with a fresh `phx_ref` from the
    /// thread-local RNG. See [`track_with`](Self::track_with).
    pub fn track(&mut self, owner: OwnerId, key: &str, meta: Map<String, Value>) -> Option<Diff> {
        self.track_with(owner, key, meta, &mut rand::rng())
    }

    /// Tracks `meta` for the local `owner` under `key`:
    /// - first track: a join;
    /// - same meta as currently tracked: no-op (`None`);
    /// - changed meta: an update, one diff whose `joins` holds the new meta
    ///   (fresh `phx_ref`, `phx_ref_prev` = old ref) and whose `leaves`
    ///   holds the old meta as it was;
    /// - (owner tracked under a different key: leave of the old entry and
    ///   join of the new one in one diff; the server never does this).
    ///
    /// Other replicas learn of it from [`local_delta`](Self::local_delta).
    pub fn track_with(
        &mut self,
        owner: OwnerId,
        key: &str,
        mut meta: Map<String, Value>,
        rng: &mut impl Rng,
    ) -> Option<Diff> {
        // The server writes `phx_ref`/`phx_ref_prev` itself; a client's own
        // keys of those names would follow them as duplicates, and
        // `JSON.parse` keeps the last: a forged ref in a leave makes other
        // clients drop someone else's meta.
        meta.remove("phx_ref");
        meta.remove("phx_ref_prev");
        let mut members = Vec::with_capacity(64);
        write_object_members(&meta, &mut members);
        let members = into_string(members);

        let prev = match self.get(owner) {
            Some((old_key, old)) if old_key == key => {
                if old.members_json() == members {
                    return None;
                }
                Some(old.phx_ref())
            }
            _ => None,
        };
        let new = Meta::from_parts(&new_phx_ref(rng), prev, &members);
        let mut diff = Diff::default();
        self.put(self.local, owner, key, new, &mut diff);
        Some(diff)
    }

    /// Stops tracking the local `owner` (client `untrack`): a diff with its
    /// meta in `leaves`, or `None` if it tracked nothing.
    pub fn untrack(&mut self, owner: OwnerId) -> Option<Diff> {
        let left = self.remove(self.local, owner)?;
        Some(Diff {
            joins: Vec::new(),
            leaves: vec![left],
        })
    }

    /// The owner's channel closed (leave, shutdown, socket gone): same as
    /// [`untrack`](Self::untrack).
    pub fn leave(&mut self, owner: OwnerId) -> Option<Diff> {
        self.untrack(owner)
    }

    /// Whether nothing is tracked (by any replica).
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Number of metas tracked (one per tracking owner, all replicas).
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Number of distinct keys.
    pub fn nr_keys(&self) -> usize {
        self.keys.len()
    }

    /// Whether the local `owner` tracks something.
    pub fn is_tracking(&self, owner: OwnerId) -> bool {
        self.owners.contains_key(&(self.local, owner))
    }

    /// The key and meta the local `owner` tracks.
    pub fn get(&self, owner: OwnerId) -> Option<(&str, &Meta)> {
        self.get_from(self.local, owner)
    }

    /// The key and meta `owner` of replica `origin` tracks.
    pub fn get_from(&self, origin: ReplicaId, owner: OwnerId) -> Option<(&str, &Meta)> {
        let key = self.owners.get(&(origin, owner))?;
        let entries = self.keys.get(key)?;
        let i = find(entries, owner, origin)?;
        Some((key, &entries[i].meta))
    }

    /// Writes the `presence_state` payload:
    /// `{"<key>":{"metas":[{"phx_ref":"..",...meta},...]},...}` (`{}` when
    /// empty), over the entries of every replica.
    pub fn state_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (n, (key, entries)) in self.keys.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_str_buf(out, key);
            out.extend_from_slice(b":{\"metas\":[");
            for (m, e) in entries.iter().enumerate() {
                if m > 0 {
                    out.push(b',');
                }
                e.meta.write_json(out);
            }
            out.extend_from_slice(b"]}");
        }
        out.push(b'}');
    }

    /// Sets `origin`'s `owner` to track `meta` under `key`, adding what
    /// changed to `diff`: nothing when it already does (same bytes), else
    /// the old meta (if any) leaves and the new one joins.
    pub(super) fn put(
        &mut self,
        origin: ReplicaId,
        owner: OwnerId,
        key: &str,
        meta: Meta,
        diff: &mut Diff,
    ) {
        if let Some(old_key) = self.owners.get(&(origin, owner)) {
            if &**old_key == key {
                let entries = self.keys.get_mut(key).expect("owner index is consistent");
                let i = find(entries, owner, origin).expect("owner index is consistent");
                if entries[i].meta == meta {
                    return;
                }
                let old = std::mem::replace(&mut entries[i].meta, meta.clone());
                diff.joins.push((key.into(), meta));
                diff.leaves.push((key.into(), old));
                return;
            }
            if let Some(left) = self.remove(origin, owner) {
                diff.leaves.push(left);
            }
        }
        let entries = self.keys.entry(key.into()).or_default();
        let at = entries.partition_point(|e| (e.owner, e.origin) < (owner, origin));
        entries.insert(
            at,
            Entry {
                owner,
                origin,
                meta: meta.clone(),
            },
        );
        self.owners.insert((origin, owner), key.into());
        diff.joins.push((key.into(), meta));
    }

    pub(super) fn remove(&mut self, origin: ReplicaId, owner: OwnerId) -> Option<(Box<str>, Meta)> {
        let key = self.owners.remove(&(origin, owner))?;
        let entries = self.keys.get_mut(&key).expect("owner index is consistent");
        let i = find(entries, owner, origin).expect("owner index is consistent");
        let e = entries.remove(i);
        if entries.is_empty() {
            self.keys.remove(&key);
        }
        Some((key, e.meta))
    }
}

fn find(entries: &[Entry], owner: OwnerId, origin: ReplicaId) -> Option<usize> {
    entries
        .binary_search_by(|e| (e.owner, e.origin).cmp(&(owner, origin)))
        .ok()
}

/// A presence change: the `presence_diff` payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// (key, meta) that joined.
    pub(super) joins: Vec<(Box<str>, Meta)>,
    /// (key, meta) that left.
    pub(super) leaves: Vec<(Box<str>, Meta)>,
}

impl Diff {
    /// The joined (key, meta) pairs.
    pub fn joins(&self) -> impl Iterator<Item = (&str, &Meta)> {
        self.joins.iter().map(|(k, m)| (&**k, m))
    }

    /// The left (key, meta) pairs.
    pub fn leaves(&self) -> impl Iterator<Item = (&str, &Meta)> {
        self.leaves.iter().map(|(k, m)| (&**k, m))
    }

    /// Whether the diff has neither joins nor leaves.
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }

    /// Writes `{"joins":{...},"leaves":{...}}`, each side shaped like
    /// [`TopicPresence::state_json`] (keys sorted, metas of one key in the
    /// order they were added to the diff).
    pub fn to_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"joins\":");
        write_group(&self.joins, out);
        out.extend_from_slice(b",\"leaves\":");
        write_group(&self.leaves, out);
        out.push(b'}');
    }
}

fn write_group(items: &[(Box<str>, Meta)], out: &mut Vec<u8>) {
    out.push(b'{');
    match items {
        [] => {}
        [(key, meta)] => {
            write_str_buf(out, key);
            out.extend_from_slice(b":{\"metas\":[");
            meta.write_json(out);
            out.extend_from_slice(b"]}");
        }
        _ => {
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_by(|&a, &b| items[a].0.cmp(&items[b].0));
            let mut prev: Option<&str> = None;
            for &i in &order {
                let (key, meta) = &items[i];
                if prev == Some(&**key) {
                    out.push(b',');
                } else {
                    if prev.is_some() {
                        out.extend_from_slice(b"]},");
                    }
                    write_str_buf(out, key);
                    out.extend_from_slice(b":{\"metas\":[");
                    prev = Some(key);
                }
                meta.write_json(out);
            }
            out.extend_from_slice(b"]}");
        }
    }
    out.push(b'}');
}
