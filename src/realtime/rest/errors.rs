//! The REST layer's refusals and the exact texts of its answers. A leaf
//! shared by the body readers (`body`, `batch`, `single`) and re-exported
//! by the module, so none of them imports the module itself.

use crate::proto::http::{phoenix_error, reason_phrase};

/// Largest body `Plug.Parsers` reads (its default `:length`); more is 413.
pub const MAX_BODY_BYTES: usize = 8_000_000;

/// 415 body of the single endpoint (`ValidateBroadcastContentType`).
pub const UNSUPPORTED_MEDIA_TYPE_BODY: &str =
    r#"{"error":"Unsupported Media Type. Use application/json or application/octet-stream"}"#;

/// The changeset message for an oversize payload.
pub const PAYLOAD_TOO_LARGE: &str = "Payload size exceeds tenant limit";

pub(super) const CANT_BE_BLANK: &str = "can't be blank";
pub(super) const IS_INVALID: &str = "is invalid";
pub(super) const ALREADY_TAKEN: &str = "has already been taken";

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
pub(super) struct FieldErrors {
    pub(super) event: Option<&'static str>,
    pub(super) id: Option<&'static str>,
    pub(super) payload: Option<&'static str>,
    pub(super) private: Option<&'static str>,
    pub(super) topic: Option<&'static str>,
}

impl FieldErrors {
    pub(super) fn is_empty(&self) -> bool {
        *self == FieldErrors::default()
    }

    pub(super) fn write(&self, out: &mut String) {
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
pub(super) fn is_blank(s: &str) -> bool {
    s.trim_start().is_empty()
}
