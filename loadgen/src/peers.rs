//! The comparison peers' protocols, sans-io: what the loadgen sends to and
//! reads from a peer once the WebSocket is up. Realtime itself is [`phx`].
//!
//! - **nats**: nats-server's WebSocket listener carries the plain NATS text
//!   protocol in binary frames, as a byte stream (a frame may hold several
//!   protocol messages or part of one). A subscriber sends
//!   `CONNECT {..}\r\nSUB <subject> <sid>\r\nPING\r\n` and is subscribed
//!   once the `PONG` arrives; a publisher sends `PUB <subject> <n>\r\n<payload>\r\n`
//!   and receives `MSG <subject> <sid> <n>\r\n<payload>\r\n`. Server `PING`s
//!   are answered with `PONG`.
//! - **relay** (node-ws, tokio-relay in `bench/peers/`): text frames
//!   `sub <topic>` (answered `ok <topic>`) and `pub <topic> <payload>`; a
//!   delivery is a text frame holding just the payload.
//!
//! The payload is the same [`phx::ts_payload`] JSON for every target, so the
//! latency is read from the same `"lg_t"` field everywhere.
//!
//! [`phx`]: crate::phx
//! [`phx::ts_payload`]: crate::phx::ts_payload

use memchr::memmem;

use crate::cli::Target;
use crate::conn::Frame;
use crate::phx::Template;

/// A peer's name for the loadgen topic `realtime:lg-<i>`: `lg-<i>` (NATS
/// subjects and relay topics need no namespace).
pub fn subject(topic: &str) -> &str {
    topic.strip_prefix("realtime:").unwrap_or(topic)
}

/// What a connection sends to subscribe to `topics` (as WebSocket messages:
/// bytes and whether binary), and how many confirmations then to wait for.
/// With no topics a NATS connection still sends `CONNECT` (publishers).
pub fn attach(target: Target, topics: &[String]) -> (Vec<(Vec<u8>, bool)>, usize) {
    match target {
        Target::Nats => {
            let mut b = br#"CONNECT {"verbose":false,"pedantic":false,"echo":false,"protocol":1,"name":"realtime-loadgen","lang":"rust","version":"0"}"#.to_vec();
            b.extend_from_slice(b"\r\n");
            for (sid, t) in topics.iter().enumerate() {
                b.extend_from_slice(format!("SUB {} {}\r\n", subject(t), sid + 1).as_bytes());
            }
            // The PONG to this PING proves every SUB before it was processed.
            b.extend_from_slice(b"PING\r\n");
            (vec![(b, true)], 1)
        }
        Target::NodeWs | Target::TokioRelay => (
            topics
                .iter()
                .map(|t| (format!("sub {}", subject(t)).into_bytes(), false))
                .collect(),
            topics.len(),
        ),
        Target::Realtime => (Vec::new(), 0),
    }
}

/// The publish message for `topic` carrying `payload` (timestamp digits at
/// `ts_in_payload`), as a template the publisher patches per send.
pub fn publish(target: Target, topic: &str, payload: &[u8], ts_in_payload: usize) -> Template {
    let (mut bytes, binary) = match target {
        Target::Nats => (
            format!("PUB {} {}\r\n", subject(topic), payload.len()).into_bytes(),
            true,
        ),
        _ => (format!("pub {} ", subject(topic)).into_bytes(), false),
    };
    let ts_at = bytes.len() + ts_in_payload;
    bytes.extend_from_slice(payload);
    if target == Target::Nats {
        bytes.extend_from_slice(b"\r\n");
    }
    Template {
        bytes,
        ts_at,
        binary,
    }
}

/// The NATS answer to a server `PING`.
pub const NATS_PONG: &[u8] = b"PONG\r\n";

/// Something a peer said.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A published payload.
    Delivery(&'a [u8]),
    /// A subscription (relay `ok`) or the whole attach (NATS `PONG`) was confirmed.
    Confirmed,
    /// NATS `PING`: answer with [`NATS_PONG`].
    Ping,
    /// `-ERR ...` or `err ...`.
    Error(&'a [u8]),
}

/// Per-connection inbound state: only the NATS stream needs any (a protocol
/// message cut by a frame or read boundary). Empty while idle.
#[derive(Debug, Default)]
pub struct Inbound {
    /// Unparsed NATS bytes.
    carry: Vec<u8>,
}

impl Inbound {
    /// Interprets one WebSocket message from a `target` peer.
    pub fn feed(
        &mut self,
        target: Target,
        f: Frame<'_>,
        on: &mut impl FnMut(Event<'_>),
    ) -> Result<(), String> {
        let (Frame::Text(b) | Frame::Binary(b)) = f;
        match target {
            Target::Nats => self.feed_nats(b, on),
            _ => {
                on(relay_event(b));
                Ok(())
            }
        }
    }

    /// Appends NATS bytes and reports every complete protocol message.
    fn feed_nats(&mut self, data: &[u8], on: &mut impl FnMut(Event<'_>)) -> Result<(), String> {
        if self.carry.is_empty() {
            let used = parse_nats(data, on)?;
            self.carry.extend_from_slice(&data[used..]);
        } else {
            self.carry.extend_from_slice(data);
            let used = parse_nats(&self.carry, on)?;
            self.carry.drain(..used);
            if self.carry.is_empty() {
                self.carry = Vec::new();
            }
        }
        Ok(())
    }
}

/// A relay text frame: `ok <topic>`, `err <why>`, or a payload.
fn relay_event(b: &[u8]) -> Event<'_> {
    if b.starts_with(b"ok ") {
        Event::Confirmed
    } else if let Some(why) = b.strip_prefix(b"err ") {
        Event::Error(why)
    } else {
        Event::Delivery(b)
    }
}

/// Longest NATS control line accepted (INFO carries a JSON object).
const MAX_LINE: usize = 64 * 1024;

/// Parses complete NATS protocol messages at the front of `buf`; returns the
/// bytes used.
fn parse_nats(buf: &[u8], on: &mut impl FnMut(Event<'_>)) -> Result<usize, String> {
    let mut at = 0;
    while let Some(eol) = memmem::find(&buf[at..], b"\r\n") {
        let line = &buf[at..at + eol];
        let next = at + eol + 2;
        let verb_end = line.iter().position(|&c| c == b' ').unwrap_or(line.len());
        match &line[..verb_end] {
            b"MSG" => {
                let n = line
                    .rsplit(|&c| c == b' ')
                    .next()
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse::<usize>().ok())
                    .ok_or_else(|| {
                        format!("bad NATS MSG line {:?}", String::from_utf8_lossy(line))
                    })?;
                if buf.len() < next + n + 2 {
                    break;
                }
                on(Event::Delivery(&buf[next..next + n]));
                at = next + n + 2;
                continue;
            }
            b"PING" => on(Event::Ping),
            b"PONG" => on(Event::Confirmed),
            b"-ERR" => on(Event::Error(&line[verb_end..])),
            _ => {} // INFO, +OK
        }
        at = next;
    }
    if buf.len() - at > MAX_LINE {
        return Err("NATS control line too long".into());
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(inb: &mut Inbound, target: Target, chunks: &[&[u8]]) -> Vec<String> {
        let mut got = Vec::new();
        for c in chunks {
            inb.feed(target, Frame::Binary(c), &mut |e| {
                got.push(match e {
                    Event::Delivery(p) => format!("d:{}", String::from_utf8_lossy(p)),
                    Event::Confirmed => "ok".into(),
                    Event::Ping => "ping".into(),
                    Event::Error(e) => format!("err:{}", String::from_utf8_lossy(e)),
                })
            })
            .unwrap();
        }
        got
    }

    #[test]
    fn nats_stream_split_anywhere_yields_the_same_messages() {
        let stream: &[u8] = b"INFO {\"server_id\":\"x\"}\r\nPONG\r\nMSG lg-0 1 5\r\nhe\r\no\r\nPING\r\nMSG lg-0 1 0\r\n\r\n-ERR 'Slow Consumer'\r\n";
        let want = vec!["ok", "d:he\r\no", "ping", "d:", "err: 'Slow Consumer'"];
        for cut in 0..stream.len() {
            let mut inb = Inbound::default();
            let got = events(&mut inb, Target::Nats, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(got, want, "cut at {cut}");
            assert!(inb.carry.is_empty());
        }
    }

    #[test]
    fn relay_frames_and_templates() {
        let mut inb = Inbound::default();
        let got = events(
            &mut inb,
            Target::TokioRelay,
            &[b"ok lg-0", b"{\"lg_t\":\"1\"}", b"err unknown command"],
        );
        assert_eq!(got, vec!["ok", "d:{\"lg_t\":\"1\"}", "err:unknown command"]);
        let t = publish(Target::NodeWs, "realtime:lg-3", b"{xy}", 1);
        assert_eq!(t.bytes, b"pub lg-3 {xy}");
        assert_eq!(&t.bytes[t.ts_at..t.ts_at + 2], b"xy");
        assert!(!t.binary);
        let t = publish(Target::Nats, "realtime:lg-3", b"{xy}", 1);
        assert_eq!(t.bytes, b"PUB lg-3 4\r\n{xy}\r\n");
        assert_eq!(&t.bytes[t.ts_at..t.ts_at + 2], b"xy");
        assert!(t.binary);
    }

    #[test]
    fn attach_messages() {
        let topics = ["realtime:lg-0".to_string(), "realtime:lg-1".to_string()];
        let (m, n) = attach(Target::Nats, &topics);
        assert_eq!(n, 1);
        let s = String::from_utf8(m[0].0.clone()).unwrap();
        assert!(s.starts_with("CONNECT {"));
        assert!(s.ends_with("\r\nSUB lg-0 1\r\nSUB lg-1 2\r\nPING\r\n"));
        let (m, n) = attach(Target::NodeWs, &topics);
        assert_eq!(n, 2);
        assert_eq!(m[1], (b"sub lg-1".to_vec(), false));
    }
}
