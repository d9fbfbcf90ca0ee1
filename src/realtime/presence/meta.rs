//! Metas serialized the way Jason writes them: object keys sorted bytewise,
//! floats in Erlang's shortest form.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::proto::json::write_str_buf;

pub(super) fn compact_json(v: &Value) -> String {
    let mut out = Vec::new();
    write_jason(v, &mut out);
    into_string(out)
}

pub(super) fn into_string(bytes: Vec<u8>) -> String {
    // Only ever called on text we wrote from `&str`s and ASCII.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Writes `v` as compact JSON the way Jason encodes the term Jason decoded
/// it into: object keys sorted bytewise (at every level), Jason's string
/// escaping, integers in decimal, floats in Erlang's shortest form.
pub fn write_jason(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                push_display(out, u);
            } else if let Some(i) = n.as_i64() {
                push_display(out, i);
            } else {
                let mut s = String::new();
                format_erlang_float(n.as_f64().unwrap_or(0.0), &mut s);
                out.extend_from_slice(s.as_bytes());
            }
        }
        Value::String(s) => write_str_buf(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_jason(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            write_object_members(map, out);
            out.push(b'}');
        }
    }
}

/// Writes the members of `map` (`"a":1,"b":2`, keys sorted) without braces.
pub(super) fn write_object_members(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let write = |n: usize, k: &str, v: &Value, out: &mut Vec<u8>| {
        if n > 0 {
            out.push(b',');
        }
        write_str_buf(out, k);
        out.push(b':');
        write_jason(v, out);
    };
    // serde_json's default map is a BTreeMap (already sorted); with the
    // `preserve_order` feature it is not, so sort when needed.
    if map.keys().is_sorted() {
        for (n, (k, v)) in map.iter().enumerate() {
            write(n, k, v, out);
        }
    } else {
        let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        for (n, (k, v)) in pairs.into_iter().enumerate() {
            write(n, k, v, out);
        }
    }
}

fn push_display(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    let mut s = String::with_capacity(20);
    let _ = write!(s, "{n}");
    out.extend_from_slice(s.as_bytes());
}

/// Appends `f` formatted as Erlang's `float_to_binary(F, [short])` (which
/// Jason and `Float.to_string/1` use): the shortest round-trip digits, in
/// plain notation when that is no longer than scientific (`0.001`, `100.0`,
/// `123456.0`), else `d.ddde[-]x` (`1.0e3`, `1.0e-4`, `1.2345e20`); integral
/// values of magnitude at least 2^53 are always scientific.
pub fn format_erlang_float(f: f64, out: &mut String) {
    if !f.is_finite() {
        // Not representable in JSON or Erlang; never produced by a parser.
        out.push_str("0.0");
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    let a = f.abs();
    if a == 0.0 {
        out.push_str("0.0");
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e-7".
    let sci = format!("{a:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let l = digits.len() as i32;
    // value = digits * 10^place
    let place = exp - (l - 1);
    let exp_l = exp.to_string();
    let exp_cost = exp_l.len() as i32 + 2;
    let insert_exp = |out: &mut String| {
        out.push_str(&digits[..1]);
        if l == 1 {
            out.push_str(".0e");
        } else {
            out.push('.');
            out.push_str(&digits[1..]);
            out.push('e');
        }
        out.push_str(&exp_l);
    };
    if place < 0 {
        if exp >= 0 {
            let split = (l + place) as usize;
            out.push_str(&digits[..split]);
            out.push('.');
            out.push_str(&digits[split..]);
        } else if 2 - place - l <= exp_cost {
            out.push_str("0.");
            for _ in 0..(-place - l) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            insert_exp(out);
        }
    } else {
        let dot = i32::from(l == 1);
        if exp_cost + dot >= place + 2 && a < 9_007_199_254_740_992.0 {
            out.push_str(&digits);
            for _ in 0..place {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            insert_exp(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[test]
    fn erlang_float_format() {
        let f = |x: f64| {
            let mut s = String::new();
            format_erlang_float(x, &mut s);
            s
        };
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (0.001, "0.001"),
            (0.0001, "1.0e-4"),
            (0.00012, "1.2e-4"),
            (0.0012, "0.0012"),
            (10.0, "10.0"),
            (100.0, "100.0"),
            (1000.0, "1.0e3"),
            (1234.0, "1234.0"),
            (123456.0, "123456.0"),
            (1.0e20, "1.0e20"),
            (1.5e20, "1.5e20"),
            (12.5, "12.5"),
            (12.375, "12.375"),
            (9007199254740992.0, "9.007199254740992e15"),
            (9007199254740991.0, "9007199254740991.0"),
            (5e-324, "5.0e-324"),
            (1.7976931348623157e308, "1.7976931348623157e308"),
            (123.456e-10, "1.23456e-8"),
        ];
        for (x, want) in cases {
            assert_eq!(f(x), want, "{x:e}");
        }
    }

    proptest! {
        #[test]
        fn erlang_floats_round_trip(x in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let mut s = String::new();
            format_erlang_float(x, &mut s);
            prop_assert_eq!(s.parse::<f64>().unwrap(), x);
            prop_assert!(s.contains('.'));
        }
    }
}
