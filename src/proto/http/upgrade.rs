//! Whether a request head is a well-formed WebSocket opening handshake
//! (RFC 6455 4.2.1), checked before anything else about the connect.

use base64::Engine;

use super::RequestHead;

/// Why a head cannot be upgraded. Every refusal has an empty body: nothing
/// the client sent is echoed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeRefusal {
    /// Not `GET`.
    Method,
    /// HTTP/1.0: the upgrade mechanism needs HTTP/1.1.
    Http10,
    /// `Connection` lacks the `upgrade` token.
    Connection,
    /// `Upgrade` lacks the `websocket` token.
    Upgrade,
    /// `Sec-WebSocket-Key` missing, repeated, or not the base64 of 16 bytes.
    Key,
    /// `Sec-WebSocket-Version` missing or repeated.
    VersionMissing,
    /// `Sec-WebSocket-Version` present but not 13: 426, naming 13.
    VersionUnsupported,
}

/// The only WebSocket version spoken, sent back with a 426.
pub const WS_VERSION: &str = "13";

impl UpgradeRefusal {
    /// The status to answer with: 426 for a version we do not speak, 400
    /// for everything else.
    pub fn status(self) -> u16 {
        match self {
            UpgradeRefusal::VersionUnsupported => 426,
            _ => 400,
        }
    }

    /// Headers the refusal carries: a 426 names the version we do speak.
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            UpgradeRefusal::VersionUnsupported => &[("sec-websocket-version", WS_VERSION)],
            _ => &[],
        }
    }
}

/// Checks the handshake headers and returns the `Sec-WebSocket-Key` to
/// derive the accept key from.
pub fn check_upgrade(head: &RequestHead) -> Result<&[u8], UpgradeRefusal> {
    if head.method != "GET" {
        return Err(UpgradeRefusal::Method);
    }
    if head.version == 0 {
        return Err(UpgradeRefusal::Http10);
    }
    if !has_token(head, "connection", b"upgrade") {
        return Err(UpgradeRefusal::Connection);
    }
    if !has_token(head, "upgrade", b"websocket") {
        return Err(UpgradeRefusal::Upgrade);
    }
    let key = single(head, "sec-websocket-key").ok_or(UpgradeRefusal::Key)?;
    if !valid_key(key) {
        return Err(UpgradeRefusal::Key);
    }
    let version = single(head, "sec-websocket-version").ok_or(UpgradeRefusal::VersionMissing)?;
    if version.trim_ascii() != WS_VERSION.as_bytes() {
        return Err(UpgradeRefusal::VersionUnsupported);
    }
    Ok(key)
}

/// The value of a header that must appear exactly once.
fn single<'h>(head: &'h RequestHead, name: &'h str) -> Option<&'h [u8]> {
    let mut values = head.headers_named(name);
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// Whether any `name` header lists `token` (comma-separated, any case).
fn has_token(head: &RequestHead, name: &str, token: &[u8]) -> bool {
    head.headers_named(name).any(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}

/// A key is a random 16-byte value in standard base64: 24 characters.
fn valid_key(key: &[u8]) -> bool {
    let key = key.trim_ascii();
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|raw| raw.len() == 16)
}

#[cfg(test)]
mod tests {
    use super::super::parse_head;
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn head(line: &str, headers: &[(&str, &str)]) -> RequestHead {
        let mut s = format!("{line}\r\nhost: localhost\r\n");
        for (k, v) in headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        parse_head(s.as_bytes()).unwrap().unwrap()
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("Connection", "keep-alive, Upgrade"),
            ("Upgrade", "WebSocket"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    }

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        good().into_iter().filter(|(k, _)| *k != name).collect()
    }

    fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut h = without(name);
        h.push((name, value));
        h
    }

    #[test]
    fn a_browser_handshake_passes() {
        let h = head("GET /socket/websocket HTTP/1.1", &good());
        assert_eq!(check_upgrade(&h), Ok(KEY.as_bytes()));
    }

    #[test]
    fn each_defect_is_refused_with_its_status() {
        let line = "GET /socket/websocket HTTP/1.1";
        let cases: Vec<(RequestHead, UpgradeRefusal)> = vec![
            (
                head("POST /socket/websocket HTTP/1.1", &good()),
                UpgradeRefusal::Method,
            ),
            (
                head("GET /socket/websocket HTTP/1.0", &good()),
                UpgradeRefusal::Http10,
            ),
            (
                head(line, &without("Connection")),
                UpgradeRefusal::Connection,
            ),
            (
                head(line, &with("Connection", "keep-alive")),
                UpgradeRefusal::Connection,
            ),
            (head(line, &without("Upgrade")), UpgradeRefusal::Upgrade),
            (
                head(line, &without("Sec-WebSocket-Key")),
                UpgradeRefusal::Key,
            ),
            (
                head(line, &with("Sec-WebSocket-Key", "")),
                UpgradeRefusal::Key,
            ),
            (
                head(line, &with("Sec-WebSocket-Key", "not base64 at all!!!!!!!")),
                UpgradeRefusal::Key,
            ),
            (
                // Valid base64, but of 17 bytes.
                head(line, &with("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAA=")),
                UpgradeRefusal::Key,
            ),
            (
                head(line, &without("Sec-WebSocket-Version")),
                UpgradeRefusal::VersionMissing,
            ),
            (
                head(line, &with("Sec-WebSocket-Version", "8")),
                UpgradeRefusal::VersionUnsupported,
            ),
            (
                head(line, &with("Sec-WebSocket-Version", "13, 8")),
                UpgradeRefusal::VersionUnsupported,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(check_upgrade(&h), Err(want), "{h:?}");
        }
        assert_eq!(UpgradeRefusal::VersionUnsupported.status(), 426);
        assert_eq!(
            UpgradeRefusal::VersionUnsupported.headers(),
            &[("sec-websocket-version", "13")]
        );
        assert_eq!(UpgradeRefusal::Key.status(), 400);
        assert!(UpgradeRefusal::Key.headers().is_empty());
    }

    #[test]
    fn a_repeated_key_or_version_is_refused() {
        let mut h = good();
        h.push(("Sec-WebSocket-Key", KEY));
        let h = head("GET / HTTP/1.1", &h);
        assert_eq!(check_upgrade(&h), Err(UpgradeRefusal::Key));
        let mut h = good();
        h.push(("Sec-WebSocket-Version", "13"));
        let h = head("GET / HTTP/1.1", &h);
        assert_eq!(check_upgrade(&h), Err(UpgradeRefusal::VersionMissing));
    }
}
