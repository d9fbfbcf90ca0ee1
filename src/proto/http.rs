//! HTTP/1.1 request heads, query strings, bodies and responses, sans-io.
//!
//! The server reads bytes into a buffer and calls [`parse_head`] until it
//! returns a head (`Ok(None)` means "read more"); the body that follows is
//! either `Content-Length` bytes or a chunked stream fed through
//! [`ChunkedDecoder`] (see [`body_kind`]). Responses are written whole by
//! [`response`]. Nothing here touches a socket or a clock.
//!
//! Host handling follows PROTOCOL 1.3: the tenant is the first DNS label of
//! the Host ([`host_tenant`]); IP literals and `localhost`
//! ([`is_bare_host`]) name the default tenant instead. Cowboy lower-cases the
//! host before the Elixir server sees it, so callers that look tenants up by
//! id should lower-case too ([`host_tenant_lowercase`]).

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Largest request head (request line + headers + blank line) accepted.
/// Bigger heads are answered 431; 16 KiB fits any realistic JWT in a header.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most header lines accepted in one request head (more: 431).
pub const MAX_HEADERS: usize = 64;

/// Longest chunk-size line (size, extensions) accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILER_BYTES: usize = 8 * 1024;

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
    /// The body uses `Transfer-Encoding` and the caller asked for a length
    /// ([`content_length`]): 411 Length Required.
    #[error("transfer-encoded body where a content-length was expected")]
    ChunkedBody,
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
            HttpError::ChunkedBody => 411,
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

/// The value of query parameter `name`, decoded per
/// `application/x-www-form-urlencoded` (`%XX`, `+` as space).
///
/// Like Plug (`Plug.Conn.Query`), the **last** occurrence wins, a pair
/// without `=` has the empty value, and names are compared after decoding.
/// Malformed `%` escapes are kept literally (Plug answers 400 instead);
/// bytes that do not form UTF-8 after decoding are replaced (U+FFFD).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    let mut found = None;
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(k) == name {
            found = Some(v);
        }
    }
    found.map(form_decode)
}

/// Decodes `application/x-www-form-urlencoded` text: `%XX` escapes and `+`
/// as space; malformed escapes are kept. Borrows when there is nothing to
/// decode.
pub fn form_decode(s: &str) -> Cow<'_, str> {
    decode(s, true).unwrap_or(Cow::Borrowed(s))
}

/// Decodes a path segment like Elixir's `URI.decode/1` (what the Phoenix
/// router applies to path parameters): `%XX` escapes only, `+` stays.
/// `None` for a malformed escape (Plug answers 400). Invalid UTF-8 after
/// decoding is replaced (U+FFFD).
pub fn percent_decode(s: &str) -> Option<String> {
    decode(s, false).map(Cow::into_owned)
}

/// `None` only when `!form` and an escape is malformed.
fn decode(s: &str, form: bool) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || (form && b == b'+')) {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (hex_val(bytes.get(i + 1)), hex_val(bytes.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ if form => {
                    out.push(b'%');
                    i += 1;
                }
                _ => return None,
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

fn hex_val(b: Option<&u8>) -> Option<u8> {
    match b? {
        b @ b'0'..=b'9' => Some(b - b'0'),
        b @ b'a'..=b'f' => Some(b - b'a' + 10),
        b @ b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        // A bare IPv6 address has several colons: leave it alone.
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The tenant external id a Host names (PROTOCOL 1.3): the port is dropped,
/// then everything before the first `.` (the whole host without a dot).
/// `abc.supabase.co:443` -> `abc`. Case is preserved; see
/// [`host_tenant_lowercase`].
pub fn host_tenant(host: &str) -> &str {
    let h = strip_port(host);
    match h.find('.') {
        Some(i) => &h[..i],
        None => h,
    }
}

/// [`host_tenant`] lower-cased, as the Elixir server sees it (Cowboy
/// lower-cases the Host). Borrows when already lower-case.
pub fn host_tenant_lowercase(host: &str) -> Cow<'_, str> {
    let t = host_tenant(host);
    if t.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(t.to_ascii_lowercase())
    } else {
        Cow::Borrowed(t)
    }
}

/// Whether a Host has no tenant subdomain: an IPv4 address, an IPv6 literal
/// (`[::1]`, port allowed) or `localhost` (any case, optional trailing dot).
/// Such hosts resolve to the default tenant.
pub fn is_bare_host(host: &str) -> bool {
    let h = strip_port(host);
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    let h = h.strip_suffix('.').unwrap_or(h);
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<Ipv4Addr>().is_ok()
        || h.parse::<Ipv6Addr>().is_ok()
}

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no `Content-Length`, no `Transfer-Encoding`).
    None,
    /// Exactly this many bytes follow the head.
    Length(usize),
    /// `Transfer-Encoding: chunked`: decode with [`ChunkedDecoder`].
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
/// with [`body_kind`] and [`ChunkedDecoder`] instead).
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

// ---------------------------------------------------------------------------
// Media types and content negotiation (Plug / Phoenix rules)
// ---------------------------------------------------------------------------

/// Parses a media type the way `Plug.Conn.Utils.content_type/1` does:
/// lower-cased `(type, subtype)`, parameters ignored; `None` for wildcards
/// or anything malformed.
pub fn media_type(ct: &str) -> Option<(String, String)> {
    let t = strip_plug_spaces(ct);
    let (ty, rest) = t.split_once('/')?;
    if ty.is_empty() || !ty.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let end = rest
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_')))
        .unwrap_or(rest.len());
    let (sub, params) = rest.split_at(end);
    let params = strip_plug_spaces(params);
    if !(params.is_empty() || params.starts_with(';')) {
        return None;
    }
    Some((ty.to_ascii_lowercase(), sub.to_ascii_lowercase()))
}

/// Plug's `strip_spaces`: leading spaces, tabs and CRLFs; trailing spaces
/// and tabs.
fn strip_plug_spaces(mut s: &str) -> &str {
    loop {
        if let Some(r) = s.strip_prefix("\r\n") {
            s = r;
        } else if let Some(r) = s.strip_prefix([' ', '\t']) {
            s = r;
        } else {
            break;
        }
    }
    s.trim_end_matches([' ', '\t'])
}

/// The format Phoenix renders an error page in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    /// `text/html`: the body is the bare reason phrase.
    Html,
    /// `application/json`: the body is the reason phrase as a JSON string.
    Json,
}

/// The format of errors raised outside controllers (bad JSON body, body too
/// large, crashes): `render_errors` accepts `html` and `json`, negotiated
/// from `Accept` like `Phoenix.Controller.accepts/2`, falling back to HTML.
/// No `Accept`, `*/*`, or any header containing `*/*` gives HTML.
pub fn error_format(accept: Option<&str>) -> ErrorFormat {
    match negotiate(accept, &["html", "json"]) {
        Some("json") => ErrorFormat::Json,
        _ => ErrorFormat::Html,
    }
}

/// Content type and body of a Phoenix-rendered error page: the
/// `ErrorView` has no templates, so the body is the status's reason phrase
/// (`Bad Request`), as HTML text or as a JSON string per [`error_format`].
pub fn phoenix_error(status: u16, accept: Option<&str>) -> (&'static str, Vec<u8>) {
    let reason = reason_phrase(status);
    match error_format(accept) {
        ErrorFormat::Html => ("text/html; charset=utf-8", reason.as_bytes().to_vec()),
        ErrorFormat::Json => (
            "application/json; charset=utf-8",
            format!("\"{reason}\"").into_bytes(),
        ),
    }
}

/// Whether `plug :accepts, formats` lets a request with this `Accept`
/// through (else Phoenix raises 406 Not Acceptable, rendered by
/// [`phoenix_error`]). The batch endpoint accepts `["json"]`, the single
/// endpoint `["json", "octet-stream"]`. (A `_format` parameter, which
/// Phoenix checks first, is not modelled.)
pub fn accepts(accept: Option<&str>, formats: &[&str]) -> bool {
    negotiate(accept, formats).is_some()
}

/// What a media range in `Accept` can match.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Exts {
    /// `*/*`: the first accepted format.
    Any,
    /// `type/*`: a format whose MIME type has this type.
    Type(String),
    /// `type/subtype`: its registered extensions.
    List(&'static [&'static str]),
}

/// `Phoenix.Controller.accepts/2` on the first `Accept` header.
fn negotiate<'f>(accept: Option<&str>, formats: &[&'f str]) -> Option<&'f str> {
    let first = *formats.first()?;
    let header = match accept {
        None => return Some(first),
        Some("*/*") => return Some(first),
        Some(h) => h,
    };
    if header.contains("*/*") && formats.contains(&"html") {
        return Some("html");
    }
    let mut acc: Vec<(f64, &str, Exts)> = Vec::new();
    for h in header.split(',') {
        let Some((ty, sub, params)) = media_range(h) else {
            continue;
        };
        let exts = match (ty.as_str(), sub.as_str()) {
            ("*", "*") => Exts::Any,
            (_, "*") => Exts::Type(ty),
            _ => Exts::List(mime_extensions(&ty, &sub)),
        };
        let q = parse_q(params);
        if q == 1.0 {
            if let Some(f) = find_format(&exts, formats) {
                return Some(f);
            }
        }
        acc.push((-q, h, exts));
    }
    acc.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| a.1.cmp(b.1))
            .then_with(|| a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal))
    });
    acc.iter().find_map(|(_, _, e)| find_format(e, formats))
}

fn find_format<'f>(exts: &Exts, formats: &[&'f str]) -> Option<&'f str> {
    match exts {
        Exts::Any => formats.first().copied(),
        Exts::List(list) => list
            .iter()
            .find_map(|e| formats.iter().find(|f| *f == e).copied()),
        Exts::Type(t) => formats.iter().find(|f| mime_type_of(f) == t).copied(),
    }
}

/// The type half of `MIME.type(format)` (unknown formats are
/// `application/octet-stream`).
fn mime_type_of(format: &str) -> &'static str {
    match format {
        "html" | "htm" | "txt" | "text" | "css" | "csv" => "text",
        _ => "application",
    }
}

/// `MIME.extensions/1` for the types that matter here.
fn mime_extensions(ty: &str, sub: &str) -> &'static [&'static str] {
    match (ty, sub) {
        ("application", "json") => &["json"],
        ("text", "html") => &["html", "htm"],
        ("text", "plain") => &["txt", "text"],
        ("application", "octet-stream") => &["bin"],
        _ => &[],
    }
}

/// `Plug.Conn.Utils.media_type/1` (wildcards allowed): lower-cased type,
/// subtype and the raw parameter text.
fn media_range(h: &str) -> Option<(String, String, &str)> {
    let t = strip_plug_spaces(h);
    if let Some(rest) = t.strip_prefix("*/*") {
        return params_tail(rest).map(|p| ("*".to_owned(), "*".to_owned(), p));
    }
    let (ty, rest) = t.split_once('/')?;
    if ty.is_empty() || !ty.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    if let Some(rest) = rest.strip_prefix('*') {
        return params_tail(rest).map(|p| (ty.to_ascii_lowercase(), "*".to_owned(), p));
    }
    let end = rest
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_')))
        .unwrap_or(rest.len());
    let (sub, params) = rest.split_at(end);
    params_tail(params).map(|p| (ty.to_ascii_lowercase(), sub.to_ascii_lowercase(), p))
}

fn params_tail(rest: &str) -> Option<&str> {
    let rest = strip_plug_spaces(rest);
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix(';')
    }
}

/// The `q` parameter as `Float.parse/1` reads it; 1.0 when absent or
/// unparsable.
fn parse_q(params: &str) -> f64 {
    for p in params.split(';') {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let v = v.trim().trim_matches('"');
        let b = v.as_bytes();
        let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == int_start {
            return 1.0;
        }
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        return v[..i].parse().unwrap_or(1.0);
    }
    1.0
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
        assert_eq!(content_length(&h), Ok(Some(2)));
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
    fn query_params_decode() {
        let q = "apikey=abc%2Bdef&vsn=2.0.0&log_level=warn&x=a+b&empty&e=";
        assert_eq!(query_param(q, "apikey").as_deref(), Some("abc+def"));
        assert_eq!(query_param(q, "vsn").as_deref(), Some("2.0.0"));
        assert_eq!(query_param(q, "x").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "empty").as_deref(), Some(""));
        assert_eq!(query_param(q, "e").as_deref(), Some(""));
        assert_eq!(query_param(q, "nope"), None);
        assert!(matches!(query_param(q, "vsn"), Some(Cow::Borrowed(_))));
        assert_eq!(form_decode("a+b%21"), "a b!");
    }

    #[test]
    fn query_param_last_wins_and_names_are_decoded() {
        assert_eq!(query_param("a=1&a=2", "a").as_deref(), Some("2"));
        assert_eq!(query_param("%61pi=1", "api").as_deref(), Some("1"));
        assert_eq!(query_param("a=%zz%4", "a").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("a=%C3%A9", "a").as_deref(), Some("é"));
        assert_eq!(query_param("a=%FF", "a").as_deref(), Some("\u{FFFD}"));
        assert_eq!(query_param("a=%41", "a").as_deref(), Some("A"));
        assert_eq!(query_param("a=x%4", "a").as_deref(), Some("x%4"));
    }

    #[test]
    fn path_segment_decoding() {
        assert_eq!(percent_decode("room%3A1").as_deref(), Some("room:1"));
        assert_eq!(
            percent_decode("a+b").as_deref(),
            Some("a+b"),
            "+ is not a space in paths"
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%C3%A9%FF").as_deref(), Some("é\u{FFFD}"));
    }

    #[test]
    fn tenant_from_host() {
        assert_eq!(host_tenant("abc.supabase.co"), "abc");
        assert_eq!(host_tenant("abc.supabase.co:443"), "abc");
        assert_eq!(
            host_tenant("realtime-dev.supabase-realtime"),
            "realtime-dev"
        );
        assert_eq!(host_tenant("realtime-dev:4000"), "realtime-dev");
        assert_eq!(host_tenant("nodot"), "nodot");
        assert_eq!(host_tenant(".x"), "");
        assert_eq!(host_tenant_lowercase("ABC.example.com"), "abc");
        assert!(matches!(
            host_tenant_lowercase("abc.x"),
            Cow::Borrowed("abc")
        ));
    }

    #[test]
    fn bare_hosts() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:4000",
            "[::1]",
            "[::1]:4000",
            "localhost",
            "LOCALHOST:4000",
            "localhost.",
            "::1",
        ] {
            assert!(is_bare_host(h), "{h}");
        }
        for h in [
            "abc.supabase.co",
            "realtime-dev",
            "1.2.3",
            "[zz]",
            "localhost.example.com",
            "256.1.1.1",
        ] {
            assert!(!is_bare_host(h), "{h}");
        }
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("a:b"), "a:b");
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

    #[test]
    fn media_types_like_plug() {
        let mt = |s: &str| media_type(s).map(|(a, b)| format!("{a}/{b}"));
        assert_eq!(mt("application/json").as_deref(), Some("application/json"));
        assert_eq!(
            mt("\r\n APPLICATION/Vnd.Api+JSON ; charset=utf-8").as_deref(),
            Some("application/vnd.api+json")
        );
        assert_eq!(mt("text/*"), None);
        assert_eq!(mt("*/*"), None);
        assert_eq!(mt("x y"), None);
        assert_eq!(mt("a/b c"), None);
        assert_eq!(mt("/json"), None);
    }

    #[test]
    fn accept_negotiation_like_phoenix() {
        let json = &["json"][..];
        assert!(accepts(None, json));
        assert!(accepts(Some("*/*"), json));
        assert!(accepts(Some("application/json"), json));
        assert!(accepts(Some("application/json, text/plain, */*"), json));
        assert!(accepts(Some("application/*"), json));
        assert!(accepts(Some("text/html;q=0.9, */*;q=0.1"), json));
        assert!(!accepts(Some("text/html"), json));
        assert!(!accepts(Some("application/xml"), json));
        // MIME has no "octet-stream" extension: only json can match.
        assert!(!accepts(
            Some("application/octet-stream"),
            &["json", "octet-stream"]
        ));
        assert!(accepts(Some("application/*"), &["json", "octet-stream"]));

        assert_eq!(error_format(None), ErrorFormat::Html);
        assert_eq!(error_format(Some("*/*")), ErrorFormat::Html);
        assert_eq!(
            error_format(Some("application/json, */*")),
            ErrorFormat::Html
        );
        assert_eq!(error_format(Some("application/json")), ErrorFormat::Json);
        assert_eq!(
            error_format(Some("text/html;q=0.5, application/json;q=0.8")),
            ErrorFormat::Json
        );
        assert_eq!(error_format(Some("image/png")), ErrorFormat::Html);
        assert_eq!(
            phoenix_error(400, None),
            ("text/html; charset=utf-8", b"Bad Request".to_vec())
        );
        assert_eq!(
            phoenix_error(413, Some("application/json")),
            (
                "application/json; charset=utf-8",
                b"\"Request Entity Too Large\"".to_vec()
            )
        );
    }

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

        #[test]
        fn accept_never_panics(h in "\\PC{0,60}") {
            let _ = accepts(Some(&h), &["json", "octet-stream"]);
            let _ = error_format(Some(&h));
            let _ = media_type(&h);
        }

        #[test]
        fn query_param_never_panics(q in "[ -~]{0,80}", name in "[a-z%+=&]{0,6}") {
            let _ = query_param(&q, &name);
            let _ = percent_decode(&q);
        }

        #[test]
        fn query_param_round_trips(v in "[ -~]{0,40}") {
            let mut enc = String::new();
            for b in v.bytes() {
                if b.is_ascii_alphanumeric() { enc.push(b as char) } else { enc.push_str(&format!("%{b:02X}")) }
            }
            let q = format!("x=1&k={enc}&y=2");
            let got = query_param(&q, "k");
            prop_assert_eq!(got.as_deref(), Some(v.as_str()));
        }

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
