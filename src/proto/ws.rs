//! WebSocket framing (RFC 6455), server side, sans-io.
//!
//! - Outbound: [`FrameBuilder`] encodes one unmasked server frame in place: it
//!   reserves [`MAX_HEADER_LEN`] bytes, lets the caller append the payload, and
//!   back-patches the header into the tail of the gap, so a fan-out message is
//!   encoded once into one buffer and shared as [`Bytes`] without copies.
//! - Inbound: [`Decoder`] turns masked client frames into whole [`Message`]s,
//!   reassembling fragments and enforcing the size limit from the header
//!   before any body is buffered.
//! - Handshake: [`accept_key`] and [`handshake_response`] (no subprotocols, no
//!   extensions: the server never negotiates permessage-deflate).
//!
//! Header parsing is done here rather than with tungstenite's
//! `FrameHeader::parse`: that API reads through an `io::Cursor`, reports the
//! length only once the mask key has arrived too, and returns tungstenite's
//! I/O-capable error type; the format is ten lines of bit twiddling, and doing
//! it ourselves lets the size limit be applied as soon as the length field is
//! complete and keeps every error a `&'static str`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Longest header of a server frame: 2 bytes + 8-byte extended length
/// (server frames are never masked, so there is no mask key).
pub const MAX_HEADER_LEN: usize = 10;

/// Longest payload of a control frame (Close, Ping, Pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode (RFC 6455 section 5.2). Reserved opcodes are not
/// representable; the decoder rejects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented Text or Binary message.
    Continuation,
    /// 0x1: a text message (UTF-8 is not validated by this server).
    Text,
    /// 0x2: a binary message.
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Parses a 4-bit wire value; reserved values give `None`.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, Ping and Pong are control opcodes.
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// Length of the header of an unmasked frame carrying `len` payload bytes.
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// Builds ONE unmasked server frame in place (FIN set).
///
/// `new` allocates the buffer with [`MAX_HEADER_LEN`] bytes of gap in front;
/// the payload is appended through [`body`](Self::body); [`finish`](Self::finish)
/// writes the header into the end of the gap and returns the frame starting at
/// the header. No byte of the payload is copied after it is encoded; the only
/// allocations are the buffer (growing like a `Vec` if the hint was short) and,
/// when the buffer is not exactly full, the small shared header `Bytes` needs.
///
/// ```
/// use realtime::proto::ws::{FrameBuilder, OpCode};
/// let mut fb = FrameBuilder::new(OpCode::Text, 16);
/// fb.body().extend_from_slice(b"hello");
/// assert_eq!(&fb.finish()[..], b"\x81\x05hello");
/// ```
#[derive(Debug)]
pub struct FrameBuilder {
    /// Header gap (first `MAX_HEADER_LEN` bytes) followed by the payload.
    buf: BytesMut,
    /// The opcode written into the header by `finish`.
    opcode: OpCode,
}

impl FrameBuilder {
    /// Starts a frame, reserving room for the header plus `body_capacity_hint`
    /// payload bytes.
    pub fn new(opcode: OpCode, body_capacity_hint: usize) -> Self {
        let mut buf = BytesMut::with_capacity(MAX_HEADER_LEN.saturating_add(body_capacity_hint));
        buf.put_bytes(0, MAX_HEADER_LEN);
        FrameBuilder { buf, opcode }
    }

    /// The buffer to append the payload to. **Append only**: its first
    /// [`MAX_HEADER_LEN`] bytes are the header gap, so do not clear, truncate
    /// or read it as the body (use [`body_len`](Self::body_len) for the
    /// payload length). Every encoder in `proto` only appends.
    pub fn body(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Number of payload bytes appended so far.
    pub fn body_len(&self) -> usize {
        self.buf.len().saturating_sub(MAX_HEADER_LEN)
    }

    /// Writes the header right before the payload and returns the whole frame.
    pub fn finish(self) -> Bytes {
        let FrameBuilder { mut buf, opcode } = self;
        if buf.len() < MAX_HEADER_LEN {
            // Only reachable if a caller broke the append-only rule; restore
            // an empty body rather than panic.
            buf.clear();
            buf.put_bytes(0, MAX_HEADER_LEN);
        }
        let len = buf.len() - MAX_HEADER_LEN;
        let start = MAX_HEADER_LEN - header_len(len);
        let head = &mut buf[start..MAX_HEADER_LEN];
        head[0] = 0x80 | opcode.as_u8();
        match head.len() {
            2 => head[1] = len as u8,
            4 => {
                head[1] = 126;
                head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                head[1] = 127;
                head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            }
        }
        // `advance` on a uniquely owned BytesMut only moves its start pointer.
        buf.advance(start);
        buf.freeze()
    }
}

/// One complete unmasked server frame (FIN set) carrying `payload`.
pub fn server_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut fb = FrameBuilder::new(opcode, payload.len());
    fb.body().extend_from_slice(payload);
    fb.finish()
}

/// A Close frame with `code` and `reason`; the reason is cut (at a character
/// boundary) so the payload stays within the 125-byte control frame limit.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut fb = FrameBuilder::new(OpCode::Close, 2 + end);
    fb.body().put_u16(code);
    fb.body().extend_from_slice(&reason.as_bytes()[..end]);
    fb.finish()
}

/// A masked client frame, as a browser would send it. Servers never send
/// these; this exists for tests, fuzzers and load generators.
pub fn client_frame(opcode: OpCode, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let len = payload.len();
    let mut out = Vec::with_capacity(header_len(len) + 4 + len);
    out.push(if fin { 0x80 } else { 0 } | opcode.as_u8());
    match header_len(len) {
        2 => out.push(0x80 | len as u8),
        4 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
    out
}

/// XORs `buf` with the 4-byte `mask` (masking and unmasking are the same
/// operation). Works eight bytes at a time; the compiler vectorises the loop.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Whole chunks are a multiple of 4 bytes, so the mask phase restarts at 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A complete message from the client. Data payloads are reassembled from
/// fragments; control frames are delivered as they arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (bytes as received; UTF-8 not validated).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; the server should answer with a Pong carrying the same bytes.
    Ping(Bytes),
    /// A pong (unsolicited or answering our ping).
    Pong(Bytes),
    /// A close, with status code and reason when the payload had them.
    Close(Option<(u16, Bytes)>),
}

/// A fatal framing error: the connection must be closed with
/// [`close_code`](Self::close_code) and the decoder discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// The peer broke RFC 6455 (close with 1002, no retry: the client is buggy).
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    /// A frame or reassembled message exceeds the configured maximum
    /// (close with 1009; retrying the same message will fail again).
    #[error("websocket message too big")]
    TooBig,
}

impl WsError {
    /// The close code to send: 1002 (protocol error) or 1009 (message too big).
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::TooBig => 1009,
        }
    }
}

/// Whether a close code may appear in a Close frame on the wire (RFC 6455
/// section 7.4 plus the IANA registry; 1004-1006 and 1015 are local-only).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Decodes client frames into [`Message`]s.
#[derive(Debug)]
pub struct Decoder {
    /// Largest frame payload / reassembled message accepted (bytes).
    max_message_size: usize,
    /// A fragmented Text/Binary message being reassembled: (is_text, bytes so far).
    partial: Option<(bool, BytesMut)>,
}

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    /// Header length including the mask key.
    header_len: usize,
    /// Payload length (already checked against the limits).
    payload_len: usize,
}

impl Decoder {
    /// A decoder accepting frames and reassembled messages up to
    /// `max_message_size` payload bytes (control frames are always <= 125).
    pub fn new(max_message_size: usize) -> Self {
        Decoder {
            max_message_size,
            partial: None,
        }
    }

    /// Decodes the next complete message from the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed (room for them has been
    /// reserved in `buf`). `Ok(Some(_))` consumed exactly the frames of that
    /// message (fragments of a message still open stay in the decoder).
    /// An error is fatal: close the connection with [`WsError::close_code`].
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        loop {
            let header = match self.parse_header(buf)? {
                Ok(h) => h,
                Err(need) => {
                    buf.reserve(need - buf.len());
                    return Ok(None);
                }
            };
            let total = header.header_len + header.payload_len;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                return Ok(None);
            }
            let mut payload = buf.split_to(total);
            payload.advance(header.header_len);
            apply_mask(&mut payload, header.mask);

            match header.opcode {
                OpCode::Ping => return Ok(Some(Message::Ping(payload.freeze()))),
                OpCode::Pong => return Ok(Some(Message::Pong(payload.freeze()))),
                OpCode::Close => return close_message(payload).map(Some),
                OpCode::Text | OpCode::Binary if header.fin => {
                    let payload = payload.freeze();
                    return Ok(Some(if header.opcode == OpCode::Text {
                        Message::Text(payload)
                    } else {
                        Message::Binary(payload)
                    }));
                }
                OpCode::Text | OpCode::Binary => {
                    self.partial = Some((header.opcode == OpCode::Text, payload));
                }
                OpCode::Continuation => {
                    // parse_header guarantees a message is open.
                    if let Some((_, acc)) = self.partial.as_mut() {
                        acc.extend_from_slice(&payload);
                    }
                    if header.fin {
                        if let Some((is_text, acc)) = self.partial.take() {
                            let acc = acc.freeze();
                            return Ok(Some(if is_text {
                                Message::Text(acc)
                            } else {
                                Message::Binary(acc)
                            }));
                        }
                    }
                }
            }
        }
    }

    /// Parses and validates the header at the front of `buf`: `Ok(Ok(h))`,
    /// `Ok(Err(n))` when at least `n` bytes are needed to go on, or the error.
    fn parse_header(&self, buf: &[u8]) -> Result<Result<Header, usize>, WsError> {
        if buf.len() < 2 {
            return Ok(Err(2));
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set"));
        }
        let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(WsError::Protocol("reserved opcode"))?;
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            if !fin {
                return Err(WsError::Protocol("fragmented control frame"));
            }
            if len7 as usize > MAX_CONTROL_PAYLOAD {
                return Err(WsError::Protocol("control frame payload over 125 bytes"));
            }
        } else if opcode == OpCode::Continuation {
            if self.partial.is_none() {
                return Err(WsError::Protocol("continuation frame without a message"));
            }
        } else if self.partial.is_some() {
            return Err(WsError::Protocol("data frame inside a fragmented message"));
        }
        if b1 & 0x80 == 0 {
            return Err(WsError::Protocol("unmasked client frame"));
        }
        let (ext, len) = match len7 {
            126 => {
                if buf.len() < 4 {
                    return Ok(Err(4));
                }
                (2, u64::from(u16::from_be_bytes([buf[2], buf[3]])))
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(Err(10));
                }
                let mut be = [0u8; 8];
                be.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(WsError::Protocol("payload length has its high bit set"));
                }
                (8, len)
            }
            n => (0, u64::from(n)),
        };
        // Decided before any of the body is buffered. Non-minimal length
        // encodings are tolerated (as browsers' peers commonly do).
        if !opcode.is_control() {
            let already = self.partial.as_ref().map_or(0, |(_, acc)| acc.len()) as u64;
            if already.saturating_add(len) > self.max_message_size as u64 {
                return Err(WsError::TooBig);
            }
        }
        let header_len = 2 + ext + 4;
        if buf.len() < header_len {
            return Ok(Err(header_len));
        }
        let mask = [buf[2 + ext], buf[3 + ext], buf[4 + ext], buf[5 + ext]];
        Ok(Ok(Header {
            fin,
            opcode,
            mask,
            header_len,
            // Fits: bounded by max_message_size (a usize) or by 125.
            payload_len: len as usize,
        }))
    }
}

/// Interprets an unmasked Close payload.
fn close_message(mut payload: BytesMut) -> Result<Message, WsError> {
    match payload.len() {
        0 => Ok(Message::Close(None)),
        1 => Err(WsError::Protocol("close frame with a 1-byte payload")),
        _ => {
            let code = payload.get_u16();
            if !is_valid_close_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            Ok(Message::Close(Some((code, payload.freeze()))))
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (surrounding
/// whitespace ignored).
pub fn accept_key(sec_websocket_key: &[u8]) -> String {
    tungstenite::handshake::derive_accept_key(sec_websocket_key.trim_ascii())
}

/// The complete `101 Switching Protocols` response (no subprotocol, no
/// extensions), ready to write to the socket.
pub fn handshake_response(sec_websocket_key: &[u8]) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(sec_websocket_key)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn decode_all(dec: &mut Decoder, bytes: &[u8]) -> Result<Vec<Message>, WsError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = dec.decode(&mut buf)? {
            out.push(m);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    fn text(s: &'static [u8]) -> Message {
        Message::Text(Bytes::from_static(s))
    }

    fn one(bytes: &[u8]) -> Result<Message, WsError> {
        let mut v = decode_all(&mut Decoder::new(1 << 20), bytes)?;
        assert_eq!(v.len(), 1);
        Ok(v.remove(0))
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 section 5.7: single-frame masked text "Hello".
        let frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
        assert_eq!(one(frame), Ok(text(b"Hello")));
        // Fragmented unmasked examples, masked here: "Hel" + "lo".
        let mut two = client_frame(OpCode::Text, false, b"Hel", MASK);
        two.extend(client_frame(OpCode::Continuation, true, b"lo", MASK));
        assert_eq!(one(&two), Ok(text(b"Hello")));
        // Unmasked server frames from the same section.
        assert_eq!(&server_frame(OpCode::Text, b"Hello")[..], b"\x81\x05Hello");
        assert_eq!(&server_frame(OpCode::Ping, b"Hello")[..], b"\x89\x05Hello");
    }

    #[test]
    fn frame_builder_header_sizes() {
        for (len, head) in [
            (0usize, vec![0x82, 0]),
            (125, vec![0x82, 125]),
            (126, vec![0x82, 126, 0, 126]),
            (65535, vec![0x82, 126, 0xff, 0xff]),
            (65536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let payload = vec![0xab; len];
            for hint in [0, len, len + 100] {
                let mut fb = FrameBuilder::new(OpCode::Binary, hint);
                fb.body().extend_from_slice(&payload);
                assert_eq!(fb.body_len(), len);
                let body_ptr = fb.body()[MAX_HEADER_LEN..].as_ptr();
                let frame = fb.finish();
                assert_eq!(&frame[..head.len()], &head[..]);
                assert_eq!(&frame[head.len()..], &payload[..]);
                // The payload was not moved: the header was patched in front.
                assert_eq!(frame[head.len()..].as_ptr(), body_ptr);
            }
        }
    }

    #[test]
    fn close_frames() {
        assert_eq!(&close_frame(1000, "")[..], b"\x88\x02\x03\xe8");
        assert_eq!(&close_frame(1012, "bye")[..], b"\x88\x05\x03\xf4bye");
        let long = "é".repeat(100);
        let f = close_frame(1001, &long);
        assert_eq!(f[1] as usize, f.len() - 2);
        assert!(f.len() - 2 <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
        // Round trip through the decoder (masked like a client).
        let c = client_frame(OpCode::Close, true, &f[2..], MASK);
        let Message::Close(Some((code, reason))) = one(&c).unwrap() else {
            panic!()
        };
        assert_eq!(code, 1001);
        assert_eq!(reason, &f[4..]);
    }

    #[test]
    fn close_payloads() {
        let c = |p: &[u8]| one(&client_frame(OpCode::Close, true, p, MASK));
        assert_eq!(c(b""), Ok(Message::Close(None)));
        let one_byte = WsError::Protocol("close frame with a 1-byte payload");
        assert_eq!(c(b"\x03"), Err(one_byte));
        let normal = Message::Close(Some((1000, Bytes::new())));
        assert_eq!(c(b"\x03\xe8"), Ok(normal));
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(c(&bad.to_be_bytes()).is_err(), "{bad}");
        }
        for good in [1000u16, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(c(&good.to_be_bytes()).is_ok(), "{good}");
        }
    }

    #[test]
    fn control_frames_interleave_with_fragments() {
        let mut bytes = client_frame(OpCode::Binary, false, b"ab", MASK);
        bytes.extend(client_frame(OpCode::Ping, true, b"p", MASK));
        bytes.extend(client_frame(OpCode::Continuation, false, b"", MASK));
        bytes.extend(client_frame(OpCode::Pong, true, b"q", MASK));
        bytes.extend(client_frame(OpCode::Continuation, true, b"cd", MASK));
        let msgs = decode_all(&mut Decoder::new(100), &bytes).unwrap();
        assert_eq!(
            msgs,
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                Message::Pong(Bytes::from_static(b"q")),
                Message::Binary(Bytes::from_static(b"abcd")),
            ]
        );
    }

    #[test]
    fn protocol_errors() {
        let frame = |op, fin, p: &[u8]| client_frame(op, fin, p, MASK);
        let mut nested = frame(OpCode::Text, false, b"x");
        nested.extend(frame(OpCode::Text, true, b"y"));
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\x81\x01a".to_vec(), "unmasked client frame"),
            (frame(OpCode::Ping, false, b""), "fragmented control frame"),
            (
                frame(OpCode::Ping, true, &[0; 126]),
                "control frame payload over 125 bytes",
            ),
            (
                frame(OpCode::Continuation, true, b"x"),
                "continuation frame without a message",
            ),
            (nested, "data frame inside a fragmented message"),
            (
                vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0],
                "payload length has its high bit set",
            ),
        ];
        for rsv in [0x40, 0x20, 0x10] {
            cases.push((vec![0x81 | rsv, 0x80, 0, 0, 0, 0], "reserved bits set"));
        }
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            cases.push((vec![0x80 | op, 0x80, 0, 0, 0, 0], "reserved opcode"));
        }
        for (bytes, why) in cases {
            let got = decode_all(&mut Decoder::new(1000), &bytes);
            assert_eq!(got, Err(WsError::Protocol(why)), "{bytes:x?}");
        }
        assert_eq!(WsError::Protocol("x").close_code(), 1002);
        assert_eq!(WsError::TooBig.close_code(), 1009);
    }

    #[test]
    fn too_big_is_decided_from_the_header() {
        let mut dec = Decoder::new(5_000_000);
        // Header announcing 5 MB + 1, no body, no mask key yet.
        let mut buf = BytesMut::from(&[0x82u8, 0xff, 0, 0, 0, 0, 0, 0x4c, 0x4b, 0x41][..]);
        assert_eq!(dec.decode(&mut buf), Err(WsError::TooBig));
        let mut buf = BytesMut::from(&[0x82u8, 0xfe, 0x01, 0x00][..]);
        assert_eq!(Decoder::new(255).decode(&mut buf), Err(WsError::TooBig));
        // Exactly the limit is fine.
        let f = client_frame(OpCode::Binary, true, &[7; 256], MASK);
        assert!(one(&f).is_ok());
        assert!(decode_all(&mut Decoder::new(256), &f).is_ok());
        // Reassembled size counts.
        let mut dec = Decoder::new(10);
        let mut b = client_frame(OpCode::Text, false, &[1; 6], MASK);
        b.extend(client_frame(OpCode::Continuation, true, &[1; 5], MASK));
        assert_eq!(decode_all(&mut dec, &b), Err(WsError::TooBig));
        // Control frames are not subject to the (tiny) limit.
        let ping = client_frame(OpCode::Ping, true, &[1; 100], MASK);
        assert!(decode_all(&mut Decoder::new(10), &ping).is_ok());
    }

    #[test]
    fn incomplete_input_needs_more_and_reserves() {
        let frame = client_frame(OpCode::Text, true, &[b'x'; 300], MASK);
        let mut dec = Decoder::new(1000);
        let mut buf = BytesMut::new();
        for (i, b) in frame.iter().enumerate() {
            assert_eq!(dec.decode(&mut buf), Ok(None), "byte {i}");
            assert_eq!(buf.len(), i);
            if i >= 8 {
                assert!(buf.capacity() >= frame.len());
            }
            buf.put_u8(*b);
        }
        let want = Message::Text(Bytes::from(vec![b'x'; 300]));
        assert_eq!(dec.decode(&mut buf), Ok(Some(want)));
        assert!(buf.is_empty());
        assert_eq!(dec.decode(&mut buf), Ok(None));
    }

    #[test]
    fn consumes_exactly_one_message() {
        let mut bytes = client_frame(OpCode::Text, true, b"one", MASK);
        bytes.extend(client_frame(OpCode::Binary, true, b"two", MASK));
        bytes.extend(&client_frame(OpCode::Text, true, b"three", MASK)[..3]);
        let mut buf = BytesMut::from(&bytes[..]);
        let mut dec = Decoder::new(100);
        assert_eq!(dec.decode(&mut buf), Ok(Some(text(b"one"))));
        let two = Message::Binary(Bytes::from_static(b"two"));
        assert_eq!(dec.decode(&mut buf), Ok(Some(two)));
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn masking_is_an_involution() {
        let orig: Vec<u8> = (0..40).collect();
        let mut v = orig.clone();
        apply_mask(&mut v, MASK);
        assert!(v
            .iter()
            .zip(&orig)
            .enumerate()
            .all(|(i, (a, b))| *a == b ^ MASK[i % 4]));
        apply_mask(&mut v, MASK);
        assert_eq!(v, orig);
    }

    #[test]
    fn handshake() {
        // RFC 6455 section 1.3.
        let want = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), want);
        assert_eq!(accept_key(b" dGhlIHNhbXBsZSBub25jZQ== "), want);
        assert_eq!(
            handshake_response(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                .to_vec()
        );
    }

    #[test]
    fn opcodes() {
        for v in 0..16u8 {
            if let Some(op) = OpCode::from_u8(v) {
                assert_eq!(op.as_u8(), v);
                assert_eq!(op.is_control(), v >= 8);
            }
        }
    }

    fn arb_message() -> impl Strategy<Value = (OpCode, Vec<u8>)> {
        use proptest::collection::vec;
        let ops = [OpCode::Text, OpCode::Binary, OpCode::Ping, OpCode::Pong];
        let max_len = [70_000, 300, 126, 126];
        (0..4usize).prop_flat_map(move |i| (Just(ops[i]), vec(any::<u8>(), 0..max_len[i])))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Client frames (optionally fragmented) fed in random chunks come
        /// back as the original messages.
        #[test]
        fn round_trip_in_chunks(
            msgs in proptest::collection::vec((arb_message(), 1usize..4), 1..6),
            mask in any::<[u8; 4]>(),
            chunk in 1usize..5000,
        ) {
            let mut wire = Vec::new();
            for ((op, payload), nr_fragments) in &msgs {
                if op.is_control() || *nr_fragments == 1 {
                    wire.extend(client_frame(*op, true, payload, mask));
                    continue;
                }
                let step = payload.len() / nr_fragments + 1;
                let parts: Vec<&[u8]> = payload.chunks(step).collect();
                let parts = if parts.is_empty() { vec![&payload[..]] } else { parts };
                for (i, part) in parts.iter().enumerate() {
                    let code = if i == 0 { *op } else { OpCode::Continuation };
                    wire.extend(client_frame(code, i + 1 == parts.len(), part, mask));
                }
            }
            let mut dec = Decoder::new(100_000);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(m) = dec.decode(&mut buf).unwrap() {
                    got.push(m);
                }
            }
            prop_assert!(buf.is_empty());
            let want: Vec<Message> = msgs.iter().map(|((op, p), _)| {
                let p = Bytes::from(p.clone());
                match op {
                    OpCode::Text => Message::Text(p),
                    OpCode::Binary => Message::Binary(p),
                    OpCode::Ping => Message::Ping(p),
                    _ => Message::Pong(p),
                }
            }).collect();
            prop_assert_eq!(got, want);
        }

        /// Server frames parse back (header + payload) for any length.
        #[test]
        fn server_frame_layout(len in 0usize..70_000, op in 0usize..3) {
            let op = [OpCode::Text, OpCode::Binary, OpCode::Close][op];
            let payload = vec![0x5a; len];
            let f = server_frame(op, &payload);
            prop_assert_eq!(f[0], 0x80 | op.as_u8());
            let (hl, l) = match f[1] {
                126 => (4, u16::from_be_bytes([f[2], f[3]]) as usize),
                127 => (10, u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize),
                n => (2, n as usize),
            };
            prop_assert_eq!(l, len);
            prop_assert_eq!(&f[hl..], &payload[..]);
        }

        /// Arbitrary bytes in arbitrary chunks never panic, and the decoder
        /// never buffers more than the limit plus one header.
        #[test]
        fn random_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000),
            chunk in 1usize..64,
            max in 0usize..300,
        ) {
            let mut dec = Decoder::new(max);
            let mut buf = BytesMut::new();
            'outer: for piece in bytes.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    match dec.decode(&mut buf) {
                        Ok(Some(Message::Text(b) | Message::Binary(b))) => {
                            prop_assert!(b.len() <= max)
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
        }
    }
}
