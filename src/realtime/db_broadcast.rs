//! Broadcast from Database: a row inserted into `realtime.messages` (by
//! `realtime.send()`, `send_binary()` or `broadcast_changes()`), as the
//! replication stream decodes it, turned into a user broadcast on its
//! topic (PROTOCOL 2.5, 4.6).
//!
//! [`DbMessage::from_insert`] reads the row (text format, proto_version 1);
//! [`deliver`] applies the tenant's payload size and events/sec limits and
//! fans it out with metadata `{"id":"<uuid>"}`: kind 4 to vsn 2.0.0
//! subscribers, JSON with `"meta"` to vsn 1.0.0 ones (binary payloads are
//! not sent to them), only to subscribers whose broadcast read policy
//! allows it on a private topic.

use bytes::Bytes;

use super::hub::{Hub, Outgoing, TopicKey};
use super::limits::RateCounter;
use super::tenant::{Limits, Tenant};
use crate::proto::pg::pgoutput::{Insert, Relation};
use crate::proto::pg::tuple::Column;
use crate::proto::phoenix::Encoding;

/// The schema of the messages table.
pub const SCHEMA: &str = "realtime";
/// The messages table; the walsender names its daily partitions
/// `messages_YYYY_MM_DD` when the publication holds the partitioned table.
pub const TABLE: &str = "messages";

/// Whether a relation is `realtime.messages` or one of its partitions.
pub fn is_messages_relation(schema: &str, name: &str) -> bool {
    schema == SCHEMA
        && (name == TABLE
            || name
                .strip_prefix(TABLE)
                .is_some_and(|rest| rest.starts_with('_')))
}

/// One row of `realtime.messages` ready to fan out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbMessage {
    /// The row's id (uuid text), sent as `meta.id`.
    pub id: String,
    /// The user's event name.
    pub event: String,
    /// The sub-topic (without `realtime:`).
    pub topic: String,
    /// Goes to the private topic of that name.
    pub private: bool,
    /// JSON (`payload`) or bytes (`binary_payload`).
    pub encoding: Encoding,
    /// The payload: jsonb text, or the decoded bytea.
    pub payload: Bytes,
}

/// Why a row is not broadcast (logged as `UnableToBroadcastChanges`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unable {
    /// A column the message needs is NULL or absent.
    #[error("{0}_missing")]
    Missing(&'static str),
    /// A column's text is not what its type outputs.
    #[error("column {0} is malformed")]
    Malformed(&'static str),
    /// The payload is larger than the tenant allows.
    #[error("payload_size_exceeded ({size} bytes, limit {limit})")]
    TooLarge {
        /// Payload bytes.
        size: usize,
        /// The tenant's limit.
        limit: usize,
    },
    /// The tenant's events/sec limit is triggered.
    #[error("too_many_requests")]
    RateLimited,
}

impl DbMessage {
    /// Reads an insert into `rel` (a messages relation; the caller
    /// checked with [`is_messages_relation`]).
    pub fn from_insert(rel: &Relation, ins: &Insert) -> Result<DbMessage, Unable> {
        let mut id = None;
        let mut event = None;
        let mut topic = None;
        let mut private = None;
        let mut inserted_at = false;
        let mut payload = None;
        let mut binary = None;
        for (col, value) in rel.columns.iter().zip(ins.new.iter()) {
            let Column::Text(v) = value else {
                continue;
            };
            match col.name.as_str() {
                "id" => id = Some(text(v, "id")?),
                "event" => event = Some(text(v, "event")?),
                "topic" => topic = Some(text(v, "topic")?),
                "private" => private = Some(v == b"t"),
                "inserted_at" => inserted_at = true,
                "payload" => payload = Some(ins.new.slice(v)),
                "binary_payload" => {
                    binary = Some(decode_bytea(v).ok_or(Unable::Malformed("binary_payload"))?)
                }
                _ => {}
            }
        }
        if !inserted_at {
            return Err(Unable::Missing("inserted_at"));
        }
        let event = event.ok_or(Unable::Missing("event"))?;
        let id = id.ok_or(Unable::Missing("id"))?;
        let topic = topic.ok_or(Unable::Missing("topic"))?;
        let private = private.ok_or(Unable::Missing("private"))?;
        // As the Elixir server picks: bytes first, then JSON.
        let (encoding, payload) = match (binary, payload) {
            (Some(b), _) => (Encoding::Binary, Bytes::from(b)),
            (None, Some(p)) => (Encoding::Json, p),
            (None, None) => return Err(Unable::Missing("payload")),
        };
        Ok(DbMessage {
            id,
            event,
            topic,
            private,
            encoding,
            payload,
        })
    }

    /// The metadata sent with it: `{"id":"<uuid>"}`. The id is a uuid's
    /// text output (checked by [`from_insert`](Self::from_insert) to hold
    /// no character JSON would need to escape).
    pub fn metadata(&self) -> Vec<u8> {
        format!("{{\"id\":\"{}\"}}", self.id).into_bytes()
    }
}

fn text(v: &[u8], col: &'static str) -> Result<String, Unable> {
    let s = std::str::from_utf8(v).map_err(|_| Unable::Malformed(col))?;
    if col == "id" && !s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(Unable::Malformed(col));
    }
    Ok(s.to_owned())
}

/// A bytea's hex text output (`\x0a0b`) as bytes; `None` for anything
/// else (the `escape` output format is not used by the walsender unless a
/// database sets `bytea_output` so, which this server refuses to guess).
pub fn decode_bytea(v: &[u8]) -> Option<Vec<u8>> {
    let hex = v.strip_prefix(b"\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    hex.chunks(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

/// Fans `msg` out to its topic of `tenant`, as of `now_ms`: dropped when
/// its payload is over the tenant's limit or the tenant's events/sec limit
/// is triggered; otherwise counted as one event plus one per frame, and
/// the number of frames queued returned.
pub fn deliver(tenant: &mut Tenant, msg: &DbMessage, now_ms: u64) -> Result<u64, Unable> {
    let limits = tenant.config.limits.clone();
    deliver_to(&tenant.hub, &mut tenant.events, &limits, msg, now_ms)
}

/// [`deliver`] on a tenant's parts. The replay of stored messages
/// (PROTOCOL 4.7) finds the id to suppress in `msg.id` here, before
/// fan-out.
pub fn deliver_to(
    hub: &Hub,
    events: &mut RateCounter,
    limits: &Limits,
    msg: &DbMessage,
    now_ms: u64,
) -> Result<u64, Unable> {
    let limit = limits.max_payload_bytes();
    if msg.payload.len() > limit {
        return Err(Unable::TooLarge {
            size: msg.payload.len(),
            limit,
        });
    }
    if events.triggered(limits.max_events_per_second, now_ms) {
        return Err(Unable::RateLimited);
    }
    let topic = format!("realtime:{}", msg.topic);
    let metadata = msg.metadata();
    let out = Outgoing::User {
        event: &msg.event,
        encoding: msg.encoding,
        metadata: &metadata,
        payload: &msg.payload,
    };
    let key = TopicKey {
        topic: &topic,
        private: msg.private,
    };
    let n = hub.fanout(key, &out, None);
    events.add(1 + n, now_ms);
    Ok(n)
}

#[cfg(test)]
#[path = "db_broadcast_tests.rs"]
mod tests;
