//! Hand-encoding JSON into byte buffers.
//!
//! The hot paths (fan-out messages, replies) never go through serde: they
//! append JSON text to a [`BytesMut`], usually the body of a
//! [`FrameBuilder`](crate::proto::ws::FrameBuilder). Strings are escaped the
//! way Jason (the Elixir server's JSON library, default `escape: :json` mode)
//! escapes them, so our frames are byte-identical to the Elixir server's:
//! `"` and `\` get a backslash, `\b \t \n \f \r` use their short forms, the
//! other control characters below 0x20 become `\u00XX` with upper-case hex,
//! and everything else (including `/`, DEL and non-ASCII) is copied verbatim.

use bytes::{BufMut, BytesMut};

/// Per-byte escape action: 0 = copy, `b'u'` = `\u00XX`, anything else = the
/// character that follows the backslash.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Something escaped JSON text can be appended to.
trait Sink {
    fn put(&mut self, s: &[u8]);
}

impl<B: BufMut + ?Sized> Sink for B {
    #[inline]
    fn put(&mut self, s: &[u8]) {
        self.put_slice(s);
    }
}

/// A `String` sink. Every slice handed to it is either a run of the input
/// `&str` cut at ASCII positions or an ASCII escape, so it is always UTF-8.
struct StringSink<'a>(&'a mut String);

impl Sink for StringSink<'_> {
    #[inline]
    fn put(&mut self, s: &[u8]) {
        // Cannot fail (see the type's doc); the fallback keeps this panic-free.
        self.0
            .push_str(std::str::from_utf8(s).unwrap_or("\u{fffd}"));
    }
}

/// The escaping loop shared by every sink: copies runs of plain bytes in one
/// call and writes an escape sequence for each byte that needs one.
#[inline]
fn escape_into<S: Sink + ?Sized>(out: &mut S, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let action = ESCAPE[b as usize];
        if action == 0 {
            continue;
        }
        if start < i {
            out.put(&bytes[start..i]);
        }
        if action == b'u' {
            out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX_UPPER[(b >> 4) as usize],
                HEX_UPPER[(b & 0xf) as usize],
            ]);
        } else {
            out.put(&[b'\\', action]);
        }
        start = i + 1;
    }
    if start < bytes.len() {
        out.put(&bytes[start..]);
    }
}

/// Appends `s` as a JSON string literal (quotes included), escaped per
/// RFC 8259 exactly as Jason does (see the module doc).
#[inline]
pub fn write_str(out: &mut BytesMut, s: &str) {
    write_str_buf(out, s);
}

/// [`write_str`] for any [`BufMut`] (a `Vec<u8>`, a `BytesMut`, ...).
#[inline]
pub fn write_str_buf<B: BufMut + ?Sized>(out: &mut B, s: &str) {
    out.put_u8(b'"');
    escape_into(out, s);
    out.put_u8(b'"');
}

/// Returns `s` as a JSON string literal in a new `String` (quotes included).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    escape_into(&mut StringSink(&mut out), s);
    out.push('"');
    out
}

/// Whether [`write_str`] would have to escape any byte of `s`.
#[inline]
pub fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| ESCAPE[b as usize] != 0)
}

/// Appends an unsigned integer in decimal.
pub fn write_u64(out: &mut BytesMut, mut n: u64) {
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

/// Appends `true` or `false`.
#[inline]
pub fn write_bool(out: &mut BytesMut, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Appends `null`.
#[inline]
pub fn write_null(out: &mut BytesMut) {
    out.extend_from_slice(b"null");
}

/// Appends already-encoded JSON text verbatim, or `null` when absent.
#[inline]
pub fn write_raw_or_null(out: &mut BytesMut, raw: Option<&[u8]>) {
    match raw {
        Some(raw) => out.extend_from_slice(raw),
        None => write_null(out),
    }
}

/// Whether `bytes` are exactly one JSON value (surrounding whitespace
/// allowed) in valid UTF-8: the test a client's bytes must pass before they
/// are copied verbatim into a frame another client parses.
///
/// UTF-8 is checked first and on its own because serde_json skips string
/// contents it is asked to ignore without looking at their encoding, and a
/// text frame that is not UTF-8 makes browsers drop the whole connection.
/// The scan builds nothing (`IgnoredAny`), so it costs one pass over the
/// bytes, and it does not recurse, so any nesting depth is safe to check.
pub fn is_json_value(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
        Err(_) => false,
    }
}

/// Writes one JSON object field by field; keys are escaped, values are
/// written by the caller's choice of method.
///
/// Keys are emitted in call order; to match the Elixir server byte for byte,
/// call them in the order Jason would emit a map's keys (sorted).
///
/// ```
/// use bytes::BytesMut;
/// use realtime::proto::json::ObjectWriter;
/// let mut out = BytesMut::new();
/// let mut o = ObjectWriter::new(&mut out);
/// o.str("extension", "system").raw("status", b"\"ok\"");
/// o.finish();
/// assert_eq!(&out[..], br#"{"extension":"system","status":"ok"}"#);
/// ```
pub struct ObjectWriter<'a> {
    /// The buffer the object is appended to.
    out: &'a mut BytesMut,
    /// Whether the next field needs a leading comma.
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    /// Opens the object (writes `{`).
    pub fn new(out: &'a mut BytesMut) -> Self {
        out.put_u8(b'{');
        ObjectWriter { out, first: true }
    }

    /// Writes `"key":` and returns the buffer so the caller can append the value.
    pub fn key(&mut self, key: &str) -> &mut BytesMut {
        if !self.first {
            self.out.put_u8(b',');
        }
        self.first = false;
        write_str(self.out, key);
        self.out.put_u8(b':');
        self.out
    }

    /// Writes a string field.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        write_str(self.key(key), value);
        self
    }

    /// Writes a field whose value is already-encoded JSON text.
    pub fn raw(&mut self, key: &str, value: &[u8]) -> &mut Self {
        self.key(key).extend_from_slice(value);
        self
    }

    /// Writes an unsigned integer field.
    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        write_u64(self.key(key), value);
        self
    }

    /// Writes a boolean field.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        write_bool(self.key(key), value);
        self
    }

    /// Closes the object (writes `}`).
    pub fn finish(self) {
        self.out.put_u8(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(s: &str) -> String {
        let mut out = BytesMut::new();
        write_str(&mut out, s);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn plain_strings_are_copied() {
        assert_eq!(enc(""), r#""""#);
        assert_eq!(enc("realtime:room1"), r#""realtime:room1""#);
        assert_eq!(enc("a/b<c>é€😀\u{7f}"), "\"a/b<c>é€😀\u{7f}\"");
        assert!(!needs_escape("realtime:room1"));
    }

    #[test]
    fn escapes_match_jason() {
        assert_eq!(enc("\"\\"), r#""\"\\""#);
        assert_eq!(enc("\u{8}\t\n\u{c}\r"), r#""\b\t\n\f\r""#);
        assert_eq!(enc("\u{0}\u{1}\u{1f}"), r#""\u0000\u0001\u001F""#);
        assert_eq!(enc("a\u{b}b"), r#""a\u000Bb""#);
        // U+2028/U+2029 are only escaped in Jason's javascript_safe mode.
        assert_eq!(enc("\u{2028}"), "\"\u{2028}\"");
        assert!(needs_escape("a\"b"));
    }

    #[test]
    fn quote_matches_write_str() {
        for s in ["", "x", "a\"b\\c\n\u{1}é"] {
            assert_eq!(quote(s), enc(s));
        }
    }

    #[test]
    fn numbers_and_literals() {
        let mut out = BytesMut::new();
        for n in [0, 7, 10, 31339781, u64::MAX] {
            out.clear();
            write_u64(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
        out.clear();
        write_bool(&mut out, true);
        write_bool(&mut out, false);
        write_null(&mut out);
        write_raw_or_null(&mut out, Some(b"{}"));
        write_raw_or_null(&mut out, None);
        assert_eq!(&out[..], b"truefalsenull{}null");
    }

    #[test]
    fn object_writer() {
        let mut out = BytesMut::new();
        ObjectWriter::new(&mut out).finish();
        assert_eq!(&out[..], b"{}");
        out.clear();
        let mut o = ObjectWriter::new(&mut out);
        o.str("a\"", "x\n")
            .u64("n", 5)
            .bool("b", false)
            .raw("r", b"[1]");
        o.finish();
        assert_eq!(&out[..], br#"{"a\"":"x\n","n":5,"b":false,"r":[1]}"#);
    }

    #[test]
    fn json_values() {
        for ok in [
            &b"1"[..],
            b" {\"a\":[1,2]} ",
            b"\"\xc3\xa9\"",
            b"null",
            b"\"\\ud83d\\ude00\"",
        ] {
            assert!(is_json_value(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        // `JSON.stringify` escapes a lone surrogate; that text is valid JSON.
        assert!(is_json_value(br#""\ud800""#));
        let forged = br#"1},"event":"phx_close","topic":"realtime:room","ref":"1","x":{"a":1"#;
        for bad in [
            &b""[..],
            b" ",
            b"{\"a\":",
            b"1 2",
            b"\"\xff\"",
            b"\xff",
            b"{\"a\":1}}",
            &forged[..],
            b"\"a\x01\"",
            b"NaN",
        ] {
            assert!(!is_json_value(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        // The scan keeps its own stack rather than recursing, so nesting
        // as deep as a frame allows is judged like anything else (as
        // `JSON.parse` would), without risk to the server's stack.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(is_json_value(deep.as_bytes()));
        assert!(!is_json_value(&deep.as_bytes()[1..]));
    }

    proptest! {
        #[test]
        fn write_str_round_trips_through_serde(s in any::<String>()) {
            let text = enc(&s);
            let back: String = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, s.clone());
            prop_assert_eq!(quote(&s), text);
        }
    }
}
