//! Binding parsing, relation matching, verdicts and error texts.

use super::*;
use crate::proto::pg::PgTimestamp;
use crate::realtime::postgres_changes::change::primary_key_from_identity;
use crate::realtime::postgres_changes::test_support::{delete, insert, relation, update};
use serde_json::json;

fn parse(v: serde_json::Value) -> Result<Binding, BindingError> {
    parse_binding(v.as_object().unwrap(), 7)
}

fn msg(v: serde_json::Value) -> String {
    parse(v).unwrap_err().message()
}

#[test]
fn the_four_shapes() {
    let b = parse(json!({"schema": "public", "table": "messages", "filter": "subject=eq.hey"}))
        .unwrap();
    assert_eq!(
        (b.id, b.event, b.schema.as_str(), b.table.as_str()),
        (7, EventFilter::All, "public", "messages")
    );
    assert_eq!(b.filters.len(), 1);
    let b = parse(json!({"schema": "public", "table": "messages"})).unwrap();
    assert!(b.filters.is_empty());
    let b = parse(json!({"schema": "public", "table": "messages", "filter": ""})).unwrap();
    assert!(b.filters.is_empty());
    let b = parse(json!({"schema": "public"})).unwrap();
    assert_eq!(b.table, "*");
    let b = parse(json!({"table": "messages", "event": "insert"})).unwrap();
    assert_eq!(
        (b.schema.as_str(), b.event),
        ("public", EventFilter::Insert)
    );
}

#[test]
fn events_are_upper_cased_else_all() {
    let ev = |e: serde_json::Value| parse(json!({"schema": "s", "event": e})).unwrap().event;
    assert_eq!(ev(json!("Update")), EventFilter::Update);
    assert_eq!(ev(json!("DELETE")), EventFilter::Delete);
    assert_eq!(ev(json!("*")), EventFilter::All);
    assert_eq!(ev(json!("TRUNCATE")), EventFilter::All);
    assert_eq!(ev(json!(1)), EventFilter::All);
    assert!(EventFilter::Update.matches(ChangeKind::Update));
    assert!(!EventFilter::Update.matches(ChangeKind::Insert));
    assert!(EventFilter::All.matches(ChangeKind::Delete));
    assert_eq!(EventFilter::All.as_str(), "*");
}

#[test]
fn no_params_errors_inspect_the_element() {
    assert_eq!(
        msg(json!({})),
        "No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{}"
    );
    assert_eq!(
        msg(json!({"event": "*", "schema": "public", "table": "todos", "filter": null})),
        r#"No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{"event" => "*", "filter" => nil, "schema" => "public", "table" => "todos"}"#
    );
    assert_eq!(
        msg(json!({"schema": "public", "filter": "id=eq.1"})),
        r#"No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{"filter" => "id=eq.1", "schema" => "public"}"#
    );
    assert_eq!(
        msg(json!({"schema": 1, "table": "t"})),
        r#"No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{"schema" => 1, "table" => "t"}"#
    );
    assert_eq!(
        msg(json!({"event": "*", "user_token": "secret"})),
        "No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: <redacted>"
    );
}

#[test]
fn select_rules() {
    let b = parse(json!({"schema": "public", "table": "t", "select": ["a", 1, "b"]})).unwrap();
    assert_eq!(b.select, Some(vec!["a".to_owned(), "b".to_owned()]));
    let b = parse(json!({"schema": "public", "table": "t", "select": []})).unwrap();
    assert_eq!(b.select, None);
    let b = parse(json!({"schema": "public", "table": "t", "select": null})).unwrap();
    assert_eq!(b.select, None);
    let not_list = "Error parsing `select` params: expected a list of column name strings, e.g. select: [\"col1\", \"col2\"]";
    assert_eq!(
        msg(json!({"schema": "public", "table": "t", "select": "a"})),
        not_list
    );
    // Checked before the shape.
    assert_eq!(msg(json!({"select": "a"})), not_list);
    let wildcard = "Column selection is not supported for wildcard subscriptions. Provide an explicit schema and table name.";
    assert_eq!(msg(json!({"schema": "public", "select": ["a"]})), wildcard);
    assert_eq!(
        msg(json!({"schema": "*", "table": "t", "select": ["a"]})),
        wildcard
    );
    // The filter is parsed before the wildcard check.
    assert_eq!(
        msg(json!({"schema": "*", "table": "t", "filter": "x", "select": ["a"]})),
        r#"Error parsing `filter` params: ["x"]"#
    );
}

#[test]
fn legacy_topics() {
    let b = parse_binding(&legacy_params("public:todos:id=eq.1"), 1).unwrap();
    assert_eq!(
        (b.schema.as_str(), b.table.as_str(), b.filters.len()),
        ("public", "todos", 1)
    );
    let b = parse_binding(&legacy_params("public:todos"), 1).unwrap();
    assert!(b.filters.is_empty());
    let b = parse_binding(&legacy_params("*"), 1).unwrap();
    assert_eq!((b.schema.as_str(), b.table.as_str()), ("*", "*"));
    let m = legacy_params("a:b:c:d");
    assert_eq!(m.get("filter"), Some(&json!("c:d")));
}

#[test]
fn relations_match_like_sql_like() {
    let b = |s: &str, t: &str| parse(json!({"schema": s, "table": t})).unwrap();
    assert!(b("*", "*").matches_relation("x", "y"));
    assert!(b("public", "todos").matches_relation("public", "todos"));
    assert!(!b("public", "todos").matches_relation("public", "Todos"));
    assert!(b("public", "my_table").matches_relation("public", "myXtable"));
    assert!(b("public", "to%").matches_relation("public", "todos"));
    assert!(!b("public", "to%").matches_relation("public", "atodos"));
    assert!(b("pub%c", "%").matches_relation("public", ""));
    assert!(!b("public", "a*").matches_relation("public", "ab"));
    assert!(b("public", "a*").matches_relation("public", "a*"));
    assert!(b("public", "é_").matches_relation("public", "éü"));
}

#[test]
fn subscribe_errors_list_the_params() {
    let b = parse(json!({"event": "insert", "schema": "public", "table": "todos", "filter": "id=not.eq.1,name=in.(a,b)"})).unwrap();
    assert_eq!(
        b.params_to_log(),
        r#"event: INSERT, schema: public, table: todos, filters: [{"id", "eq", "1", true}, {"name", "in", "{a,b}", false}], select: nil"#
    );
    assert_eq!(
        b.subscribe_error_message(&SubscribeError::NotEnabled),
        r#"Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [event: INSERT, schema: public, table: todos, filters: [{"id", "eq", "1", true}, {"name", "in", "{a,b}", false}], select: nil]"#
    );
    let b = parse(json!({"schema": "public", "table": "t", "select": ["a", "b"]})).unwrap();
    assert_eq!(
        b.params_to_log(),
        r#"event: *, schema: public, table: t, filters: [], select: ["a", "b"]"#
    );
}

#[test]
fn too_many_in_values_final_form() {
    let values = (1..=101)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let b =
        parse(json!({"schema": "public", "table": "todos", "filter": format!("id=in.({values})")}))
            .unwrap();
    let raised = b.filters[0].static_check("integer").unwrap_err();
    let exception = PgErrorText::raise_exception(&raised).render();
    assert_eq!(
        exception,
        "ERROR P0001 (raise_exception) too many values for `in` filter. Maximum 100"
    );
    assert_eq!(
        b.subscribe_error_message(&SubscribeError::Exception(exception)),
        format!(
            "Unable to subscribe to changes with given parameters. An exception happened so please check your connect parameters: [event: *, schema: public, table: todos, filters: [\n  {{\"id\", \"in\",\n   \"{{{values}}}\",\n   false}}\n], select: nil]. Exception: ERROR P0001 (raise_exception) too many values for `in` filter. Maximum 100"
        )
    );
}

#[test]
fn pg_errors_render_like_postgrex() {
    let e = PgErrorText {
        severity: "ERROR",
        code: "22P02",
        message: "invalid input syntax for type integer: \"a\"",
        ..PgErrorText::default()
    };
    assert_eq!(
        e.render(),
        "ERROR 22P02 (invalid_text_representation) invalid input syntax for type integer: \"a\""
    );
    let e = PgErrorText {
        severity: "ERROR",
        code: "ZZZZZ",
        message: "m",
        table: Some("t"),
        hint: Some("h"),
        detail: Some("d"),
        ..PgErrorText::default()
    };
    assert_eq!(
        e.render(),
        "ERROR ZZZZZ (nil) m\n\n    table: t\n    hint: h\n\nd"
    );
}

#[test]
fn verdicts_on_changes() {
    let rel = relation(
        "todos",
        b'd',
        &[("id", 23, true), ("title", 25, false), ("body", 25, false)],
    );
    let pk = primary_key_from_identity(&rel).unwrap();
    let ts = PgTimestamp(0);
    let b = |v: serde_json::Value| parse(v).unwrap();
    let ins = insert(&["1", "hello", "u"]);
    let c = Change::from_message(&ins, &rel, &pk, ts).unwrap();
    assert_eq!(
        b(json!({"schema": "public", "table": "todos", "filter": "id=eq.1"})).eval(&c),
        Tri::True
    );
    assert_eq!(
        b(json!({"schema": "public", "table": "todos", "filter": "id=eq.1,title=eq.x"})).eval(&c),
        Tri::False
    );
    assert_eq!(
        b(json!({"schema": "public", "table": "todos", "filter": "title=like.h%"})).eval(&c),
        Tri::NeedsDatabase
    );
    assert_eq!(
        b(json!({"schema": "public", "table": "todos", "filter": "title=like.h%,id=eq.2"}))
            .eval(&c),
        Tri::False
    );
    // Unchanged TOAST and unknown columns are absent: the filter fails.
    assert_eq!(
        b(json!({"schema": "public", "table": "todos", "filter": "body=is.null"})).eval(&c),
        Tri::False
    );
    assert_eq!(
        b(json!({"schema": "public", "table": "todos", "filter": "nope=is.null"})).eval(&c),
        Tri::False
    );
    assert_eq!(
        b(json!({"schema": "public", "table": "other"})).eval(&c),
        Tri::False
    );
    assert_eq!(
        b(json!({"schema": "public", "event": "UPDATE"})).eval(&c),
        Tri::False
    );
    assert_eq!(b(json!({"schema": "public"})).eval(&c), Tri::True);
    // DELETE under DEFAULT identity: only the key columns are there.
    let del = delete(b'K', &["1", "n", "n"]);
    let c = Change::from_message(&del, &rel, &pk, ts).unwrap();
    assert_eq!(
        b(json!({"schema": "public", "table": "todos", "filter": "id=eq.1"})).eval(&c),
        Tri::True
    );
    assert_eq!(
        b(json!({"schema": "public", "table": "todos", "filter": "title=is.null"})).eval(&c),
        Tri::False
    );
    // UPDATE: the new row.
    let upd = update(None, &["1", "new", "u"]);
    let c = Change::from_message(&upd, &rel, &pk, ts).unwrap();
    assert_eq!(
        b(json!({"schema": "public", "table": "todos", "filter": "title=eq.new"})).eval(&c),
        Tri::True
    );
}

/// The allocation-free `like` agrees with a plain per-character
/// backtracking matcher on every pattern and name built from a small
/// alphabet (ASCII, wildcards, and two-byte and three-byte characters).
#[test]
fn like_matches_a_reference_matcher() {
    fn reference(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('%', rest)) => (0..=s.len()).any(|k| reference(rest, &s[k..])),
            Some((&c, rest)) => {
                !s.is_empty() && (c == '_' || c == s[0]) && reference(rest, &s[1..])
            }
        }
    }
    let alphabet = ['a', 'b', '_', '%', 'é', '€'];
    let mut words = vec![String::new()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for w in &words {
            for c in alphabet {
                let mut x = w.clone();
                x.push(c);
                next.push(x);
            }
        }
        words.extend(next);
        words.sort();
        words.dedup();
    }
    let names: Vec<&String> = words.iter().filter(|w| !w.contains(['%'])).collect();
    for p in &words {
        let pc: Vec<char> = p.chars().collect();
        for s in &names {
            let sc: Vec<char> = s.chars().collect();
            assert_eq!(
                like(p, s),
                reference(&pc, &sc),
                "pattern {p:?} against {s:?}"
            );
        }
    }
    assert!(like("lg_changes", "lg_changes"));
    assert!(like("lg_changes", "lgXchanges"));
    assert!(!like("lg_changes", "lg_change"));
}
