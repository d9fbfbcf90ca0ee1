//! Presence keys (server-generated UUIDs, stringified client keys) and
//! `phx_ref`s.

use std::fmt::Write as _;
use std::sync::OnceLock;

use base64::Engine as _;
use rand::Rng;
use serde_json::Value;

use super::meta::{compact_json, format_erlang_float};

/// A fresh `phx_ref`: base64url (no padding) of 12 random bytes, 16 chars.
/// (The Elixir tracker uses 8 bytes of nanosecond time + 4 bytes of hash and
/// counter; clients only compare refs for equality.)
pub fn new_phx_ref(rng: &mut impl Rng) -> String {
    let mut bytes = [0u8; 12];
    rng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A server-generated presence key: a UUID v1 string (lower-case, hyphenated)
/// from the system clock, a process-wide random node id and the uuid crate's
/// shared clock sequence. This is the one clock read in this module; use
/// [`presence_key_at`] where time is passed in.
pub fn new_presence_key() -> String {
    uuid::Uuid::now_v1(node_id()).hyphenated().to_string()
}

/// A UUID v1 presence key for the given Unix time, 14-bit clock sequence
/// and node id.
pub fn presence_key_at(
    unix_secs: u64,
    subsec_nanos: u32,
    clock_seq: u16,
    node: &[u8; 6],
) -> String {
    let ts = uuid::Timestamp::from_unix_time(
        unix_secs,
        subsec_nanos,
        u128::from(clock_seq & 0x3fff),
        14,
    );
    uuid::Uuid::new_v1(ts, node).hyphenated().to_string()
}

fn node_id() -> &'static [u8; 6] {
    static NODE: OnceLock<[u8; 6]> = OnceLock::new();
    NODE.get_or_init(|| {
        let mut n = [0u8; 6];
        rand::rng().fill_bytes(&mut n);
        n[0] |= 0x01; // multicast bit: a random, not an IEEE, node id (RFC 9562 6.10)
        n
    })
}

/// The channel's presence key from the join config's `presence.key`, or
/// `None` when the server must generate one: absent, `null`, or a string of
/// only whitespace (Ecto treats those as empty for the `:any` key field).
pub fn presence_key_from_config(key: Option<&Value>) -> Option<String> {
    match key? {
        Value::Null => None,
        Value::String(s) if s.trim_start().is_empty() => None,
        v => Some(key_to_string(v)),
    }
}

/// Stringifies a presence key as Elixir's `to_string/1` does when presence
/// groups by key: strings as is, integers in decimal, floats in Erlang's
/// shortest form (`1.5`, `100.0`, `1.0e3`), `true`/`false`, `null` as `""`,
/// arrays as chardata (code points and strings concatenated). Values Elixir
/// cannot stringify (objects, arrays of other things) crash the Elixir
/// channel; here they become their compact JSON text.
pub fn key_to_string(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            let mut s = String::new();
            if let Some(u) = n.as_u64() {
                let _ = write!(s, "{u}");
            } else if let Some(i) = n.as_i64() {
                let _ = write!(s, "{i}");
            } else {
                format_erlang_float(n.as_f64().unwrap_or(0.0), &mut s);
            }
            s
        }
        Value::Array(_) => {
            let mut s = String::new();
            if chardata(key, &mut s) {
                s
            } else {
                compact_json(key)
            }
        }
        Value::Object(_) => compact_json(key),
    }
}

fn chardata(v: &Value, out: &mut String) -> bool {
    match v {
        Value::String(s) => {
            out.push_str(s);
            true
        }
        Value::Number(n) => match n
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())
            .and_then(char::from_u32)
        {
            Some(c) => {
                out.push(c);
                true
            }
            None => false,
        },
        Value::Array(items) => items.iter().all(|i| chardata(i, out)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[test]
    fn phx_ref_shape() {
        let r = new_phx_ref(&mut rand::rng());
        assert_eq!(r.len(), 16);
        assert!(r
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn presence_keys_are_uuid_v1() {
        let k = new_presence_key();
        let u = uuid::Uuid::parse_str(&k).unwrap();
        assert_eq!(u.get_version_num(), 1);
        assert_eq!(k, k.to_lowercase());
        assert_ne!(k, new_presence_key());
        let k = presence_key_at(1_700_000_000, 5, 7, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(k, presence_key_at(1_700_000_000, 5, 7, &[1, 2, 3, 4, 5, 6]));
        assert!(k.ends_with("-8007-010203040506"), "{k}");
        assert_eq!(uuid::Uuid::parse_str(&k).unwrap().get_version_num(), 1);
    }

    #[test]
    fn key_stringification() {
        assert_eq!(key_to_string(&json!("abc")), "abc");
        assert_eq!(key_to_string(&json!(42)), "42");
        assert_eq!(key_to_string(&json!(-7)), "-7");
        assert_eq!(key_to_string(&json!(1.5)), "1.5");
        assert_eq!(key_to_string(&json!(100.0)), "100.0");
        assert_eq!(key_to_string(&json!(1000.0)), "1.0e3");
        assert_eq!(key_to_string(&json!(true)), "true");
        assert_eq!(key_to_string(&json!(null)), "");
        assert_eq!(key_to_string(&json!(["ab", 99, ["d"]])), "abcd");
        assert_eq!(key_to_string(&json!([1.5])), "[1.5]");
        assert_eq!(key_to_string(&json!({"b": 1, "a": 2})), r#"{"a":2,"b":1}"#);
        assert_eq!(presence_key_from_config(None), None);
        assert_eq!(presence_key_from_config(Some(&json!(null))), None);
        assert_eq!(presence_key_from_config(Some(&json!(""))), None);
        assert_eq!(presence_key_from_config(Some(&json!(" \t"))), None);
        assert_eq!(
            presence_key_from_config(Some(&json!(" a"))),
            Some(" a".into())
        );
        assert_eq!(presence_key_from_config(Some(&json!(0))), Some("0".into()));
    }
}
