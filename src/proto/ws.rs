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
    /// Boxed: rare, and the decoder sits in every idle socket's reader.
    partial: Option<Box<(bool, BytesMut)>>,
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
                    self.partial = Some(Box::new((header.opcode == OpCode::Text, payload)));
                }
                OpCode::Continuation => {
                    // parse_header guarantees a message is open.
                    if let Some(partial) = self.partial.as_mut() {
                        partial.1.extend_from_slice(&payload);
                    }
                    if header.fin {
                        if let Some(partial) = self.partial.take() {
                            let (is_text, acc) = *partial;
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
            let already = self.partial.as_ref().map_or(0, |p| p.1.len()) as u64;
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
    use base64::Engine;
    use sha1::{Digest, Sha1};
    /// The fixed GUID RFC 6455 appends to the client's key.
    const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut h = Sha1::new();
    h.update(sec_websocket_key.trim_ascii());
    h.update(WS_GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
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
#[path = "ws_tests.rs"]
mod tests;
