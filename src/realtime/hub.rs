//! The per-tenant subscriber registry and the fan-out ("fastlane") path.
//!
//! A message is encoded once per wire form actually needed on the topic
//! (v2 text, v1 text, v2 binary) into a complete WebSocket frame, and every
//! subscriber's queue gets a clone of that `Bytes`: no per-subscriber JSON
//! work and no per-subscriber copy.

use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::frames;
use super::presence::TopicPresence;
use crate::proto::phoenix::{self, Encoding, Vsn};

/// Identifies one joined channel instance on a shard.
pub type ChannelId = u64;

/// Where frames for one connection go. The server implements it with the
/// socket's bounded write queue; tests with a vector.
pub trait Outbound {
    /// Queues one complete frame. Over the queue bound the connection is
    /// closed by the implementation; the caller never waits.
    fn push(&self, frame: Bytes);
    /// Whether this connection itself sent a kind-0 binary push, and so can
    /// decode binary kinds 0-2 (realtime-js cannot).
    fn speaks_kind0(&self) -> bool;
    /// Closes the connection with a WebSocket close code after what is queued.
    fn close(&self, code: u16);
    /// Whether [`Outbound::push`] of a `len`-byte frame would be queued
    /// now rather than close the connection as a slow consumer.
    fn has_room(&self, _len: usize) -> bool {
        true
    }
    /// Resolves once [`Outbound::has_room`] holds for `len`, for a
    /// producer that may wait for a subscriber that is still being written.
    fn poll_room(&self, _len: usize, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
    /// Closes the connection as a slow consumer, dropping what it has not
    /// read.
    fn overflow(&self) {
        self.close(1008);
    }
}

/// One subscriber of a topic.
pub struct Sub {
    /// The channel instance (for `self: false` and leaving).
    pub channel: ChannelId,
    /// The serializer its socket speaks.
    pub vsn: Vsn,
    /// Its connection's queue.
    pub out: Rc<dyn Outbound>,
    /// It may receive broadcasts: always on a public topic, on a private
    /// one only with the broadcast read policy.
    pub broadcast_read: bool,
    /// It may receive `presence_diff`s: always on a public topic, on a
    /// private one only with the presence read policy.
    pub presence_read: bool,
}

impl Sub {
    /// A subscriber of a public topic: it receives everything.
    pub fn public(channel: ChannelId, vsn: Vsn, out: Rc<dyn Outbound>) -> Sub {
        Sub {
            channel,
            vsn,
            out,
            broadcast_read: true,
            presence_read: true,
        }
    }

    /// Whether this subscriber may receive `msg`.
    fn reads(&self, msg: &Outgoing<'_>) -> bool {
        match msg {
            Outgoing::Json {
                event: "presence_diff",
                ..
            } => self.presence_read,
            Outgoing::Json {
                event: "broadcast", ..
            }
            | Outgoing::User { .. }
            | Outgoing::Kind0 { .. } => self.broadcast_read,
            Outgoing::Json { .. } => true,
        }
    }
}

/// Which topic of a tenant: its client name (`realtime:<name>`) and
/// whether it is the private one. Public and private topics of the same
/// name are disjoint (PROTOCOL 3.1): nothing sent on one reaches the
/// other. A plain `&str` names the public topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicKey<'a> {
    /// `realtime:<name>` as clients join it.
    pub topic: &'a str,
    /// The private namespace.
    pub private: bool,
}

impl<'a> From<&'a str> for TopicKey<'a> {
    fn from(topic: &'a str) -> Self {
        TopicKey {
            topic,
            private: false,
        }
    }
}

/// A topic: its subscribers and its presence state.
#[derive(Default)]
pub struct Topic {
    /// Joined channels, in join order.
    pub subs: Vec<Sub>,
    /// Presence entries tracked on this topic.
    pub presence: TopicPresence,
}

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

/// The ids of the messages replayed to one channel on its join (at most
/// 25, sorted): their live copies are not delivered to it again.
pub type ReplayedIds = Box<[Box<str>]>;

/// All topics of one tenant on its home shard, keyed by the client topic
/// (`realtime:<name>`), public and private apart.
#[derive(Default)]
pub struct Hub {
    topics: HashMap<Box<str>, Topic>,
    /// Private topics: a separate map, so no key of one can name the other.
    private: HashMap<Box<str>, Topic>,
    /// Channels that joined with a replay, and what was replayed to them
    /// (PROTOCOL 4.7). Kept beside the subscribers rather than in each
    /// [`Sub`], which stays small for the many that never replay; fan-out
    /// looks here only while it is not empty.
    replayed: HashMap<ChannelId, ReplayedIds>,
}

impl Hub {
    fn space(&self, private: bool) -> &HashMap<Box<str>, Topic> {
        if private {
            &self.private
        } else {
            &self.topics
        }
    }

    fn space_mut(&mut self, private: bool) -> &mut HashMap<Box<str>, Topic> {
        if private {
            &mut self.private
        } else {
            &mut self.topics
        }
    }

    /// Adds a subscriber to a topic.
    pub fn subscribe<'k>(&mut self, key: impl Into<TopicKey<'k>>, sub: Sub) {
        let key = key.into();
        let space = self.space_mut(key.private);
        match space.get_mut(key.topic) {
            Some(t) => t.subs.push(sub),
            None => {
                let mut t = Topic::default();
                t.subs.push(sub);
                space.insert(key.topic.into(), t);
            }
        }
    }

    /// Withholds from `channel` the live copies of the messages whose ids
    /// were replayed to it, for as long as it is subscribed.
    pub fn set_replayed(&mut self, channel: ChannelId, mut ids: ReplayedIds) {
        if !ids.is_empty() {
            // Sorted, so that fan-out finds an id by bisection.
            ids.sort_unstable();
            self.replayed.insert(channel, ids);
        }
    }

    /// Removes a channel from a topic; the topic goes when nothing is left.
    pub fn unsubscribe<'k>(&mut self, key: impl Into<TopicKey<'k>>, channel: ChannelId) {
        let key = key.into();
        if !self.replayed.is_empty() {
            self.replayed.remove(&channel);
        }
        let space = self.space_mut(key.private);
        if let Some(t) = space.get_mut(key.topic) {
            if let Some(i) = t.subs.iter().position(|s| s.channel == channel) {
                t.subs.swap_remove(i);
            }
            if t.subs.is_empty() && t.presence.is_empty() {
                space.remove(key.topic);
            }
        }
    }

    /// Sets what a subscriber of a topic may read (its policies changed).
    pub fn set_reads<'k>(
        &mut self,
        key: impl Into<TopicKey<'k>>,
        channel: ChannelId,
        broadcast: bool,
        presence: bool,
    ) {
        let key = key.into();
        if let Some(t) = self.space_mut(key.private).get_mut(key.topic) {
            if let Some(s) = t.subs.iter_mut().find(|s| s.channel == channel) {
                s.broadcast_read = broadcast;
                s.presence_read = presence;
            }
        }
    }

    /// A topic, if anyone is on it.
    pub fn topic<'k>(&self, key: impl Into<TopicKey<'k>>) -> Option<&Topic> {
        let key = key.into();
        self.space(key.private).get(key.topic)
    }

    /// A topic, created if needed.
    pub fn topic_mut<'k>(&mut self, key: impl Into<TopicKey<'k>>) -> &mut Topic {
        let key = key.into();
        self.space_mut(key.private)
            .entry(key.topic.into())
            .or_default()
    }

    /// Number of topics with subscribers or presence.
    pub fn nr_topics(&self) -> usize {
        self.topics.len() + self.private.len()
    }

    /// Fans `msg` out to every subscriber of a topic except `exclude`
    /// (and those whose read policy withholds it). Returns the number of
    /// frames queued.
    pub fn fanout<'k>(
        &self,
        key: impl Into<TopicKey<'k>>,
        msg: &Outgoing<'_>,
        exclude: Option<ChannelId>,
    ) -> u64 {
        let key = key.into();
        let topic = key.topic;
        let Some(t) = self.space(key.private).get(topic) else {
            return 0;
        };
        let mut cache = FrameCache::default();
        let mut id = None;
        let mut n = 0;
        for s in &t.subs {
            if Some(s.channel) == exclude || !s.reads(msg) || self.was_replayed(s, msg, &mut id) {
                continue;
            }
            if let Some(f) = cache.frame(topic, msg, s) {
                s.out.push(f);
                n += 1;
            }
        }
        n
    }
}

/// A subscriber that has no room for a message now, with the length of
/// the frame it would get.
pub struct NoRoom {
    /// The subscriber's connection.
    pub out: Rc<dyn Outbound>,
    /// Length of its frame.
    pub len: usize,
}

impl Hub {
    /// [`Hub::fanout`] for a producer that waits rather than overflow a
    /// queue: when every subscriber has room for its frame, the message is
    /// queued to all and the number of frames returned; otherwise nothing
    /// is queued and the first subscriber without room is returned, to be
    /// waited for (or closed) before trying again.
    pub fn fanout_if_room<'k>(
        &self,
        key: impl Into<TopicKey<'k>>,
        msg: &Outgoing<'_>,
        exclude: Option<ChannelId>,
    ) -> Result<u64, NoRoom> {
        let key = key.into();
        let topic = key.topic;
        let Some(t) = self.space(key.private).get(topic) else {
            return Ok(0);
        };
        let mut cache = FrameCache::default();
        let mut id = None;
        for s in &t.subs {
            if Some(s.channel) == exclude || !s.reads(msg) || self.was_replayed(s, msg, &mut id) {
                continue;
            }
            if let Some(f) = cache.frame(topic, msg, s) {
                if !s.out.has_room(f.len()) {
                    return Err(NoRoom {
                        out: s.out.clone(),
                        len: f.len(),
                    });
                }
            }
        }
        let mut n = 0;
        for s in &t.subs {
            if Some(s.channel) == exclude || !s.reads(msg) || self.was_replayed(s, msg, &mut id) {
                continue;
            }
            if let Some(f) = cache.frame(topic, msg, s) {
                s.out.push(f);
                n += 1;
            }
        }
        Ok(n)
    }
}

impl Hub {
    /// Whether `msg` is the live copy of a message replayed to `sub`.
    /// `id` caches the message's id across the subscribers of one fan-out:
    /// it is read at most once, and only if some subscriber replayed.
    fn was_replayed(&self, sub: &Sub, msg: &Outgoing<'_>, id: &mut Option<Option<String>>) -> bool {
        if self.replayed.is_empty() {
            return false;
        }
        let Some(ids) = self.replayed.get(&sub.channel) else {
            return false;
        };
        match id.get_or_insert_with(|| message_id(msg)) {
            Some(id) => ids.binary_search_by(|r| (**r).cmp(id.as_str())).is_ok(),
            None => false,
        }
    }
}

/// The id a message carries, as the Elixir server's dispatcher reads it: a
/// user broadcast's metadata `{"id": …}` (Broadcast from Database), a JSON
/// broadcast's `meta.id` (a REST batch message with an id). Only string
/// ids can name a replayed message.
fn message_id(msg: &Outgoing<'_>) -> Option<String> {
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

/// The encoded forms of one outgoing message, built on first need.
#[derive(Default)]
struct FrameCache {
    v1: Option<Option<Bytes>>,
    v2: Option<Option<Bytes>>,
}

impl FrameCache {
    fn frame(&mut self, topic: &str, msg: &Outgoing<'_>, sub: &Sub) -> Option<Bytes> {
        if let Outgoing::Kind0 { .. } = msg {
            if sub.vsn != Vsn::V2 || !sub.out.speaks_kind0() {
                return None;
            }
        }
        let slot = match sub.vsn {
            Vsn::V1 => &mut self.v1,
            Vsn::V2 => &mut self.v2,
        };
        slot.get_or_insert_with(|| encode(sub.vsn, topic, msg))
            .clone()
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

/// A subscriber queue for unit tests of fan-out: keeps every frame.
#[cfg(test)]
pub(crate) mod test_sink {
    use std::cell::RefCell;

    use bytes::Bytes;

    use super::Outbound;

    /// Keeps every frame pushed.
    #[derive(Default)]
    pub(crate) struct Sink(pub(crate) RefCell<Vec<Bytes>>);

    impl Outbound for Sink {
        fn push(&self, frame: Bytes) {
            self.0.borrow_mut().push(frame);
        }
        fn speaks_kind0(&self) -> bool {
            false
        }
        fn close(&self, _: u16) {}
    }

    /// The payload of an unmasked server frame.
    pub(crate) fn payload(f: &[u8]) -> &[u8] {
        match f[1] & 0x7f {
            126 => &f[4..],
            127 => &f[10..],
            _ => &f[2..],
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;
    use crate::proto::phoenix::{decode_binary, InPayload};
    use proptest::prelude::*;
    use serde_json::Value;

    /// Pieces a forger would splice: object and string ends, duplicate
    /// envelope keys, bytes that are not UTF-8, control characters.
    fn piece() -> impl Strategy<Value = &'static [u8]> {
        prop::sample::select(vec![
            &b"1"[..],
            b"}",
            b"{",
            b"]",
            b"[",
            b",",
            b":",
            b"\"",
            b"\\",
            br#","event":"phx_close""#,
            br#""topic":"realtime:room""#,
            br#"{"a":1}"#,
            b"\xff",
            b"\x01",
            b" ",
            b"null",
        ])
    }

    proptest! {
        /// Whatever a kind 3 declared JSON carries, it is refused or every
        /// frame fan-out builds from it is JSON with the envelope intact.
        #[test]
        fn kind3_never_forges_v1_frames(pieces in prop::collection::vec(piece(), 0..12)) {
            let payload = pieces.concat();
            let mut frame = vec![3, 1, 1, 13, 1, 0, 1];
            frame.extend_from_slice(b"12realtime:roome");
            frame.extend_from_slice(&payload);
            let Ok(m) = decode_binary(&frame) else { return Ok(()) };
            let InPayload::UserBroadcast(u) = &m.payload else { panic!() };
            let out = Outgoing::User {
                event: &u.event,
                encoding: u.encoding,
                metadata: u.metadata,
                payload: u.payload,
            };
            let sent: Value = serde_json::from_slice(u.payload).expect("accepted => JSON");
            let v1 = encode(Vsn::V1, &m.topic, &out).expect("JSON goes to v1");
            let header = if v1[1] & 0x7f == 126 { 4 } else { 2 };
            let body: Value = serde_json::from_slice(&v1[header..]).expect("v1 frame is JSON");
            prop_assert_eq!(
                body,
                serde_json::json!({"event": "broadcast", "ref": null, "topic": "realtime:room",
                    "payload": {"event": "e", "payload": sent, "type": "broadcast"}})
            );
        }
    }

    /// A queue that holds frames up to `room` bytes in all.
    struct Bounded {
        frames: RefCell<Vec<Bytes>>,
        room: Cell<usize>,
    }

    impl Bounded {
        fn new(room: usize) -> Rc<Self> {
            Rc::new(Self {
                frames: RefCell::new(Vec::new()),
                room: Cell::new(room),
            })
        }
    }

    impl Outbound for Bounded {
        fn push(&self, frame: Bytes) {
            self.room.set(self.room.get() - frame.len());
            self.frames.borrow_mut().push(frame);
        }
        fn speaks_kind0(&self) -> bool {
            false
        }
        fn close(&self, _: u16) {}
        fn has_room(&self, len: usize) -> bool {
            len <= self.room.get()
        }
    }

    fn sub(channel: ChannelId, vsn: Vsn, out: &Rc<Bounded>) -> Sub {
        Sub::public(channel, vsn, out.clone())
    }

    #[test]
    fn fanout_if_room_queues_to_all_or_to_none() {
        let roomy = Bounded::new(1 << 20);
        let tight = Bounded::new(10);
        let mut hub = Hub::default();
        hub.subscribe("realtime:t", sub(1, Vsn::V2, &roomy));
        hub.subscribe("realtime:t", sub(2, Vsn::V1, &tight));
        let msg = Outgoing::Json {
            event: "broadcast",
            payload: br#"{"a":1}"#,
        };
        let full = match hub.fanout_if_room("realtime:t", &msg, None) {
            Err(full) => full,
            Ok(n) => panic!("queued {n} frames to a full subscriber"),
        };
        let v1_len = frames::message(
            Vsn::V1,
            None,
            None,
            "realtime:t",
            "broadcast",
            br#"{"a":1}"#,
        )
        .len();
        assert_eq!(
            full.len, v1_len,
            "the length of the v1 frame it lacks room for"
        );
        assert!(roomy.frames.borrow().is_empty(), "nothing queued to anyone");
        // Excluding the full subscriber, or once it has room, all is queued.
        assert!(matches!(
            hub.fanout_if_room("realtime:t", &msg, Some(2)),
            Ok(1)
        ));
        tight.room.set(v1_len);
        assert!(matches!(
            hub.fanout_if_room("realtime:t", &msg, None),
            Ok(2)
        ));
        assert_eq!(
            (roomy.frames.borrow().len(), tight.frames.borrow().len()),
            (2, 1)
        );
        assert!(matches!(
            hub.fanout_if_room("realtime:none", &msg, None),
            Ok(0)
        ));
    }

    #[test]
    fn private_and_public_topics_are_disjoint_and_reads_gate() {
        let public = Bounded::new(1 << 20);
        let reader = Bounded::new(1 << 20);
        let blind = Bounded::new(1 << 20);
        let mut hub = Hub::default();
        let private = TopicKey {
            topic: "realtime:t",
            private: true,
        };
        hub.subscribe("realtime:t", sub(1, Vsn::V2, &public));
        hub.subscribe(private, sub(2, Vsn::V2, &reader));
        let mut no_reads = sub(3, Vsn::V2, &blind);
        no_reads.broadcast_read = false;
        no_reads.presence_read = false;
        hub.subscribe(private, no_reads);
        let msg = Outgoing::Json {
            event: "broadcast",
            payload: b"{}",
        };
        assert_eq!(hub.fanout(private, &msg, None), 1, "only the reader");
        assert_eq!(
            hub.fanout("realtime:t", &msg, None),
            1,
            "only the public one"
        );
        assert_eq!(
            (
                public.frames.borrow().len(),
                reader.frames.borrow().len(),
                blind.frames.borrow().len()
            ),
            (1, 1, 0)
        );
        let diff = Outgoing::Json {
            event: "presence_diff",
            payload: b"{}",
        };
        assert_eq!(hub.fanout(private, &diff, None), 1);
        hub.set_reads(private, 3, false, true);
        assert_eq!(hub.fanout(private, &diff, None), 2, "presence read granted");
        assert_eq!(
            hub.fanout(private, &msg, None),
            1,
            "broadcast still withheld"
        );
        hub.unsubscribe(private, 2);
        hub.unsubscribe(private, 3);
        assert!(hub.topic(private).is_none());
        assert!(hub.topic("realtime:t").is_some());
        assert_eq!(hub.nr_topics(), 1);
    }

    #[test]
    fn live_copies_of_replayed_messages_skip_only_the_channel_they_were_replayed_to() {
        let key = TopicKey {
            topic: "realtime:t",
            private: true,
        };
        let mut hub = Hub::default();
        // Channel 1 (v2) and 2 (v1) replayed, 3 replayed nothing.
        let queues: Vec<_> = [Vsn::V2, Vsn::V1, Vsn::V2]
            .into_iter()
            .zip(1..)
            .map(|(vsn, channel)| {
                let q = Bounded::new(1 << 20);
                hub.subscribe(key, sub(channel, vsn, &q));
                q
            })
            .collect();
        // Unsorted: the hub sorts what it bisects.
        hub.set_replayed(1, vec!["id-b".into(), "id-a".into()].into_boxed_slice());
        hub.set_replayed(2, vec!["id-a".into()].into_boxed_slice());
        hub.set_replayed(3, Box::new([]));
        let from_db = |id: &'static str| {
            let metadata = format!(r#"{{"id":"{id}"}}"#);
            move |hub: &Hub| {
                hub.fanout(
                    key,
                    &Outgoing::User {
                        event: "e",
                        encoding: Encoding::Json,
                        metadata: metadata.as_bytes(),
                        payload: b"{}",
                    },
                    None,
                )
            }
        };
        assert_eq!(
            from_db("id-a")(&hub),
            1,
            "only the one that replayed nothing"
        );
        assert_eq!(from_db("id-b")(&hub), 2);
        assert_eq!(from_db("id-c")(&hub), 3);
        // A REST batch message with an id is a JSON broadcast with meta.id.
        let rest = Outgoing::Json {
            event: "broadcast",
            payload: br#"{"event":"e","meta":{"id":"id-b"},"payload":{},"type":"broadcast"}"#,
        };
        assert!(matches!(hub.fanout_if_room(key, &rest, None), Ok(2)));
        // No id, an id that is not a string, no metadata: delivered.
        for payload in [
            &br#"{"meta":{"id":1}}"#[..],
            br#"{"meta":null}"#,
            b"[]",
            b"{}",
        ] {
            let m = Outgoing::Json {
                event: "broadcast",
                payload,
            };
            assert_eq!(hub.fanout(key, &m, None), 3);
        }
        let bare = Outgoing::User {
            event: "e",
            encoding: Encoding::Json,
            metadata: b"",
            payload: b"{}",
        };
        assert_eq!(hub.fanout(key, &bare, None), 3);
        let got: Vec<usize> = queues.iter().map(|q| q.frames.borrow().len()).collect();
        assert_eq!(got, [6, 8, 9]);
        // Gone with the channel: a later channel reusing nothing of it.
        hub.unsubscribe(key, 1);
        hub.unsubscribe(key, 2);
        assert!(hub.replayed.is_empty());
        assert_eq!(from_db("id-a")(&hub), 1);
    }
}
