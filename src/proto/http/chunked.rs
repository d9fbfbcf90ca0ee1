//! Incremental decoding of `Transfer-Encoding: chunked` request bodies.

use super::query::hex_val;
use super::{HttpError, Result};

/// Longest chunk-size line (size, extensions) accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// Where a [`ChunkedDecoder`] is in the chunked grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size; `digits` so far, `ext` once past the digits.
    Size {
        size: u64,
        digits: u32,
        ext: bool,
        line: usize,
    },
    /// Expecting the LF after the size line's CR.
    SizeLf { size: u64 },
    /// `remaining` data bytes of the current chunk to copy.
    Data { remaining: u64 },
    /// Expecting the CR after a chunk's data.
    DataCr,
    /// Expecting the LF after a chunk's data.
    DataLf,
    /// Reading trailer lines; `line` bytes into the current one, `cr` after
    /// its CR.
    Trailer { line: usize, cr: bool },
    /// The final empty line was read.
    Done,
}

/// Decodes a `Transfer-Encoding: chunked` request body incrementally.
///
/// Feed it whatever bytes follow the head; it appends the decoded data to
/// the caller's buffer and reports how much input it consumed. Once
/// [`is_done`](Self::is_done), bytes after the body (a pipelined request)
/// are left unconsumed. Chunk extensions and trailers are skipped.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    /// Position in the grammar.
    state: ChunkState,
    /// Decoded bytes so far (checked against `max_body`).
    body_len: u64,
    /// Largest decoded body accepted (413 beyond).
    max_body: u64,
    /// Trailer bytes so far (bounded).
    trailer_len: usize,
}

impl ChunkedDecoder {
    /// A decoder that refuses bodies over `max_body` decoded bytes.
    pub fn new(max_body: usize) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size {
                size: 0,
                digits: 0,
                ext: false,
                line: 0,
            },
            body_len: 0,
            max_body: max_body as u64,
            trailer_len: 0,
        }
    }

    /// Whether the whole body (through the trailers) has been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending data to `out`. Returns the number of
    /// input bytes consumed: all of them unless the body ended inside
    /// `input`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                ChunkState::Done => return Ok(i),
                ChunkState::Size {
                    size,
                    digits,
                    ext,
                    line,
                } => {
                    if line >= MAX_CHUNK_LINE {
                        return Err(HttpError::BadChunk("chunk size line too long"));
                    }
                    let line = line + 1;
                    if b == b'\r' {
                        if digits == 0 {
                            return Err(HttpError::BadChunk("missing chunk size"));
                        }
                        self.state = ChunkState::SizeLf { size };
                    } else if !ext && b.is_ascii_hexdigit() {
                        if digits >= 16 {
                            return Err(HttpError::BadChunk("chunk size too large"));
                        }
                        let d = hex_val(Some(&b)).unwrap_or(0) as u64;
                        self.state = ChunkState::Size {
                            size: size << 4 | d,
                            digits: digits + 1,
                            ext,
                            line,
                        };
                    } else if digits > 0 && (ext || b == b';' || b == b' ' || b == b'\t') {
                        self.state = ChunkState::Size {
                            size,
                            digits,
                            ext: true,
                            line,
                        };
                    } else {
                        return Err(HttpError::BadChunk("invalid chunk size"));
                    }
                    i += 1;
                }
                ChunkState::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(HttpError::BadChunk("expected LF after chunk size"));
                    }
                    i += 1;
                    self.state = if size == 0 {
                        ChunkState::Trailer { line: 0, cr: false }
                    } else {
                        if self.body_len.saturating_add(size) > self.max_body {
                            return Err(HttpError::BodyTooLarge);
                        }
                        ChunkState::Data { remaining: size }
                    };
                }
                ChunkState::Data { remaining } => {
                    let n = (remaining.min((input.len() - i) as u64)) as usize;
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    self.body_len += n as u64;
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data { remaining }
                    };
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Err(HttpError::BadChunk("expected CRLF after chunk data"));
                    }
                    i += 1;
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(HttpError::BadChunk("expected CRLF after chunk data"));
                    }
                    i += 1;
                    self.state = ChunkState::Size {
                        size: 0,
                        digits: 0,
                        ext: false,
                        line: 0,
                    };
                }
                ChunkState::Trailer { line, cr } => {
                    i += 1;
                    self.trailer_len += 1;
                    if self.trailer_len > MAX_TRAILER_BYTES {
                        return Err(HttpError::BadChunk("trailers too large"));
                    }
                    self.state = match (b, cr) {
                        (b'\n', true) if line == 0 => ChunkState::Done,
                        (b'\n', true) => ChunkState::Trailer { line: 0, cr: false },
                        (b'\r', false) => ChunkState::Trailer { line, cr: true },
                        (_, true) => return Err(HttpError::BadChunk("expected LF in trailer")),
                        (_, false) => ChunkState::Trailer {
                            line: line + 1,
                            cr: false,
                        },
                    };
                }
            }
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    fn decode_all(input: &[u8], max: usize) -> Result<(Vec<u8>, usize)> {
        let mut d = ChunkedDecoder::new(max);
        let mut out = Vec::new();
        let n = d.feed(input, &mut out)?;
        assert!(d.is_done() || n == input.len());
        Ok((out, n))
    }

    #[test]
    fn chunked_decoding() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\nNEXT";
        let (out, n) = decode_all(body, 1000).unwrap();
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&body[n..], b"NEXT");
        // With trailers.
        let (out, n) = decode_all(b"1\r\na\r\n0\r\nX-T: 1\r\n\r\n", 10).unwrap();
        assert_eq!((out.as_slice(), n), (&b"a"[..], 19));
    }

    #[test]
    fn chunked_byte_by_byte() {
        let body = b"4\r\nWiki\r\n5 ; a=b\r\npedia\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new(100);
        let mut out = Vec::new();
        for (i, b) in body.iter().enumerate() {
            assert!(!d.is_done(), "done early at {i}");
            assert_eq!(d.feed(std::slice::from_ref(b), &mut out), Ok(1));
        }
        assert!(d.is_done());
        assert_eq!(out, b"Wikipedia");
        assert_eq!(d.feed(b"rest", &mut out), Ok(0));
    }

    #[test]
    fn chunked_errors() {
        assert_eq!(decode_all(b"zz\r\n", 10).unwrap_err().status(), 400);
        assert_eq!(decode_all(b"\r\n", 10).unwrap_err().status(), 400);
        assert_eq!(decode_all(b"3\r\nabcX", 10).unwrap_err().status(), 400);
        assert_eq!(decode_all(b"3\rX", 10).unwrap_err().status(), 400);
        assert_eq!(decode_all(b"b\r\n", 10), Err(HttpError::BodyTooLarge));
        assert_eq!(
            decode_all(b"11111111111111111\r\n", usize::MAX)
                .unwrap_err()
                .status(),
            400
        );
        let long = vec![b'1'; 1]
            .into_iter()
            .chain(std::iter::once(b';'))
            .chain(std::iter::repeat_n(b'x', MAX_CHUNK_LINE))
            .collect::<Vec<_>>();
        assert!(decode_all(&long, 10).is_err());
    }

    proptest! {
        #[test]
        fn chunked_never_panics_and_splits_agree(
            input in proptest::collection::vec(any::<u8>(), 0..300),
            split in 0usize..300,
        ) {
            let whole = decode_all(&input, 1 << 20);
            let mut d = ChunkedDecoder::new(1 << 20);
            let mut out = Vec::new();
            let split = split.min(input.len());
            let r1 = d.feed(&input[..split], &mut out);
            if let (Ok(n1), Ok((w, wn))) = (&r1, &whole) {
                if *n1 == split && !d.is_done() {
                    let n2 = d.feed(&input[split..], &mut out).unwrap();
                    prop_assert_eq!(split + n2, *wn);
                    prop_assert_eq!(&out, w);
                }
            }
        }

        #[test]
        fn chunked_round_trip(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..50), 0..8)) {
            let mut enc = Vec::new();
            let mut plain = Vec::new();
            for c in &chunks {
                enc.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                enc.extend_from_slice(c);
                enc.extend_from_slice(b"\r\n");
                plain.extend_from_slice(c);
            }
            enc.extend_from_slice(b"0\r\n\r\n");
            let (out, n) = decode_all(&enc, 1 << 20).unwrap();
            prop_assert_eq!(out, plain);
            prop_assert_eq!(n, enc.len());
        }
    }
}
