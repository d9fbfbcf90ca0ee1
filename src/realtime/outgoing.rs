//! A message on its way to a topic's subscribers, and its wire forms.
//!
//! An [`Outgoing`] is encoded at most once per form a topic's subscribers
//! need (v1 text, v2 text or binary), on first need ([`FrameCache`]), into
//! a complete WebSocket frame; the hub queues clones of those `Bytes`.
//! Also what fan-out reads in a message without encoding it: which read
//! policy receiving it needs, and the id replay suppression compares.

use bytes::Bytes;

use super::frames;
use super::interest::ReadClass;
use crate::proto::phoenix::{self, Encoding, Vsn};

/// A message to fan out to a topic.
pub enum Outgoing<'a> {
    /// A JSON push; v1 and v2 subscribers both get text.
    Json {
        /// Event name (`broadcast`, `presence_diff`, `system`...).
        event: &'a str,
        /// Payload JSON as it goes on the wire.
        payload: &'a [u8],
    },
    /// A user broadcast (binary kind 3 from a client, REST single, DB):
    /// kind 4 to v2, JSON conversion to v1 when the payload is JSON. The
    /// v1 form splices `metadata` and a JSON `payload` verbatim, so the
    /// producer must have checked both are one JSON value each
    /// ([`is_json_value`](crate::proto::json::is_json_value)); the kind 3
    /// decoder and the REST body parser do.
    User {
        /// The user's event name.
        event: &'a str,
        /// Payload encoding.
        encoding: Encoding,
        /// Metadata JSON (empty when none).
        metadata: &'a [u8],
        /// The user's payload bytes.
        payload: &'a [u8],
    },
    /// A kind-0 push re-fanned as kind 2, only to sockets that speak kind 0.
    Kind0 {
        /// Event name.
        event: &'a str,
        /// Raw payload bytes.
        payload: &'a [u8],
    },
}

impl Outgoing<'_> {
    /// Which read policy receiving it needs.
    pub fn read_class(&self) -> ReadClass {
        match self {
            Outgoing::Json {
                event: "presence_diff",
                ..
            } => ReadClass::Presence,
            Outgoing::Json {
                event: "broadcast", ..
            }
            | Outgoing::User { .. }
            | Outgoing::Kind0 { .. } => ReadClass::Broadcast,
            Outgoing::Json { .. } => ReadClass::Any,
        }
    }
}

/// The id a message carries, as the Elixir server's dispatcher reads it: a
/// user broadcast's metadata `{"id": …}` (Broadcast from Database), a JSON
/// broadcast's `meta.id` (a REST batch message with an id). Only string
/// ids can name a replayed message.
pub fn message_id(msg: &Outgoing<'_>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WithId {
        id: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    struct WithMeta {
        meta: Option<WithId>,
    }
    let id = match msg {
        Outgoing::User { metadata, .. } if !metadata.is_empty() => {
            serde_json::from_slice::<WithId>(metadata).ok()?.id
        }
        Outgoing::Json {
            event: "broadcast",
            payload,
        } if payload.first() == Some(&b'{') => {
            serde_json::from_slice::<WithMeta>(payload).ok()?.meta?.id
        }
        _ => None,
    };
    match id? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

/// Whether `msg` can carry an id at all (a cheap look before parsing).
pub fn might_carry_id(msg: &Outgoing<'_>) -> bool {
    match msg {
        Outgoing::User { metadata, .. } => !metadata.is_empty(),
        Outgoing::Json {
            event: "broadcast",
            payload,
        } => payload.windows(6).any(|w| w == b"\"meta\""),
        _ => false,
    }
}

/// The encoded forms of one outgoing message, built on first need.
#[derive(Default)]
pub struct FrameCache {
    v1: Option<Option<Bytes>>,
    v2: Option<Option<Bytes>>,
}

impl FrameCache {
    /// The frame a `vsn` subscriber gets, if any: a kind-0 re-fan goes
    /// only to v2 sockets that `speaks_kind0` says sent kind 0 themselves.
    pub fn frame(
        &mut self,
        topic: &str,
        msg: &Outgoing<'_>,
        vsn: Vsn,
        speaks_kind0: impl FnOnce() -> bool,
    ) -> Option<Bytes> {
        if let Outgoing::Kind0 { .. } = msg {
            if vsn != Vsn::V2 || !speaks_kind0() {
                return None;
            }
        }
        self.form(vsn, topic, msg)
    }

    /// The `vsn` form of `msg`, encoded on first need.
    pub fn form(&mut self, vsn: Vsn, topic: &str, msg: &Outgoing<'_>) -> Option<Bytes> {
        let slot = match vsn {
            Vsn::V1 => &mut self.v1,
            Vsn::V2 => &mut self.v2,
        };
        slot.get_or_insert_with(|| encode(vsn, topic, msg)).clone()
    }
}

/// The complete WebSocket frame a `vsn` subscriber of `topic` gets for
/// `msg`, or `None` when that subscriber gets nothing (binary user payloads
/// to vsn 1.0.0, kind 0 re-fans, fields too long for the binary format).
/// Public so the fuzz targets check exactly what fan-out sends.
pub fn encode(vsn: Vsn, topic: &str, msg: &Outgoing<'_>) -> Option<Bytes> {
    match (msg, vsn) {
        (Outgoing::Json { event, payload }, _) => {
            Some(frames::message(vsn, None, None, topic, event, payload))
        }
        (
            Outgoing::User {
                event,
                encoding,
                metadata,
                payload,
            },
            Vsn::V2,
        ) => frames::user_broadcast_binary(topic, event, metadata, *encoding, payload),
        (
            Outgoing::User {
                encoding: Encoding::Binary,
                ..
            },
            Vsn::V1,
        ) => None,
        (
            Outgoing::User {
                event,
                metadata,
                payload,
                ..
            },
            Vsn::V1,
        ) => {
            let mut body = bytes::BytesMut::with_capacity(payload.len() + event.len() + 48);
            let meta = (!metadata.is_empty()).then_some(*metadata);
            phoenix::encode_user_broadcast_json(&mut body, event, meta, payload);
            Some(frames::message(vsn, None, None, topic, "broadcast", &body))
        }
        (Outgoing::Kind0 { event, payload }, _) => frames::binary_broadcast(topic, event, payload),
    }
}
