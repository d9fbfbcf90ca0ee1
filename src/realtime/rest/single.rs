//! `POST /api/broadcast/<topic>/events/<event>`: content type, body,
//! privacy and the `SingleBroadcast` changeset.

use std::borrow::Cow;

use super::body::{first_char, json_body, Pairs};
use super::errors::{
    is_blank, BatchError, FieldErrors, CANT_BE_BLANK, PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE_BODY,
};
use super::size::external_size_json;
use crate::proto::http::{media_type, percent_decode};

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
    /// The payload's [`external_size`](super::external_size), for [`validate_single`].
    pub external_size: usize,
}

/// Reads a single-endpoint body as the Elixir server does before its
/// controller runs. Errors: invalid JSON (only checked for JSON content
/// types) -> 400; over [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) -> 413. Call it before
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
/// over [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) is 413. Use [`parse_single_json`] for the payload
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::rest::body::is_json_content_type;
    use crate::realtime::rest::size::{binary_external_size, external_size};
    use crate::realtime::rest::test_support::MAX;
    use proptest::prelude::*;
    use serde_json::json;
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

    proptest! {
        #[test]
        fn content_type_never_panics(ct in "\\PC{0,30}") {
            let _ = check_single_content_type(Some(&ct));
            let _ = is_json_content_type(Some(&ct));
        }
    }
}
