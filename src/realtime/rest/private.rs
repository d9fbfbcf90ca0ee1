//! What the single endpoint answers when a private message's write check
//! does not let it through (PROTOCOL 4.5), in the Elixir server's words.

use crate::realtime::authz::{AuthAnswer, AuthError};

/// `Some((status, message))` to answer instead of 202 for `answer`, the
/// write check of a private single-endpoint message; `None` when the
/// message may go out. Sent as `{"message": ...}`.
pub fn single_refusal(answer: &AuthAnswer) -> Option<(u16, &'static str)> {
    match answer {
        Ok(p) if p.broadcast_write == Some(true) => None,
        Ok(_) => Some((403, "Unauthorized")),
        Err(AuthError::RlsPolicy(_)) => Some((422, "RLS policy error")),
        Err(AuthError::QueryCanceled(_)) => Some((422, "Query canceled")),
        Err(AuthError::MissingPartition) => Some((422, "Missing messages partition")),
        Err(AuthError::DatabaseUnavailable(_)) => Some((422, "Tenant database unavailable")),
        Err(AuthError::IncreaseConnectionPool) => Some((429, "Connection pool exhausted")),
    }
}

/// The answer when no answer came at all (the tenant's home shard did not
/// reply): the Elixir server's catch-all for an authorization it could
/// not make.
pub const UNABLE_TO_AUTHORIZE: (u16, &str) = (500, "Unable to authorize broadcast");

/// Whether a batch's private messages on a topic go out: only on a
/// granted broadcast write; a refusal or any error skips them silently.
pub fn batch_allows(answer: &AuthAnswer) -> bool {
    matches!(answer, Ok(p) if p.broadcast_write == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::authz::Policies;

    fn write(w: Option<bool>) -> AuthAnswer {
        Ok(Policies {
            broadcast_write: w,
            ..Default::default()
        })
    }

    #[test]
    fn single_answers_as_the_elixir_controller() {
        assert_eq!(single_refusal(&write(Some(true))), None);
        assert_eq!(
            single_refusal(&write(Some(false))),
            Some((403, "Unauthorized"))
        );
        assert_eq!(single_refusal(&write(None)), Some((403, "Unauthorized")));
        let cases = [
            (AuthError::RlsPolicy("x".into()), 422, "RLS policy error"),
            (AuthError::QueryCanceled("x".into()), 422, "Query canceled"),
            (
                AuthError::MissingPartition,
                422,
                "Missing messages partition",
            ),
            (
                AuthError::DatabaseUnavailable("x".into()),
                422,
                "Tenant database unavailable",
            ),
            (
                AuthError::IncreaseConnectionPool,
                429,
                "Connection pool exhausted",
            ),
        ];
        for (e, status, msg) in cases {
            assert_eq!(single_refusal(&Err(e)), Some((status, msg)));
        }
    }

    #[test]
    fn a_batch_sends_only_on_a_granted_write() {
        assert!(batch_allows(&write(Some(true))));
        assert!(!batch_allows(&write(Some(false))));
        assert!(!batch_allows(&Err(AuthError::RlsPolicy("x".into()))));
    }
}
