//! Fan-out: forgery, bounded queues, private topics, replay suppression
//! and what crosses to other shards.

use std::cell::{Cell, RefCell};

use super::*;
use crate::proto::phoenix::{decode_binary, Encoding, InPayload};
use crate::realtime::frames;
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
