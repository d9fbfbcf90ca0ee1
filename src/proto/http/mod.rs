//! HTTP/1.1 request heads, query strings, bodies and responses, sans-io.
//!
//! The server reads bytes into a buffer and calls [`parse_head`] until it
//! returns a head (`Ok(None)` means "read more"); a [`BodyReader`] then
//! takes the body that follows, either `Content-Length` bytes or a chunked
//! stream decoded by [`ChunkedDecoder`] (see [`body_kind`]). Responses are
//! written whole by [`response`]. Nothing here touches a socket or a clock.
//!
//! Host handling follows PROTOCOL 1.3: the tenant is the first DNS label of
//! the Host ([`host_tenant`]); IP literals and `localhost`
//! ([`is_bare_host`]) name the default tenant instead. Cowboy lower-cases the
//! host before the Elixir server sees it, so callers that look tenants up by
//! id should lower-case too ([`host_tenant_lowercase`]).

mod body;
mod chunked;
mod host;
mod negotiate;
mod query;
mod upgrade;

pub use body::{body_kind, BodyKind, BodyReader};
pub use chunked::ChunkedDecoder;
pub use host::{host_tenant, host_tenant_lowercase, is_bare_host, strip_port};
pub use negotiate::{accepts, error_format, media_type, phoenix_error, ErrorFormat};
pub use query::{form_decode, percent_decode, query_param};
pub use upgrade::{check_upgrade, UpgradeRefusal, WS_VERSION};

/// Largest request head (request line + headers + blank line) accepted.
/// Bigger heads are answered 431; 16 KiB fits any realistic JWT in a header.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most header lines accepted in one request head (more: 431).
pub const MAX_HEADERS: usize = 64;

/// A request the HTTP layer refuses; [`HttpError::status`] is the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request line or a header line is not valid HTTP/1.x. Not retryable.
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    /// The head did not end within [`MAX_HEAD_BYTES`]. Not retryable as sent.
    #[error("request head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header lines. Not retryable as sent.
    #[error("more than {MAX_HEADERS} request headers")]
    TooManyHeaders,
    /// `Content-Length` is not a decimal number, or appears twice with
    /// different values, or together with `Transfer-Encoding`.
    #[error("invalid content-length")]
    InvalidContentLength,
    /// A `Transfer-Encoding` other than plain `chunked`.
    #[error("unsupported transfer-encoding")]
    UnsupportedTransferEncoding,
    /// The body is larger than the caller's limit.
    #[error("request body too large")]
    BodyTooLarge,
    /// A chunked body is not well formed.
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
}

impl HttpError {
    /// The HTTP status to answer this error with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) | HttpError::InvalidContentLength | HttpError::BadChunk(_) => {
                400
            }
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::BodyTooLarge => 413,
        }
    }
}

/// `Result` with [`HttpError`] as the default error.
pub type Result<T, E = HttpError> = std::result::Result<T, E>;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method as sent (`GET`, `POST`, ...; case preserved).
    pub method: String,
    /// Request target up to (not including) the first `?`.
    pub path: String,
    /// Everything after the first `?` (may be empty); `None` without `?`.
    pub query: Option<String>,
    /// Header lines in order; names lower-cased, values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes of the buffer the head occupied (the body starts here).
    pub head_len: usize,
    /// Minor HTTP version: `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version: u8,
}

impl RequestHead {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first header named `name` as UTF-8 text, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header named `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether the client wants the connection kept open after the response
    /// (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`).
    pub fn wants_keep_alive(&self) -> bool {
        let has_token = |tok: &str| {
            self.headers_named("connection").any(|v| {
                v.split(|&b| b == b',')
                    .any(|t| trim_ascii(t).eq_ignore_ascii_case(tok.as_bytes()))
            })
        };
        if self.version == 0 {
            has_token("keep-alive")
        } else {
            !has_token("close")
        }
    }
}

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)`: the head is not complete yet, read more. Heads over
/// [`MAX_HEAD_BYTES`] or with more than [`MAX_HEADERS`] headers are errors
/// (431), as is anything httparse rejects (400).
pub fn parse_head(buf: &[u8]) -> Result<Option<RequestHead>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let scan = &buf[..buf.len().min(MAX_HEAD_BYTES)];
    match req.parse(scan) {
        Ok(httparse::Status::Complete(head_len)) => {
            let target = req.path.unwrap_or("/");
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                None => (target.to_owned(), None),
            };
            let headers = req
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                .collect();
            Ok(Some(RequestHead {
                method: req.method.unwrap_or("").to_owned(),
                path,
                query,
                headers,
                head_len,
                version: req.version.unwrap_or(1),
            }))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::TooManyHeaders),
        Err(e) => Err(HttpError::Malformed(httparse_reason(e))),
    }
}

/// Whether `buf` holds a whole request line, i.e. the client has started a
/// request rather than only connected. A head that times out after this
/// point is answered 408; before it the socket is closed without a word.
/// Empty lines before the request line are skipped, as [`parse_head`] does.
pub fn request_line_received(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    buf[start..].contains(&b'\n')
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

fn trim_ascii(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// The standard reason phrase of `status` (Plug's spelling), or `""`.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// A complete HTTP/1.1 response that closes the connection: status line,
/// `content-type` (when given), `content-length`,
/// `access-control-allow-origin: *`, `connection: close`, `extra_headers`,
/// then `body`.
pub fn response(
    status: u16,
    content_type: Option<&str>,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    response_with(status, content_type, extra_headers, body, false)
}

/// [`response`] with a choice of `connection: keep-alive` or `close`.
/// For a `HEAD` request pass an empty body and set the length header in
/// `extra_headers` yourself if needed.
pub fn response_with(
    status: u16,
    content_type: Option<&str>,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    let extra: usize = extra_headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum();
    let mut out = Vec::with_capacity(160 + extra + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(&mut out, status as u64);
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(ct) = content_type {
        push_header(&mut out, "content-type", ct);
    }
    out.extend_from_slice(b"content-length: ");
    push_u64(&mut out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    push_header(&mut out, "access-control-allow-origin", "*");
    push_header(
        &mut out,
        "connection",
        if keep_alive { "keep-alive" } else { "close" },
    );
    for (k, v) in extra_headers {
        push_header(&mut out, k, v);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    // Header injection guard: CR/LF never reach the wire.
    let clean =
        |s: &str, out: &mut Vec<u8>| out.extend(s.bytes().filter(|&b| b != b'\r' && b != b'\n'));
    clean(name, out);
    out.extend_from_slice(b": ");
    clean(value, out);
    out.extend_from_slice(b"\r\n");
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GET: &[u8] = b"GET /socket/websocket?apikey=abc%2Bdef&vsn=2.0.0 HTTP/1.1\r\nHost: Abc.supabase.co:443\r\nUpgrade: websocket\r\nX-Api-Key: k\r\n\r\n";

    #[test]
    fn parses_a_complete_head() {
        let h = parse_head(GET).unwrap().unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(h.path, "/socket/websocket");
        assert_eq!(h.query.as_deref(), Some("apikey=abc%2Bdef&vsn=2.0.0"));
        assert_eq!(h.head_len, GET.len());
        assert_eq!(h.version, 1);
        assert_eq!(h.header("HOST"), Some(&b"Abc.supabase.co:443"[..]));
        assert_eq!(h.header_str("x-api-key"), Some("k"));
        assert_eq!(h.headers[0].0, "host", "names are lower-cased");
        assert!(h.header("missing").is_none());
    }

    #[test]
    fn head_len_excludes_the_body() {
        let mut buf = b"POST /api/broadcast HTTP/1.1\r\nContent-Length: 2\r\n\r\n".to_vec();
        let n = buf.len();
        buf.extend_from_slice(b"{}");
        let h = parse_head(&buf).unwrap().unwrap();
        assert_eq!(h.head_len, n);
        assert_eq!(body_kind(&h), Ok(BodyKind::Length(2)));
    }

    #[test]
    fn incomplete_head_needs_more() {
        for cut in 0..GET.len() {
            assert_eq!(parse_head(&GET[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn path_without_query() {
        let h = parse_head(b"GET /healthcheck HTTP/1.0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.path, "/healthcheck");
        assert_eq!(h.query, None);
        assert_eq!(h.version, 0);
        let h = parse_head(b"GET /x? HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.query.as_deref(), Some(""));
    }

    #[test]
    fn oversize_head_is_431() {
        let mut buf = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        buf.resize(MAX_HEAD_BYTES + 10, b'a');
        let e = parse_head(&buf).unwrap_err();
        assert_eq!(e, HttpError::HeadTooLarge);
        assert_eq!(e.status(), 431);
        // Exactly at the cap and still partial: also too large.
        assert_eq!(
            parse_head(&buf[..MAX_HEAD_BYTES]),
            Err(HttpError::HeadTooLarge)
        );
        assert_eq!(parse_head(&buf[..MAX_HEAD_BYTES - 1]), Ok(None));
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            buf.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&buf), Err(HttpError::TooManyHeaders));
    }

    #[test]
    fn request_line_detection() {
        assert!(!request_line_received(b""));
        assert!(!request_line_received(b"\r\n\r\n"));
        assert!(!request_line_received(b"GET /socket/websocket HTTP/1.1"));
        assert!(request_line_received(b"GET / HTTP/1.1\r\n"));
        assert!(request_line_received(b"\r\nGET / HTTP/1.1\r\nHost: a"));
    }

    #[test]
    fn garbage_is_400() {
        let e = parse_head(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(parse_head(b"\x00\x01 / HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn keep_alive_rules() {
        let h = |s: &[u8]| parse_head(s).unwrap().unwrap();
        assert!(h(b"GET / HTTP/1.1\r\n\r\n").wants_keep_alive());
        assert!(!h(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").wants_keep_alive());
        assert!(!h(b"GET / HTTP/1.0\r\n\r\n").wants_keep_alive());
        assert!(h(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").wants_keep_alive());
        assert!(!h(b"GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n").wants_keep_alive());
    }

    #[test]
    fn response_bytes() {
        let r = response(415, Some("application/json"), &[("x-a", "1")], b"{}");
        assert_eq!(
            r,
            b"HTTP/1.1 415 Unsupported Media Type\r\ncontent-type: application/json\r\ncontent-length: 2\r\naccess-control-allow-origin: *\r\nconnection: close\r\nx-a: 1\r\n\r\n{}"
        );
        let r = response_with(202, None, &[], b"", true);
        assert_eq!(
            r,
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\naccess-control-allow-origin: *\r\nconnection: keep-alive\r\n\r\n"
        );
        let r = response(200, Some("a\r\nb"), &[], b"");
        assert!(r.starts_with(b"HTTP/1.1 200 OK\r\ncontent-type: ab\r\n"));
    }

    proptest! {
        #[test]
        fn parse_head_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_head(&buf);
        }

        #[test]
        fn parse_head_never_panics_on_near_http(
            line in "(GET|POST|PUT) /[a-z?=&%+]{0,40} HTTP/1\\.[01]",
            hdrs in proptest::collection::vec(("[A-Za-z-]{1,12}", "[ -~]{0,30}"), 0..10),
            cut in 0usize..400,
        ) {
            let mut s = format!("{line}\r\n");
            for (k, v) in &hdrs {
                s.push_str(&format!("{k}: {v}\r\n"));
            }
            s.push_str("\r\n");
            let b = s.as_bytes();
            let b = &b[..cut.min(b.len())];
            if let Ok(Some(h)) = parse_head(b) {
                prop_assert!(h.head_len <= b.len());
                let _ = body_kind(&h);
                let _ = h.wants_keep_alive();
            }
        }
    }
}
