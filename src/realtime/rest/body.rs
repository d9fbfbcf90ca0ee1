//! Reading a request body the way `Plug.Parsers` does: which content types
//! are JSON, and JSON objects as ordered members with duplicates kept.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::errors::{BatchError, MAX_BODY_BYTES};
use crate::proto::http::media_type;

/// The body text `Plug.Parsers` would decode as JSON, or `None` when it
/// would not read it as JSON (no or another content type, empty body).
pub(super) fn json_body<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
) -> Result<Option<&'a str>, BatchError> {
    if !is_json_content_type(content_type) {
        return Ok(None);
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(BatchError::TooLarge);
    }
    if body.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(body).map_err(|_| BatchError::BadRequest)?;
    let raw: &RawValue = serde_json::from_str(text).map_err(|_| BatchError::BadRequest)?;
    Ok(Some(raw.get()))
}

pub(super) fn first_char(s: &str) -> Option<u8> {
    s.bytes().find(|b| !b.is_ascii_whitespace())
}

/// Whether `Plug.Parsers.JSON` parses a body of this content type:
/// `application/json` or `application/<anything>+json` (params allowed).
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    match content_type.and_then(media_type) {
        Some((t, s)) => t == "application" && (s == "json" || s.ends_with("+json")),
        None => false,
    }
}

/// An object's members in order, duplicates kept (lookups take the first,
/// as Jason does).
pub(super) struct Pairs<'a>(pub(super) Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Pairs<'a> {
    pub(super) fn parse(text: &'a str) -> Result<Self, BatchError> {
        serde_json::from_str(text).map_err(|_| BatchError::BadRequest)
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

impl<'de> Deserialize<'de> for Pairs<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(Key(k)) = m.next_key()? {
                    out.push((k, m.next_value()?));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON string that borrows from the input when it has no escapes.
pub(super) struct Key<'a>(pub(super) Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}
