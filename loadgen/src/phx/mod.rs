//! Phoenix/Realtime messages as the loadgen sends and reads them.
//!
//! Outbound messages are built once (joins, heartbeats, leaves) or as
//! templates with a fixed-width timestamp field that is patched per send
//! (broadcasts, presence tracks). The timestamp is the *intended* send time
//! in nanoseconds since the loadgen's clock epoch, written as
//! `"lg_t":"<16 digits>"` so it stays valid JSON at a fixed width.
//!
//! Inbound, the hot paths never decode JSON: a delivery is recognised by its
//! binary kind or by the timestamp marker and only the 16 digits are read.
//! Control messages (replies, closes, system messages) go through the server
//! crate's `decode_text` ([`control()`]), whose v2 array and v1 object
//! layouts are the same in both directions.

mod control;

pub use control::{control, Control};

use memchr::memmem;
use realtime::proto::json::quote;
use realtime::proto::phoenix::Vsn;

/// The marker that precedes the timestamp digits in every payload.
pub const TS_MARK: &[u8] = b"\"lg_t\":\"";
/// Width of the timestamp field.
pub const TS_DIGITS: usize = 16;

/// How a publisher frames its broadcasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// Serializer 1.0.0: JSON object text frames.
    V1,
    /// Serializer 2.0.0 text: JSON array frames.
    V2,
    /// Serializer 2.0.0 binary kind 3 (what realtime-js sends for `send()`).
    Binary,
}

impl Proto {
    /// The serializer a socket using this framing negotiates.
    pub fn vsn(self) -> Vsn {
        match self {
            Proto::V1 => Vsn::V1,
            Proto::V2 | Proto::Binary => Vsn::V2,
        }
    }
}

/// Writes `ns` as exactly [`TS_DIGITS`] decimal digits (zero-padded).
pub fn write_ts(dst: &mut [u8; TS_DIGITS], mut ns: u64) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (ns % 10) as u8;
        ns /= 10;
    }
}

/// Reads [`TS_DIGITS`] decimal digits from the front of `src`.
pub fn parse_ts(src: &[u8]) -> Option<u64> {
    let digits = src.get(..TS_DIGITS)?;
    let mut n = 0u64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    Some(n)
}

/// A JSON user payload of exactly `size` bytes (at least 27) carrying the
/// timestamp field first; returns it and the offset of the digits.
pub fn ts_payload(size: usize) -> (Vec<u8>, usize) {
    let mut p = Vec::with_capacity(size.max(40));
    p.push(b'{');
    p.extend_from_slice(TS_MARK);
    let at = p.len();
    p.extend_from_slice(&[b'0'; TS_DIGITS]);
    p.push(b'"');
    const PAD_OVERHEAD: usize = 10; // ,"pad":"" plus the closing brace
    if size >= p.len() + PAD_OVERHEAD {
        let pad = size - p.len() - PAD_OVERHEAD;
        p.extend_from_slice(b",\"pad\":\"");
        p.resize(p.len() + pad, b'x');
        p.push(b'"');
    }
    p.push(b'}');
    (p, at)
}

/// [`TS_MARK`] as Postgres writes jsonb (a space after the colon): the
/// form rows of `realtime.messages` carry (`db-broadcast`).
pub const TS_MARK_JSONB: &[u8] = b"\"lg_t\": \"";

/// Finds the timestamp in any text or binary frame carrying [`TS_MARK`]
/// (or [`TS_MARK_JSONB`]).
pub fn find_ts(frame: &[u8]) -> Option<u64> {
    match marker().find(frame) {
        Some(at) => parse_ts(&frame[at + TS_MARK.len()..]),
        None => {
            let at = memmem::find(frame, TS_MARK_JSONB)?;
            parse_ts(&frame[at + TS_MARK_JSONB.len()..])
        }
    }
}

/// The precompiled searcher for [`TS_MARK`].
fn marker() -> &'static memmem::Finder<'static> {
    static F: std::sync::OnceLock<memmem::Finder<'static>> = std::sync::OnceLock::new();
    F.get_or_init(|| memmem::Finder::new(TS_MARK))
}

/// For a binary frame: `Some(ts)` for a kind 4 user broadcast (`ts` is
/// `None` when its payload has no timestamp), `None` for any other kind.
pub fn kind4_ts(frame: &[u8]) -> Option<Option<u64>> {
    if frame.first() != Some(&4) || frame.len() < 5 {
        return None;
    }
    let start = 5 + frame[1] as usize + frame[2] as usize + frame[3] as usize;
    let payload = frame.get(start..).unwrap_or_default();
    // Our payloads start with `{"lg_t":"`; anything else is searched.
    if payload.len() > 1 + TS_MARK.len() && &payload[1..1 + TS_MARK.len()] == TS_MARK {
        return Some(parse_ts(&payload[1 + TS_MARK.len()..]));
    }
    Some(find_ts(payload))
}

/// For a `presence_diff` text frame: the timestamp of the first meta in its
/// `joins` (leaves carry old metas and are not timed), and whether the
/// frame is a presence diff at all.
pub fn presence_diff_ts(frame: &[u8]) -> Option<Option<u64>> {
    memmem::find(frame, b"\"presence_diff\"")?;
    let joins = memmem::find(frame, b"\"joins\":")?;
    let end = match memmem::find(frame, b"\"leaves\":") {
        Some(l) if l > joins => l,
        _ => frame.len(),
    };
    Some(find_ts(&frame[joins..end]))
}

/// A complete application message (before WebSocket framing).
pub fn envelope(
    vsn: Vsn,
    join_ref: Option<&str>,
    msg_ref: Option<&str>,
    topic: &str,
    event: &str,
    payload: &[u8],
) -> Vec<u8> {
    let q = |s: Option<&str>| s.map_or_else(|| "null".to_string(), quote);
    let mut out = Vec::with_capacity(payload.len() + topic.len() + 64);
    match vsn {
        Vsn::V2 => {
            out.extend_from_slice(
                format!(
                    "[{},{},{},{},",
                    q(join_ref),
                    q(msg_ref),
                    quote(topic),
                    quote(event)
                )
                .as_bytes(),
            );
            out.extend_from_slice(payload);
            out.push(b']');
        }
        Vsn::V1 => {
            out.extend_from_slice(
                format!(
                    "{{\"topic\":{},\"event\":{},\"payload\":",
                    quote(topic),
                    quote(event)
                )
                .as_bytes(),
            );
            out.extend_from_slice(payload);
            out.extend_from_slice(format!(",\"ref\":{}", q(msg_ref)).as_bytes());
            if join_ref.is_some() {
                out.extend_from_slice(format!(",\"join_ref\":{}", q(join_ref)).as_bytes());
            }
            out.push(b'}');
        }
    }
    out
}

/// The heartbeat realtime-js sends every 25 s.
pub fn heartbeat(vsn: Vsn) -> Vec<u8> {
    envelope(vsn, None, Some("hb"), "phoenix", "heartbeat", b"{}")
}

/// What a join asks for.
#[derive(Debug, Clone, Default)]
pub struct JoinConfig {
    /// `config.broadcast.ack`.
    pub ack: bool,
    /// `config.broadcast.self`.
    pub self_: bool,
    /// `Some(key)`: presence enabled with that key (`""` lets the server pick).
    pub presence_key: Option<String>,
    /// The `access_token` field (realtime-js always sends one).
    pub access_token: Option<String>,
    /// `config.postgres_changes` bindings (`{"event","schema","table",..}`).
    pub postgres_changes: Vec<serde_json::Value>,
    /// `config.private`: the join is checked against the tenant's RLS
    /// policies.
    pub private: bool,
}

/// A `phx_join` for `topic` with join ref = ref = `join_ref`.
pub fn join(vsn: Vsn, topic: &str, join_ref: &str, cfg: &JoinConfig) -> Vec<u8> {
    let payload = join_payload(cfg);
    envelope(
        vsn,
        Some(join_ref),
        Some(join_ref),
        topic,
        "phx_join",
        payload.as_bytes(),
    )
}

/// The payload of a `phx_join` asking for `cfg`: the same for every join
/// with that config, so a loop of joins renders it once.
pub fn join_payload(cfg: &JoinConfig) -> String {
    let mut payload = serde_json::json!({
        "config": {
            "broadcast": {"ack": cfg.ack, "self": cfg.self_},
            "presence": {
                "key": cfg.presence_key.clone().unwrap_or_default(),
                "enabled": cfg.presence_key.is_some(),
            },
            "postgres_changes": cfg.postgres_changes,
            "private": cfg.private,
        }
    });
    if let Some(t) = &cfg.access_token {
        payload["access_token"] = t.clone().into();
    }
    payload.to_string()
}

/// A `phx_leave` for `topic`.
pub fn leave(vsn: Vsn, topic: &str, join_ref: &str, msg_ref: &str) -> Vec<u8> {
    envelope(
        vsn,
        Some(join_ref),
        Some(msg_ref),
        topic,
        "phx_leave",
        b"{}",
    )
}

/// A message with a timestamp field to patch: `bytes` is the application
/// message, `ts_at` the offset of the 16 digits in it.
#[derive(Debug, Clone)]
pub struct Template {
    /// The message with a zero timestamp.
    pub bytes: Vec<u8>,
    /// Offset of the timestamp digits.
    pub ts_at: usize,
    /// WebSocket opcode to send it with.
    pub binary: bool,
}

/// A broadcast push of `user_payload` (from [`ts_payload`], digits at
/// `ts_in_payload`) to `topic` with `event`, framed per `proto`.
pub fn broadcast(
    proto: Proto,
    topic: &str,
    join_ref: &str,
    msg_ref: &str,
    event: &str,
    user_payload: &[u8],
    ts_in_payload: usize,
) -> Template {
    match proto {
        Proto::Binary => {
            let mut b = vec![
                3,
                join_ref.len() as u8,
                msg_ref.len() as u8,
                topic.len() as u8,
                event.len() as u8,
                0, // no metadata, as realtime-js
                1, // JSON encoding
            ];
            for s in [join_ref, msg_ref, topic, event] {
                b.extend_from_slice(s.as_bytes());
            }
            let ts_at = b.len() + ts_in_payload;
            b.extend_from_slice(user_payload);
            Template {
                bytes: b,
                ts_at,
                binary: true,
            }
        }
        Proto::V1 | Proto::V2 => {
            let mut inner = format!(
                "{{\"type\":\"broadcast\",\"event\":{},\"payload\":",
                quote(event)
            )
            .into_bytes();
            let ts_in_inner = inner.len() + ts_in_payload;
            inner.extend_from_slice(user_payload);
            inner.push(b'}');
            let bytes = envelope(
                proto.vsn(),
                Some(join_ref),
                Some(msg_ref),
                topic,
                "broadcast",
                &inner,
            );
            let ts_at = locate(&bytes, &inner) + ts_in_inner;
            Template {
                bytes,
                ts_at,
                binary: false,
            }
        }
    }
}

/// A presence track whose meta is `user_payload` (timestamp at `ts_in_payload`).
pub fn presence_track(
    vsn: Vsn,
    topic: &str,
    join_ref: &str,
    msg_ref: &str,
    user_payload: &[u8],
    ts_in_payload: usize,
) -> Template {
    let mut inner = b"{\"type\":\"presence\",\"event\":\"track\",\"payload\":".to_vec();
    let ts_in_inner = inner.len() + ts_in_payload;
    inner.extend_from_slice(user_payload);
    inner.push(b'}');
    let bytes = envelope(
        vsn,
        Some(join_ref),
        Some(msg_ref),
        topic,
        "presence",
        &inner,
    );
    let ts_at = locate(&bytes, &inner) + ts_in_inner;
    Template {
        bytes,
        ts_at,
        binary: false,
    }
}

/// A presence untrack.
pub fn presence_untrack(vsn: Vsn, topic: &str, join_ref: &str, msg_ref: &str) -> Vec<u8> {
    envelope(
        vsn,
        Some(join_ref),
        Some(msg_ref),
        topic,
        "presence",
        b"{\"type\":\"presence\",\"event\":\"untrack\"}",
    )
}

/// Where `inner` (known to be present) sits in `outer`.
fn locate(outer: &[u8], inner: &[u8]) -> usize {
    memmem::find(outer, inner).expect("payload is embedded verbatim")
}

#[cfg(test)]
mod tests {
    use super::*;
    use realtime::proto::phoenix::{
        decode_binary, decode_text, encode_user_broadcast, Encoding, InPayload,
    };

    fn with_ts(t: &Template, ns: u64) -> Vec<u8> {
        let mut b = t.bytes.clone();
        let mut d = [0u8; TS_DIGITS];
        write_ts(&mut d, ns);
        b[t.ts_at..t.ts_at + TS_DIGITS].copy_from_slice(&d);
        b
    }

    #[test]
    fn timestamps_round_trip_at_fixed_width() {
        for ns in [0u64, 1, 123_456_789, 9_999_999_999_999_999] {
            let mut d = [0u8; TS_DIGITS];
            write_ts(&mut d, ns);
            assert_eq!(parse_ts(&d), Some(ns));
        }
        assert_eq!(parse_ts(b"12"), None);
        assert_eq!(parse_ts(b"00000000000000x0"), None);
    }

    #[test]
    fn payloads_have_the_requested_size_and_are_json() {
        for size in [0usize, 27, 35, 36, 37, 100, 1000] {
            let (p, at) = ts_payload(size);
            if size >= 36 {
                assert_eq!(p.len(), size);
            } else {
                assert_eq!(p.len(), 27);
            }
            let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
            assert_eq!(v["lg_t"], "0000000000000000");
            assert_eq!(&p[at - TS_MARK.len()..at], TS_MARK);
        }
    }

    #[test]
    fn text_broadcasts_decode_and_carry_the_timestamp() {
        let (p, at) = ts_payload(100);
        for proto in [Proto::V1, Proto::V2] {
            let t = broadcast(proto, "realtime:t0", "1", "2", "ev", &p, at);
            let b = with_ts(&t, 42);
            let m = decode_text(proto.vsn(), &b).unwrap();
            assert_eq!(m.topic, "realtime:t0");
            assert_eq!(m.event, "broadcast");
            let InPayload::Json(raw) = m.payload else {
                panic!()
            };
            let v: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
            assert_eq!(v["event"], "ev");
            assert_eq!(v["payload"]["lg_t"], "0000000000000042");
            assert_eq!(find_ts(&b), Some(42));
        }
    }

    #[test]
    fn binary_broadcast_is_kind_3_and_kind_4_is_read_fast() {
        let (p, at) = ts_payload(100);
        let t = broadcast(Proto::Binary, "realtime:t0", "1", "2", "ev", &p, at);
        assert!(t.binary);
        let b = with_ts(&t, 7);
        let m = decode_binary(&b).unwrap();
        let InPayload::UserBroadcast(ub) = m.payload else {
            panic!()
        };
        assert_eq!(ub.event, "ev");
        assert_eq!(ub.encoding, Encoding::Json);
        // What a subscriber receives for it:
        let mut out = bytes::BytesMut::new();
        encode_user_broadcast(
            &mut out,
            "realtime:t0",
            "ev",
            b"",
            Encoding::Json,
            ub.payload,
        )
        .unwrap();
        assert_eq!(kind4_ts(&out), Some(Some(7)));
        assert_eq!(kind4_ts(&[2, 0, 0]), None);
        let mut meta = bytes::BytesMut::new();
        encode_user_broadcast(&mut meta, "realtime:t", "e", b"{}", Encoding::Json, &p).unwrap();
        assert_eq!(kind4_ts(&meta), Some(Some(0)));
    }

    #[test]
    fn presence_diff_times_joins_only() {
        let joins = br#"[null,null,"realtime:p","presence_diff",{"joins":{"k":{"metas":[{"phx_ref":"x","lg_t":"0000000000000005"}]}},"leaves":{}}]"#;
        assert_eq!(presence_diff_ts(joins), Some(Some(5)));
        let leaves = br#"[null,null,"realtime:p","presence_diff",{"joins":{},"leaves":{"k":{"metas":[{"lg_t":"0000000000000005"}]}}}]"#;
        assert_eq!(presence_diff_ts(leaves), Some(None));
        assert_eq!(
            presence_diff_ts(b"[null,null,\"t\",\"broadcast\",{}]"),
            None
        );
    }

    #[test]
    fn presence_messages_decode() {
        let (p, at) = ts_payload(60);
        let t = presence_track(Vsn::V2, "realtime:p", "1", "3", &p, at);
        let b = with_ts(&t, 9);
        let m = decode_text(Vsn::V2, &b).unwrap();
        assert_eq!(m.event, "presence");
        assert_eq!(find_ts(&b), Some(9));
        let u = presence_untrack(Vsn::V1, "realtime:p", "1", "4");
        assert_eq!(decode_text(Vsn::V1, &u).unwrap().event, "presence");
    }

    #[test]
    fn joins_heartbeats_and_leaves_decode() {
        let cfg = JoinConfig {
            ack: true,
            self_: false,
            presence_key: Some("m1".into()),
            access_token: Some("tok".into()),
            postgres_changes: vec![serde_json::json!({"event": "INSERT", "table": "t"})],
            private: true,
        };
        for vsn in [Vsn::V1, Vsn::V2] {
            let j = join(vsn, "realtime:r", "5", &cfg);
            let m = decode_text(vsn, &j).unwrap();
            assert_eq!(m.event, "phx_join");
            let InPayload::Json(raw) = m.payload else {
                panic!()
            };
            let v: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
            assert_eq!(v["config"]["presence"]["key"], "m1");
            assert_eq!(v["config"]["broadcast"]["ack"], true);
            assert_eq!(v["config"]["postgres_changes"][0]["table"], "t");
            assert_eq!(v["config"]["private"], true);
            assert_eq!(v["access_token"], "tok");
            assert_eq!(decode_text(vsn, &heartbeat(vsn)).unwrap().topic, "phoenix");
            assert_eq!(
                decode_text(vsn, &leave(vsn, "realtime:r", "5", "6"))
                    .unwrap()
                    .event,
                "phx_leave"
            );
        }
    }
}
