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

mod auth_header;
mod batch;
mod body;
mod single;
mod size;
#[cfg(test)]
mod test_support;

use crate::proto::http::{phoenix_error, reason_phrase};

pub use auth_header::{access_token, bearer_or_apikey, MalformedAuthorization};
pub use batch::{parse_batch, parse_batch_request, BatchMessage};
pub use body::is_json_content_type;
pub use single::{
    check_single_content_type, check_single_json, parse_single_json, single_private,
    split_single_path, validate_single, SingleJson, SingleKind,
};
pub use size::{binary_external_size, external_size, external_size_json};

/// Largest body `Plug.Parsers` reads (its default `:length`); more is 413.
pub const MAX_BODY_BYTES: usize = 8_000_000;

/// 415 body of the single endpoint (`ValidateBroadcastContentType`).
pub const UNSUPPORTED_MEDIA_TYPE_BODY: &str =
    r#"{"error":"Unsupported Media Type. Use application/json or application/octet-stream"}"#;

/// 401 body when the JWT is missing or invalid (`AuthTenant`).
pub const UNAUTHORIZED_BODY: &str = r#"{"message":"Unauthorized"}"#;

/// 401 body when the Host names no tenant (`AssignTenant`).
pub const TENANT_NOT_FOUND_BODY: &str = r#"{"message":"Tenant not found in database"}"#;

/// 429 message of the batch endpoint when the tenant's rolling events/s is
/// already over its limit.
pub const RATE_EXCEEDED: &str = "You have exceeded your rate limit";

/// 429 message of the batch endpoint when the batch would take the tenant
/// over its events/s limit.
pub const BATCH_TOO_LARGE: &str = "Too many messages to broadcast, please reduce the batch size";

/// The batch endpoint's own rate check, made once the batch is valid:
/// each of its `n` messages (private ones included) is one event, and the
/// batch fits while `avg + n <= max_events_per_second`, `avg` being the
/// tenant's rolling events/s. Otherwise the 429 message to answer.
pub fn check_batch_rate(
    avg: f64,
    max_events_per_second: u64,
    n: usize,
) -> Result<(), &'static str> {
    let max = max_events_per_second as f64;
    if avg > max {
        Err(RATE_EXCEEDED)
    } else if n as f64 + avg > max {
        Err(BATCH_TOO_LARGE)
    } else {
        Ok(())
    }
}

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

/// Ecto's empty value test (`String.trim_leading(s) == ""`).
fn is_blank(s: &str) -> bool {
    s.trim_start().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_rate_check() {
        assert_eq!(check_batch_rate(0.0, 100, 100), Ok(()));
        assert_eq!(check_batch_rate(0.0, 100, 101), Err(BATCH_TOO_LARGE));
        assert_eq!(check_batch_rate(40.0, 100, 60), Ok(()));
        assert_eq!(check_batch_rate(40.5, 100, 60), Err(BATCH_TOO_LARGE));
        assert_eq!(check_batch_rate(100.0, 100, 0), Ok(()));
        assert_eq!(check_batch_rate(100.5, 100, 1), Err(RATE_EXCEEDED));
    }
}
