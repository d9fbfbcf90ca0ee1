//! JSON text as `to_jsonb` renders it, written compactly into a byte buffer.
//!
//! - [`write_number`]: a number the way `numeric_in` then `numeric_out`
//!   print it (jsonb stores every JSON number as `numeric`): exponents
//!   expanded (`1.5e-07` -> `0.00000015`, `1e+100` -> `1` and 100 zeros),
//!   scale kept (`1.50` stays `1.50`), negative zero printed as `0`.
//! - [`write_document`]: a JSON document, in one of two modes.
//!   [`Mode::Jsonb`] reads `jsonb_out` text (keys already in jsonb order) and
//!   drops the whitespace jsonb puts after `,` and `:`. [`Mode::Json`] reads
//!   arbitrary `json` text and converts it the way the json -> jsonb cast
//!   does: object keys sorted by (length, bytes), the last of duplicate keys
//!   kept, numbers normalised, `\u` escapes decoded (`\u0000` and lone
//!   surrogates rejected, as jsonb rejects them).
//! - [`write_string`]: a string literal escaped like the rest of the wire
//!   (Jason's escapes, see [`crate::proto::json`]).
//!
//! Output is compact (no whitespace) to match the rest of the server's JSON;
//! it parses to the same value as `to_jsonb(..)::text` and equals it byte for
//! byte once jsonb's `", "`/`": "` spacing is removed, except that control
//! characters come out as `\u001F` (Jason, upper-case) where jsonb writes
//! `\u001f`.

use std::borrow::Cow;

use bytes::BufMut;

use crate::proto::json::write_str_buf;

/// Deepest nesting accepted in a JSON document (PostgreSQL's own limit is
/// the stack depth; this keeps a hostile document from exhausting ours).
pub const MAX_DEPTH: usize = 512;

/// Largest decimal exponent accepted in a number (keeps `1e999999999` from
/// expanding into a gigabyte of zeros; numeric's own limit is lower).
const MAX_EXPONENT: i64 = 200_000;

/// Why a JSON text could not be converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON: {0}")]
pub struct JsonError(pub &'static str);

/// What kind of text [`write_document`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `json` text: converted to jsonb's canonical form.
    Json,
    /// `jsonb_out` text: already canonical, only compacted.
    Jsonb,
}

/// Appends `s` as a JSON string (quotes included). Invalid UTF-8 (only
/// possible from a non-UTF-8 database) is replaced with U+FFFD.
pub fn write_string<B: BufMut>(out: &mut B, s: &[u8]) {
    match std::str::from_utf8(s) {
        Ok(s) => write_str_buf(out, s),
        Err(_) => write_str_buf(out, &String::from_utf8_lossy(s)),
    }
}

/// The parts of a JSON number.
struct Number<'a> {
    /// A leading `-` was present.
    negative: bool,
    /// Digits before the point.
    int: &'a [u8],
    /// Digits after the point.
    frac: &'a [u8],
    /// The decimal exponent.
    exp: i64,
}

/// Splits a JSON number (RFC 8259 grammar, plus the `+` exponent sign) into
/// its parts; returns the parts and the bytes consumed.
fn scan_number(s: &[u8]) -> Result<(Number<'_>, usize), JsonError> {
    const BAD: JsonError = JsonError("bad number");
    let mut i = 0;
    let negative = s.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let int_start = i;
    while s.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int = &s[int_start..i];
    if int.is_empty() || (int.len() > 1 && int[0] == b'0') {
        return Err(BAD);
    }
    let mut frac: &[u8] = &[];
    if s.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        frac = &s[start..i];
        if frac.is_empty() {
            return Err(BAD);
        }
    }
    let mut exp = 0i64;
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        let neg = match s.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while let Some(d) = s.get(i).filter(|d| d.is_ascii_digit()) {
            exp = (exp * 10 + i64::from(d - b'0')).min(MAX_EXPONENT + 1);
            i += 1;
        }
        if i == start {
            return Err(BAD);
        }
        if exp > MAX_EXPONENT {
            return Err(JsonError("number exponent too large"));
        }
        if neg {
            exp = -exp;
        }
    }
    Ok((
        Number {
            negative,
            int,
            frac,
            exp,
        },
        i,
    ))
}

/// Whether `s` is exactly one JSON number.
pub fn is_number(s: &[u8]) -> bool {
    matches!(scan_number(s), Ok((_, n)) if n == s.len())
}

/// Appends the number `s` (JSON grammar; the whole slice) as `numeric_out`
/// would print it after `numeric_in`. On error nothing is appended.
pub fn write_number<B: BufMut>(out: &mut B, s: &[u8]) -> Result<(), JsonError> {
    let (n, len) = scan_number(s)?;
    if len != s.len() {
        return Err(JsonError("bad number"));
    }
    emit_number(out, &n);
    Ok(())
}

fn emit_number<B: BufMut>(out: &mut B, n: &Number<'_>) {
    // Fast path: no exponent, canonical already (no leading zeros by the
    // grammar), unless it is a negative zero.
    let is_zero = n.int.iter().chain(n.frac).all(|&d| d == b'0');
    if n.negative && !is_zero {
        out.put_u8(b'-');
    }
    if n.exp == 0 {
        out.put_slice(n.int);
        if !n.frac.is_empty() {
            out.put_u8(b'.');
            out.put_slice(n.frac);
        }
        return;
    }
    // All digits, with the decimal point `point` digits from the left
    // (possibly outside them); numeric keeps max(0, frac - exp) decimals,
    // which is exactly the digits right of the point.
    let digits = || n.int.iter().chain(n.frac).copied();
    let nr_digits = (n.int.len() + n.frac.len()) as i64;
    let point = n.int.len() as i64 + n.exp;
    // Integer part: digits left of the point, leading zeros stripped.
    let mut wrote_int = false;
    for (i, d) in digits().enumerate() {
        if i as i64 >= point {
            break;
        }
        if d != b'0' || wrote_int {
            out.put_u8(d);
            wrote_int = true;
        }
    }
    if point > nr_digits && wrote_int {
        put_zeros(out, (point - nr_digits) as usize);
    }
    if !wrote_int {
        out.put_u8(b'0');
    }
    if point < nr_digits {
        out.put_u8(b'.');
        if point < 0 {
            put_zeros(out, (-point) as usize);
        }
        for d in digits().skip(point.max(0) as usize) {
            out.put_u8(d);
        }
    }
}

fn put_zeros<B: BufMut>(out: &mut B, n: usize) {
    const ZEROS: [u8; 64] = [b'0'; 64];
    let mut left = n;
    while left > 0 {
        let k = left.min(ZEROS.len());
        out.put_slice(&ZEROS[..k]);
        left -= k;
    }
}

/// Appends the JSON document `text` in canonical compact form (see the
/// module doc). On error, `out` may hold a partial rendering; the caller
/// truncates.
pub fn write_document<B: BufMut>(out: &mut B, text: &[u8], mode: Mode) -> Result<(), JsonError> {
    let mut p = Parser {
        s: text,
        i: 0,
        sort: mode == Mode::Json,
    };
    p.ws();
    p.value(out, 0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(JsonError("trailing characters"));
    }
    Ok(())
}

/// A recursive-descent JSON reader that writes as it reads.
struct Parser<'a> {
    /// The document.
    s: &'a [u8],
    /// Next byte.
    i: usize,
    /// Sort and de-duplicate object keys (json -> jsonb).
    sort: bool,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value<B: BufMut>(&mut self, out: &mut B, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError("nested too deeply"));
        }
        match self.s.get(self.i) {
            Some(b'{') => self.object(out, depth),
            Some(b'[') => self.array(out, depth),
            Some(b'"') => {
                let s = self.string()?;
                write_string(out, &s);
                Ok(())
            }
            Some(b't') => self.literal(out, b"true"),
            Some(b'f') => self.literal(out, b"false"),
            Some(b'n') => self.literal(out, b"null"),
            Some(_) => {
                let (n, len) = scan_number(&self.s[self.i..])?;
                emit_number(out, &n);
                self.i += len;
                Ok(())
            }
            None => Err(JsonError("unexpected end")),
        }
    }

    fn literal<B: BufMut>(&mut self, out: &mut B, word: &[u8]) -> Result<(), JsonError> {
        if !self.s[self.i..].starts_with(word) {
            return Err(JsonError("bad literal"));
        }
        self.i += word.len();
        out.put_slice(word);
        Ok(())
    }

    fn array<B: BufMut>(&mut self, out: &mut B, depth: usize) -> Result<(), JsonError> {
        self.i += 1;
        out.put_u8(b'[');
        self.ws();
        if !self.eat(b']') {
            loop {
                self.ws();
                self.value(out, depth + 1)?;
                self.ws();
                if self.eat(b']') {
                    break;
                }
                if !self.eat(b',') {
                    return Err(JsonError("expected , or ]"));
                }
                out.put_u8(b',');
            }
        }
        out.put_u8(b']');
        Ok(())
    }

    fn object<B: BufMut>(&mut self, out: &mut B, depth: usize) -> Result<(), JsonError> {
        self.i += 1;
        // In sort mode: (decoded key, rendered value) pairs, emitted at the end.
        let mut members: Vec<(Cow<'a, [u8]>, Vec<u8>)> = Vec::new();
        // Otherwise: whether a member was written (for the comma).
        let mut wrote = false;
        out.put_u8(b'{');
        self.ws();
        if !self.eat(b'}') {
            loop {
                self.ws();
                if self.s.get(self.i) != Some(&b'"') {
                    return Err(JsonError("expected key"));
                }
                let key = self.string()?;
                self.ws();
                if !self.eat(b':') {
                    return Err(JsonError("expected :"));
                }
                self.ws();
                if self.sort {
                    let mut v = Vec::new();
                    self.value(&mut v, depth + 1)?;
                    members.push((key, v));
                } else {
                    if wrote {
                        out.put_u8(b',');
                    }
                    wrote = true;
                    write_string(out, &key);
                    out.put_u8(b':');
                    self.value(out, depth + 1)?;
                }
                self.ws();
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    return Err(JsonError("expected , or }"));
                }
            }
        }
        if self.sort {
            write_sorted_members(out, members);
        }
        out.put_u8(b'}');
        Ok(())
    }

    /// Reads a string literal starting at `"`, returning its decoded bytes
    /// (borrowed when it has no escapes).
    fn string(&mut self) -> Result<Cow<'a, [u8]>, JsonError> {
        let s: &'a [u8] = self.s;
        let start = self.i + 1;
        let mut i = start;
        // Fast scan to the closing quote or the first escape.
        while let Some(&b) = s.get(i) {
            match b {
                b'"' => {
                    self.i = i + 1;
                    return check_utf8(Cow::Borrowed(&s[start..i]));
                }
                b'\\' => break,
                0..=0x1f => return Err(JsonError("control character in string")),
                _ => i += 1,
            }
        }
        let mut buf = s[start..i.min(s.len())].to_vec();
        loop {
            match s.get(i) {
                None => return Err(JsonError("unterminated string")),
                Some(b'"') => {
                    self.i = i + 1;
                    return check_utf8(Cow::Owned(buf));
                }
                Some(b'\\') => {
                    let esc = *s.get(i + 1).ok_or(JsonError("unterminated string"))?;
                    i += 2;
                    let c = match esc {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let ch = self.unicode_escape(&mut i)?;
                            let mut tmp = [0u8; 4];
                            buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                            continue;
                        }
                        _ => return Err(JsonError("bad escape")),
                    };
                    buf.push(c);
                }
                Some(&b) if b < 0x20 => return Err(JsonError("control character in string")),
                Some(&b) => {
                    buf.push(b);
                    i += 1;
                }
            }
        }
    }

    /// Decodes the 4 hex digits at `*i` (after `\u`), and a following low
    /// surrogate escape if the first is a high surrogate.
    fn unicode_escape(&self, i: &mut usize) -> Result<char, JsonError> {
        let hi = hex4(self.s, *i)?;
        *i += 4;
        let cp = match hi {
            0 => return Err(JsonError("\\u0000 is not allowed in jsonb")),
            0xd800..=0xdbff => {
                if self.s.get(*i..*i + 2) != Some(b"\\u") {
                    return Err(JsonError("lone high surrogate"));
                }
                let lo = hex4(self.s, *i + 2)?;
                if !(0xdc00..=0xdfff).contains(&lo) {
                    return Err(JsonError("bad low surrogate"));
                }
                *i += 6;
                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(JsonError("lone low surrogate")),
            cp => cp,
        };
        char::from_u32(cp).ok_or(JsonError("bad code point"))
    }
}

fn hex4(s: &[u8], at: usize) -> Result<u32, JsonError> {
    let h = s.get(at..at + 4).ok_or(JsonError("short \\u escape"))?;
    let mut v = 0u32;
    for &c in h {
        let d = (c as char)
            .to_digit(16)
            .ok_or(JsonError("bad \\u escape"))?;
        v = v * 16 + d;
    }
    Ok(v)
}

fn check_utf8(s: Cow<'_, [u8]>) -> Result<Cow<'_, [u8]>, JsonError> {
    match std::str::from_utf8(&s) {
        Ok(_) => Ok(s),
        Err(_) => Err(JsonError("invalid UTF-8")),
    }
}

/// Emits object members in jsonb order: keys compared by length, then
/// bytes; of equal keys, the last one written wins.
pub(crate) fn write_sorted_members<B: BufMut, K: AsRef<[u8]>>(
    out: &mut B,
    mut members: Vec<(K, Vec<u8>)>,
) {
    members.sort_by(|(a, _), (b, _)| {
        let (a, b) = (a.as_ref(), b.as_ref());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    });
    let mut first = true;
    for (i, (k, v)) in members.iter().enumerate() {
        // Stable sort: the last of a run of equal keys is the last written.
        if members
            .get(i + 1)
            .is_some_and(|(next, _)| next.as_ref() == k.as_ref())
        {
            continue;
        }
        if !first {
            out.put_u8(b',');
        }
        first = false;
        write_string(out, k.as_ref());
        out.put_u8(b':');
        out.put_slice(v);
    }
}

#[cfg(test)]
#[path = "jsonb_tests.rs"]
mod tests;
