//! Hostile filter values, column names, row values and names (topics,
//! roles, publications) through everything that quotes client text into
//! SQL. Either the text is refused (it holds a NUL), or the SQL is exactly
//! our template with each value as one string constant that reads back as
//! that value whether `standard_conforming_strings` is on or off: no
//! client byte ever becomes SQL structure.
//!
//! Input: `filter \n row value \n name`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use realtime::proto::pg::sql::{ident, literal, read_literal};
use realtime::realtime::cdc::fanout::filter_expr;
use realtime::realtime::postgres_changes::binding::parse_binding;
use realtime::realtime::postgres_changes::filter::parse_filters;

/// Checks that `sql` is `template` with `$1` replaced by a constant
/// reading `a` (or `NULL` for `None`) and `$2` by one reading `b`.
fn assert_spliced(template: &str, sql: &str, a: Option<&str>, b: &str) {
    for conforming in [true, false] {
        let mut t = template;
        let mut s = sql;
        while let Some(p) = t.find('$') {
            assert_eq!(&s[..p], &t[..p], "{sql}");
            s = &s[p..];
            let after = &t[p + 1..];
            let (expected, rest) = if let Some(rest) = after.strip_prefix('1') {
                (a, rest)
            } else if let Some(rest) = after.strip_prefix('2') {
                (Some(b), rest)
            } else {
                assert!(s.starts_with('$'));
                s = &s[1..];
                t = after;
                continue;
            };
            match expected {
                Some(v) => {
                    let (read, n) = read_literal(s, conforming)
                        .unwrap_or_else(|| panic!("no constant at {s:?} in {sql:?}"));
                    assert_eq!(read, v, "{sql:?} (conforming {conforming})");
                    s = &s[n..];
                }
                None => {
                    assert!(s.starts_with("NULL"), "{sql:?}");
                    s = &s[4..];
                }
            }
            t = rest;
        }
        assert_eq!(s, t, "{sql:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let filter = parts.next().unwrap_or("");
    let row = parts.next().unwrap_or("");
    let name = parts.next().unwrap_or("");

    // A filter as the client wrote it, and one on a hostile column name.
    let on_column = format!("{name}=like.{row}");
    for text in [filter, on_column.as_str()] {
        let Ok(filters) = parse_filters(text) else {
            continue;
        };
        for f in &filters {
            let value = f.value.as_str();
            for lhs in [Some(row), None] {
                let sql = filter_expr(f, "text", lhs.map(str::as_bytes));
                let nul = value.contains('\0') || lhs.is_some_and(|l| l.contains('\0'));
                match sql {
                    None => assert!(nul, "refused without a NUL: {value:?} {lhs:?}"),
                    Some(sql) => {
                        assert!(!nul);
                        assert_spliced(&f.sql("text"), &sql, lhs, value);
                    }
                }
            }
        }
    }

    // Names (roles, claims, publications, identifiers).
    match literal(name) {
        None => assert!(name.contains('\0')),
        Some(q) => {
            for conforming in [true, false] {
                assert_eq!(
                    read_literal(&q, conforming),
                    Some((name.to_owned(), q.len()))
                );
            }
        }
    }
    if let Some(q) = ident(name) {
        let inner = &q[1..q.len() - 1];
        assert!(q.starts_with('"') && q.ends_with('"'));
        assert_eq!(inner.replace("\"\"", "\""), name);
        assert!(!inner.replace("\"\"", "").contains('"'));
    }
    // A topic's table and schema are matched in Rust, never sent as SQL;
    // a binding naming them must still parse or be refused cleanly.
    let mut raw = serde_json::Map::new();
    raw.insert("event".into(), "*".into());
    raw.insert("schema".into(), name.into());
    raw.insert("table".into(), row.into());
    raw.insert("filter".into(), filter.into());
    if let Err(e) = parse_binding(&raw, 1) {
        assert!(!e.message().is_empty());
    }
});
