//! A small memo of channel tokens that verified, so that the joins of many
//! sockets sharing one token (the anon key, one user's many channels) do not
//! each redo the base64, JSON and HMAC/RSA work.
//!
//! It is exact: verification depends only on the token text, the keys and
//! the claim validators, plus the time through `exp`. An entry is used only
//! under the same configuration (the same `Arc`) and while its rounded `exp`
//! is still after `now_unix`, which is exactly when [`verify_channel`] would
//! succeed again; anything else is verified afresh (and errors are never
//! stored, so their texts stay what `verify_channel` says).

use std::rc::Rc;
use std::sync::Arc;

use super::error::AuthError;
use super::keys::JwtKeys;
use super::{verify_channel, ClaimValidators, Claims};

/// Entries kept: enough for the few tokens one tenant's joins use at a time
/// on a shard; a lookup compares at most this many strings.
const NR_ENTRIES: usize = 8;

/// Longest token text stored. Tokens are small (a few hundred bytes); a
/// larger one is verified every time rather than held here.
const MAX_TOKEN_LEN: usize = 4096;

/// Verified channel tokens of one tenant on one shard, with their claims.
#[derive(Debug)]
pub struct TokenMemo<C> {
    /// The settings the entries were verified under (keys, validators);
    /// held so a replaced configuration cannot be mistaken for this one.
    owner: Option<Arc<C>>,
    /// `(token text, its claims)`, replaced round-robin.
    entries: Vec<(Rc<str>, Claims)>,
    /// The slot the next new entry takes once full.
    next: usize,
}

impl<C> Default for TokenMemo<C> {
    fn default() -> Self {
        Self {
            owner: None,
            entries: Vec::new(),
            next: 0,
        }
    }
}

impl<C> TokenMemo<C> {
    /// [`verify_channel`] for the (cleaned) `token` under `owner`'s `keys`
    /// and `validators`; returns the token as shared text with its claims.
    pub fn verify_channel(
        &mut self,
        owner: &Arc<C>,
        token: &str,
        keys: &JwtKeys,
        validators: &ClaimValidators,
        now_unix: i64,
    ) -> Result<(Rc<str>, Claims), AuthError> {
        if !self.owner.as_ref().is_some_and(|o| Arc::ptr_eq(o, owner)) {
            self.entries.clear();
            self.next = 0;
            self.owner = Some(owner.clone());
        }
        if let Some((text, claims)) = self.entries.iter().find(|(t, _)| &**t == token) {
            if claims.exp.saturating_sub(now_unix) > 0 {
                return Ok((text.clone(), claims.clone()));
            }
        }
        let claims = verify_channel(token, keys, validators, now_unix)?;
        let text: Rc<str> = Rc::from(token);
        if token.len() <= MAX_TOKEN_LEN {
            let entry = (text.clone(), claims.clone());
            if let Some(i) = self.entries.iter().position(|(t, _)| &**t == token) {
                self.entries[i] = entry;
            } else if self.entries.len() < NR_ENTRIES {
                self.entries.push(entry);
            } else {
                self.entries[self.next] = entry;
                self.next = (self.next + 1) % NR_ENTRIES;
            }
        }
        Ok((text, claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::auth::sign_hs256;
    use serde_json::json;

    const SECRET: &str = "memo-test-secret-at-least-32-bytes-long";

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys {
            secret: Some(secret.into()),
            jwks: None,
        }
    }

    fn token(exp: i64) -> String {
        sign_hs256(SECRET, &json!({"role": "anon", "exp": exp}))
    }

    #[test]
    fn a_repeated_token_gives_the_same_claims_and_shared_text() {
        let (owner, mut memo) = (Arc::new(()), TokenMemo::default());
        let t = token(2_000);
        let v = ClaimValidators::default();
        let (a, ca) = memo
            .verify_channel(&owner, &t, &keys(SECRET), &v, 1_000)
            .unwrap();
        let (b, cb) = memo
            .verify_channel(&owner, &t, &keys(SECRET), &v, 1_001)
            .unwrap();
        assert!(Rc::ptr_eq(&a, &b));
        assert_eq!(ca, cb);
        assert_eq!(ca, verify_channel(&t, &keys(SECRET), &v, 1_001).unwrap());
    }

    #[test]
    fn an_expired_entry_is_verified_again_and_refused() {
        let (owner, mut memo) = (Arc::new(()), TokenMemo::default());
        let t = token(2_000);
        let v = ClaimValidators::default();
        memo.verify_channel(&owner, &t, &keys(SECRET), &v, 1_000)
            .unwrap();
        let err = memo
            .verify_channel(&owner, &t, &keys(SECRET), &v, 2_000)
            .unwrap_err();
        assert_eq!(
            err,
            verify_channel(&t, &keys(SECRET), &v, 2_000).unwrap_err()
        );
    }

    #[test]
    fn another_configuration_does_not_reuse_entries() {
        let mut memo = TokenMemo::default();
        let t = token(2_000);
        let v = ClaimValidators::default();
        memo.verify_channel(&Arc::new(()), &t, &keys(SECRET), &v, 1_000)
            .unwrap();
        // Same text, new settings whose key does not match: refused.
        let other = keys("another-secret-also-at-least-32-bytes");
        assert_eq!(
            memo.verify_channel(&Arc::new(()), &t, &other, &v, 1_000),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn bad_tokens_are_refused_every_time_and_never_stored() {
        let (owner, mut memo) = (Arc::new(()), TokenMemo::default());
        let v = ClaimValidators::default();
        for bad in ["", "a.b", "a.b.c", "\u{0}.\u{ffff}.x", &"x".repeat(10_000)] {
            for _ in 0..2 {
                assert!(memo
                    .verify_channel(&owner, bad, &keys(SECRET), &v, 1_000)
                    .is_err());
            }
        }
        assert!(memo.entries.is_empty());
    }

    #[test]
    fn it_holds_at_most_nr_entries() {
        let (owner, mut memo) = (Arc::new(()), TokenMemo::default());
        let v = ClaimValidators::default();
        for exp in 0..(3 * NR_ENTRIES as i64) {
            let t = token(2_000 + exp);
            memo.verify_channel(&owner, &t, &keys(SECRET), &v, 1_000)
                .unwrap();
            assert!(memo.entries.len() <= NR_ENTRIES);
        }
        assert_eq!(memo.entries.len(), NR_ENTRIES);
    }
}
