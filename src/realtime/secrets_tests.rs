//! Vectors made outside this code, so a bug shared by our encrypt and
//! decrypt cannot hide:
//!
//! ```sh
//! printf 'postgres-secret-123' | openssl enc -aes-128-ecb -nosalt \
//!   -K "$(printf supabaserealtime | xxd -p)" | base64
//! node -e 'const c=require("crypto"), k=Buffer.from("0123456789abcdef0123456789abcdef"),
//!   iv=Buffer.from("000102030405060708090a0b","hex"), g=c.createCipheriv("aes-256-gcm",k,iv),
//!   ct=Buffer.concat([g.update(TEXT),g.final()]);
//!   console.log("g1:"+Buffer.concat([iv,g.getAuthTag(),ct]).toString("base64"))'
//! ```
//!
//! (Node's AES-128-ECB gives the same legacy values as openssl.)

use super::*;

const ECB_KEY: &str = "supabaserealtime";
const GCM_KEY: &str = "0123456789abcdef0123456789abcdef";
const NONCE: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const JWT_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

/// `postgres-secret-123` under `supabaserealtime`, by openssl.
const ECB_VECTOR: &str = "wINi1y72bpThJ7yxtGSG+sZ2mQCP8S0fz2e/EeuQb6Y=";
/// A whole block gets a whole block of padding (node).
const ECB_BLOCK_VECTOR: &str = "Dn4v4e42WVzuTKysqJO50k82uuGZrojyd3by3+a2jj8=";
/// `JWT_SECRET` under `GCM_KEY` and `NONCE`, by node.
const GCM_VECTOR: &str = "g1:AAECAwQFBgcICQoLS+TbBMUlzCI8Zr8C9yPC/16QyxmrNaHJy64UylylpnDLfGzsWdJZ/Emo05nZUYHo2MpFamSGJT3yTdouu8+3X16YsJ1n3vI=";

fn keys(write_gcm: bool) -> SecretKeys {
    SecretKeys::new(Some(ECB_KEY), Some(GCM_KEY), write_gcm).unwrap()
}

#[test]
fn legacy_values_match_openssl_both_ways() {
    let k = keys(false);
    assert_eq!(
        k.encrypt(b"postgres-secret-123", NONCE).unwrap(),
        ECB_VECTOR
    );
    assert_eq!(k.decrypt(ECB_VECTOR).unwrap(), b"postgres-secret-123");
    assert_eq!(
        k.encrypt(b"0123456789abcdef", NONCE).unwrap(),
        ECB_BLOCK_VECTOR
    );
    assert_eq!(k.decrypt(ECB_BLOCK_VECTOR).unwrap(), b"0123456789abcdef");
}

#[test]
fn gcm_values_match_node_both_ways_and_reads_dispatch_on_the_prefix() {
    let k = keys(true);
    assert!(k.writes_gcm());
    assert_eq!(k.encrypt(JWT_SECRET.as_bytes(), NONCE).unwrap(), GCM_VECTOR);
    assert_eq!(k.decrypt(GCM_VECTOR).unwrap(), JWT_SECRET.as_bytes());
    // A server writing GCM still reads legacy values, and the other way.
    assert_eq!(k.decrypt(ECB_VECTOR).unwrap(), b"postgres-secret-123");
    assert_eq!(
        keys(false).decrypt(GCM_VECTOR).unwrap(),
        JWT_SECRET.as_bytes()
    );
    assert!(is_gcm(GCM_VECTOR) && !is_gcm(ECB_VECTOR));
}

#[test]
fn gcm_asked_for_without_its_key_writes_legacy() {
    let k = SecretKeys::new(Some(ECB_KEY), None, true).unwrap();
    assert!(!k.writes_gcm() && k.gcm_requested_without_key());
    assert_eq!(
        k.encrypt(b"postgres-secret-123", NONCE).unwrap(),
        ECB_VECTOR
    );
    assert_eq!(k.decrypt(GCM_VECTOR), Err(SecretError::NoGcmKey));
}

#[test]
fn keys_of_the_wrong_size_are_refused_with_their_length() {
    assert_eq!(
        SecretKeys::new(Some("short"), None, false)
            .unwrap_err()
            .to_string(),
        "must be exactly 16 bytes (AES-128-ECB key), got 5"
    );
    assert_eq!(
        SecretKeys::new(None, Some(ECB_KEY), true)
            .unwrap_err()
            .to_string(),
        "must be exactly 32 bytes (AES-256-GCM key), got 16"
    );
}

#[test]
fn altered_or_foreign_values_are_errors_not_text() {
    let k = keys(true);
    // One flipped character of the ciphertext part.
    let mut altered = GCM_VECTOR.to_owned();
    let last = altered.pop().unwrap();
    altered.push(if last == 'I' { 'J' } else { 'I' });
    altered.push('=');
    assert!(k.decrypt(&altered).is_err());
    let other = SecretKeys::new(None, Some("fedcba9876543210fedcba9876543210"), true).unwrap();
    assert_eq!(other.decrypt(GCM_VECTOR), Err(SecretError::Authentication));
    for bad in ["", "not base64!", "AAAA", "g1:AAAA", "g1:"] {
        assert!(k.decrypt(bad).is_err(), "{bad:?}");
    }
    // A legacy value under another key decrypts to garbage whose padding
    // does not check out (or, rarely, does): never a panic.
    let wrong = SecretKeys::new(Some("0000000000000000"), None, false).unwrap();
    let _ = wrong.decrypt(ECB_VECTOR);
}

proptest::proptest! {
    #[test]
    fn any_text_round_trips_through_either_cipher(
        text in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        nonce in proptest::array::uniform12(proptest::num::u8::ANY),
    ) {
        for write_gcm in [false, true] {
            let k = keys(write_gcm);
            let stored = k.encrypt(&text, nonce).unwrap();
            proptest::prop_assert_eq!(is_gcm(&stored), write_gcm);
            proptest::prop_assert_eq!(k.decrypt(&stored).unwrap(), text.clone());
        }
    }
}
