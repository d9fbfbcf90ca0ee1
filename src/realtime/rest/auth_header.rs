//! The token a REST request authenticates with (`AuthTenant`).

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

#[cfg(test)]
mod tests {
    use super::*;
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
}
