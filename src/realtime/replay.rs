//! Replay (PROTOCOL 4.7): a private join with `config.broadcast.replay`
//! gets the topic's stored broadcasts from `realtime.messages` right after
//! its reply, oldest first, each with meta `{"id":…,"replayed":true}`; the
//! live copies of those messages are then withheld from that channel
//! (see [`super::hub::Hub::set_replayed`]).
//!
//! As with the read check, the domain never waits for the database: a join
//! whose read policies allow it returns [`Flow::Replay`](super::state::Flow)
//! with the question ([`ReplayRequest`]) and the join waiting for it
//! ([`PendingReplay`]); the server runs the query and hands the rows back.

use bytes::{Bytes, BytesMut};

use super::authz::{PendingJoin, Policies};
use super::frames;
use super::hub::ReplayedIds;
use crate::proto::json::write_str;
use crate::proto::phoenix::{Encoding, Ref, Vsn};

/// The query's question: a topic's private broadcasts since a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRequest {
    /// The sub-topic (without `realtime:`), a bound parameter.
    pub topic: Box<str>,
    /// Inserted at or after this Unix time in ms (UTC).
    pub since_ms: i64,
    /// The newest this many (1 to 25).
    pub limit: u32,
}

/// One row of `realtime.messages` to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its `id` (a uuid's text): the `meta.id` the client sees and the key
    /// live copies are suppressed by.
    pub id: Box<str>,
    /// Its `event` (nullable in the table).
    pub event: Option<Box<str>>,
    /// Its payload.
    pub payload: StoredPayload,
}

/// What a stored message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredPayload {
    /// `payload` as compact JSON text; `None` when null.
    Json(Option<Box<str>>),
    /// `binary_payload` (`realtime.send_binary()`).
    Binary(Vec<u8>),
}

/// Why the query gave nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayError {
    /// The database refused the query or did not answer in time: the
    /// Elixir server gets its database's error back and answers the join
    /// `Unknown Error on Channel`.
    Query(String),
    /// No connection could be had: the Elixir server's query raises and it
    /// answers `UnableToReplayMessages: Realtime was unable to replay
    /// messages`.
    Unavailable(String),
}

/// The stored messages, newest first as the query returns them, or why not.
pub type ReplayAnswer = Result<Vec<StoredMessage>, ReplayError>;

/// A private join that passed its read check, waiting for its replay.
#[derive(Debug)]
pub struct PendingReplay {
    /// What to ask.
    pub request: ReplayRequest,
    /// The join.
    pub join: PendingJoin,
    /// The policies its read check decided.
    pub policies: Policies,
}

/// `{"id":"<id>","replayed":true}`: a replayed message's meta, keys in the
/// order the Elixir server's JSON library writes a small map (sorted).
fn write_meta(out: &mut BytesMut, id: &str) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"replayed\":true}");
}

/// The frames that replay `newest_first` (the query's order) to a `vsn`
/// socket on `topic` (`realtime:<name>`), oldest first: JSON messages as a
/// channel push `[join_ref, null, topic, "broadcast",
/// {"event","meta","payload","type":"broadcast"}]`, binary ones as kind 4
/// with the meta as metadata, to vsn 2.0.0 only (vsn 1.0.0 cannot carry
/// bytes: skipped, as is what the binary format cannot carry).
pub fn frames(
    vsn: Vsn,
    join_ref: Option<&Ref>,
    topic: &str,
    newest_first: &[StoredMessage],
) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(newest_first.len());
    for m in newest_first.iter().rev() {
        let mut meta = BytesMut::with_capacity(m.id.len() + 32);
        write_meta(&mut meta, &m.id);
        match &m.payload {
            StoredPayload::Binary(bytes) => {
                let Some(event) = m.event.as_deref() else {
                    continue;
                };
                if vsn == Vsn::V1 {
                    continue;
                }
                if let Some(f) =
                    frames::user_broadcast_binary(topic, event, &meta, Encoding::Binary, bytes)
                {
                    out.push(f);
                }
            }
            StoredPayload::Json(payload) => {
                let payload = payload.as_deref().unwrap_or("null");
                let mut body = BytesMut::with_capacity(payload.len() + meta.len() + 64);
                body.extend_from_slice(b"{\"event\":");
                match m.event.as_deref() {
                    Some(e) => write_str(&mut body, e),
                    None => body.extend_from_slice(b"null"),
                }
                body.extend_from_slice(b",\"meta\":");
                body.extend_from_slice(&meta);
                body.extend_from_slice(b",\"payload\":");
                body.extend_from_slice(payload.as_bytes());
                body.extend_from_slice(b",\"type\":\"broadcast\"}");
                out.push(frames::message(
                    vsn,
                    join_ref,
                    None,
                    topic,
                    "broadcast",
                    &body,
                ));
            }
        }
    }
    out
}

/// The ids of `messages`, whose live copies the channel does not get.
pub fn ids(messages: &[StoredMessage]) -> ReplayedIds {
    messages.iter().map(|m| m.id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::phoenix::{decode_binary, InPayload};
    use serde_json::{json, Value};

    fn json_msg(id: &str, event: &str, payload: &str) -> StoredMessage {
        StoredMessage {
            id: id.into(),
            event: Some(event.into()),
            payload: StoredPayload::Json(Some(payload.into())),
        }
    }

    fn bin_msg(id: &str, event: &str, bytes: &[u8]) -> StoredMessage {
        StoredMessage {
            id: id.into(),
            event: Some(event.into()),
            payload: StoredPayload::Binary(bytes.to_vec()),
        }
    }

    /// The body of a server frame (shorter than 64 KiB).
    fn body(f: &Bytes) -> &[u8] {
        if f[1] == 126 {
            &f[4..]
        } else {
            &f[2..]
        }
    }

    /// The JSON of a server text frame.
    fn text(f: &Bytes) -> Value {
        assert_eq!(f[0], 0x81, "a text frame");
        serde_json::from_slice(body(f)).unwrap()
    }

    #[test]
    fn replay_is_oldest_first_with_replayed_meta_json_and_binary() {
        let newest_first = [
            json_msg("c", "late", r#"{"n":3}"#),
            bin_msg("b", "bin", &[0xde, 0xad, 0x00, 0xff]),
            json_msg("a", "early", r#"{"n":1}"#),
        ];
        let jr = Ref::from_str_value("7");
        let f = frames(Vsn::V2, Some(&jr), "realtime:room", &newest_first);
        assert_eq!(f.len(), 3);
        assert_eq!(
            text(&f[0]),
            json!(["7", null, "realtime:room", "broadcast",
                {"event": "early", "meta": {"id": "a", "replayed": true},
                 "payload": {"n": 1}, "type": "broadcast"}])
        );
        // Kind 4 with the meta as metadata and the bytes as they were.
        assert_eq!(f[1][0], 0x82, "a binary frame");
        let body = body(&f[1]);
        assert_eq!(body[0], 4);
        let meta = br#"{"id":"b","replayed":true}"#;
        let (tl, el, ml) = (body[1] as usize, body[2] as usize, body[3] as usize);
        assert_eq!((tl, el, ml, body[4]), (13, 3, meta.len(), 0));
        let rest = &body[5..];
        assert_eq!(&rest[..tl], b"realtime:room");
        assert_eq!(&rest[tl..tl + el], b"bin");
        assert_eq!(&rest[tl + el..tl + el + ml], meta);
        assert_eq!(&rest[tl + el + ml..], &[0xde, 0xad, 0x00, 0xff]);
        assert_eq!(text(&f[2])[4]["event"], "late");
        assert_eq!(text(&f[2])[4]["meta"]["id"], "c");
    }

    #[test]
    fn vsn1_gets_json_without_join_ref_and_no_binary() {
        let newest_first = [bin_msg("b", "bin", b"xyz"), json_msg("a", "e", "[1]")];
        let f = frames(
            Vsn::V1,
            Some(&Ref::from_str_value("3")),
            "realtime:r",
            &newest_first,
        );
        assert_eq!(f.len(), 1, "the binary one is skipped");
        assert_eq!(
            text(&f[0]),
            json!({"topic": "realtime:r", "event": "broadcast", "ref": null,
                "payload": {"event": "e", "meta": {"id": "a", "replayed": true},
                            "payload": [1], "type": "broadcast"}})
        );
    }

    #[test]
    fn null_payloads_and_events_and_what_binary_cannot_carry() {
        let long = "e".repeat(256);
        let newest_first = [
            bin_msg("x", &long, b"1"),
            StoredMessage {
                id: "n".into(),
                event: None,
                payload: StoredPayload::Json(None),
            },
        ];
        let f = frames(Vsn::V2, None, "realtime:r", &newest_first);
        assert_eq!(f.len(), 1, "an event too long for kind 4 is skipped");
        assert_eq!(
            text(&f[0])[4],
            json!({"event": null, "meta": {"id": "n", "replayed": true},
                   "payload": null, "type": "broadcast"})
        );
    }

    #[test]
    fn a_replayed_frame_decodes_as_realtime_js_reads_kind_4() {
        // Round trip through the project's own binary decoder of user
        // broadcasts: the kind 4 layout is kind 3's without the refs.
        let f = frames(
            Vsn::V2,
            None,
            "realtime:t",
            &[bin_msg("i", "ev", b"\x01\x02")],
        );
        let body = body(&f[0]);
        let mut as_push = vec![3, 0, 0];
        as_push.extend_from_slice(&body[1..5]);
        as_push.extend_from_slice(&body[5..]);
        let m = decode_binary(&as_push).expect("kind 4 body re-read as kind 3");
        let InPayload::UserBroadcast(u) = &m.payload else {
            panic!("{m:?}")
        };
        assert_eq!((&*m.topic, &*u.event), ("realtime:t", "ev"));
        assert_eq!(u.encoding, Encoding::Binary);
        assert_eq!(u.metadata, br#"{"id":"i","replayed":true}"#);
        assert_eq!(u.payload, b"\x01\x02");
    }
}
