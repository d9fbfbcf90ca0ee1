//! REST broadcast request bodies (PROTOCOL 4.4, 4.5) and the exact answers
//! the Elixir server gives for bad ones.
//!
//! Facts settled from the Elixir sources (realtime 2.129.8, Plug 1.20,
//! Phoenix 1.8, Ecto 3.13, Jason 1.4):
//!
//! - Bodies are parsed by `Plug.Parsers` in the endpoint, **before** routing,
//!   tenant lookup and auth. Only `application/json` and `application/*+json`
//!   are parsed as JSON; an empty JSON body is `{}`; a non-object JSON value
//!   becomes `{"_json": value}`; invalid JSON raises `ParseError` -> **400**,
//!   a body over 8 000 000 bytes -> **413**, both rendered by the error view
//!   (see [`phoenix_error`]). Without a `Content-Type` the body is not read
//!   at all. Duplicate object keys: Jason keeps the **first**.
//! - Batch validation is an Ecto changeset rendered as
//!   `{"errors": traverse_errors}` with status 422; see [`parse_batch`].
//! - The single endpoint checks the content type (415) after parsing, and
//!   broadcasts `conn.body_params` as the payload; see
//!   [`parse_single_json`].
//! - Payload size is `:erlang.external_size(decoded_term) > max` where
//!   `max = max_payload_size_in_kb * 1000 + 500`; see [`external_size`].

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::proto::http::{media_type, percent_decode, phoenix_error, reason_phrase};
use crate::proto::json::write_str_buf;

/// Largest body `Plug.Parsers` reads (its default `:length`); more is 413.
pub const MAX_BODY_BYTES: usize = 8_000_000;

/// 415 body of the single endpoint (`ValidateBroadcastContentType`).
pub const UNSUPPORTED_MEDIA_TYPE_BODY: &str =
    r#"{"error":"Unsupported Media Type. Use application/json or application/octet-stream"}"#;

/// 401 body when the JWT is missing or invalid (`AuthTenant`).
pub const UNAUTHORIZED_BODY: &str = r#"{"message":"Unauthorized"}"#;

/// 401 body when the Host names no tenant (`AssignTenant`).
pub const TENANT_NOT_FOUND_BODY: &str = r#"{"message":"Tenant not found in database"}"#;

/// The changeset message for an oversize payload.
pub const PAYLOAD_TOO_LARGE: &str = "Payload size exceeds tenant limit";

const CANT_BE_BLANK: &str = "can't be blank";
const IS_INVALID: &str = "is invalid";
const ALREADY_TAKEN: &str = "has already been taken";

/// Content type of JSON error bodies (Phoenix adds the charset).
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// A request the REST layer refuses, with the Elixir server's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The body is not JSON (`Plug.Parsers.ParseError`): 400.
    #[error("request body is not valid JSON")]
    BadRequest,
    /// The body exceeds [`MAX_BODY_BYTES`]: 413.
    #[error("request body too large")]
    TooLarge,
    /// The Elixir server crashes on this input (e.g. a JSON array inside
    /// `messages`): 500.
    #[error("input the Elixir server crashes on")]
    Crash,
    /// Changeset errors: 422 with this `{"errors":{...}}` body.
    #[error("invalid broadcast: {0}")]
    Unprocessable(String),
}

impl BatchError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            BatchError::BadRequest => 400,
            BatchError::TooLarge => 413,
            BatchError::Crash => 500,
            BatchError::Unprocessable(_) => 422,
        }
    }

    /// The body as the server sends it to a client asking for JSON. For
    /// 400/413/500 that is the reason phrase as a JSON string
    /// (`"Bad Request"`); with the usual `Accept: */*` Phoenix renders HTML
    /// instead, so prefer [`BatchError::render`].
    pub fn body_json(&self) -> String {
        match self {
            BatchError::Unprocessable(body) => body.clone(),
            other => format!("\"{}\"", reason_phrase(other.status())),
        }
    }

    /// Content type and body for a request with this `Accept` header: the
    /// 422 is always JSON; the others go through Phoenix's error rendering.
    pub fn render(&self, accept: Option<&str>) -> (&'static str, Vec<u8>) {
        match self {
            BatchError::Unprocessable(body) => (JSON_CONTENT_TYPE, body.clone().into_bytes()),
            other => phoenix_error(other.status(), accept),
        }
    }
}

/// One message of a `POST /api/broadcast` body, validated.
#[derive(Debug, Clone)]
pub struct BatchMessage {
    /// Sub-topic (no `realtime:` prefix).
    pub topic: String,
    /// User event name.
    pub event: String,
    /// The payload object as sent.
    pub payload: Box<RawValue>,
    /// Private channel message (needs the write policy).
    pub private: bool,
    /// Optional message id, echoed as `meta.id`.
    pub id: Option<String>,
}

impl BatchMessage {
    /// Writes the broadcast payload subscribers get, keys in the order
    /// Jason writes this map: `{"event":E,["meta":{"id":ID},]"payload":P,
    /// "type":"broadcast"}`. `P` is copied as sent (Elixir re-encodes it
    /// compactly with sorted keys; clients cannot tell).
    pub fn encode_broadcast_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"event\":");
        write_str_buf(out, &self.event);
        if let Some(id) = &self.id {
            out.extend_from_slice(b",\"meta\":{\"id\":");
            write_str_buf(out, id);
            out.push(b'}');
        }
        out.extend_from_slice(b",\"payload\":");
        out.extend_from_slice(self.payload.get().as_bytes());
        out.extend_from_slice(b",\"type\":\"broadcast\"}");
    }
}

/// Parses and validates a `POST /api/broadcast` JSON body. Same as
/// [`parse_batch_request`] with `Content-Type: application/json`.
pub fn parse_batch(body: &[u8], max_payload_bytes: usize) -> Result<Vec<BatchMessage>, BatchError> {
    parse_batch_request(Some("application/json"), body, max_payload_bytes)
}

/// Parses and validates a `POST /api/broadcast` body sent with
/// `content_type`, exactly as the Elixir server's `BatchBroadcast`
/// changeset does. `max_payload_bytes` is
/// `max_payload_size_in_kb * 1000 + 500`, compared with the payload's
/// [`external_size`].
///
/// 422 bodies (fields of a message in key order `event`, `id`, `payload`,
/// `private`, `topic`; one message per element, `{}` for valid ones):
/// - `messages` absent (or body not parsed as JSON), `[]`:
///   `{"errors":{"messages":["can't be blank"]}}`
/// - `messages` not a list (nor an index-keyed object), or an element not
///   an object: `{"errors":{"messages":["is invalid"]}}`
/// - topic/event/payload absent, `null` or a whitespace-only string:
///   `"can't be blank"`; topic/event/id not strings, payload not an object,
///   private not `true`/`false`/`"true"`/`"false"`/`"1"`/`"0"`:
///   `"is invalid"`; an `id` repeated in one batch: `"has already been
///   taken"` on the later ones; oversize payload:
///   `"Payload size exceeds tenant limit"`.
///
/// A JSON array element inside `messages` crashes the Elixir server
/// ([`BatchError::Crash`], 500).
pub fn parse_batch_request(
    content_type: Option<&str>,
    body: &[u8],
    max_payload_bytes: usize,
) -> Result<Vec<BatchMessage>, BatchError> {
    let messages = match json_body(content_type, body)? {
        Some(text) => match first_char(text) {
            Some(b'{') => Pairs::parse(text)?.get("messages"),
            _ => None,
        },
        None => None,
    };
    let Some(messages) = messages else {
        return Err(messages_error(CANT_BE_BLANK));
    };
    let items: Vec<&RawValue> = match first_char(messages.get()) {
        Some(b'[') => serde_json::from_str(messages.get()).map_err(|_| BatchError::BadRequest)?,
        Some(b'{') => index_keyed(Pairs::parse(messages.get())?),
        _ => return Err(messages_error(IS_INVALID)),
    };
    if items.is_empty() {
        return Err(messages_error(CANT_BE_BLANK));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut errors: Vec<FieldErrors> = Vec::with_capacity(items.len());
    let mut seen_ids: HashSet<String> = HashSet::new();
    for item in items {
        match first_char(item.get()) {
            Some(b'{') => {}
            Some(b'[') => return Err(BatchError::Crash),
            _ => return Err(messages_error(IS_INVALID)),
        }
        let (msg, mut errs) = cast_message(&Pairs::parse(item.get())?, max_payload_bytes);
        if let Some(id) = msg.id.as_ref().filter(|_| errs.id.is_none()) {
            if !seen_ids.insert(id.clone()) {
                errs.id = Some(ALREADY_TAKEN);
            }
        }
        if errs.is_empty() {
            out.push(msg);
        }
        errors.push(errs);
    }
    if errors.iter().all(FieldErrors::is_empty) {
        return Ok(out);
    }
    let mut body = String::from(r#"{"errors":{"messages":["#);
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        e.write(&mut body);
    }
    body.push_str("]}}");
    Err(BatchError::Unprocessable(body))
}

fn messages_error(msg: &str) -> BatchError {
    BatchError::Unprocessable(format!(r#"{{"errors":{{"messages":["{msg}"]}}}}"#))
}

/// The body text `Plug.Parsers` would decode as JSON, or `None` when it
/// would not read it as JSON (no or another content type, empty body).
fn json_body<'a>(
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

fn first_char(s: &str) -> Option<u8> {
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
struct Pairs<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Pairs<'a> {
    fn parse(text: &'a str) -> Result<Self, BatchError> {
        serde_json::from_str(text).map_err(|_| BatchError::BadRequest)
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
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
struct Key<'a>(Cow<'a, str>);

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

/// Ecto accepts a many-embed as an object keyed by index (form style):
/// values ordered by key, integer-looking keys (under 32 bytes) numerically
/// first, then the others bytewise; duplicate keys keep the first.
fn index_keyed(pairs: Pairs<'_>) -> Vec<&RawValue> {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    enum SortKey<'s> {
        Int(i128),
        Str(&'s str),
    }
    let sort_key = |k: &str| -> i128 {
        let digits = k.strip_prefix(['+', '-']).unwrap_or(k);
        if k.len() < 32 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let n: i128 = digits.parse().unwrap_or(0);
            if k.starts_with('-') {
                -n
            } else {
                n
            }
        } else {
            i128::MAX
        }
    };
    let mut items: Vec<(SortKey<'_>, &str, usize, &RawValue)> = pairs
        .0
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let n = sort_key(k);
            let sk = if n == i128::MAX {
                SortKey::Str(k)
            } else {
                SortKey::Int(n)
            };
            (sk, &**k, i, *v)
        })
        .collect();
    items.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    items.dedup_by(|later, first| later.1 == first.1);
    items.into_iter().map(|(_, _, _, v)| v).collect()
}

/// Per-field changeset errors of one message (one message each at most).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct FieldErrors {
    event: Option<&'static str>,
    id: Option<&'static str>,
    payload: Option<&'static str>,
    private: Option<&'static str>,
    topic: Option<&'static str>,
}

impl FieldErrors {
    fn is_empty(&self) -> bool {
        *self == FieldErrors::default()
    }

    fn write(&self, out: &mut String) {
        out.push('{');
        let mut first = true;
        for (name, msg) in [
            ("event", self.event),
            ("id", self.id),
            ("payload", self.payload),
            ("private", self.private),
            ("topic", self.topic),
        ] {
            if let Some(msg) = msg {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&format!(r#""{name}":["{msg}"]"#));
            }
        }
        out.push('}');
    }
}

/// What an Ecto cast made of one field.
enum Cast<T> {
    /// Absent, `null`, or a whitespace-only string (Ecto's empty values).
    Missing,
    /// A valid value.
    Value(T),
    /// Present but of the wrong type.
    Invalid,
}

fn cast_string(raw: Option<&RawValue>) -> Cast<String> {
    let Some(raw) = raw else { return Cast::Missing };
    match serde_json::from_str::<Option<String>>(raw.get()) {
        Ok(None) => Cast::Missing,
        Ok(Some(s)) if is_blank(&s) => Cast::Missing,
        Ok(Some(s)) => Cast::Value(s),
        Err(_) => Cast::Invalid,
    }
}

fn cast_map(raw: Option<&RawValue>) -> Cast<&RawValue> {
    let Some(raw) = raw else { return Cast::Missing };
    match first_char(raw.get()) {
        Some(b'{') => Cast::Value(raw),
        Some(b'n') => Cast::Missing,
        Some(b'"') => match serde_json::from_str::<String>(raw.get()) {
            Ok(s) if is_blank(&s) => Cast::Missing,
            _ => Cast::Invalid,
        },
        _ => Cast::Invalid,
    }
}

fn cast_bool(raw: Option<&RawValue>) -> Cast<bool> {
    let Some(raw) = raw else { return Cast::Missing };
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Null) => Cast::Missing,
        Ok(Value::Bool(b)) => Cast::Value(b),
        Ok(Value::String(s)) => match s.as_str() {
            "true" | "1" => Cast::Value(true),
            "false" | "0" => Cast::Value(false),
            s if is_blank(s) => Cast::Missing,
            _ => Cast::Invalid,
        },
        _ => Cast::Invalid,
    }
}

/// Ecto's empty value test (`String.trim_leading(s) == ""`).
fn is_blank(s: &str) -> bool {
    s.trim_start().is_empty()
}

fn cast_message(m: &Pairs<'_>, max_payload_bytes: usize) -> (BatchMessage, FieldErrors) {
    let mut errs = FieldErrors::default();
    let required = |c: Cast<String>, slot: &mut Option<&'static str>| match c {
        Cast::Value(s) => s,
        Cast::Missing => {
            *slot = Some(CANT_BE_BLANK);
            String::new()
        }
        Cast::Invalid => {
            *slot = Some(IS_INVALID);
            String::new()
        }
    };
    let topic = required(cast_string(m.get("topic")), &mut errs.topic);
    let event = required(cast_string(m.get("event")), &mut errs.event);
    let id = match cast_string(m.get("id")) {
        Cast::Value(s) => Some(s),
        Cast::Missing => None,
        Cast::Invalid => {
            errs.id = Some(IS_INVALID);
            None
        }
    };
    let private = match cast_bool(m.get("private")) {
        Cast::Value(b) => b,
        Cast::Missing => false,
        Cast::Invalid => {
            errs.private = Some(IS_INVALID);
            false
        }
    };
    let payload = match cast_map(m.get("payload")) {
        Cast::Value(raw) => {
            if external_size_json(raw.get()).is_none_or(|n| n > max_payload_bytes) {
                errs.payload = Some(PAYLOAD_TOO_LARGE);
            }
            raw.to_owned()
        }
        Cast::Missing => {
            errs.payload = Some(CANT_BE_BLANK);
            empty_object()
        }
        Cast::Invalid => {
            errs.payload = Some(IS_INVALID);
            empty_object()
        }
    };
    let msg = BatchMessage {
        topic,
        event,
        payload,
        private,
        id,
    };
    (msg, errs)
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("valid JSON")
}

/// How the single endpoint reads its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleKind {
    /// JSON payload (also when `Content-Type` is absent).
    Json,
    /// `application/octet-stream`: the raw body is a binary payload.
    Binary,
}

/// The single endpoint's content-type rule (`ValidateBroadcastContentType`):
/// absent or `application/json` -> JSON, `application/octet-stream` ->
/// binary (parameters allowed, case-insensitive), anything else (including
/// `application/vnd.x+json` and unparsable values) -> 415 with
/// [`UNSUPPORTED_MEDIA_TYPE_BODY`].
pub fn check_single_content_type(
    content_type: Option<&str>,
) -> Result<SingleKind, (u16, &'static str)> {
    let Some(ct) = content_type else {
        return Ok(SingleKind::Json);
    };
    match media_type(ct) {
        Some((t, s)) if t == "application" && s == "json" => Ok(SingleKind::Json),
        Some((t, s)) if t == "application" && s == "octet-stream" => Ok(SingleKind::Binary),
        _ => Err((415, UNSUPPORTED_MEDIA_TYPE_BODY)),
    }
}

/// The JSON payload of a single-endpoint request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleJson<'a> {
    /// Payload JSON to broadcast (`conn.body_params`): the body object;
    /// `{}` when the body is empty **or there is no Content-Type** (Plug
    /// does not read the body then); `{"_json":<value>}` for a non-object
    /// JSON body.
    pub payload: Cow<'a, [u8]>,
    /// The body object's first `"private"` member, if any: it overrides the
    /// `?private=` query parameter (Phoenix merges body params over query
    /// params); `true` or `"true"` mean private.
    pub private_override: Option<bool>,
    /// The payload's [`external_size`], for [`validate_single`].
    pub external_size: usize,
}

/// Reads a single-endpoint body as the Elixir server does before its
/// controller runs. Errors: invalid JSON (only checked for JSON content
/// types) -> 400; over [`MAX_BODY_BYTES`] -> 413. Call it before
/// [`check_single_content_type`]: `Plug.Parsers` runs first, so
/// `application/vnd.x+json` with a bad body is a 400, not a 415.
pub fn parse_single_json<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
) -> Result<SingleJson<'a>, BatchError> {
    let empty = || SingleJson {
        payload: Cow::Borrowed(b"{}"),
        private_override: None,
        external_size: 6,
    };
    let Some(text) = json_body(content_type, body)? else {
        return Ok(empty());
    };
    if first_char(text) == Some(b'{') {
        let private_override = Pairs::parse(text)?
            .get("private")
            .map(|v| matches!(v.get(), "true" | "\"true\""));
        let external_size = external_size_json(text).ok_or(BatchError::BadRequest)?;
        return Ok(SingleJson {
            payload: Cow::Borrowed(text.as_bytes()),
            private_override,
            external_size,
        });
    }
    let mut wrapped = Vec::with_capacity(text.len() + 10);
    wrapped.extend_from_slice(b"{\"_json\":");
    wrapped.extend_from_slice(text.as_bytes());
    wrapped.push(b'}');
    // 1 (version) + 5 (map header) + 10 ("_json" binary) + value term.
    let external_size = 16 + external_size_json(text).ok_or(BatchError::BadRequest)? - 1;
    Ok(SingleJson {
        payload: Cow::Owned(wrapped),
        private_override: None,
        external_size,
    })
}

/// Checks a single-endpoint body sent as JSON the way `Plug.Parsers` does
/// for `Content-Type: application/json`: empty is fine, invalid JSON is 400,
/// over [`MAX_BODY_BYTES`] is 413. Use [`parse_single_json`] for the payload
/// bytes themselves (and note that without a Content-Type the body is never
/// parsed, so it cannot be a 400).
pub fn check_single_json(body: &[u8]) -> Result<(), BatchError> {
    parse_single_json(Some("application/json"), body).map(|_| ())
}

/// Whether the single endpoint broadcasts privately: the body's override
/// if any, else `?private=true` (exactly `true`; last occurrence wins).
pub fn single_private(query: Option<&str>, private_override: Option<bool>) -> bool {
    private_override.unwrap_or_else(|| {
        query
            .and_then(|q| crate::proto::http::query_param(q, "private"))
            .as_deref()
            == Some("true")
    })
}

/// `external_size` of a binary payload of `len` bytes (BINARY_EXT).
pub fn binary_external_size(len: usize) -> usize {
    len + 6
}

/// The single endpoint's changeset (`SingleBroadcast.validate_message`):
/// `topic` and `event` are the decoded path segments, blank when only
/// whitespace; the payload is checked by its external size. 422 body e.g.
/// `{"errors":{"payload":["Payload size exceeds tenant limit"]}}`.
pub fn validate_single(
    topic: &str,
    event: &str,
    payload_external_size: usize,
    max_payload_bytes: usize,
) -> Result<(), BatchError> {
    let errs = FieldErrors {
        event: is_blank(event).then_some(CANT_BE_BLANK),
        payload: (payload_external_size > max_payload_bytes).then_some(PAYLOAD_TOO_LARGE),
        topic: is_blank(topic).then_some(CANT_BE_BLANK),
        ..FieldErrors::default()
    };
    if errs.is_empty() {
        return Ok(());
    }
    let mut body = String::from(r#"{"errors":"#);
    errs.write(&mut body);
    body.push('}');
    Err(BatchError::Unprocessable(body))
}

/// Splits `/api/broadcast/<topic>/events/<event>` (optionally under
/// `/realtime/v1`) into its percent-decoded topic and event. Empty segments
/// are skipped as Plug does; `None` when the path does not match (404) or a
/// segment has a malformed `%` escape (Plug answers 400).
pub fn split_single_path(path: &str) -> Option<(String, String)> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let segs = match segs.as_slice() {
        ["realtime", "v1", rest @ ..] => rest,
        all => all,
    };
    match segs {
        ["api", "broadcast", topic, "events", event] => {
            Some((percent_decode(topic)?, percent_decode(event)?))
        }
        _ => None,
    }
}

/// Why the Elixir server would crash (500) on an `Authorization` header:
/// `AuthTenant` splits it on single spaces and requires exactly two parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authorization header is not `<scheme> <token>`")]
pub struct MalformedAuthorization;

/// The token `AuthTenant` authenticates with: `Authorization: Bearer <t>`
/// (scheme case-insensitive) else the `apikey` header. An empty
/// Authorization is ignored; a non-Bearer scheme falls back to `apikey`;
/// an Authorization that is not exactly `<scheme> <token>` (one space)
/// crashes the Elixir server (500).
pub fn access_token<'a>(
    authorization: Option<&'a str>,
    apikey: Option<&'a str>,
) -> Result<Option<&'a str>, MalformedAuthorization> {
    if let Some(auth) = authorization.filter(|a| !a.is_empty()) {
        let mut parts = auth.split(' ');
        let (Some(scheme), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(MalformedAuthorization);
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(Some(token));
        }
    }
    Ok(apikey)
}

/// [`access_token`] with a malformed Authorization treated as no token
/// (a 401 instead of the Elixir server's 500).
pub fn bearer_or_apikey<'a>(
    authorization: Option<&'a str>,
    apikey: Option<&'a str>,
) -> Option<&'a str> {
    access_token(authorization, apikey).unwrap_or(None)
}

/// `:erlang.external_size/1` (OTP 26+ defaults) of the term Jason decodes
/// `v` into: strings are binaries, integers small/big ints, floats 8-byte
/// floats, `null`/`true`/`false` atoms, arrays lists (lists of integers
/// 0..=255 as `STRING_EXT`), objects maps. Includes the version byte.
pub fn external_size(v: &Value) -> usize {
    1 + term_size_value(v).0
}

/// [`external_size`] computed straight from JSON text without building a
/// tree; duplicate keys count once (the first, as Jason keeps). `None` if
/// `json` is not valid JSON. Integers beyond 64 bits count as floats.
pub fn external_size_json(json: &str) -> Option<usize> {
    let mut de = serde_json::Deserializer::from_str(json);
    let t = SizeSeed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(1 + t.0)
}

/// (size without version byte, is an integer 0..=255)
type TermSize = (usize, bool);

fn int_size_u(n: u64) -> TermSize {
    if n < 256 {
        (2, true)
    } else if n <= i32::MAX as u64 {
        (5, false)
    } else {
        (3 + (64 - n.leading_zeros() as usize).div_ceil(8), false)
    }
}

fn int_size_i(n: i64) -> TermSize {
    if n >= 0 {
        int_size_u(n as u64)
    } else if n >= i32::MIN as i64 {
        (5, false)
    } else {
        int_size_u(n.unsigned_abs())
    }
}

fn list_size(n: usize, sum: usize, all_bytes: bool) -> TermSize {
    if n == 0 {
        (1, false)
    } else if all_bytes && n < 65_535 {
        (3 + n, false)
    } else {
        (5 + sum + 1, false)
    }
}

fn atom_size(name_len: usize) -> TermSize {
    (2 + name_len, false)
}

fn term_size_value(v: &Value) -> TermSize {
    match v {
        Value::Null => atom_size(3),
        Value::Bool(true) => atom_size(4),
        Value::Bool(false) => atom_size(5),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => int_size_u(u),
            (_, Some(i)) => int_size_i(i),
            _ => (9, false),
        },
        Value::String(s) => (5 + s.len(), false),
        Value::Array(items) => {
            let (mut sum, mut all) = (0, true);
            for i in items {
                let (s, b) = term_size_value(i);
                sum += s;
                all &= b;
            }
            list_size(items.len(), sum, all)
        }
        Value::Object(m) => (
            5 + m
                .iter()
                .map(|(k, v)| 5 + k.len() + term_size_value(v).0)
                .sum::<usize>(),
            false,
        ),
    }
}

struct SizeSeed;

impl<'de> DeserializeSeed<'de> for SizeSeed {
    type Value = TermSize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TermSize, D::Error> {
        d.deserialize_any(SizeVisitor)
    }
}

struct SizeVisitor;

impl<'de> Visitor<'de> for SizeVisitor {
    type Value = TermSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<TermSize, E> {
        Ok(atom_size(3))
    }
    fn visit_bool<E>(self, b: bool) -> Result<TermSize, E> {
        Ok(atom_size(if b { 4 } else { 5 }))
    }
    fn visit_u64<E>(self, n: u64) -> Result<TermSize, E> {
        Ok(int_size_u(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<TermSize, E> {
        Ok(int_size_i(n))
    }
    fn visit_f64<E>(self, _: f64) -> Result<TermSize, E> {
        Ok((9, false))
    }
    fn visit_str<E>(self, s: &str) -> Result<TermSize, E> {
        Ok((5 + s.len(), false))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TermSize, A::Error> {
        let (mut n, mut sum, mut all) = (0, 0, true);
        while let Some((s, b)) = seq.next_element_seed(SizeSeed)? {
            n += 1;
            sum += s;
            all &= b;
        }
        Ok(list_size(n, sum, all))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<TermSize, A::Error> {
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        let mut set: HashSet<Cow<'de, str>> = HashSet::new();
        let mut sum = 5;
        while let Some(Key(k)) = m.next_key()? {
            let dup = if set.is_empty() && keys.len() < 16 {
                keys.contains(&k)
            } else {
                if set.is_empty() {
                    set.extend(keys.drain(..));
                }
                set.contains(&k)
            };
            if dup {
                m.next_value::<IgnoredAny>()?;
                continue;
            }
            let klen = k.len();
            if set.is_empty() {
                keys.push(k);
            } else {
                set.insert(k);
            }
            sum += 5 + klen + m.next_value_seed(SizeSeed)?.0;
        }
        Ok((sum, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const MAX: usize = 256 * 1000 + 500;

    fn err(body: &str) -> BatchError {
        parse_batch(body.as_bytes(), MAX).unwrap_err()
    }

    fn e422(body: &str) -> String {
        match err(body) {
            BatchError::Unprocessable(b) => b,
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn valid_batch() {
        let body = br#"{"messages":[{"topic":"room1","event":"e","payload":{"x": 1}},
            {"topic":"r2","event":"f","payload":{},"private":"true","id":"abc","extra":1}]}"#;
        let m = parse_batch(body, MAX).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (
                m[0].topic.as_str(),
                m[0].event.as_str(),
                m[0].private,
                m[0].id.as_deref()
            ),
            ("room1", "e", false, None)
        );
        assert_eq!(m[0].payload.get(), r#"{"x": 1}"#);
        assert_eq!((m[1].private, m[1].id.as_deref()), (true, Some("abc")));
        let mut out = Vec::new();
        m[1].encode_broadcast_payload(&mut out);
        assert_eq!(
            out,
            br#"{"event":"f","meta":{"id":"abc"},"payload":{},"type":"broadcast"}"#
        );
        out.clear();
        m[0].encode_broadcast_payload(&mut out);
        assert_eq!(
            out,
            br#"{"event":"e","payload":{"x": 1},"type":"broadcast"}"#
        );
    }

    #[test]
    fn messages_blank() {
        let blank = r#"{"errors":{"messages":["can't be blank"]}}"#;
        for body in [
            "",
            "{}",
            r#"{"messages":[]}"#,
            "[1]",
            "\"x\"",
            r#"{"other":1}"#,
        ] {
            assert_eq!(e422(body), blank, "{body:?}");
        }
        // Not parsed as JSON at all: no messages either.
        let r = parse_batch_request(None, br#"{"messages":[1]}"#, MAX).unwrap_err();
        assert_eq!(r.body_json(), blank);
        let r = parse_batch_request(Some("text/plain"), b"not json", MAX).unwrap_err();
        assert_eq!(r.status(), 422);
        // +json subtypes are parsed.
        let r = parse_batch_request(Some("application/vnd.api+json; charset=utf-8"), b"{", MAX)
            .unwrap_err();
        assert_eq!(r, BatchError::BadRequest);
    }

    #[test]
    fn messages_invalid() {
        let invalid = r#"{"errors":{"messages":["is invalid"]}}"#;
        for body in [
            r#"{"messages":null}"#,
            r#"{"messages":"x"}"#,
            r#"{"messages":""}"#,
            r#"{"messages":1}"#,
            r#"{"messages":[1]}"#,
            r#"{"messages":[{"topic":"a","event":"b","payload":{}}, null]}"#,
            r#"{"messages":[5, [1]]}"#,
        ] {
            assert_eq!(e422(body), invalid, "{body}");
        }
        // A list element crashes the Elixir server.
        let e = err(r#"{"messages":[[1], 5]}"#);
        assert_eq!(
            (e.status(), e.body_json()),
            (500, "\"Internal Server Error\"".to_owned())
        );
    }

    #[test]
    fn field_errors() {
        assert_eq!(
            e422(
                r#"{"messages":[{"topic":"a","event":"b","payload":{}},{"event":"b","payload":{}}]}"#
            ),
            r#"{"errors":{"messages":[{},{"topic":["can't be blank"]}]}}"#
        );
        assert_eq!(
            e422(r#"{"messages":[{}]}"#),
            r#"{"errors":{"messages":[{"event":["can't be blank"],"payload":["can't be blank"],"topic":["can't be blank"]}]}}"#
        );
        assert_eq!(
            e422(r#"{"messages":[{"topic":1,"event":"  ","payload":[1],"private":"yes","id":5}]}"#),
            r#"{"errors":{"messages":[{"event":["can't be blank"],"id":["is invalid"],"payload":["is invalid"],"private":["is invalid"],"topic":["is invalid"]}]}}"#
        );
        assert_eq!(
            e422(r#"{"messages":[{"topic":null,"event":"e","payload":" "}]}"#),
            r#"{"errors":{"messages":[{"payload":["can't be blank"],"topic":["can't be blank"]}]}}"#
        );
        assert_eq!(
            e422(r#"{"messages":[{"topic":"t","event":"e","payload":"str"}]}"#),
            r#"{"errors":{"messages":[{"payload":["is invalid"]}]}}"#
        );
    }

    #[test]
    fn private_and_id_casts() {
        let one = |extra: &str| {
            parse_batch(
                format!(r#"{{"messages":[{{"topic":"t","event":"e","payload":{{}}{extra}}}]}}"#)
                    .as_bytes(),
                MAX,
            )
        };
        for (extra, want) in [
            (r#","private":true"#, true),
            (r#","private":"1""#, true),
            (r#","private":"0""#, false),
            (r#","private":null"#, false),
            (r#","private":" ""#, false),
            ("", false),
        ] {
            assert_eq!(one(extra).unwrap()[0].private, want, "{extra}");
        }
        assert_eq!(one(r#","private":1"#).unwrap_err().status(), 422);
        assert_eq!(one(r#","id":"""#).unwrap()[0].id, None);
        assert_eq!(
            one(r#","id":"not-a-uuid""#).unwrap()[0].id.as_deref(),
            Some("not-a-uuid")
        );
    }

    #[test]
    fn duplicate_ids_are_taken() {
        let m = r#"{"topic":"t","event":"e","payload":{},"id":"x"}"#;
        assert_eq!(
            e422(&format!(
                r#"{{"messages":[{m},{m},{{"topic":"t","event":"e","payload":{{}},"id":"y"}}]}}"#
            )),
            r#"{"errors":{"messages":[{},{"id":["has already been taken"]},{}]}}"#
        );
    }

    #[test]
    fn oversize_payload() {
        // {"x":"aaa..."}: external size 1 + 5 + (5+1) + (5+n) = 17 + n.
        let max = 1000;
        let body = |n: usize| {
            format!(
                r#"{{"messages":[{{"topic":"t","event":"e","payload":{{"x":"{}"}}}}]}}"#,
                "a".repeat(n)
            )
        };
        assert!(parse_batch(body(983).as_bytes(), max).is_ok());
        assert_eq!(
            parse_batch(body(984).as_bytes(), max)
                .unwrap_err()
                .body_json(),
            r#"{"errors":{"messages":[{"payload":["Payload size exceeds tenant limit"]}]}}"#
        );
    }

    #[test]
    fn invalid_json_is_400() {
        for body in ["{", "  ", "{\"messages\":[}", "nul", "{} x", "\u{0}"] {
            let e = err(body);
            assert_eq!(e, BatchError::BadRequest, "{body:?}");
        }
        let e = BatchError::BadRequest;
        assert_eq!(
            (e.status(), e.body_json()),
            (400, "\"Bad Request\"".to_owned())
        );
        assert_eq!(
            e.render(None),
            ("text/html; charset=utf-8", b"Bad Request".to_vec())
        );
        assert_eq!(
            e.render(Some("application/json")),
            (JSON_CONTENT_TYPE, b"\"Bad Request\"".to_vec())
        );
        assert_eq!(
            parse_batch(&vec![b' '; MAX_BODY_BYTES + 1], MAX)
                .unwrap_err()
                .status(),
            413
        );
        assert_eq!(
            parse_batch(b"{\"a\":\"\xff\"}", MAX).unwrap_err(),
            BatchError::BadRequest
        );
    }

    #[test]
    fn index_keyed_messages_and_first_key_wins() {
        let m = |t: &str| format!(r#"{{"topic":"{t}","event":"e","payload":{{}}}}"#);
        let body = format!(
            r#"{{"messages":{{"b":{},"10":{},"2":{},"-1":{},"2":{}}},"messages":5}}"#,
            m("b"),
            m("ten"),
            m("two"),
            m("minus"),
            m("dup")
        );
        let got: Vec<String> = parse_batch(body.as_bytes(), MAX)
            .unwrap()
            .into_iter()
            .map(|m| m.topic)
            .collect();
        assert_eq!(got, ["minus", "two", "ten", "b"]);
        // Inside a message too: the first "topic" counts.
        let m = parse_batch(
            br#"{"messages":[{"topic":"a","topic":5,"event":"e","payload":{}}]}"#,
            MAX,
        )
        .unwrap();
        assert_eq!(m[0].topic, "a");
    }

    #[test]
    fn single_content_types() {
        let j = Ok(SingleKind::Json);
        let b = Ok(SingleKind::Binary);
        let no = Err((415, UNSUPPORTED_MEDIA_TYPE_BODY));
        for (ct, want) in [
            (None, j),
            (Some("application/json"), j),
            (Some("Application/JSON; charset=utf-8"), j),
            (Some(" application/json ;x=y"), j),
            (Some("application/octet-stream"), b),
            (Some("text/plain"), no),
            (Some("application/vnd.api+json"), no),
            (Some("json"), no),
            (Some("application/json!"), no),
            (Some(""), no),
        ] {
            assert_eq!(check_single_content_type(ct), want, "{ct:?}");
        }
    }

    #[test]
    fn single_json_bodies() {
        fn p<'a>(ct: Option<&str>, body: &'a str) -> Result<SingleJson<'a>, BatchError> {
            parse_single_json(ct, body.as_bytes())
        }
        let ct = Some("application/json");
        let r = p(None, "{not json").unwrap();
        assert_eq!(
            (&*r.payload, r.external_size),
            (&b"{}"[..], 6),
            "no content type: body never read"
        );
        assert_eq!(&*p(ct, "").unwrap().payload, b"{}");
        let r = p(ct, r#" {"a":1,"private":"true"} "#).unwrap();
        assert_eq!(
            (&*r.payload, r.private_override, r.external_size),
            (&br#"{"a":1,"private":"true"}"#[..], Some(true), 35)
        );
        assert_eq!(
            p(ct, r#"{"private":false}"#).unwrap().private_override,
            Some(false)
        );
        let r = p(ct, "[1,2]").unwrap();
        assert_eq!(
            (&*r.payload, r.private_override),
            (&br#"{"_json":[1,2]}"#[..], None)
        );
        assert_eq!(r.external_size, external_size(&json!({"_json": [1, 2]})));
        assert_eq!(p(ct, "{").unwrap_err(), BatchError::BadRequest);
        assert_eq!(
            p(Some("application/x+json"), "{").unwrap_err(),
            BatchError::BadRequest
        );
        assert!(
            p(Some("text/plain"), "{").is_ok(),
            "not parsed: the 415 comes later"
        );
        assert_eq!(check_single_json(b"[1"), Err(BatchError::BadRequest));
        assert_eq!(check_single_json(b""), Ok(()));
        assert!(single_private(Some("private=true"), None));
        assert!(!single_private(Some("private=true"), Some(false)));
        assert!(!single_private(Some("private=TRUE"), None));
        assert!(single_private(None, Some(true)));
        assert_eq!(binary_external_size(10), 16);
    }

    #[test]
    fn single_validation() {
        assert_eq!(validate_single("room", "e", 10, MAX), Ok(()));
        assert_eq!(
            validate_single(" ", "e", MAX + 1, MAX)
                .unwrap_err()
                .body_json(),
            r#"{"errors":{"payload":["Payload size exceeds tenant limit"],"topic":["can't be blank"]}}"#
        );
        assert_eq!(
            split_single_path("/api/broadcast/room%3A1/events/my%20ev"),
            Some(("room:1".into(), "my ev".into()))
        );
        assert_eq!(
            split_single_path("/realtime/v1/api/broadcast/a/events/b"),
            Some(("a".into(), "b".into()))
        );
        assert_eq!(split_single_path("/api/broadcast/a/events/b/c"), None);
        assert_eq!(split_single_path("/api/broadcast/%zz/events/b"), None);
        assert_eq!(split_single_path("/api/broadcast"), None);
    }

    #[test]
    fn auth_token_extraction() {
        assert_eq!(access_token(Some("Bearer abc"), Some("k")), Ok(Some("abc")));
        assert_eq!(access_token(Some("bEaReR abc"), None), Ok(Some("abc")));
        assert_eq!(access_token(Some("Basic abc"), Some("k")), Ok(Some("k")));
        assert_eq!(access_token(Some("Basic abc"), None), Ok(None));
        assert_eq!(access_token(Some(""), Some("k")), Ok(Some("k")));
        assert_eq!(access_token(Some("Bearer "), Some("k")), Ok(Some("")));
        assert_eq!(
            access_token(Some("Bearer"), Some("k")),
            Err(MalformedAuthorization)
        );
        assert_eq!(
            access_token(Some("Bearer  abc"), Some("k")),
            Err(MalformedAuthorization)
        );
        assert_eq!(access_token(None, None), Ok(None));
        assert_eq!(bearer_or_apikey(Some("Bearer a b"), Some("k")), None);
        assert_eq!(bearer_or_apikey(None, Some("k")), Some("k"));
    }

    #[test]
    fn erlang_external_sizes() {
        for (v, want) in [
            (json!({}), 6),
            (json!({"a": 1}), 14),
            (json!("abc"), 9),
            (json!([1, 2, 3]), 7),
            (json!([]), 2),
            (json!([1, 300]), 14),
            (json!([1, "a"]), 1 + 5 + 2 + 6 + 1),
            (json!(null), 6),
            (json!(true), 7),
            (json!(false), 8),
            (json!(255), 3),
            (json!(256), 6),
            (json!(2147483647), 6),
            (json!(2147483648u64), 8),
            (json!(-2147483648i64), 6),
            (json!(-2147483649i64), 8),
            (json!(u64::MAX), 12),
            (json!(i64::MIN), 12),
            (json!(1.5), 10),
        ] {
            assert_eq!(external_size(&v), want, "{v}");
            assert_eq!(external_size_json(&v.to_string()), Some(want), "{v}");
        }
        assert_eq!(
            external_size_json(r#"{"a":1,"a":"xxxx"}"#),
            Some(14),
            "first duplicate counts"
        );
        assert_eq!(external_size_json(r#"{"a":"\u00e9"}"#), Some(1 + 5 + 6 + 7));
        assert_eq!(external_size_json("{"), None);
        assert_eq!(external_size_json("1 2"), None);
        let many: String = (0..40)
            .map(|i| format!(r#""k{i}":1,"k{}":2,"#, i % 20))
            .collect();
        let many = format!("{{{}\"z\":0}}", many);
        let v: Value = serde_json::from_str(&many).unwrap();
        assert_eq!(external_size_json(&many), Some(external_size(&v)));
        let bytes: Vec<u8> = (0..70000).map(|_| b'1').collect::<Vec<_>>();
        let long = format!(
            "[{}]",
            bytes.iter().map(|_| "1").collect::<Vec<_>>().join(",")
        );
        assert_eq!(
            external_size_json(&long),
            Some(1 + 5 + 2 * 70000 + 1),
            "long byte lists are LIST_EXT"
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            (0u64..300).prop_map(|i| json!(i)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "\\PC{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c]{0,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parse_batch_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_batch(&body, 1000);
            let _ = parse_single_json(Some("application/json"), &body);
        }

        #[test]
        fn parse_batch_never_panics_on_json(v in arb_json(), wrap in 0u8..3) {
            let body = match wrap {
                0 => json!({"messages": [v]}),
                1 => json!({"messages": v}),
                _ => json!({"messages": [{"topic": v, "event": "e", "payload": {"p": v}}]}),
            };
            let r = parse_batch(body.to_string().as_bytes(), 1000);
            if let Err(BatchError::Unprocessable(b)) = &r {
                prop_assert!(serde_json::from_str::<Value>(b).is_ok());
            }
        }

        #[test]
        fn external_sizes_agree(v in arb_json()) {
            prop_assert_eq!(external_size_json(&v.to_string()), Some(external_size(&v)));
        }

        #[test]
        fn content_type_never_panics(ct in "\\PC{0,30}") {
            let _ = check_single_content_type(Some(&ct));
            let _ = is_json_content_type(Some(&ct));
        }
    }
}
