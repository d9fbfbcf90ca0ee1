//! What one node of a cluster tells the others about a topic, and the
//! form a message takes between nodes; the transport (NATS) is the
//! server's.
//!
//! A node is one more replica of a topic, as a shard is: a hub that
//! gains its first subscriber of a topic says so ([`NodeLink::gained`]),
//! and the transport subscribes this shard to the topic's subject, so
//! the fabric carries a message only to shards that have subscribers of
//! it. Whatever a hub fans out is published once
//! ([`NodeLink::publish`]) as the frames its own subscribers got, in an
//! archive ([`NodeFrame`]) a receiving shard reads in place: it hands the
//! frames to its subscribers as slices of the buffer it received, with
//! nothing parsed or encoded again.

use std::sync::Arc;

use bytes::Bytes;
use rkyv::rancor;

use super::interest::{Forward, ReadClass};
use super::presence::{Change, Meta, PresenceDelta, PresenceSnapshot, ReplicaId};

/// One shard's side of the cluster, as a hub sees it.
pub trait NodeLink {
    /// This node's id: random per start, its low 16 bits 0 (a shard's
    /// presence replica is the node id with the shard in those bits).
    fn node_id(&self) -> u64;
    /// Sends the other nodes' subscribers of a topic this shard's
    /// presence change or entries.
    fn presence(&self, tenant: &Arc<str>, topic: &str, private: bool, body: NodePresence);
    /// The first subscriber of a tenant's topic (`realtime:<name>`, in
    /// the private namespace or not) joined this shard.
    fn gained(&self, tenant: &Arc<str>, topic: &str, private: bool);
    /// The last subscriber of a topic left this shard. True when the
    /// shard no longer hears about the topic (no join waits for it
    /// either): the hub drops the other nodes' entries of it.
    fn lost(&self, tenant: &Arc<str>, topic: &str, private: bool) -> bool;
    /// Sends what a hub fanned out to the other nodes' subscribers.
    fn publish(&self, fwd: &Forward);
}

/// Presence between nodes, as the presence replica protocol has it
/// (`presence/replica.rs`): a shard of a node is one more replica of a
/// topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePresence {
    /// The sending replica's changes, in order.
    Delta(PresenceDelta),
    /// All of the sending replica's entries of the topic. `ask` asks
    /// replicas for theirs in return: [`ASK_ALL`], one replica's id, or
    /// [`ASK_NONE`] (an answer).
    Snapshot {
        /// The entries.
        entries: PresenceSnapshot,
        /// Who should answer with its own snapshot.
        ask: u64,
    },
}

/// [`NodePresence::Snapshot::ask`]: every replica of the topic answers.
pub const ASK_ALL: u64 = u64::MAX;
/// [`NodePresence::Snapshot::ask`]: nobody answers.
pub const ASK_NONE: u64 = 0;

/// What travels between nodes: a fanned-out message, or presence.
#[derive(rkyv::Archive, rkyv::Serialize, Debug, PartialEq)]
pub enum NodeMsg {
    /// Frames to deliver.
    Fanout(NodeFrame),
    /// A presence delta or snapshot.
    Presence(PresenceFrame),
}

/// Presence of one topic from one replica.
#[derive(rkyv::Archive, rkyv::Serialize, Debug, PartialEq)]
pub struct PresenceFrame {
    /// The sending replica (its node in the high bits).
    pub replica: u64,
    /// The tenant's external id.
    pub tenant: String,
    /// `realtime:<name>`.
    pub topic: String,
    /// The private namespace.
    pub private: bool,
    /// A snapshot (else a delta), and who should answer it.
    pub snapshot: bool,
    /// See [`NodePresence::Snapshot::ask`].
    pub ask: u64,
    /// The changes (a delta) or the entries (a snapshot; all puts).
    pub entries: Vec<PresenceEntry>,
}

/// One owner's state.
#[derive(rkyv::Archive, rkyv::Serialize, Debug, PartialEq)]
pub struct PresenceEntry {
    /// The tracking channel (unique within its replica).
    pub owner: u64,
    /// What it tracks; `None`: nothing (untracked, left).
    pub put: Option<PresencePut>,
}

/// A tracked meta, as [`Meta::from_parts`] takes it.
#[derive(rkyv::Archive, rkyv::Serialize, Debug, PartialEq)]
pub struct PresencePut {
    /// The presence key.
    pub key: String,
    /// `phx_ref`.
    pub phx_ref: String,
    /// `phx_ref_prev`, after an update.
    pub phx_ref_prev: Option<String>,
    /// The user's members as written (`"a":1,"b":2`, no braces).
    pub members: String,
}

/// A fanned-out message between nodes: the frames and what a receiving
/// shard needs to deliver them as [`Forward`] says.
#[derive(rkyv::Archive, rkyv::Serialize, Debug, PartialEq)]
pub struct NodeFrame {
    /// The sending node ([`node_id`]): its own shards, subscribed to the
    /// same subject, got the message between shards and skip this copy.
    pub origin: u64,
    /// The tenant's external id.
    pub tenant: String,
    /// `realtime:<name>` as clients join it.
    pub topic: String,
    /// The private namespace.
    pub private: bool,
    /// [`ReadClass`] as a number (see [`class_code`]).
    pub class: u8,
    /// A kind-0 re-fan (v2 sockets that speak kind 0 only).
    pub kind0: bool,
    /// From a producer that waits for its subscribers' room.
    pub patient: bool,
    /// The message's id, for channels that were replayed it.
    pub id: Option<String>,
    /// The frame for v1 subscribers.
    pub v1: Option<Vec<u8>>,
    /// The frame for v2 subscribers.
    pub v2: Option<Vec<u8>>,
}

fn class_code(c: ReadClass) -> u8 {
    match c {
        ReadClass::Broadcast => 0,
        ReadClass::Presence => 1,
        ReadClass::Any => 2,
    }
}

fn class_of(code: u8) -> Option<ReadClass> {
    Some(match code {
        0 => ReadClass::Broadcast,
        1 => ReadClass::Presence,
        2 => ReadClass::Any,
        _ => return None,
    })
}

/// The archive of `fwd`, sent by node `origin`.
pub fn encode(origin: u64, fwd: &Forward) -> Vec<u8> {
    let frame = NodeFrame {
        origin,
        tenant: fwd.tenant.to_string(),
        topic: fwd.topic.to_string(),
        private: fwd.private,
        class: class_code(fwd.class),
        kind0: fwd.kind0,
        patient: fwd.patient,
        id: fwd.id.as_deref().map(str::to_owned),
        v1: fwd.v1.as_deref().map(<[u8]>::to_vec),
        v2: fwd.v2.as_deref().map(<[u8]>::to_vec),
    };
    archive(&NodeMsg::Fanout(frame))
}

fn archive(msg: &NodeMsg) -> Vec<u8> {
    rkyv::to_bytes::<rancor::Error>(msg)
        .expect("an archive of owned strings and bytes always serializes")
        .into_vec()
}

fn put_of(key: &str, meta: &Meta) -> PresencePut {
    PresencePut {
        key: key.to_owned(),
        phx_ref: meta.phx_ref().to_owned(),
        phx_ref_prev: meta.phx_ref_prev().map(str::to_owned),
        members: meta.members_json().to_owned(),
    }
}

/// The archive of a presence message about a tenant's topic.
pub fn encode_presence(tenant: &str, topic: &str, private: bool, body: &NodePresence) -> Vec<u8> {
    let (replica, snapshot, ask, entries) = match body {
        NodePresence::Delta(d) => {
            let entries = d
                .changes()
                .iter()
                .map(|c| match c {
                    Change::Put { owner, key, meta } => PresenceEntry {
                        owner: *owner,
                        put: Some(put_of(key, meta)),
                    },
                    Change::Remove { owner } => PresenceEntry {
                        owner: *owner,
                        put: None,
                    },
                })
                .collect();
            (d.origin(), false, ASK_NONE, entries)
        }
        NodePresence::Snapshot { entries, ask } => {
            let list = entries
                .entries()
                .map(|(owner, key, meta)| PresenceEntry {
                    owner,
                    put: Some(put_of(key, meta)),
                })
                .collect();
            (entries.origin(), true, *ask, list)
        }
    };
    archive(&NodeMsg::Presence(PresenceFrame {
        replica: replica.0,
        tenant: tenant.to_owned(),
        topic: topic.to_owned(),
        private,
        snapshot,
        ask,
        entries,
    }))
}

/// Why a received archive was not delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a valid archive (checked before anything in it is read), or a
    /// presence meta that is not what a node writes.
    Invalid,
}

/// A received archive, decoded.
#[derive(Debug)]
pub enum Received {
    /// A message to deliver, its frames slices of the payload, from node
    /// `origin`.
    Fanout {
        /// The sending node.
        origin: u64,
        /// The message.
        fwd: Forward,
    },
    /// Presence of a topic.
    Presence {
        /// The tenant's external id.
        tenant: Arc<str>,
        /// `realtime:<name>`.
        topic: Arc<str>,
        /// The private namespace.
        private: bool,
        /// The delta or snapshot (its origin is the sending replica).
        body: NodePresence,
    },
}

impl Received {
    /// The node that sent it.
    pub fn origin(&self) -> u64 {
        match self {
            Received::Fanout { origin, .. } => *origin,
            Received::Presence { body, .. } => match body {
                NodePresence::Delta(d) => d.origin().node(),
                NodePresence::Snapshot { entries, .. } => entries.origin().node(),
            },
        }
    }

    /// The topic it is about, as (tenant, private, topic).
    pub fn topic(&self) -> (&str, bool, &str) {
        match self {
            Received::Fanout { fwd, .. } => (&fwd.tenant, fwd.private, &fwd.topic),
            Received::Presence {
                tenant,
                topic,
                private,
                ..
            } => (tenant, *private, topic),
        }
    }
}

/// A received archive: a message with its frames as slices of `payload`,
/// or presence, its metas checked to be what a node writes (a reference
/// of URL-safe characters, members that are JSON object members), so
/// nothing another process put on the fabric becomes structure in a
/// client's frame.
pub fn decode(payload: &Bytes) -> Result<Received, DecodeError> {
    let a = rkyv::access::<ArchivedNodeMsg, rancor::Error>(payload)
        .map_err(|_| DecodeError::Invalid)?;
    match a {
        ArchivedNodeMsg::Fanout(a) => decode_fanout(payload, a),
        ArchivedNodeMsg::Presence(p) => decode_presence(p),
    }
}

fn decode_fanout(payload: &Bytes, a: &ArchivedNodeFrame) -> Result<Received, DecodeError> {
    let class = class_of(a.class).ok_or(DecodeError::Invalid)?;
    let frame = |f: &rkyv::option::ArchivedOption<rkyv::vec::ArchivedVec<u8>>| {
        f.as_ref().map(|v| payload.slice_ref(v.as_slice()))
    };
    let fwd = Forward {
        tenant: a.tenant.as_str().into(),
        topic: a.topic.as_str().into(),
        private: a.private,
        v1: frame(&a.v1),
        v2: frame(&a.v2),
        class,
        kind0: a.kind0,
        id: a.id.as_ref().map(|s| s.as_str().into()),
        patient: a.patient,
    };
    Ok(Received::Fanout {
        origin: a.origin.to_native(),
        fwd,
    })
}

/// A `phx_ref` as nodes write them (URL-safe base64, short).
fn is_phx_ref(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Members of a JSON object, as a meta holds them without braces: none
/// of them the references the meta starts with (a node drops a client's).
fn is_members(m: &str) -> bool {
    let mut obj = String::with_capacity(m.len() + 2);
    obj.push('{');
    obj.push_str(m);
    obj.push('}');
    type Members = std::collections::HashMap<String, serde::de::IgnoredAny>;
    serde_json::from_str::<Members>(&obj)
        .is_ok_and(|k| !k.contains_key("phx_ref") && !k.contains_key("phx_ref_prev"))
}

fn decode_presence(p: &ArchivedPresenceFrame) -> Result<Received, DecodeError> {
    let replica = ReplicaId(p.replica.to_native());
    let mut changes = Vec::with_capacity(p.entries.len());
    for e in p.entries.iter() {
        let owner = e.owner.to_native();
        let Some(put) = e.put.as_ref() else {
            changes.push(Change::Remove { owner });
            continue;
        };
        let prev = put.phx_ref_prev.as_ref().map(|s| s.as_str());
        if !is_phx_ref(&put.phx_ref)
            || prev.is_some_and(|r| !is_phx_ref(r))
            || !is_members(&put.members)
        {
            return Err(DecodeError::Invalid);
        }
        let meta = Meta::from_parts(&put.phx_ref, prev, &put.members);
        changes.push(Change::Put {
            owner,
            key: put.key.as_str().into(),
            meta,
        });
    }
    let body = if p.snapshot {
        let mut entries = Vec::with_capacity(changes.len());
        for c in changes {
            match c {
                Change::Put { owner, key, meta } => entries.push((owner, key, meta)),
                Change::Remove { .. } => return Err(DecodeError::Invalid),
            }
        }
        NodePresence::Snapshot {
            entries: PresenceSnapshot::from_entries(replica, entries),
            ask: p.ask.to_native(),
        }
    } else {
        NodePresence::Delta(PresenceDelta::new(replica, changes))
    };
    Ok(Received::Presence {
        tenant: p.tenant.as_str().into(),
        topic: p.topic.as_str().into(),
        private: p.private,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Forward {
        Forward {
            tenant: "t".into(),
            topic: "realtime:room.*>".into(),
            private: true,
            v1: None,
            v2: Some(Bytes::from_static(b"\x81\x05hello")),
            class: ReadClass::Broadcast,
            kind0: false,
            id: Some("id-1".into()),
            patient: true,
        }
    }

    #[test]
    fn an_archive_reads_back_with_its_frames_in_place() {
        let bytes = Bytes::from(encode(7, &sample()));
        // Any offset is valid (unaligned archive): read it from an odd one.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        let shifted = Bytes::from(shifted).slice(1..);
        let Received::Fanout { origin, fwd: f } = decode(&shifted).unwrap() else {
            panic!("not a fan-out");
        };
        assert_eq!(origin, 7);
        assert_eq!(
            (&*f.tenant, &*f.topic, f.private),
            ("t", "realtime:room.*>", true)
        );
        assert_eq!(f.v2.as_deref(), Some(&b"\x81\x05hello"[..]));
        assert!(f.v1.is_none() && f.patient && !f.kind0);
        assert_eq!(f.id.as_deref(), Some("id-1"));
        let v2 = f.v2.unwrap();
        let inside = shifted.as_ptr() as usize..shifted.as_ptr() as usize + shifted.len();
        assert!(
            inside.contains(&(v2.as_ptr() as usize)),
            "the frame is not copied"
        );
    }

    #[test]
    fn damaged_archives_are_refused_not_read() {
        let good = encode(1, &sample());
        assert_eq!(decode(&Bytes::new()).unwrap_err(), DecodeError::Invalid);
        for cut in [1, good.len() / 2, good.len() - 1] {
            assert!(decode(&Bytes::copy_from_slice(&good[..cut])).is_err());
        }
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&Bytes::from(bad)).is_err());
    }

    fn presence_of(bytes: Vec<u8>) -> (Arc<str>, Arc<str>, bool, NodePresence) {
        match decode(&Bytes::from(bytes)).unwrap() {
            Received::Presence {
                tenant,
                topic,
                private,
                body,
            } => (tenant, topic, private, body),
            r => panic!("not presence: {r:?}"),
        }
    }

    #[test]
    fn presence_deltas_and_snapshots_read_back_as_sent() {
        let r = ReplicaId::of(0xabcd_0000, 3);
        let meta = Meta::from_parts("ref_1-A", Some("ref0"), r#""name":"a\"b","n":1"#);
        let delta = PresenceDelta::new(
            r,
            vec![
                Change::Put {
                    owner: 9,
                    key: "k\"ey".into(),
                    meta: meta.clone(),
                },
                Change::Remove { owner: 4 },
            ],
        );
        let body = NodePresence::Delta(delta);
        let (t, topic, private, got) = presence_of(encode_presence("t", "realtime:x", true, &body));
        assert_eq!((&*t, &*topic, private), ("t", "realtime:x", true));
        assert_eq!(got, body);
        assert_eq!(r.node(), 0xabcd_0000);

        let snap = PresenceSnapshot::from_entries(r, vec![(9, "k".into(), meta)]);
        let body = NodePresence::Snapshot {
            entries: snap,
            ask: ASK_ALL,
        };
        let (_, _, _, got) = presence_of(encode_presence("t", "realtime:x", false, &body));
        assert_eq!(got, body);
    }

    #[test]
    fn presence_that_a_node_would_not_write_is_refused() {
        let r = ReplicaId::of(1 << 16, 0);
        let bad = [
            ("ref\"", r#""a":1"#),
            ("", r#""a":1"#),
            ("ref", r#""a":1},{"b":2"#),
            ("ref", r#""a":1}"#),
            ("ref", "1"),
            ("ref", r#""a":"#),
            ("ref", r#""phx_ref":"forged""#),
            ("ref", r#""a":1,"phx_ref_prev":"x""#),
        ];
        for (phx_ref, members) in bad {
            let meta = Meta::from_parts(phx_ref, None, members);
            let delta = PresenceDelta::new(
                r,
                vec![Change::Put {
                    owner: 1,
                    key: "k".into(),
                    meta,
                }],
            );
            let bytes = encode_presence("t", "x", false, &NodePresence::Delta(delta));
            assert_eq!(
                decode(&Bytes::from(bytes)).unwrap_err(),
                DecodeError::Invalid,
                "{phx_ref:?} {members:?}"
            );
        }
    }

    #[test]
    fn damaged_presence_is_refused_or_still_well_formed() {
        use rand::{RngExt, SeedableRng};
        let r = ReplicaId::of(1 << 16, 1);
        let meta = Meta::from_parts("ref", Some("prev"), r#""a":[1,{"b":"c"}]"#);
        let delta = PresenceDelta::new(
            r,
            vec![
                Change::Put {
                    owner: 1,
                    key: "k".into(),
                    meta,
                },
                Change::Remove { owner: 2 },
            ],
        );
        let good = encode_presence("t", "x", false, &NodePresence::Delta(delta));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let mut bad = good.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..bad.len());
                bad[i] = rng.random();
            }
            if let Ok(Received::Presence {
                body: NodePresence::Delta(d),
                ..
            }) = decode(&Bytes::from(bad))
            {
                for c in d.changes() {
                    if let Change::Put { meta, .. } = c {
                        let v: serde_json::Value = serde_json::from_str(meta.as_json()).unwrap();
                        assert_eq!(v["phx_ref"].as_str(), Some(meta.phx_ref()));
                    }
                }
            }
        }
    }
}
