//! The delivered `data` under each replica identity, TOAST, select,
//! privileges, 413 and 400/401, and the message around it.

use super::*;
use crate::proto::pg::pgoutput::{Message, Relation};
use crate::proto::pg::types::BuiltinsOnly;
use crate::proto::pg::PgTimestamp;
use crate::realtime::postgres_changes::change::primary_key_from_identity;
use crate::realtime::postgres_changes::test_support::{delete, insert, relation, update};

/// 2024-01-01T12:00:00.123456Z.
const TS: PgTimestamp = PgTimestamp(757_425_600_123_456);

fn todos(identity: u8) -> Relation {
    relation(
        "todos",
        identity,
        &[
            ("id", 23, true),
            ("title", 25, identity == b'f'),
            ("done", 16, identity == b'f'),
            ("body", 25, identity == b'f'),
        ],
    )
}

fn data_with(rel: &Relation, pk: &[usize], msg: &Message, opts: &PayloadOptions<'_>) -> String {
    let change = Change::from_message(msg, rel, pk, TS).unwrap();
    let mut out = Vec::new();
    write_change(&mut out, &change, &BuiltinsOnly, opts).unwrap();
    let s = String::from_utf8(out).unwrap();
    serde_json::from_str::<serde_json::Value>(&s).expect("valid JSON");
    s
}

fn data(rel: &Relation, msg: &Message) -> String {
    let pk = primary_key_from_identity(rel).unwrap_or_else(|| vec![0]);
    data_with(rel, &pk, msg, &PayloadOptions::default())
}

const COLUMNS: &str = r#""columns":[{"name":"id","type":"int4"},{"name":"title","type":"text"},{"name":"done","type":"bool"},{"name":"body","type":"text"}]"#;

fn head(kind: &str) -> String {
    format!(
        r#"{{"schema":"public","table":"todos","type":"{kind}","commit_timestamp":"2024-01-01T12:00:00.123Z",{COLUMNS}"#
    )
}

#[test]
fn insert_default_identity() {
    let rel = todos(b'd');
    assert_eq!(
        data(&rel, &insert(&["1", "buy milk", "f", "n"])),
        format!(
            r#"{},"record":{{"id":1,"body":null,"done":false,"title":"buy milk"}},"errors":null}}"#,
            head("INSERT")
        )
    );
}

#[test]
fn update_default_identity_old_record_is_the_key() {
    let rel = todos(b'd');
    // Key unchanged: no old tuple, the key comes from the new row; the
    // unchanged TOAST body is left out.
    assert_eq!(
        data(&rel, &update(None, &["1", "x", "t", "u"])),
        format!(
            r#"{},"record":{{"id":1,"done":true,"title":"x"}},"old_record":{{"id":1}},"errors":null}}"#,
            head("UPDATE")
        )
    );
    // Key changed: the old key.
    assert_eq!(
        data(
            &rel,
            &update(Some((b'K', &["1", "n", "n", "n"])), &["2", "x", "t", "b"])
        ),
        format!(
            r#"{},"record":{{"id":2,"body":"b","done":true,"title":"x"}},"old_record":{{"id":1}},"errors":null}}"#,
            head("UPDATE")
        )
    );
}

#[test]
fn update_full_identity_old_row_fills_toast() {
    let rel = todos(b'f');
    assert_eq!(
        data(
            &rel,
            &update(
                Some((b'O', &["1", "old", "f", "long body"])),
                &["1", "new", "t", "u"]
            )
        ),
        format!(
            r#"{},"record":{{"id":1,"body":"long body","done":true,"title":"new"}},"old_record":{{"id":1,"body":"long body","done":false,"title":"old"}},"errors":null}}"#,
            head("UPDATE")
        )
    );
}

#[test]
fn deletes_under_default_full_and_rls() {
    let rel = todos(b'd');
    assert_eq!(
        data(&rel, &delete(b'K', &["7", "n", "n", "n"])),
        format!(
            r#"{},"old_record":{{"id":7}},"errors":null}}"#,
            head("DELETE")
        )
    );
    let rel = todos(b'f');
    let msg = delete(b'O', &["7", "t", "f", "n"]);
    assert_eq!(
        data(&rel, &msg),
        format!(
            r#"{},"old_record":{{"id":7,"body":null,"done":false,"title":"t"}},"errors":null}}"#,
            head("DELETE")
        )
    );
    let rls = PayloadOptions {
        rls_enabled: true,
        ..PayloadOptions::default()
    };
    assert_eq!(
        data_with(&rel, &[0], &msg, &rls),
        format!(
            r#"{},"old_record":{{"id":7}},"errors":null}}"#,
            head("DELETE")
        )
    );
}

#[test]
fn select_keeps_selected_and_key_columns() {
    let rel = todos(b'd');
    let select = vec!["title".to_owned()];
    let opts = PayloadOptions {
        select: Some(&select),
        ..PayloadOptions::default()
    };
    assert_eq!(
        data_with(&rel, &[0], &update(None, &["1", "x", "t", "b"]), &opts),
        r#"{"schema":"public","table":"todos","type":"UPDATE","commit_timestamp":"2024-01-01T12:00:00.123Z","columns":[{"name":"id","type":"int4"},{"name":"title","type":"text"}],"record":{"id":1,"title":"x"},"old_record":{"id":1},"errors":null}"#
    );
}

#[test]
fn privileges_limit_columns_and_the_key_gives_401() {
    let rel = todos(b'd');
    let privs = [true, false, true, true];
    let opts = PayloadOptions {
        column_privileges: Some(&privs),
        ..PayloadOptions::default()
    };
    let s = data_with(&rel, &[0], &insert(&["1", "secret", "t", "b"]), &opts);
    assert!(!s.contains("secret") && !s.contains("\"title\""), "{s}");
    let privs = [false, true, true, true];
    let opts = PayloadOptions {
        column_privileges: Some(&privs),
        ..PayloadOptions::default()
    };
    assert_eq!(
        data_with(&rel, &[0], &update(None, &["1", "x", "t", "b"]), &opts),
        r#"{"schema":"public","table":"todos","type":"UPDATE","commit_timestamp":null,"columns":[],"record":{},"old_record":{},"errors":["Error 401: Unauthorized"]}"#
    );
}

#[test]
fn no_primary_key_gives_400() {
    let rel = relation("logs", b'd', &[("msg", 25, false)]);
    let pk: Vec<usize> = primary_key_from_identity(&rel).unwrap();
    assert!(pk.is_empty());
    assert_eq!(
        data_with(&rel, &pk, &insert(&["hello"]), &PayloadOptions::default()),
        r#"{"schema":"public","table":"logs","type":"INSERT","commit_timestamp":null,"columns":[],"record":{},"errors":["Error 400: Bad Request, no primary key"]}"#
    );
    // A FULL-identity table without a primary key: UPDATE is an error row
    // too, DELETE is delivered.
    let rel = relation("logs", b'f', &[("msg", 25, true)]);
    assert_eq!(
        data_with(
            &rel,
            &[],
            &update(Some((b'O', &["a"])), &["b"]),
            &PayloadOptions::default()
        ),
        r#"{"schema":"public","table":"logs","type":"UPDATE","commit_timestamp":null,"columns":[],"record":{},"old_record":{},"errors":["Error 400: Bad Request, no primary key"]}"#
    );
    assert_eq!(
        data_with(&rel, &[], &delete(b'O', &["a"]), &PayloadOptions::default()),
        r#"{"schema":"public","table":"logs","type":"DELETE","commit_timestamp":"2024-01-01T12:00:00.123Z","columns":[{"name":"msg","type":"text"}],"old_record":{"msg":"a"},"errors":null}"#
    );
}

#[test]
fn oversized_changes_keep_only_short_values() {
    let rel = todos(b'f');
    let long = "x".repeat(70);
    let exactly = "y".repeat(62); // 64 bytes with its quotes
    let opts = PayloadOptions {
        max_record_bytes: 100,
        ..PayloadOptions::default()
    };
    let msg = update(
        Some((b'O', &["1", &exactly, "f", "n"])),
        &["1", &long, "t", "u"],
    );
    assert_eq!(
        data_with(&rel, &[0], &msg, &opts),
        format!(
            r#"{},"record":{{"id":1,"done":true}},"old_record":{{"id":1,"done":false,"title":"{exactly}"}},"errors":["Error 413: Payload Too Large"]}}"#,
            head("UPDATE")
        )
    );
    // Under the limit nothing is cut.
    let s = data_with(&rel, &[0], &msg, &PayloadOptions::default());
    assert!(s.contains(&long) && s.ends_with(r#""errors":null}"#));
}

#[test]
fn jsonb_spacing_counts_towards_the_64_bytes() {
    assert_eq!(jsonb_text_len(br#"{"a":[1,2],"b":"x,y:z"}"#), 27);
    assert_eq!(jsonb_text_len(br#""a\"b,""#), 7);
    assert_eq!(json_str_len(b"a\"\n\x01"), 2 + 1 + 2 + 2 + 6);
}

#[test]
fn wal2json_values_quirks() {
    let rel = relation(
        "m",
        b'd',
        &[("id", 23, true), ("raw", 17, false), ("f", 701, false)],
    );
    let msg = insert(&["1", "\\x0102", "NaN"]);
    assert_eq!(
        data_with(&rel, &[0], &msg, &PayloadOptions::default()),
        r#"{"schema":"public","table":"m","type":"INSERT","commit_timestamp":"2024-01-01T12:00:00.123Z","columns":[{"name":"id","type":"int4"},{"name":"raw","type":"bytea"},{"name":"f","type":"float8"}],"record":{"f":"NaN","id":1,"raw":"\\x0102"},"errors":null}"#
    );
    let opts = PayloadOptions {
        wal2json_values: true,
        ..PayloadOptions::default()
    };
    assert!(
        data_with(&rel, &[0], &msg, &opts).contains(r#""record":{"f":null,"id":1,"raw":"0102"}"#)
    );
}

#[test]
fn errors_append_nothing() {
    let rel = relation("m", b'd', &[("id", 23, true), ("e", 90_000, false)]);
    let msg = insert(&["1", "x"]);
    let change = Change::from_message(&msg, &rel, &[0], TS).unwrap();
    let mut out = b"prefix".to_vec();
    let e = write_change(&mut out, &change, &BuiltinsOnly, &PayloadOptions::default()).unwrap_err();
    assert_eq!(
        e,
        PayloadError::UnknownType {
            column: "e".into(),
            oid: Oid(90_000)
        }
    );
    assert_eq!(out, b"prefix");
    let rel = relation("m", b'd', &[("id", 23, true), ("n", 23, false)]);
    let msg = insert(&["1", "b:\x00\x01"]);
    let change = Change::from_message(&msg, &rel, &[0], TS).unwrap();
    assert!(matches!(
        write_change(&mut out, &change, &BuiltinsOnly, &PayloadOptions::default()),
        Err(PayloadError::Value { .. })
    ));
    assert_eq!(out, b"prefix");
}

#[test]
fn messages_and_frames() {
    let mut out = BytesMut::new();
    write_message_payload(&mut out, &[2, 1], br#"{"x":1}"#);
    assert_eq!(&out[..], br#"{"ids":[2,1],"data":{"x":1}}"#);
    let f = message_frame(
        Vsn::V2,
        "realtime:room",
        Delivery::Bindings,
        ChangeKind::Insert,
        &[5],
        b"{}",
    );
    let text = String::from_utf8_lossy(&f[2..]).into_owned();
    assert!(
        text.ends_with(r#"[null,null,"realtime:room","postgres_changes",{"ids":[5],"data":{}}]"#),
        "{text}"
    );
    let f = message_frame(
        Vsn::V2,
        "realtime:public:todos",
        Delivery::Legacy,
        ChangeKind::Delete,
        &[5],
        b"{}",
    );
    let text = String::from_utf8_lossy(&f[2..]).into_owned();
    assert!(
        text.ends_with(r#"[null,null,"realtime:public:todos","DELETE",{}]"#),
        "{text}"
    );
}

#[test]
fn wal_size_grows_with_values() {
    let rel = todos(b'd');
    let small = insert(&["1", "a", "t", "n"]);
    let big = insert(&["1", &"a".repeat(1000), "t", "n"]);
    let size = |m: &Message| {
        let c = Change::from_message(m, &rel, &[0], TS).unwrap();
        wal_size(&c, &c.columns(), &c.identity(), &BuiltinsOnly)
    };
    assert_eq!(size(&big) - size(&small), 999);
    assert!(size(&small) > 200 && size(&small) < 600, "{}", size(&small));
}
