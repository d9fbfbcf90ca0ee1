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

/// One shard's side of the cluster, as a hub sees it.
pub trait NodeLink {
    /// The first subscriber of a tenant's topic (`realtime:<name>`, in
    /// the private namespace or not) joined this shard.
    fn gained(&self, tenant: &Arc<str>, topic: &str, private: bool);
    /// The last subscriber of a topic left this shard.
    fn lost(&self, tenant: &Arc<str>, topic: &str, private: bool);
    /// Sends what a hub fanned out to the other nodes' subscribers.
    fn publish(&self, fwd: &Forward);
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
    rkyv::to_bytes::<rancor::Error>(&frame)
        .expect("an archive of owned strings and bytes always serializes")
        .into_vec()
}

/// Why a received archive was not delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a valid archive (checked before anything in it is read).
    Invalid,
}

/// A received archive: who sent it and the message to deliver, its
/// frames slices of `payload`.
pub fn decode(payload: &Bytes) -> Result<(u64, Forward), DecodeError> {
    let a = rkyv::access::<ArchivedNodeFrame, rancor::Error>(payload)
        .map_err(|_| DecodeError::Invalid)?;
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
    Ok((a.origin.to_native(), fwd))
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
        let (origin, f) = decode(&shifted).unwrap();
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
}
