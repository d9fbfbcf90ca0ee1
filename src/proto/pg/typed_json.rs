//! A column value in text format, rendered as the JSON `to_jsonb(value)`
//! gives (PROTOCOL "Typed JSON"), written straight into the payload buffer.
//!
//! Assumes the replication session prints values with `DateStyle=ISO`,
//! `TimeZone=UTC` (any zone works; the offset is carried over) and
//! `IntervalStyle=postgres`, and that the database encoding is UTF-8.
//!
//! | type | rendering |
//! |---|---|
//! | `int2 int4 int8 float4 float8 numeric` | number as `numeric_out` prints it after `numeric_in` ([`jsonb::write_number`]); `NaN`, `Infinity`, `-Infinity` as strings |
//! | `bool` | `true` / `false` |
//! | `jsonb` | the document, compacted |
//! | `json` | the document converted to jsonb (sorted keys, last duplicate wins, numbers normalised) |
//! | `timestamp` | `2024-01-01T12:00:00.123456` (the date/time space becomes `T`) |
//! | `timestamptz` | `2024-01-01T12:00:00.123456+00:00` (an hour-only offset gains `:00`) |
//! | arrays | JSON arrays, nested per dimension, `NULL` -> `null`, bounds dropped |
//! | composites | JSON objects, keys in jsonb order |
//! | domains | as their base type |
//! | everything else | the text as a JSON string (`bytea` stays `\x..` hex) |
//!
//! Output is compact; see [`jsonb`] for the one byte-level difference from
//! `to_jsonb(..)::text` beyond whitespace (control-character escapes).

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use super::jsonb::{self, write_sorted_members, write_string, JsonError, Mode};
use super::pgoutput::Column;
use super::types::{kind, Category, CompositeField, Kind, TypeResolver};
use super::Oid;

/// Deepest chain of domains, arrays and composites followed for one value.
const MAX_TYPE_DEPTH: usize = 32;

/// A byte buffer typed JSON can be written into and rolled back on error.
pub trait JsonBuf: BufMut {
    /// Bytes written so far.
    fn written(&self) -> usize;
    /// Drops everything after the first `len` bytes.
    fn rollback(&mut self, len: usize);
}

impl JsonBuf for Vec<u8> {
    fn written(&self) -> usize {
        self.len()
    }
    fn rollback(&mut self, len: usize) {
        self.truncate(len);
    }
}

impl JsonBuf for BytesMut {
    fn written(&self) -> usize {
        self.len()
    }
    fn rollback(&mut self, len: usize) {
        self.truncate(len);
    }
}

/// Why a value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypedJsonError {
    /// Neither the built-in table nor the resolver knows the type: resolve
    /// it (see [`super::types::unresolved`]) and retry.
    #[error("unknown type OID {0}")]
    UnknownType(Oid),
    /// The type converts to JSON through a cast only the database can run.
    #[error("type OID {0} needs the database's cast to json")]
    NeedsDatabase(Oid),
    /// The text is not a valid value of its type.
    #[error("invalid {what} text")]
    Invalid {
        /// The rendering that failed (`number`, `bool`, `array`, ...).
        what: &'static str,
    },
    /// A json/jsonb value that does not parse.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// Domains, arrays and composites nested deeper than the limit (a
    /// resolver cycle).
    #[error("type nesting too deep")]
    TooDeep,
    /// A binary-format column (the driver asks for text only).
    #[error("binary column values are not supported")]
    Binary,
    /// An unchanged TOAST value: the caller omits the key instead.
    #[error("unchanged TOAST value has no JSON rendering")]
    UnchangedToast,
}

fn invalid(what: &'static str) -> TypedJsonError {
    TypedJsonError::Invalid { what }
}

/// Appends the JSON for `text`, a value of type `type_oid` in text format.
/// On error nothing is appended.
pub fn write_typed<B: JsonBuf>(
    out: &mut B,
    type_oid: Oid,
    text: &[u8],
    types: &dyn TypeResolver,
) -> Result<(), TypedJsonError> {
    let mark = out.written();
    let r = write_value(out, type_oid, text, types, 0);
    if r.is_err() {
        out.rollback(mark);
    }
    r
}

/// [`write_typed`], falling back to the text as a JSON string when the
/// value cannot be converted (unknown type, malformed text). Never fails.
pub fn write_typed_or_string<B: JsonBuf>(
    out: &mut B,
    type_oid: Oid,
    text: &[u8],
    types: &dyn TypeResolver,
) {
    if write_typed(out, type_oid, text, types).is_err() {
        write_string(out, text);
    }
}

/// Appends the JSON for one pgoutput column: `null` for SQL NULL, the typed
/// value for text. Unchanged TOAST and binary values are errors (nothing
/// appended): the caller leaves unchanged TOAST keys out of the record.
pub fn write_column<B: JsonBuf>(
    out: &mut B,
    type_oid: Oid,
    value: Column<'_>,
    types: &dyn TypeResolver,
) -> Result<(), TypedJsonError> {
    match value {
        Column::Null => {
            out.put_slice(b"null");
            Ok(())
        }
        Column::Text(text) => write_typed(out, type_oid, text, types),
        Column::UnchangedToast => Err(TypedJsonError::UnchangedToast),
        Column::Binary(_) => Err(TypedJsonError::Binary),
    }
}

fn write_value<B: BufMut>(
    out: &mut B,
    oid: Oid,
    text: &[u8],
    types: &dyn TypeResolver,
    depth: usize,
) -> Result<(), TypedJsonError> {
    if depth > MAX_TYPE_DEPTH {
        return Err(TypedJsonError::TooDeep);
    }
    match kind(oid, types).ok_or(TypedJsonError::UnknownType(oid))? {
        Kind::Scalar(c) => write_scalar(out, c, text),
        Kind::Domain { base } => write_value(out, base, text, types, depth + 1),
        Kind::Array { elem, delim } => {
            let mut a = ArrayParser {
                s: text,
                i: 0,
                delim,
                elem,
                types,
                depth,
            };
            a.parse(out)
        }
        Kind::Composite(fields) => write_record(out, fields, text, types, depth),
        Kind::CastToJson => Err(TypedJsonError::NeedsDatabase(oid)),
    }
}

/// Appends a scalar value rendered per its category.
pub fn write_scalar<B: BufMut>(
    out: &mut B,
    category: Category,
    text: &[u8],
) -> Result<(), TypedJsonError> {
    match category {
        // write_number appends nothing when the text is not a number.
        Category::Number => {
            if jsonb::write_number(out, text).is_err() {
                if !matches!(text, b"NaN" | b"Infinity" | b"-Infinity") {
                    return Err(invalid("number"));
                }
                write_string(out, text);
            }
        }
        Category::Bool => match text {
            b"t" => out.put_slice(b"true"),
            b"f" => out.put_slice(b"false"),
            _ => return Err(invalid("bool")),
        },
        Category::Json => jsonb::write_document(out, text, Mode::Json)?,
        Category::Jsonb => jsonb::write_document(out, text, Mode::Jsonb)?,
        Category::Timestamp => write_timestamp(out, text, false)?,
        Category::TimestampTz => write_timestamp(out, text, true)?,
        Category::String => write_string(out, text),
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS[.f][+HH[:MM[:SS]]][ BC]` -> the XSD form jsonb uses:
/// `T` between date and time, offsets at least `+HH:MM`. `infinity` and
/// `-infinity` pass through.
fn write_timestamp<B: BufMut>(
    out: &mut B,
    text: &[u8],
    with_zone: bool,
) -> Result<(), TypedJsonError> {
    if matches!(text, b"infinity" | b"-infinity") {
        write_string(out, text);
        return Ok(());
    }
    let bad = || invalid("timestamp");
    let sp = text.iter().position(|&b| b == b' ').ok_or_else(bad)?;
    let (date, rest) = (&text[..sp], &text[sp + 1..]);
    // The time: HH:MM:SS and an optional fraction.
    let time_len = rest
        .iter()
        .position(|&b| !(b.is_ascii_digit() || b == b':' || b == b'.'))
        .unwrap_or(rest.len());
    if date.is_empty() || time_len < 8 || !date.iter().all(|&b| b.is_ascii_digit() || b == b'-') {
        return Err(bad());
    }
    let (time, mut rest) = rest.split_at(time_len);
    out.put_u8(b'"');
    out.put_slice(date);
    out.put_u8(b'T');
    out.put_slice(time);
    if with_zone {
        let sign = *rest.first().ok_or_else(bad)?;
        let zone_len = rest[1..]
            .iter()
            .position(|&b| !(b.is_ascii_digit() || b == b':'))
            .map_or(rest.len(), |n| n + 1);
        let zone = &rest[..zone_len];
        if !matches!(sign, b'+' | b'-') || zone_len < 3 {
            return Err(bad());
        }
        out.put_slice(zone);
        if zone_len == 3 {
            out.put_slice(b":00");
        }
        rest = &rest[zone_len..];
    }
    match rest {
        b"" => {}
        b" BC" => out.put_slice(b" BC"),
        _ => return Err(bad()),
    }
    out.put_u8(b'"');
    Ok(())
}

/// Reads `array_out` text: optional `[lb:ub]...=` bounds, then nested
/// braces of elements separated by the delimiter; elements are bare or
/// double-quoted with backslash escapes; a bare `NULL` is SQL NULL.
struct ArrayParser<'a> {
    /// The array text.
    s: &'a [u8],
    /// Next byte.
    i: usize,
    /// Element delimiter.
    delim: u8,
    /// Element type.
    elem: Oid,
    /// Resolver for the element type.
    types: &'a dyn TypeResolver,
    /// Type nesting depth of the array itself.
    depth: usize,
}

impl ArrayParser<'_> {
    fn parse<B: BufMut>(&mut self, out: &mut B) -> Result<(), TypedJsonError> {
        if self.s.first() == Some(&b'[') {
            let eq = self
                .s
                .iter()
                .position(|&b| b == b'=')
                .ok_or(invalid("array bounds"))?;
            let bounds = &self.s[..eq];
            if !bounds
                .iter()
                .all(|&b| b.is_ascii_digit() || matches!(b, b'[' | b']' | b':' | b'-'))
            {
                return Err(invalid("array bounds"));
            }
            self.i = eq + 1;
        }
        self.ws();
        if self.s.get(self.i) != Some(&b'{') {
            return Err(invalid("array"));
        }
        self.sub_array(out, 0)?;
        self.ws();
        if self.i != self.s.len() {
            return Err(invalid("array"));
        }
        Ok(())
    }

    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    /// At `{`: writes one (sub-)array.
    fn sub_array<B: BufMut>(&mut self, out: &mut B, dim: usize) -> Result<(), TypedJsonError> {
        // PostgreSQL allows at most 6 dimensions.
        if dim >= 6 {
            return Err(invalid("array dimensions"));
        }
        self.i += 1;
        out.put_u8(b'[');
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            out.put_u8(b']');
            return Ok(());
        }
        let mut first = true;
        loop {
            if !first {
                out.put_u8(b',');
            }
            first = false;
            self.ws();
            match self.s.get(self.i) {
                Some(b'{') => self.sub_array(out, dim + 1)?,
                Some(_) => self.element(out)?,
                None => return Err(invalid("array")),
            }
            self.ws();
            match self.s.get(self.i) {
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                Some(&b) if b == self.delim => self.i += 1,
                _ => return Err(invalid("array")),
            }
        }
        out.put_u8(b']');
        Ok(())
    }

    /// One element, bare or quoted, converted by the element type.
    fn element<B: BufMut>(&mut self, out: &mut B) -> Result<(), TypedJsonError> {
        let start = self.i;
        // Quotes or backslashes seen: the value is not a bare NULL.
        let mut literal = false;
        let mut in_quotes = false;
        // Bytes of the element; only copied when quotes or escapes must be
        // removed. `kept` is its length up to the last byte that is not
        // unquoted trailing whitespace.
        let mut owned: Option<Vec<u8>> = None;
        let mut kept = 0;
        let mut end_plain = self.i;
        while let Some(&b) = self.s.get(self.i) {
            if !in_quotes && (b == self.delim || b == b'}') {
                break;
            }
            if !in_quotes && b == b'{' {
                return Err(invalid("array"));
            }
            match b {
                b'"' => {
                    in_quotes = !in_quotes;
                    literal = true;
                    let o = owned.get_or_insert_with(|| self.s[start..self.i].to_vec());
                    kept = o.len();
                    self.i += 1;
                }
                b'\\' => {
                    let c = *self.s.get(self.i + 1).ok_or(invalid("array"))?;
                    literal = true;
                    let o = owned.get_or_insert_with(|| self.s[start..self.i].to_vec());
                    o.push(c);
                    kept = o.len();
                    self.i += 2;
                }
                _ => {
                    self.i += 1;
                    let significant = in_quotes || !b.is_ascii_whitespace();
                    if let Some(o) = owned.as_mut() {
                        o.push(b);
                        if significant {
                            kept = o.len();
                        }
                    } else if significant {
                        end_plain = self.i;
                    }
                }
            }
        }
        if in_quotes {
            return Err(invalid("array"));
        }
        let value: Cow<'_, [u8]> = match owned {
            Some(mut v) => {
                v.truncate(kept);
                Cow::Owned(v)
            }
            // Unquoted: trailing whitespace is not part of the value.
            None => Cow::Borrowed(&self.s[start..end_plain]),
        };
        if !literal {
            if value.eq_ignore_ascii_case(b"NULL") {
                out.put_slice(b"null");
                return Ok(());
            }
            if value.is_empty() {
                return Err(invalid("array"));
            }
        }
        write_value(out, self.elem, &value, self.types, self.depth + 1)
    }
}

/// Reads `record_out` text `(f1,f2,...)` and writes a JSON object keyed by
/// attribute name (jsonb key order). An empty unquoted field is NULL.
fn write_record<B: BufMut>(
    out: &mut B,
    fields: &[CompositeField],
    text: &[u8],
    types: &dyn TypeResolver,
    depth: usize,
) -> Result<(), TypedJsonError> {
    let bad = || invalid("record");
    let inner = text
        .strip_prefix(b"(")
        .and_then(|t| t.strip_suffix(b")"))
        .ok_or_else(bad)?;
    let mut members: Vec<(&str, Vec<u8>)> = Vec::with_capacity(fields.len());
    let mut i = 0;
    for (n, field) in fields.iter().enumerate() {
        let mut value = Vec::new();
        let mut quoted = false;
        let mut in_quotes = false;
        loop {
            match inner.get(i) {
                None => break,
                Some(b',') if !in_quotes => break,
                Some(b'"') if in_quotes && inner.get(i + 1) == Some(&b'"') => {
                    value.push(b'"');
                    i += 2;
                }
                Some(b'"') => {
                    in_quotes = !in_quotes;
                    quoted = true;
                    i += 1;
                }
                Some(b'\\') => {
                    value.push(*inner.get(i + 1).ok_or_else(bad)?);
                    i += 2;
                }
                Some(&b) => {
                    value.push(b);
                    i += 1;
                }
            }
        }
        if in_quotes {
            return Err(bad());
        }
        // Exactly one comma between fields, none after the last.
        let last = n + 1 == fields.len();
        match inner.get(i) {
            Some(b',') if !last => i += 1,
            None if last => {}
            _ => return Err(bad()),
        }
        let mut rendered = Vec::new();
        if value.is_empty() && !quoted {
            rendered.extend_from_slice(b"null");
        } else {
            write_value(&mut rendered, field.type_oid, &value, types, depth + 1)?;
        }
        members.push((field.name.as_str(), rendered));
    }
    if fields.is_empty() && !inner.is_empty() {
        return Err(bad());
    }
    out.put_u8(b'{');
    write_sorted_members(out, members);
    out.put_u8(b'}');
    Ok(())
}

#[cfg(test)]
#[path = "typed_json_tests.rs"]
mod tests;
