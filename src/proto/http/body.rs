//! How a request body is delimited (`Content-Length` or chunked), and
//! [`BodyReader`], which takes a whole body out of the bytes read after the
//! head, under a limit on its decoded size.

use bytes::{Buf, Bytes, BytesMut};

use super::{trim_ascii, ChunkedDecoder, HttpError, RequestHead, Result};

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no `Content-Length`, no `Transfer-Encoding`).
    None,
    /// Exactly this many bytes follow the head.
    Length(usize),
    /// `Transfer-Encoding: chunked`: decode with [`ChunkedDecoder`](super::ChunkedDecoder).
    Chunked,
}

/// How the body of `head` is delimited. `Transfer-Encoding` other than plain
/// `chunked` is refused (501); `Transfer-Encoding` together with
/// `Content-Length` is refused (400, a request-smuggling vector).
pub fn body_kind(head: &RequestHead) -> Result<BodyKind> {
    let mut te = head.headers_named("transfer-encoding").peekable();
    if te.peek().is_some() {
        let mut chunked = false;
        for v in te {
            for coding in v.split(|&b| b == b',') {
                let coding = trim_ascii(coding);
                if coding.is_empty() {
                    continue;
                }
                if coding.eq_ignore_ascii_case(b"chunked") && !chunked {
                    chunked = true;
                } else {
                    return Err(HttpError::UnsupportedTransferEncoding);
                }
            }
        }
        if !chunked {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        if head.header("content-length").is_some() {
            return Err(HttpError::InvalidContentLength);
        }
        return Ok(BodyKind::Chunked);
    }
    Ok(match content_length_header(head)? {
        Some(n) => BodyKind::Length(n),
        None => BodyKind::None,
    })
}

/// Takes one request body, however it is delimited, out of the bytes that
/// follow the head, as they arrive.
///
/// Whatever is wrong with the head's framing headers (see [`body_kind`]) is
/// reported by the first [`take`](Self::take), so a caller has one error
/// path: answer [`HttpError::status`] and close. The limit applies to the
/// decoded size: a declared length over it is refused before any body byte
/// is read, and a chunked body as soon as a chunk-size line would take the
/// total past it.
#[derive(Debug)]
pub struct BodyReader {
    state: Reading,
}

#[derive(Debug)]
enum Reading {
    /// The head's framing cannot be read; reported by the next `take`.
    Refused(HttpError),
    /// This many bytes, to be split off the buffer whole.
    Length(usize),
    /// Chunked framing, decoded as it arrives (so the caller's buffer holds
    /// only undecoded bytes), into `body`.
    Chunked {
        decoder: ChunkedDecoder,
        body: Vec<u8>,
    },
}

impl BodyReader {
    /// A reader of `head`'s body that refuses bodies over `max_body` bytes
    /// with [`HttpError::BodyTooLarge`].
    pub fn new(head: &RequestHead, max_body: usize) -> Self {
        let state = match body_kind(head) {
            Err(e) => Reading::Refused(e),
            Ok(BodyKind::None) => Reading::Length(0),
            Ok(BodyKind::Length(n)) if n > max_body => Reading::Refused(HttpError::BodyTooLarge),
            Ok(BodyKind::Length(n)) => Reading::Length(n),
            Ok(BodyKind::Chunked) => Reading::Chunked {
                decoder: ChunkedDecoder::new(max_body),
                body: Vec::new(),
            },
        };
        BodyReader { state }
    }

    /// The whole body once it has arrived: `Ok(None)` means "read more into
    /// `buf` and call again". Body bytes are removed from the front of
    /// `buf`; bytes after the body (a pipelined request) are left there.
    pub fn take(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>> {
        match &mut self.state {
            Reading::Refused(e) => Err(e.clone()),
            Reading::Length(n) => Ok((buf.len() >= *n).then(|| buf.split_to(*n).freeze())),
            Reading::Chunked { decoder, body } => {
                let used = decoder.feed(buf, body)?;
                buf.advance(used);
                Ok(decoder.is_done().then(|| Bytes::from(std::mem::take(body))))
            }
        }
    }
}

/// The `Content-Length` of `head`: `Ok(None)` when there is no such header.
/// Repeated headers (or comma lists) must all agree.
fn content_length_header(head: &RequestHead) -> Result<Option<usize>> {
    let mut len: Option<usize> = None;
    for v in head.headers_named("content-length") {
        for part in v.split(|&b| b == b',') {
            let part = trim_ascii(part);
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(HttpError::InvalidContentLength);
            }
            let n = part
                .iter()
                .fold(0usize, |acc, &d| acc * 10 + (d - b'0') as usize);
            match len {
                Some(prev) if prev != n => return Err(HttpError::InvalidContentLength),
                _ => len = Some(n),
            }
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::parse_head;
    #[test]
    fn content_length_rules() {
        let h = |s: &str| parse_head(s.as_bytes()).unwrap().unwrap();
        let content_length = |h: &RequestHead| {
            body_kind(h).map(|k| match k {
                BodyKind::Length(n) => Some(n),
                _ => None,
            })
        };
        assert_eq!(content_length(&h("POST / HTTP/1.1\r\n\r\n")), Ok(None));
        assert_eq!(
            content_length(&h("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n")),
            Ok(Some(5))
        );
        assert_eq!(
            content_length(&h(
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
            )),
            Err(HttpError::InvalidContentLength)
        );
        assert_eq!(
            content_length(&h("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n")),
            Err(HttpError::InvalidContentLength)
        );
        assert_eq!(
            content_length(&h(
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"
            )),
            Err(HttpError::InvalidContentLength)
        );
        assert_eq!(body_kind(&h("POST / HTTP/1.1\r\n\r\n")), Ok(BodyKind::None));
        assert_eq!(
            body_kind(&h("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n")),
            Ok(BodyKind::Chunked)
        );
        assert_eq!(
            body_kind(&h(
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            )),
            Err(HttpError::UnsupportedTransferEncoding)
        );
        assert_eq!(
            body_kind(&h(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
            )),
            Err(HttpError::InvalidContentLength)
        );
        assert_eq!(HttpError::UnsupportedTransferEncoding.status(), 501);
    }

    fn head(s: &str) -> RequestHead {
        parse_head(s.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn a_length_body_is_split_off_whole_and_the_next_request_stays() {
        let mut r = BodyReader::new(&head("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), 5);
        let mut buf = BytesMut::from(&b"hel"[..]);
        assert_eq!(r.take(&mut buf), Ok(None));
        buf.extend_from_slice(b"loGET");
        assert_eq!(r.take(&mut buf), Ok(Some(Bytes::from_static(b"hello"))));
        assert_eq!(&buf[..], b"GET");
        let mut none = BodyReader::new(&head("GET / HTTP/1.1\r\n\r\n"), 0);
        assert_eq!(none.take(&mut buf), Ok(Some(Bytes::new())));
        assert_eq!(&buf[..], b"GET");
    }

    #[test]
    fn a_chunked_body_is_decoded_as_it_arrives() {
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        let wire = b"3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\nGET";
        // Every cut before the body's last byte (the next request's bytes
        // are not part of it).
        for cut in 0..wire.len() - b"GET".len() {
            let mut r = BodyReader::new(&h, 100);
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(r.take(&mut buf), Ok(None), "cut at {cut}");
            // Framing already decoded is not kept in the buffer.
            buf.extend_from_slice(&wire[cut..]);
            assert_eq!(r.take(&mut buf), Ok(Some(Bytes::from_static(b"{\"a\":1}"))));
            assert_eq!(&buf[..], b"GET");
        }
    }

    #[test]
    fn the_limit_is_on_the_decoded_size() {
        let chunked = head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        // Exactly at the limit, over several chunks: accepted.
        let mut r = BodyReader::new(&chunked, 6);
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"[..]);
        assert_eq!(r.take(&mut buf), Ok(Some(Bytes::from_static(b"abcdef"))));
        // One byte more: refused at the chunk-size line that crosses it,
        // before its data arrives.
        let mut r = BodyReader::new(&chunked, 5);
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n3\r\n"[..]);
        assert_eq!(r.take(&mut buf), Err(HttpError::BodyTooLarge));
        // A declared length over the limit: refused before reading.
        let mut r = BodyReader::new(&head("POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\n"), 5);
        assert_eq!(r.take(&mut BytesMut::new()), Err(HttpError::BodyTooLarge));
        assert_eq!(HttpError::BodyTooLarge.status(), 413);
    }

    #[test]
    fn bad_framing_is_reported_by_take() {
        let chunked = head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        let mut r = BodyReader::new(&chunked, 100);
        let e = r.take(&mut BytesMut::from(&b"zz\r\n"[..])).unwrap_err();
        assert!(matches!(e, HttpError::BadChunk(_)), "{e:?}");
        assert_eq!(e.status(), 400);
        for (h, status) in [
            ("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        ] {
            let e = BodyReader::new(&head(h), 100)
                .take(&mut BytesMut::new())
                .unwrap_err();
            assert_eq!(e.status(), status, "{h}");
        }
    }
}
