//! Elixir `inspect` output, checked against what Elixir 1.19 prints.

use super::*;
use serde_json::json;

fn ins(v: serde_json::Value) -> String {
    inspect(&Term::from_json(&v))
}

#[test]
fn maps_sort_string_keys_and_print_nil() {
    assert_eq!(
        ins(json!({"table": "todos", "schema": "public", "filter": null, "event": "*"})),
        r#"%{"event" => "*", "filter" => nil, "schema" => "public", "table" => "todos"}"#
    );
    assert_eq!(ins(json!({})), "%{}");
    assert_eq!(
        ins(json!({"a": [1, 2.5, true], "b": {"c": []}})),
        r#"%{"a" => [1, 2.5, true], "b" => %{"c" => []}}"#
    );
}

#[test]
fn strings_escape_like_elixir() {
    assert_eq!(ins(json!("a\"b\\c")), r#""a\"b\\c""#);
    assert_eq!(ins(json!("x#{y}")), r##""x\#{y}""##);
    assert_eq!(ins(json!("tab\tnl\n")), r#""tab\tnl\n""#);
    assert_eq!(ins(json!("é😀")), "\"é😀\"");
    assert_eq!(ins(json!("nb\u{a0}sp")), r#""nb\u00A0sp""#);
    // Not printable (a NUL, a C1 control): shown as bytes.
    assert_eq!(ins(json!("a\u{0}b")), "<<97, 0, 98>>");
    assert_eq!(ins(json!("\u{85}")), "<<194, 133>>");
}

#[test]
fn long_strings_and_lists_are_cut() {
    let long = "a".repeat(4100);
    assert_eq!(ins(json!(long)), format!("\"{}\" <> ...", "a".repeat(4096)));
    let list: Vec<u32> = (1000..1060).collect();
    let s = ins(json!(list));
    assert!(s.ends_with("1048, 1049, ...]"), "{s}");
    // The budget is shared with nested containers.
    let nested = json!([[1, 2, 3], [4, 5, 6]]);
    assert_eq!(ins(nested), "[[1, 2, 3], [4, 5, 6]]");
}

#[test]
fn charlists_and_floats() {
    assert_eq!(ins(json!([104, 105])), r#"~c"hi""#);
    assert_eq!(ins(json!([104, 1])), "[104, 1]");
    assert_eq!(ins(json!(1.0)), "1.0");
    assert_eq!(ins(json!(-3.0)), "-3.0");
    assert_eq!(ins(json!(0.1)), "0.1");
    assert_eq!(ins(json!(1.0e20)), "1.0e20");
    assert_eq!(ins(json!(1.5e-7)), "1.5e-7");
    assert_eq!(ins(json!(0.001)), "0.001");
    assert_eq!(ins(json!(123456.789)), "123456.789");
    assert_eq!(ins(json!(1.0e16)), "1.0e16");
    assert_eq!(ins(json!(12345678901234567890.0)), "1.2345678901234567e19");
    assert_eq!(ins(json!(0.0)), "0.0");
}

#[test]
fn pretty_breaks_long_lists_of_tuples() {
    let short = Term::List(vec![Term::Tuple(vec![
        Term::str("id"),
        Term::str("eq"),
        Term::str("1"),
        Term::Bool(false),
    ])]);
    assert_eq!(inspect_pretty(&short), r#"[{"id", "eq", "1", false}]"#);
    let values = (1..=101)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let long = Term::List(vec![Term::Tuple(vec![
        Term::str("id"),
        Term::str("in"),
        Term::str(&format!("{{{values}}}")),
        Term::Bool(false),
    ])]);
    assert_eq!(
        inspect_pretty(&long),
        format!("[\n  {{\"id\", \"in\",\n   \"{{{values}}}\",\n   false}}\n]")
    );
    let two = Term::List(vec![
        Term::Tuple(vec![
            Term::str("some_long_column_name"),
            Term::str("eq"),
            Term::str("a value"),
            Term::Bool(false),
        ]),
        Term::Tuple(vec![
            Term::str("another_column"),
            Term::str("neq"),
            Term::str("x"),
            Term::Bool(true),
        ]),
    ]);
    assert_eq!(
        inspect_pretty(&two),
        "[\n  {\"some_long_column_name\", \"eq\", \"a value\", false},\n  {\"another_column\", \"neq\", \"x\", true}\n]"
    );
    let cols = Term::List((0..12).map(|i| Term::str(&format!("column_{i}"))).collect());
    assert_eq!(
        inspect_pretty(&cols),
        "[\"column_0\", \"column_1\", \"column_2\", \"column_3\", \"column_4\", \"column_5\",\n \"column_6\", \"column_7\", \"column_8\", \"column_9\", \"column_10\", \"column_11\"]"
    );
}
