//! The filter grammar and its exact error texts.

use super::*;
use proptest::prelude::*;

fn one(s: &str) -> Filter {
    let mut v = parse_filters(s).unwrap();
    assert_eq!(v.len(), 1, "{s}");
    v.pop().unwrap()
}

fn err(s: &str) -> String {
    parse_filters(s).unwrap_err().message()
}

#[test]
fn simple_filters_and_negation() {
    let f = one("subject=eq.hey");
    assert_eq!(
        f,
        Filter {
            column: "subject".into(),
            op: Op::Eq,
            negate: false,
            value: FilterValue::Scalar("hey".into()),
        }
    );
    let f = one("subject=not.like.hey%");
    assert_eq!((f.op, f.negate, f.value.as_str()), (Op::Like, true, "hey%"));
    for op in Op::ALL {
        let v = if op == Op::In { "(1)" } else { "1" };
        assert_eq!(one(&format!("c={op}.{v}")).op, op);
    }
    // The value keeps further dots; the column keeps inner blanks.
    let f = one("  a b =gte.1.5  ");
    assert_eq!(
        (f.column.as_str(), f.op, f.value.as_str()),
        ("a b ", Op::Gte, "1.5")
    );
}

#[test]
fn and_lists_split_outside_parens_and_quotes() {
    let v = parse_filters("id=gt.0,id=lt.100").unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!((v[0].op, v[1].op), (Op::Gt, Op::Lt));
    let v = parse_filters("subject=in.(hidee,ho),name=eq.\"a,b\"").unwrap();
    assert_eq!(v[0].value, FilterValue::List("{hidee,ho}".into()));
    assert_eq!(v[1].value, FilterValue::Scalar("a,b".into()));
    // A quote only opens after `.`, `(` or `,`.
    let v = parse_filters("a=eq.x\"y,b=eq.1").unwrap();
    assert_eq!(v[0].value.as_str(), "x\"y");
    let v = parse_filters("c=in.(\"a,b\",\"c\\\"d\")").unwrap();
    assert_eq!(v[0].value.as_str(), "{\"a,b\",\"c\\\"d\"}");
    assert_eq!(
        v[0].value.elements(),
        Some(vec![Some("a,b".into()), Some("c\"d".into())])
    );
}

#[test]
fn quoted_values_are_unquoted_only_when_whole() {
    assert_eq!(one("a=eq.\"x\\\"y\"").value.as_str(), "x\"y");
    assert_eq!(one("a=eq.\"x\\\\y\"").value.as_str(), "x\\y");
    assert_eq!(one("a=eq.\"\"").value.as_str(), "");
    assert_eq!(one("a=eq.\"open").value.as_str(), "\"open");
    assert_eq!(one("a=eq.\"a\"b\"").value.as_str(), "\"a\"b\"");
    assert_eq!(one("a=eq.\"a\\\"").value.as_str(), "\"a\\\"");
    assert_eq!(one("a=is.\"null\"").value.as_str(), "null");
}

#[test]
fn empty_filters_are_no_filter() {
    assert_eq!(parse_filters("").unwrap(), vec![]);
    assert_eq!(parse_filters("  \t ").unwrap(), vec![]);
}

#[test]
fn every_parse_error_text() {
    assert_eq!(
        err("subject=foo.hey"),
        r#"Error parsing `filter` params: ["foo", "hey"]"#
    );
    assert_eq!(
        err("undefined"),
        r#"Error parsing `filter` params: ["undefined"]"#
    );
    assert_eq!(err("id=eq1"), r#"Error parsing `filter` params: ["eq1"]"#);
    assert_eq!(err("id=not.eq"), r#"Error parsing `filter` params: ["eq"]"#);
    assert_eq!(err("id="), r#"Error parsing `filter` params: [""]"#);
    assert_eq!(
        err("id=EQ.1"),
        r#"Error parsing `filter` params: ["EQ", "1"]"#
    );
    assert_eq!(
        err("a=eq.\"q\\\"\",b=x.\"y\""),
        r#"Error parsing `filter` params: ["x", "\"y\""]"#
    );
    assert_eq!(
        err("id=in.1,2"),
        "Error parsing `filter` params: `in` filter value must be wrapped by parentheses"
    );
    assert_eq!(
        err("id=in.("),
        "Error parsing `filter` params: `in` filter value must be wrapped by parentheses"
    );
    assert_eq!(
        err("id=eq.1,"),
        "Error parsing `filter` params: filter must not contain empty segments (check for extra commas)"
    );
    assert_eq!(
        err("id=eq.1, ,b=eq.2"),
        "Error parsing `filter` params: filter must not contain empty segments (check for extra commas)"
    );
    // The first bad segment wins.
    assert_eq!(err("x,id=eq.1,"), r#"Error parsing `filter` params: ["x"]"#);
}

#[test]
fn in_lists_and_array_literals() {
    let f = one("id=in.()");
    assert_eq!(f.value, FilterValue::List("{}".into()));
    assert_eq!(f.value.elements(), Some(vec![]));
    let f = one("id=in.( 1 , NULL,\"NULL\", a\\,b ,\"\")");
    assert_eq!(
        f.value.elements(),
        Some(vec![
            Some("1".into()),
            None,
            Some("NULL".into()),
            Some("a,b".into()),
            Some("".into()),
        ])
    );
    for bad in [
        "{a,,b}",
        "{,}",
        "{{1},{2}}",
        "[1:2]={1,2}",
        "{a\"b}",
        "{\"a\"b}",
        "{a}x",
        "{a",
    ] {
        assert_eq!(parse_array_literal(bad), None, "{bad}");
    }
    assert_eq!(
        parse_array_literal(" { a b } "),
        Some(vec![Some("a b".into())])
    );
}

#[test]
fn static_checks_match_the_trigger_texts() {
    let many = (0..=100)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let f = one(&format!("id=in.({many})"));
    assert_eq!(
        f.static_check("integer"),
        Err("too many values for `in` filter. Maximum 100".into())
    );
    let hundred = (0..100)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        one(&format!("id=in.({hundred})")).static_check("integer"),
        Ok(())
    );
    assert_eq!(
        one("id=is.nil").static_check("integer"),
        Err("invalid value for is filter: must be null, true, false, or unknown".into())
    );
    assert_eq!(
        one("id=is.NULL").static_check("integer"),
        Err("invalid value for is filter: must be null, true, false, or unknown".into())
    );
    assert_eq!(
        one("id=is.true").static_check("integer"),
        Err("is true filter requires a boolean column, got integer".into())
    );
    assert_eq!(one("id=is.null").static_check("integer"), Ok(()));
    assert_eq!(one("done=not.is.unknown").static_check("boolean"), Ok(()));
    assert_eq!(
        trigger::invalid_column("nope"),
        "invalid column for filter nope"
    );
    assert_eq!(
        trigger::invalid_select("nope"),
        "invalid column for select nope"
    );
    assert_eq!(
        trigger::operator_requires_text("like", "integer"),
        "operator like requires a text-compatible column type, got integer"
    );
    assert_eq!(
        trigger::invalid_regex("match", "invalid regular expression: parentheses () not balanced"),
        "invalid regular expression for match filter: invalid regular expression: parentheses () not balanced"
    );
}

proptest! {
    #[test]
    fn parse_filters_never_panics(s in "\\PC{0,80}") {
        let _ = parse_filters(&s);
    }

    #[test]
    fn parse_filters_never_panics_on_filter_like_text(
        s in "[a-z=.,()\"\\\\ ]{0,60}(not\\.)?(eq|in|is|like)?[.()\"\\\\,a-z0-9]{0,20}"
    ) {
        if let Ok(filters) = parse_filters(&s) {
            for f in filters {
                let _ = f.value.elements();
                let _ = f.static_check("text");
            }
        }
    }
}
