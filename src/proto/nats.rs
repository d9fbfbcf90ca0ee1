//! The NATS client protocol, sans-io: what a node of a cluster sends to
//! nats-server and reads back (https://docs.nats.io/reference/reference-protocols/nats-protocol).
//!
//! A connection is a stream of operations, each a control line ending in
//! CRLF, some followed by a payload of a stated length and CRLF. The
//! server sends `INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK` and `-ERR`;
//! the client `CONNECT`, `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING` and `PONG`.
//! [`Decoder`] reads the server's side from a `BytesMut`, taking payloads
//! out as shared `Bytes` without copying; the `write_*` functions append the
//! client's side. Subjects are built by [`subject`] from tenant and topic
//! names escaped so that no name can become a separator or a wildcard.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::json::write_u64;

/// The longest control line read (nats-server's own default for what it
/// accepts, `max_control_line`).
pub const MAX_CONTROL_LINE: usize = 4096;

/// What a server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    /// The server's description (JSON, kept as text).
    Info(Bytes),
    /// A message on a subscription.
    Msg(Msg),
    Ping,
    Pong,
    Ok,
    /// The error text, quotes removed (`'Authorization Violation'`).
    Err(String),
}

/// One delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub subject: Bytes,
    pub sid: u64,
    pub reply: Option<Bytes>,
    /// The header block (`NATS/1.0` ... CRLF CRLF) of an `HMSG`.
    pub headers: Option<Bytes>,
    pub payload: Bytes,
}

/// Why the server's stream cannot be read further. Every one ends the
/// connection: nothing after it can be framed with certainty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatsError {
    #[error("control line longer than {MAX_CONTROL_LINE} bytes")]
    LineTooLong,
    #[error("unknown operation `{0}`")]
    UnknownOp(String),
    #[error("malformed `{op}` line: {why}")]
    Malformed { op: &'static str, why: &'static str },
    #[error("payload of {len} bytes is over the limit of {max}")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("payload not followed by CRLF")]
    MissingPayloadEnd,
}

/// Reads server operations out of a buffer that grows as bytes arrive.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// The largest payload accepted (the server's `max_payload` once its
    /// `INFO` is known).
    pub max_payload: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        // nats-server's default max_payload.
        Decoder {
            max_payload: 1024 * 1024,
        }
    }
}

impl Decoder {
    /// The next whole operation at the front of `buf`, removed from it;
    /// `None` until one has arrived in full.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<ServerOp>, NatsError> {
        let Some(end) = find_crlf(buf) else {
            return if buf.len() > MAX_CONTROL_LINE {
                Err(NatsError::LineTooLong)
            } else {
                Ok(None)
            };
        };
        if end > MAX_CONTROL_LINE {
            return Err(NatsError::LineTooLong);
        }
        let line = &buf[..end];
        let (op, rest) = split_op(line);
        let op = op.to_ascii_uppercase();
        let simple = |buf: &mut BytesMut, op: ServerOp| {
            buf.advance(end + 2);
            Ok(Some(op))
        };
        match op.as_slice() {
            b"PING" => simple(buf, ServerOp::Ping),
            b"PONG" => simple(buf, ServerOp::Pong),
            b"+OK" => simple(buf, ServerOp::Ok),
            b"-ERR" => {
                let text = String::from_utf8_lossy(trim(rest));
                let text = text.trim_matches('\'').to_owned();
                simple(buf, ServerOp::Err(text))
            }
            b"INFO" => {
                let start = end - rest.len();
                let mut line = buf.split_to(end + 2);
                line.truncate(end);
                let json = line.split_off(start).freeze();
                Ok(Some(ServerOp::Info(trim_bytes(json))))
            }
            b"MSG" => self.message(buf, end, rest.len(), false),
            b"HMSG" => self.message(buf, end, rest.len(), true),
            _ => Err(NatsError::UnknownOp(
                String::from_utf8_lossy(&op[..op.len().min(16)]).into_owned(),
            )),
        }
    }

    /// A `MSG` or `HMSG` whose control line ends at `end`, its arguments
    /// the last `args_len` bytes of it.
    fn message(
        &self,
        buf: &mut BytesMut,
        end: usize,
        args_len: usize,
        headers: bool,
    ) -> Result<Option<ServerOp>, NatsError> {
        let op = if headers { "HMSG" } else { "MSG" };
        let args_at = end - args_len;
        let mut spans = [(0usize, 0usize); 5];
        let mut n = 0;
        for span in tokens(&buf[args_at..end]) {
            if n == spans.len() {
                return Err(NatsError::Malformed {
                    op,
                    why: "too many arguments",
                });
            }
            spans[n] = (args_at + span.0, args_at + span.1);
            n += 1;
        }
        let sizes = if headers { 2 } else { 1 };
        if n < 2 + sizes || n > 3 + sizes {
            return Err(NatsError::Malformed {
                op,
                why: "wrong number of arguments",
            });
        }
        let number = |i: usize| -> Result<usize, NatsError> {
            let (a, b) = spans[i];
            parse_usize(&buf[a..b]).ok_or(NatsError::Malformed {
                op,
                why: "not a number",
            })
        };
        let sid = number(1)? as u64;
        let total = number(n - 1)?;
        let header_len = if headers { number(n - 2)? } else { 0 };
        if header_len > total {
            return Err(NatsError::Malformed {
                op,
                why: "header size over total size",
            });
        }
        if total > self.max_payload {
            return Err(NatsError::PayloadTooLarge {
                len: total,
                max: self.max_payload,
            });
        }
        let has_reply = n == 3 + sizes;
        let need = end + 2 + total + 2;
        if buf.len() < need {
            buf.reserve(need - buf.len());
            return Ok(None);
        }
        if &buf[need - 2..need] != b"\r\n" {
            return Err(NatsError::MissingPayloadEnd);
        }
        let line = buf.split_to(end + 2).freeze();
        let mut body = buf.split_to(total + 2).freeze();
        body.truncate(total);
        let headers = headers.then(|| body.split_to(header_len));
        let (sa, sb) = spans[0];
        let reply = has_reply.then(|| line.slice(spans[2].0..spans[2].1));
        Ok(Some(ServerOp::Msg(Msg {
            subject: line.slice(sa..sb),
            sid,
            reply,
            headers,
            payload: body,
        })))
    }
}

/// Why an operation could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("`{0}` is not a valid subject (empty, an empty token, or white space)")]
    BadSubject(String),
    #[error("`{0}` is not a valid queue group")]
    BadQueue(String),
}

/// Appends `CONNECT` with `options` (a JSON object, built by the caller)
/// and a `PING`, whose `PONG` says the server took it.
pub fn write_connect(out: &mut BytesMut, options: &str) {
    out.put_slice(b"CONNECT ");
    out.put_slice(options.as_bytes());
    out.put_slice(b"\r\nPING\r\n");
}

/// Appends `PUB subject [reply] len` and the payload.
pub fn write_pub(
    out: &mut BytesMut,
    subject: &[u8],
    reply: Option<&[u8]>,
    payload: &[u8],
) -> Result<(), WriteError> {
    check_subject(subject)?;
    if let Some(r) = reply {
        check_subject(r)?;
    }
    out.reserve(subject.len() + payload.len() + 32);
    out.put_slice(b"PUB ");
    out.put_slice(subject);
    if let Some(r) = reply {
        out.put_u8(b' ');
        out.put_slice(r);
    }
    out.put_u8(b' ');
    write_u64(out, payload.len() as u64);
    out.put_slice(b"\r\n");
    out.put_slice(payload);
    out.put_slice(b"\r\n");
    Ok(())
}

/// Appends `SUB subject [queue] sid`.
pub fn write_sub(
    out: &mut BytesMut,
    subject: &[u8],
    queue: Option<&[u8]>,
    sid: u64,
) -> Result<(), WriteError> {
    check_subject(subject)?;
    if let Some(q) = queue {
        if q.is_empty()
            || q.iter()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(WriteError::BadQueue(String::from_utf8_lossy(q).into()));
        }
    }
    out.put_slice(b"SUB ");
    out.put_slice(subject);
    if let Some(q) = queue {
        out.put_u8(b' ');
        out.put_slice(q);
    }
    out.put_u8(b' ');
    write_u64(out, sid);
    out.put_slice(b"\r\n");
    Ok(())
}

/// Appends `UNSUB sid`.
pub fn write_unsub(out: &mut BytesMut, sid: u64) {
    out.put_slice(b"UNSUB ");
    write_u64(out, sid);
    out.put_slice(b"\r\n");
}

/// Appends `PING`.
pub fn write_ping(out: &mut BytesMut) {
    out.put_slice(b"PING\r\n");
}

/// Appends `PONG`.
pub fn write_pong(out: &mut BytesMut) {
    out.put_slice(b"PONG\r\n");
}

/// A subject is tokens of visible ASCII or UTF-8 separated by single dots.
fn check_subject(s: &[u8]) -> Result<(), WriteError> {
    let bad = s.is_empty()
        || s.split(|&b| b == b'.').any(<[u8]>::is_empty)
        || s.iter()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    if bad {
        Err(WriteError::BadSubject(String::from_utf8_lossy(s).into()))
    } else {
        Ok(())
    }
}

/// Builds the subject `prefix.name1.name2...`: `prefix` is the project's
/// own (dotted, wildcards allowed, e.g. `rt.b` or `rt.b.*`), each name one
/// token escaped by [`escape_token`], so a tenant or topic name, whatever
/// it holds, is exactly one literal token.
pub fn subject(prefix: &str, names: &[&[u8]]) -> String {
    let mut s =
        String::with_capacity(prefix.len() + names.iter().map(|n| n.len() + 2).sum::<usize>());
    s.push_str(prefix);
    for n in names {
        s.push('.');
        escape_token(&mut s, n);
    }
    s
}

/// Appends `name` as one subject token: `_` then the name with every byte
/// outside `[A-Za-z0-9-]` as `%XX` (`_` too, so the escape is one to one).
/// The leading `_` keeps the token non-empty and never `*` or `>`.
pub fn escape_token(out: &mut String, name: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('_');
    for &b in name {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// The name [`escape_token`] made `token` from; `None` if it is not one
/// of its tokens.
pub fn unescape_token(token: &[u8]) -> Option<Vec<u8>> {
    let rest = token.strip_prefix(b"_")?;
    let mut out = Vec::with_capacity(rest.len());
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'%' => {
                let hex = rest.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                // Only the escape's own form: upper-case hex of a byte it
                // would not have left as is.
                if hex.iter().any(u8::is_ascii_lowercase) || v.is_ascii_alphanumeric() || v == b'-'
                {
                    return None;
                }
                out.push(v);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'-' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(out)
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    let limit = buf.len().min(MAX_CONTROL_LINE + 2);
    buf[..limit].windows(2).position(|w| w == b"\r\n")
}

/// The operation name and what follows it.
fn split_op(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, &[]),
    }
}

/// Spans of the space- or tab-separated arguments of `args`.
fn tokens(args: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < args.len() && (args[i] == b' ' || args[i] == b'\t') {
            i += 1;
        }
        if i == args.len() {
            return None;
        }
        let start = i;
        while i < args.len() && args[i] != b' ' && args[i] != b'\t' {
            i += 1;
        }
        Some((start, i))
    })
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

fn trim_bytes(b: Bytes) -> Bytes {
    let t = trim(&b);
    let start = t.as_ptr() as usize - b.as_ptr() as usize;
    b.slice(start..start + t.len())
}

/// A decimal with no sign, at most 19 digits (no overflow).
fn parse_usize(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0usize, |n, d| {
        n.checked_mul(10)?.checked_add((d - b'0') as usize)
    })
}

#[cfg(test)]
#[path = "nats_tests.rs"]
mod tests;
