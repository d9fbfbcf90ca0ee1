//! Claim validation, token cleaning, and garbage that must never panic.

use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

// ---- claims --------------------------------------------------------------

#[test]
fn expired_tokens_report_seconds_ago() {
    let token = sign_hs256(SECRET, &json!({"role": "anon", "exp": NOW - 90}));
    let err = verify_all(&token).unwrap_err();
    assert_eq!(err, AuthError::Expired { seconds_ago: 90 });
    assert_eq!(
        err.join_reason(),
        "InvalidJWTToken: Token has expired 90 seconds ago"
    );
    assert_eq!(err.shutdown_message(), "Token has expired 90 seconds ago");
    let token = sign_hs256(SECRET, &json!({"role": "anon", "exp": NOW}));
    assert_eq!(
        verify_all(&token),
        Err(AuthError::Expired { seconds_ago: 0 })
    );
}

#[test]
fn decimal_exp_is_rounded() {
    let token = sign_hs256(
        SECRET,
        &json!({"role": "anon", "exp": (NOW + 10) as f64 + 0.5, "iat": NOW as f64 + 0.4}),
    );
    let claims = verify_all(&token).unwrap();
    assert_eq!(claims.exp, NOW + 11);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&claims.json).unwrap()["exp"],
        json!(NOW + 11)
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&claims.json).unwrap()["iat"],
        json!(NOW)
    );
    // Expired decimal exp is not the integer-expiry case: Joken's raw error.
    let token = sign_hs256(SECRET, &json!({"role": "anon", "exp": NOW as f64 - 0.5}));
    let err = verify_all(&token).unwrap_err();
    assert_eq!(
        err,
        AuthError::InvalidClaim {
            claim: "exp".into(),
            value: json!(NOW as f64 - 0.5),
            now: NOW
        }
    );
    assert_eq!(err.connect_error().0, 500);
    assert_eq!(err.join_reason(), "Unknown Error on Channel");
    assert_eq!(
        err.shutdown_message(),
        "[message: 1700000000, claim: \"exp\", claim_val: 1699999999.5]"
    );
}

#[test]
fn channel_tokens_need_exp_after_now_once_rounded() {
    let token = sign_hs256(SECRET, &json!({"role": "anon", "exp": NOW as f64 + 0.3}));
    // The socket accepts it (exp > now before rounding)...
    assert_eq!(verify_all(&token).unwrap().exp, NOW);
    // ...a channel does not.
    let v = ClaimValidators::default();
    assert_eq!(
        verify_channel(&token, &all_keys(), &v, NOW),
        Err(AuthError::ExpInvalid)
    );
    let token = sign_hs256(SECRET, &good_claims());
    assert!(verify_channel(&token, &all_keys(), &v, NOW).is_ok());
}

#[test]
fn non_numeric_exp_and_iat() {
    let token = sign_hs256(SECRET, &json!({"role": "anon", "exp": "9999999999"}));
    assert!(
        matches!(verify_all(&token), Err(AuthError::InvalidClaim { ref claim, .. }) if claim == "exp")
    );
    let token = sign_hs256(
        SECRET,
        &json!({"role": "anon", "exp": NOW + 10, "iat": "x"}),
    );
    let err = verify_all(&token).unwrap_err();
    assert_eq!(
        err.shutdown_message(),
        "[message: \"Invalid token\", claim: \"iat\", claim_val: \"x\"]"
    );
    assert_eq!(
        err.connect_error(),
        (500, "Error connecting to Realtime".into())
    );
}

#[test]
fn role_and_exp_are_required() {
    for claims in [
        json!({"exp": NOW + 10}),
        json!({"role": "anon"}),
        json!({}),
        json!({"sub": "x", "iat": NOW}),
    ] {
        let token = sign_hs256(SECRET, &claims);
        assert_eq!(
            verify_all(&token),
            Err(AuthError::MissingClaims),
            "{claims}"
        );
    }
    // Presence is all that is checked.
    let token = sign_hs256(SECRET, &json!({"role": 5, "exp": NOW + 10}));
    assert_eq!(verify_all(&token).unwrap().role, "5");
}

#[test]
fn claim_validators() {
    assert!(ClaimValidators::parse("{}").unwrap().is_empty());
    for bad in ["", "[]", "1", "nope", "{"] {
        assert_eq!(
            ClaimValidators::parse(bad),
            Err("JWT claim validators is not a valid JSON object".into())
        );
    }
    let v = ClaimValidators::parse(r#"{"iss":"supabase","aal":1,"n":null,"exp":1}"#).unwrap();
    let check = |claims: Value| verify(&sign_hs256(SECRET, &claims), &all_keys(), &v, NOW);
    let base = |extra: Value| {
        let mut c = good_claims();
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    assert!(check(base(json!({"iss": "supabase"}))).is_ok());
    // Absent claims are not checked.
    assert!(check(good_claims()).is_ok());
    // Numbers compare by value.
    assert!(check(base(json!({"aal": 1.0}))).is_ok());
    assert_eq!(
        check(base(json!({"iss": "other"}))),
        Err(AuthError::InvalidClaim {
            claim: "iss".into(),
            value: json!("other"),
            now: NOW
        })
    );
    // A null never equals (nil vs :null in the Elixir server).
    assert!(matches!(
        check(base(json!({"n": null}))),
        Err(AuthError::InvalidClaim { .. })
    ));
    // Claims are validated in key order: "aal" fails before "exp".
    let claims = json!({"role": "anon", "exp": NOW - 5, "aal": 2});
    assert!(
        matches!(check(claims), Err(AuthError::InvalidClaim { ref claim, .. }) if claim == "aal")
    );
    let claims = json!({"role": "anon", "exp": NOW - 5, "iss": "other"});
    assert_eq!(check(claims), Err(AuthError::Expired { seconds_ago: 5 }));
    // Validators for exp/iat are replaced by their own checks.
    assert!(check(base(json!({"exp": NOW + 5}))).is_ok());
    // Validation still comes before the role/exp requirement.
    let claims = json!({"iss": "other"});
    assert!(matches!(check(claims), Err(AuthError::InvalidClaim { .. })));
}

#[test]
fn confirm_interval() {
    let claims = Claims {
        exp: NOW + 10,
        ..Claims::default()
    };
    assert_eq!(claims.confirm_interval_ms(NOW), 10_000);
    let claims = Claims {
        exp: NOW + 3600,
        ..Claims::default()
    };
    assert_eq!(claims.confirm_interval_ms(NOW), 300_000);
    let claims = Claims {
        exp: NOW - 1,
        ..Claims::default()
    };
    assert_eq!(claims.confirm_interval_ms(NOW), 0);
}

// ---- token cleaning ------------------------------------------------------

#[test]
fn clean_token_decodes_like_uri_decode() {
    assert_eq!(clean_token("abc"), "abc");
    assert_eq!(clean_token("a%2Eb%2ec"), "a.b.c");
    assert_eq!(clean_token("a+b"), "a+b", "+ is not a space");
    assert_eq!(clean_token("a%20b"), "ab", "decoded spaces are stripped");
    assert_eq!(clean_token("%zz%4%"), "%zz%4%", "broken escapes stay");
    assert_eq!(clean_token("%%41"), "%A");
    assert_eq!(clean_token(" a\tb\r\nc\u{0b}\u{0c} "), "abc");
    assert_eq!(clean_token("a\u{a0}b"), "a\u{a0}b", "only ASCII whitespace");
    assert_eq!(clean_token("%FF"), "\u{FFFD}");
}

#[test]
fn whitespace_and_percent_encoded_tokens_verify() {
    let token = sign_hs256(SECRET, &good_claims());
    let (head, rest) = token.split_at(20);
    let messy = format!("  {head}\n{}%0A\t", rest.replace('.', "%2E"));
    assert_eq!(
        verify_all(&clean_token(&messy)).unwrap().role,
        "authenticated"
    );
}

#[test]
fn opaque_api_keys() {
    assert!(is_opaque_api_key("sb_publishable_abc"));
    assert!(!is_opaque_api_key("eyJhbGciOi"));
    assert!(!is_opaque_api_key("SB_x"));
}

// ---- garbage never panics ------------------------------------------------

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_=-]{0,40}",
        any::<Vec<u8>>().prop_map(|b| B64.encode(b)),
        prop::sample::select(vec![
            json!({"alg": "HS256"}),
            json!({"alg": "RS256", "kid": "rsa-1"}),
            json!({"alg": "ES256", "kid": "ec256-1"}),
            json!({"alg": "ES384", "kid": "ec384-1"}),
            json!({"alg": "ES512", "kid": "ec521-1"}),
            json!({"alg": "EdDSA", "kid": "ed-1"}),
            json!({"alg": "Ed25519", "kid": "ed-1"}),
            json!({"alg": "HS512", "kid": "rsa-1"}),
            json!({"role": "anon", "exp": 1.5e300, "iat": -1e300}),
            json!({"role": "anon", "exp": -9223372036854775808i64}),
            json!({"exp": 18446744073709551615u64, "role": null}),
            json!([1, 2]),
            json!("str"),
        ])
        .prop_map(|v| b64json(&v)),
    ]
}

proptest! {
    #[test]
    fn random_strings_never_panic(s in ".{0,200}") {
        let cleaned = clean_token(&s);
        for keys in [all_keys(), JwtKeys::default()] {
            if let Err(e) = verify(&cleaned, &keys, &ClaimValidators::default(), NOW) {
                let _ = (e.connect_error(), e.join_reason(), e.shutdown_message());
            }
            let _ = verify(&s, &keys, &ClaimValidators::default(), NOW);
        }
    }

    #[test]
    fn random_three_part_tokens_never_panic(h in segment(), c in segment(), s in segment(), now in any::<i64>()) {
        let token = format!("{h}.{c}.{s}");
        let v = ClaimValidators::parse(r#"{"iss":"x"}"#).unwrap();
        for keys in [all_keys(), JwtKeys::default()] {
            if let Err(e) = verify_channel(&token, &keys, &v, now) {
                let _ = (e.connect_error(), e.join_reason(), e.shutdown_message());
            }
        }
    }

    #[test]
    fn random_claims_never_panic(exp in any::<f64>(), iat in any::<i64>(), role in any::<Option<String>>(), now in any::<i64>()) {
        let mut claims = json!({"exp": exp, "iat": iat});
        if let Some(r) = role {
            claims["role"] = json!(r);
        }
        let token = sign_hs256(SECRET, &claims);
        if let Err(e) = verify_channel(&token, &all_keys(), &ClaimValidators::default(), now) {
            let _ = (e.connect_error(), e.join_reason(), e.shutdown_message());
        }
    }
}
