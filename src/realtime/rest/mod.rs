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
//!   (see [`phoenix_error`](crate::proto::http::phoenix_error)). Without a `Content-Type` the body is not read
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
mod errors;
mod private;
mod single;
mod size;
#[cfg(test)]
mod test_support;

pub use auth_header::{access_token, bearer_or_apikey, MalformedAuthorization};
pub use batch::{parse_batch, parse_batch_request, BatchMessage};
pub use body::is_json_content_type;
pub use errors::{
    BatchError, JSON_CONTENT_TYPE, MAX_BODY_BYTES, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE_BODY,
};
pub use private::{batch_allows, single_refusal, UNABLE_TO_AUTHORIZE};
pub use single::{
    check_single_content_type, check_single_json, parse_single_json, single_private,
    split_single_path, validate_single, SingleJson, SingleKind,
};
pub use size::{binary_external_size, external_size, external_size_json};

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
