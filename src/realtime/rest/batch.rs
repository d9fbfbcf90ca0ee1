//! `POST /api/broadcast`: the `BatchBroadcast` changeset.

use std::collections::HashSet;

use serde_json::value::RawValue;
use serde_json::Value;

use super::body::{first_char, json_body, Pairs};
use super::errors::{
    is_blank, BatchError, FieldErrors, ALREADY_TAKEN, CANT_BE_BLANK, IS_INVALID, PAYLOAD_TOO_LARGE,
};
use super::size::external_size_json;
use crate::proto::json::write_str_buf;

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
/// [`external_size`](super::external_size).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::rest::errors::{JSON_CONTENT_TYPE, MAX_BODY_BYTES};
    use crate::realtime::rest::single::parse_single_json;
    use crate::realtime::rest::test_support::{arb_json, MAX};
    use proptest::prelude::*;
    use serde_json::json;
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
    }
}
