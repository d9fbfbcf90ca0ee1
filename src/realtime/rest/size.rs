//! `:erlang.external_size/1` of decoded JSON, for the payload size limit.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::body::Key;

/// `external_size` of a binary payload of `len` bytes (BINARY_EXT).
pub fn binary_external_size(len: usize) -> usize {
    len + 6
}

/// `:erlang.external_size/1` (OTP 26+ defaults) of the term Jason decodes
/// `v` into: strings are binaries, integers small/big ints, floats 8-byte
/// floats, `null`/`true`/`false` atoms, arrays lists (lists of integers
/// 0..=255 as `STRING_EXT`), objects maps. Includes the version byte.
pub fn external_size(v: &Value) -> usize {
    1 + term_size_value(v).0
}

/// [`external_size`] computed straight from JSON text without building a
/// tree; duplicate keys count once (the first, as Jason keeps). `None` if
/// `json` is not valid JSON. Integers beyond 64 bits count as floats.
pub fn external_size_json(json: &str) -> Option<usize> {
    let mut de = serde_json::Deserializer::from_str(json);
    let t = SizeSeed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(1 + t.0)
}

/// (size without version byte, is an integer 0..=255)
type TermSize = (usize, bool);

fn int_size_u(n: u64) -> TermSize {
    if n < 256 {
        (2, true)
    } else if n <= i32::MAX as u64 {
        (5, false)
    } else {
        (3 + (64 - n.leading_zeros() as usize).div_ceil(8), false)
    }
}

fn int_size_i(n: i64) -> TermSize {
    if n >= 0 {
        int_size_u(n as u64)
    } else if n >= i32::MIN as i64 {
        (5, false)
    } else {
        int_size_u(n.unsigned_abs())
    }
}

fn list_size(n: usize, sum: usize, all_bytes: bool) -> TermSize {
    if n == 0 {
        (1, false)
    } else if all_bytes && n < 65_535 {
        (3 + n, false)
    } else {
        (5 + sum + 1, false)
    }
}

fn atom_size(name_len: usize) -> TermSize {
    (2 + name_len, false)
}

fn term_size_value(v: &Value) -> TermSize {
    match v {
        Value::Null => atom_size(3),
        Value::Bool(true) => atom_size(4),
        Value::Bool(false) => atom_size(5),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => int_size_u(u),
            (_, Some(i)) => int_size_i(i),
            _ => (9, false),
        },
        Value::String(s) => (5 + s.len(), false),
        Value::Array(items) => {
            let (mut sum, mut all) = (0, true);
            for i in items {
                let (s, b) = term_size_value(i);
                sum += s;
                all &= b;
            }
            list_size(items.len(), sum, all)
        }
        Value::Object(m) => (
            5 + m
                .iter()
                .map(|(k, v)| 5 + k.len() + term_size_value(v).0)
                .sum::<usize>(),
            false,
        ),
    }
}

struct SizeSeed;

impl<'de> DeserializeSeed<'de> for SizeSeed {
    type Value = TermSize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TermSize, D::Error> {
        d.deserialize_any(SizeVisitor)
    }
}

struct SizeVisitor;

impl<'de> Visitor<'de> for SizeVisitor {
    type Value = TermSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<TermSize, E> {
        Ok(atom_size(3))
    }
    fn visit_bool<E>(self, b: bool) -> Result<TermSize, E> {
        Ok(atom_size(if b { 4 } else { 5 }))
    }
    fn visit_u64<E>(self, n: u64) -> Result<TermSize, E> {
        Ok(int_size_u(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<TermSize, E> {
        Ok(int_size_i(n))
    }
    fn visit_f64<E>(self, _: f64) -> Result<TermSize, E> {
        Ok((9, false))
    }
    fn visit_str<E>(self, s: &str) -> Result<TermSize, E> {
        Ok((5 + s.len(), false))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TermSize, A::Error> {
        let (mut n, mut sum, mut all) = (0, 0, true);
        while let Some((s, b)) = seq.next_element_seed(SizeSeed)? {
            n += 1;
            sum += s;
            all &= b;
        }
        Ok(list_size(n, sum, all))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<TermSize, A::Error> {
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        let mut set: HashSet<Cow<'de, str>> = HashSet::new();
        let mut sum = 5;
        while let Some(Key(k)) = m.next_key()? {
            let dup = if set.is_empty() && keys.len() < 16 {
                keys.contains(&k)
            } else {
                if set.is_empty() {
                    set.extend(keys.drain(..));
                }
                set.contains(&k)
            };
            if dup {
                m.next_value::<IgnoredAny>()?;
                continue;
            }
            let klen = k.len();
            if set.is_empty() {
                keys.push(k);
            } else {
                set.insert(k);
            }
            sum += 5 + klen + m.next_value_seed(SizeSeed)?.0;
        }
        Ok((sum, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::rest::test_support::arb_json;
    use proptest::prelude::*;
    use serde_json::json;
    #[test]
    fn erlang_external_sizes() {
        for (v, want) in [
            (json!({}), 6),
            (json!({"a": 1}), 14),
            (json!("abc"), 9),
            (json!([1, 2, 3]), 7),
            (json!([]), 2),
            (json!([1, 300]), 14),
            (json!([1, "a"]), 1 + 5 + 2 + 6 + 1),
            (json!(null), 6),
            (json!(true), 7),
            (json!(false), 8),
            (json!(255), 3),
            (json!(256), 6),
            (json!(2147483647), 6),
            (json!(2147483648u64), 8),
            (json!(-2147483648i64), 6),
            (json!(-2147483649i64), 8),
            (json!(u64::MAX), 12),
            (json!(i64::MIN), 12),
            (json!(1.5), 10),
        ] {
            assert_eq!(external_size(&v), want, "{v}");
            assert_eq!(external_size_json(&v.to_string()), Some(want), "{v}");
        }
        assert_eq!(
            external_size_json(r#"{"a":1,"a":"xxxx"}"#),
            Some(14),
            "first duplicate counts"
        );
        assert_eq!(external_size_json(r#"{"a":"\u00e9"}"#), Some(1 + 5 + 6 + 7));
        assert_eq!(external_size_json("{"), None);
        assert_eq!(external_size_json("1 2"), None);
        let many: String = (0..40)
            .map(|i| format!(r#""k{i}":1,"k{}":2,"#, i % 20))
            .collect();
        let many = format!("{{{}\"z\":0}}", many);
        let v: Value = serde_json::from_str(&many).unwrap();
        assert_eq!(external_size_json(&many), Some(external_size(&v)));
        let bytes: Vec<u8> = (0..70000).map(|_| b'1').collect::<Vec<_>>();
        let long = format!(
            "[{}]",
            bytes.iter().map(|_| "1").collect::<Vec<_>>().join(",")
        );
        assert_eq!(
            external_size_json(&long),
            Some(1 + 5 + 2 * 70000 + 1),
            "long byte lists are LIST_EXT"
        );
    }

    proptest! {
        #[test]
        fn external_sizes_agree(v in arb_json()) {
            prop_assert_eq!(external_size_json(&v.to_string()), Some(external_size(&v)));
        }
    }
}
