//! How a request body is delimited: `Content-Length` or chunked.

use super::{trim_ascii, HttpError, RequestHead, Result};

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

/// The `Content-Length` of `head`: `Ok(None)` when there is no body.
/// Repeated headers (or comma lists) must all agree. A request with
/// `Transfer-Encoding` is [`HttpError::ChunkedBody`] (answer 411, or read it
/// with [`body_kind`] and [`ChunkedDecoder`](super::ChunkedDecoder) instead).
pub fn content_length(head: &RequestHead) -> Result<Option<usize>> {
    if head.header("transfer-encoding").is_some() {
        return Err(HttpError::ChunkedBody);
    }
    content_length_header(head)
}

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
        let chunked = h("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(content_length(&chunked), Err(HttpError::ChunkedBody));
        assert_eq!(HttpError::ChunkedBody.status(), 411);
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
}
