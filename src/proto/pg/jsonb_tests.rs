//! Unit tests of the jsonb rendering rules.

use super::*;
use proptest::prelude::*;

fn num(s: &str) -> String {
    let mut v = Vec::new();
    write_number(&mut v, s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"));
    String::from_utf8(v).unwrap()
}

fn doc(s: &str, mode: Mode) -> Result<String, JsonError> {
    let mut v = Vec::new();
    write_document(&mut v, s.as_bytes(), mode)?;
    Ok(String::from_utf8(v).unwrap())
}

fn json(s: &str) -> String {
    doc(s, Mode::Json).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn numbers_as_numeric_prints_them() {
    for (input, want) in [
        ("0", "0"),
        ("-0", "0"),
        ("-0.00", "0.00"),
        ("42", "42"),
        ("-32768", "-32768"),
        ("1.50", "1.50"),
        ("1e+100", &format!("1{}", "0".repeat(100))),
        ("1E2", "100"),
        ("1.5e-07", "0.00000015"),
        ("-1.5e-07", "-0.00000015"),
        ("1.2345e2", "123.45"),
        ("1.2345e+4", "12345"),
        ("1.50e1", "15.0"),
        ("3.4028235e+38", "340282350000000000000000000000000000000"),
        ("123e-1", "12.3"),
        ("0.001e1", "0.01"),
        ("0e5", "0"),
        ("-0.0e1", "0"),
        ("0.0e-2", "0.000"),
        ("1e0", "1"),
        ("1.0e0", "1.0"),
        ("5e-324", &format!("0.{}5", "0".repeat(323))),
    ] {
        assert_eq!(num(input), want, "{input}");
    }
    for bad in [
        "", "-", "+1", "01", "1.", ".5", "1e", "1e+", "NaN", "Infinity", "1x", "--1", "0x10",
    ] {
        assert!(
            write_number(&mut Vec::new(), bad.as_bytes()).is_err(),
            "{bad}"
        );
        assert!(!is_number(bad.as_bytes()), "{bad}");
    }
    assert!(is_number(b"-1.5e-07"));
    assert!(write_number(&mut Vec::new(), b"1e999999999").is_err());
}

#[test]
fn jsonb_text_is_compacted() {
    let jsonb = r#"{"a": 1, "bb": [1, 2.50, {"c": null}], "ccc": {"d": true, "e": false}}"#;
    assert_eq!(
        doc(jsonb, Mode::Jsonb).unwrap(),
        r#"{"a":1,"bb":[1,2.50,{"c":null}],"ccc":{"d":true,"e":false}}"#
    );
    // Key order is kept as jsonb printed it.
    assert_eq!(
        doc(r#"{"b": 1, "a": 2}"#, Mode::Jsonb).unwrap(),
        r#"{"b":1,"a":2}"#
    );
    assert_eq!(doc("[]", Mode::Jsonb).unwrap(), "[]");
    assert_eq!(doc("{}", Mode::Jsonb).unwrap(), "{}");
    assert_eq!(doc(" \"x\" ", Mode::Jsonb).unwrap(), "\"x\"");
    assert_eq!(doc("null", Mode::Jsonb).unwrap(), "null");
    // jsonb's lower-case control escapes come out in the wire's upper case.
    assert_eq!(
        doc(r#""tab\there\u001f""#, Mode::Jsonb).unwrap(),
        r#""tab\there\u001F""#
    );
}

#[test]
fn json_text_becomes_jsonb() {
    // Keys sorted by length, then bytes; the last duplicate wins.
    assert_eq!(
        json(r#"{"bb":1,"a":2,"c":3,"a":4}"#),
        r#"{"a":4,"c":3,"bb":1}"#
    );
    assert_eq!(
        json("{ \"z\" : { \"y\":1, \"x\" : [ 1 , 2e1 ] } ,\n\"aa\":\t-0 }"),
        r#"{"z":{"x":[1,20],"y":1},"aa":0}"#
    );
    // Escapes decoded and re-encoded; non-ASCII raw; `\/` unescaped.
    assert_eq!(
        json(r#"["\u00e9\/\"\\\b\f\n\r\t", "\ud83d\ude00", "é"]"#),
        "[\"é/\\\"\\\\\\b\\f\\n\\r\\t\",\"😀\",\"é\"]"
    );
    // Keys compared after decoding.
    assert_eq!(json(r#"{"\u0061":1,"a":2}"#), r#"{"a":2}"#);
    assert_eq!(json(r#"{"é":1,"zz":2,"z":3}"#), r#"{"z":3,"zz":2,"é":1}"#);
    assert_eq!(json("123"), "123");
    assert_eq!(json("true"), "true");
    assert_eq!(json("[[],{}]"), "[[],{}]");
}

#[test]
fn invalid_json_is_an_error() {
    for bad in [
        "",
        "{",
        "[1,]",
        "[1 2]",
        "{\"a\"}",
        "{\"a\":1,}",
        "{1:2}",
        "tru",
        "nul",
        "\"abc",
        "\"a\u{1}b\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "1 2",
        "[1]x",
        "'a'",
    ] {
        assert!(doc(bad, Mode::Json).is_err(), "{bad:?}");
        assert!(doc(bad, Mode::Jsonb).is_err(), "{bad:?}");
    }
    assert!(write_document(&mut Vec::new(), b"\"\xff\"", Mode::Json).is_err());
    let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
    assert_eq!(doc(&deep, Mode::Json), Err(JsonError("nested too deeply")));
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert_eq!(doc(&ok, Mode::Json).unwrap(), ok);
}

#[test]
fn strings_escape_like_the_wire() {
    let mut v = Vec::new();
    write_string(&mut v, "a\"b\\c\u{1}é/".as_bytes());
    assert_eq!(v, "\"a\\\"b\\\\c\\u0001é/\"".as_bytes());
    v.clear();
    write_string(&mut v, b"bad\xffutf8");
    assert_eq!(v, "\"bad\u{fffd}utf8\"".as_bytes());
}

/// Strategy for arbitrary JSON values as serde_json text.
fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[^\u{0}]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(("[a-c]{0,3}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Compares JSON values with numbers compared as f64 (as JavaScript would).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

proptest! {
    #[test]
    fn json_mode_preserves_values_and_is_idempotent(v in arb_json(), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            serde_json::to_string(&v).unwrap()
        };
        let once = doc(&text, Mode::Json).unwrap();
        let back: serde_json::Value = serde_json::from_str(&once).unwrap();
        prop_assert!(same(&back, &v), "{} -> {}", text, once);
        prop_assert_eq!(doc(&once, Mode::Json).unwrap(), once.clone());
        prop_assert_eq!(doc(&once, Mode::Jsonb).unwrap(), once);
    }

    #[test]
    fn random_text_never_panics_and_output_is_json(s in proptest::collection::vec(any::<u8>(), 0..64)) {
        for mode in [Mode::Json, Mode::Jsonb] {
            let mut v = Vec::new();
            if write_document(&mut v, &s, mode).is_ok() {
                prop_assert!(serde_json::from_slice::<&serde_json::value::RawValue>(&v).is_ok());
            }
        }
    }

    #[test]
    fn numbers_keep_their_value(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        // Rust prints shortest round-trip digits, in plain or exponent form.
        for text in [format!("{f:?}"), format!("{f:e}")] {
            let mut v = Vec::new();
            write_number(&mut v, text.as_bytes()).unwrap();
            let back: f64 = std::str::from_utf8(&v).unwrap().parse().unwrap();
            prop_assert_eq!(back, f);
        }
    }
}
