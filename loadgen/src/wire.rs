//! Client side of WebSocket framing (RFC 6455), sans-io.
//!
//! The server crate's `proto::ws::Decoder` reads *client* frames (masked);
//! a load generator reads *server* frames (never masked), so the small
//! parser here is the mirror image. Outbound frames are masked with a key
//! chosen per connection ([`Mask`]); since masking is a plain XOR by
//! position, a publisher masks its frame template once and later patches
//! only the bytes that change ([`Mask::patch`]).

use realtime::proto::ws::{apply_mask, OpCode};

/// A parsed server frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN bit: last fragment of a message.
    pub fin: bool,
    /// The raw opcode (0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    /// Bytes of header before the payload.
    pub header_len: usize,
    /// Payload bytes.
    pub payload_len: usize,
}

impl Header {
    /// Header plus payload.
    pub fn total_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Why the byte stream from the server is not valid WebSocket framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The server masked a frame (servers must not).
    Masked,
    /// Reserved bits set (no extension was negotiated).
    ReservedBits,
    /// A frame larger than the configured limit.
    TooBig(u64),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Masked => write!(f, "server sent a masked frame"),
            FrameError::ReservedBits => write!(f, "server frame with reserved bits set"),
            FrameError::TooBig(n) => write!(f, "server frame of {n} bytes over the limit"),
        }
    }
}

/// Parses the header of the server frame at the front of `buf`.
///
/// `Ok(None)`: more bytes are needed. The payload may not have arrived yet;
/// compare [`Header::total_len`] with `buf.len()`.
pub fn parse_header(buf: &[u8], max_payload: usize) -> Result<Option<Header>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (header_len, len) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (4, u64::from(u16::from_be_bytes([buf[2], buf[3]])))
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut be = [0u8; 8];
            be.copy_from_slice(&buf[2..10]);
            (10, u64::from_be_bytes(be))
        }
        n => (2, u64::from(n)),
    };
    if len > max_payload as u64 {
        return Err(FrameError::TooBig(len));
    }
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        header_len,
        payload_len: len as usize,
    }))
}

/// A connection's masking key. The RFC wants an unpredictable key per
/// frame; for a load generator talking to its own server one random key per
/// connection keeps the wire valid (every client frame is masked) while
/// letting frames be masked once and reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mask(pub [u8; 4]);

impl Mask {
    /// A key derived from `seed` with splitmix64 (never all zeroes).
    pub fn from_seed(seed: u64) -> Mask {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let b = (z as u32 | 1).to_le_bytes();
        Mask(b)
    }

    /// Writes `src` masked into `dst` as if `dst[0]` were payload byte
    /// `payload_pos` (so a field inside an already masked frame can be
    /// rewritten without re-masking the rest).
    pub fn patch(&self, dst: &mut [u8], payload_pos: usize, src: &[u8]) {
        for (i, (d, s)) in dst.iter_mut().zip(src).enumerate() {
            *d = s ^ self.0[(payload_pos + i) & 3];
        }
    }
}

/// Bytes of header a masked client frame with `len` payload bytes needs.
pub fn client_header_len(len: usize) -> usize {
    4 + match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Appends one masked, final client frame to `out`; returns the offset in
/// `out` where the (masked) payload starts.
pub fn put_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: Mask) -> usize {
    let len = payload.len();
    out.reserve(client_header_len(len) + len);
    out.push(0x80 | opcode.as_u8());
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask.0);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask.0);
    start
}

/// The fixed `Sec-WebSocket-Key` every loadgen connection sends (the value
/// from RFC 6455's example; the server only hashes it).
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The HTTP/1.1 upgrade request for `path_and_query` on `host`.
pub fn upgrade_request(host: &str, path_and_query: &str) -> Vec<u8> {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A parsed HTTP response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Bytes of the head including the blank line.
    pub head_len: usize,
    /// `Content-Length`, when present.
    pub content_length: Option<usize>,
    /// `Sec-WebSocket-Accept`, when present.
    pub accept: Option<String>,
}

/// Parses an HTTP/1.1 response head at the front of `buf`; `Ok(None)` until
/// the blank line has arrived.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, String> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 16 * 1024 {
            return Err("response head over 16 KiB".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "non-UTF-8 response head")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(format!("bad status line {status_line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status = code
        .parse()
        .map_err(|_| format!("bad status line {status_line:?}"))?;
    let mut content_length = None;
    let mut accept = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| "bad content-length")?);
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept = Some(value.to_string());
        }
    }
    Ok(Some(ResponseHead {
        status,
        head_len: end + 4,
        content_length,
        accept,
    }))
}

/// Position of `needle` in `hay` (short needles, setup paths only).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use realtime::proto::ws::{server_frame, Decoder, Message};

    #[test]
    fn parses_server_frames_of_every_length_form() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 70000] {
            let payload = vec![7u8; len];
            let frame = server_frame(OpCode::Binary, &payload);
            let h = parse_header(&frame, 1 << 20).unwrap().unwrap();
            assert!(h.fin);
            assert_eq!(h.opcode, 2);
            assert_eq!(h.payload_len, len);
            assert_eq!(h.total_len(), frame.len());
            // Every strict prefix shorter than the header asks for more.
            for cut in 0..h.header_len {
                assert_eq!(parse_header(&frame[..cut], 1 << 20).unwrap(), None);
            }
        }
    }

    #[test]
    fn rejects_masked_reserved_and_oversized() {
        let masked = put_frame(&mut Vec::new(), OpCode::Text, b"x", Mask([1, 2, 3, 4]));
        assert_eq!(masked, 6);
        let mut v = Vec::new();
        put_frame(&mut v, OpCode::Text, b"x", Mask([1, 2, 3, 4]));
        assert_eq!(parse_header(&v, 10), Err(FrameError::Masked));
        assert_eq!(parse_header(&[0xc1, 0], 10), Err(FrameError::ReservedBits));
        let big = server_frame(OpCode::Text, &[b'a'; 200]);
        assert_eq!(parse_header(&big, 100), Err(FrameError::TooBig(200)));
    }

    #[test]
    fn client_frames_decode_on_the_server_side() {
        let mask = Mask::from_seed(42);
        for len in [0usize, 1, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = vec![0xAA];
            let start = put_frame(&mut out, OpCode::Binary, &payload, mask);
            assert_eq!(start, 1 + client_header_len(len));
            let mut buf = bytes::BytesMut::from(&out[1..]);
            let msg = Decoder::new(1 << 20).decode(&mut buf).unwrap().unwrap();
            assert_eq!(msg, Message::Binary(payload.into()));
        }
    }

    #[test]
    fn patching_a_masked_frame_equals_masking_the_new_payload() {
        let mask = Mask::from_seed(7);
        let mut a = Vec::new();
        let start = put_frame(&mut a, OpCode::Text, b"{\"t\":\"0000\",\"p\":1}", mask);
        mask.patch(&mut a[start + 6..start + 10], 6, b"1234");
        let mut b = Vec::new();
        put_frame(&mut b, OpCode::Text, b"{\"t\":\"1234\",\"p\":1}", mask);
        assert_eq!(a, b);
    }

    #[test]
    fn masks_differ_by_seed_and_are_never_zero() {
        let a = Mask::from_seed(1);
        let b = Mask::from_seed(2);
        assert_ne!(a, b);
        assert_ne!(Mask::from_seed(0).0, [0; 4]);
    }

    #[test]
    fn response_heads() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: abc\r\n\r\n\x81\x00";
        let h = parse_response_head(ok).unwrap().unwrap();
        assert_eq!(h.status, 101);
        assert_eq!(h.accept.as_deref(), Some("abc"));
        assert_eq!(h.head_len, ok.len() - 2);
        assert_eq!(parse_response_head(&ok[..20]).unwrap(), None);
        let e = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
        let h = parse_response_head(e).unwrap().unwrap();
        assert_eq!((h.status, h.content_length), (202, Some(0)));
        assert!(parse_response_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn upgrade_request_is_well_formed() {
        let r = upgrade_request("127.0.0.1:4000", "/socket/websocket?apikey=k&vsn=2.0.0");
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with("GET /socket/websocket?apikey=k&vsn=2.0.0 HTTP/1.1\r\n"));
        assert!(s.ends_with("\r\n\r\n"));
        assert!(s.contains("Sec-WebSocket-Version: 13\r\n"));
    }
}
