//! The database is the oracle: every column value that pgoutput streams,
//! decoded by `proto::pg` and converted by `typed_json`, must equal what
//! `to_jsonb(column)` returns for the same row in the same database, for
//! every supported type, arrays of it (1-D with NULLs, 2-D, empty, custom
//! bounds), a domain, an enum, a composite, and in four time zones.
//!
//! Comparison is byte for byte after removing the whitespace jsonb_out puts
//! after `,` and `:` and upper-casing the hex of `\u00XX` escapes (the
//! wire's JSON style); see `src/proto/pg/jsonb.rs`.
//!
//! Uses `DEV_DB_URL` if set, else starts `scripts/dev-db`; talks to
//! PostgreSQL with `psql`. Also checks the decoder on real UPDATE (old key,
//! old row, unchanged TOAST), DELETE, TRUNCATE, logical messages and a
//! streamed (protocol 2) transaction.

use std::collections::HashMap;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use realtime::proto::pg::pgoutput::{Column, Decoder, Message, OldTuple, Relation, TupleData};
use realtime::proto::pg::types::{
    type_name, unresolved, Category, CompositeField, TypeCache, TypeInfo, TypeKind, BUILTIN_TYPES,
};
use realtime::proto::pg::{write_typed, Oid, RelCache, TypedJsonError};

/// Column types under test and sample values (SQL literals, cast to the
/// type). Each gets a scalar column `c_<name>` and an array column `a_<name>`.
#[rustfmt::skip]
const TYPES: &[(&str, &str, &[&str])] = &[
    ("int2", "int2", &["-32768", "32767", "0"]),
    ("int4", "int4", &["-2147483648", "42"]),
    ("int8", "int8", &["9223372036854775807", "-1"]),
    ("float4", "float4", &["'NaN'", "'Infinity'", "'-Infinity'", "'3.4028235e38'", "'1.5e-7'", "'-0'",
        "'0.1'", "'1e-45'"]),
    ("float8", "float8", &["'NaN'", "'-Infinity'", "'1e100'", "'5e-324'", "'1.7976931348623157e308'",
        "'-0'", "'123456789.123'", "'0.1'", "'Infinity'"]),
    ("numeric", "numeric", &["'NaN'", "'Infinity'", "'-Infinity'", "'1.50'", "'-0.00'",
        "'123456789012345678901234567890.123456789'", "'1e-20'", "'-7'"]),
    ("bool", "bool", &["true", "false"]),
    ("text", "text", &["'plain'", r#"E'q"uo\\te\nnew\tline'"#, "'üñí 😀'", r"E'ctl\x01\x1f\x7f'", "''",
        "'NULL'", "'{a,b}'", "' spaced '", "'(x)'"]),
    ("varchar", "varchar(20)", &["'v'", "'a,b'"]),
    ("bpchar", "char(5)", &["'ab'", "'abcde'"]),
    ("name", "name", &["'n'", "'with space'"]),
    ("uuid", "uuid", &["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"]),
    ("json", "json", &[r#"'{"b":1,"a":[1,2.50,{"z":null,"y":"\u00e9"}],"a":3}'"#,
        r#"'  [1e2, -0, "x", 1.0E-3] '"#, r#"'"str"'"#, "'null'",
        r#"'{"nested":{"deep":{"k":[true,false]}}, "aa": 1.0E+2, "": {}}'"#,
        r#"'{"esc":"\u001f\n\"\\\/ \ud83d\ude00"}'"#]),
    ("jsonb", "jsonb", &[r#"'{"b":1,"a":[1,2.50,{"z":null}],"ccc":{"d":"é"}}'"#, "'[]'",
        "'12345678901234567890.5'", r#"'{"esc":"\u001f\n\"\\"}'"#, "'false'"]),
    ("timestamp", "timestamp", &["'2024-01-01 12:00:00.123456'", "'2024-02-29 23:59:59'", "'infinity'",
        "'-infinity'", "'0044-03-15 10:00:00 BC'", "'1800-01-01 00:00:00.5'"]),
    ("timestamptz", "timestamptz", &["'2024-01-01 12:00:00.123456+00'", "'2024-06-01 12:00:00+05:30'",
        "'infinity'", "'0044-03-15 10:00:00+00 BC'", "'1800-01-01 00:00:00+00'", "'-infinity'"]),
    ("date", "date", &["'2024-02-29'", "'infinity'", "'0044-03-15 BC'"]),
    ("time", "time", &["'12:34:56.789'", "'24:00:00'"]),
    ("timetz", "timetz", &["'12:34:56+05:30'", "'00:00:00-03'"]),
    ("interval", "interval", &["'-1 days -02:03:04.5'", "'1 year 2 mons'", "'00:00:00'", "'P1Y2M3DT4H5M6S'",
        "'-1 year -2 mons +3 days -04:05:06'"]),
    ("bytea", "bytea", &[r"'\x0102ff'", "''", r"'\\'"]),
    ("inet", "inet", &["'192.168.1.1/24'", "'::1'"]),
    ("cidr", "cidr", &["'10.0.0.0/8'"]),
    ("macaddr", "macaddr", &["'08:00:2b:01:02:03'"]),
    ("macaddr8", "macaddr8", &["'08:00:2b:01:02:03:04:05'"]),
    ("oid", "oid", &["4294967295", "0"]),
    ("money", "money", &["'1234.56'", "'-0.01'"]),
    ("xml", "xml", &[r#"'<a b="c">&amp;</a>'"#, "'<x/>'"]),
    ("char", "\"char\"", &["'x'", "'\"'"]),
    ("bit", "bit(3)", &["B'101'"]),
    ("varbit", "varbit", &["B'1'", "B''"]),
    ("posint", "posint", &["7", "2147483647"]),
    ("price", "price", &["'12.5'", "'-0.001'"]),
    ("mood", "mood", &["'happy'", "'very happy'", "'o''k'"]),
    ("pair", "pair", &[r#"ROW(1, E'a "q" b\\c', '{"k":[1, 2.0]}', 'sad', '{x,"y z",NULL}')"#,
        "ROW(NULL, '', NULL, NULL, '{}')", "ROW(-5, 'x,y (z)', 'null', 'very happy', NULL)"]),
];

const SCHEMA: &str = r"
CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
CREATE DOMAIN price AS numeric(10,3);
CREATE TYPE mood AS ENUM ('happy', 'sad', 'very happy', 'o''k');
CREATE TYPE pair AS (n int4, label text, j jsonb, m mood, tags text[]);
";

/// Time zones the whole comparison runs in (offsets with hours only,
/// minutes, negative minutes, and LMT seconds before 1900).
#[rustfmt::skip]
const ZONES: &[&str] = &["UTC", "Asia/Kolkata", "America/St_Johns", "Europe/Amsterdam"];

fn psql_bin() -> String {
    let out = Command::new("pg_config").arg("--bindir").output();
    match out {
        Ok(o) if o.status.success() => {
            format!("{}/psql", String::from_utf8_lossy(&o.stdout).trim())
        }
        _ => "/usr/lib/postgresql/15/bin/psql".into(),
    }
}

/// Runs SQL with psql (unaligned, tuples only, fields split by 0x1F) in a
/// session with the given time zone; panics with psql's stderr on error.
fn psql(url: &str, tz: &str, sql: &str) -> String {
    let out = Command::new(psql_bin())
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-F", "\x1f", "-d", url, "-c", sql])
        .env(
            "PGOPTIONS",
            format!("-c TimeZone={tz} -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=1 -c logical_decoding_work_mem=64kB"),
        )
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed on {:?}...: {}",
        sql.chars().take(300).collect::<String>(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("psql output is UTF-8")
}

/// A fresh database and its logical slot (both called `name`), dropped
/// (slot first) on drop.
struct Db {
    admin: String,
    url: String,
    name: String,
}

impl Db {
    fn create() -> Db {
        let admin = std::env::var("DEV_DB_URL").unwrap_or_else(|_| {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev-db");
            let out = Command::new(script)
                .arg("start")
                .output()
                .expect("run scripts/dev-db");
            assert!(
                out.status.success(),
                "scripts/dev-db start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8(out.stdout).unwrap();
            stdout.lines().last().expect("dev-db prints the URL").into()
        });
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("pgtypes_{}_{}", std::process::id(), nanos);
        psql(&admin, "UTC", &format!("CREATE DATABASE {name}"));
        let (base, _) = admin.rsplit_once('/').expect("URL with a database");
        let url = format!("{base}/{name}");
        Db { admin, url, name }
    }

    fn sql(&self, sql: &str) -> String {
        psql(&self.url, "UTC", sql)
    }

    /// The rows of a query, fields split.
    fn rows(&self, tz: &str, sql: &str) -> Vec<Vec<String>> {
        let out = psql(&self.url, tz, sql);
        out.lines()
            .map(|l| l.split('\x1f').map(String::from).collect())
            .collect()
    }

    /// The slot's pgoutput messages from the start, not consumed.
    fn changes(&self, tz: &str, options: &str) -> Vec<Bytes> {
        let q = format!(
            "SELECT encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes('{}', NULL, NULL, \
             'publication_names', 'pub', 'messages', 'true', {options})",
            self.name
        );
        psql(&self.url, tz, &q)
            .lines()
            .map(|l| Bytes::from(unhex(l)))
            .collect()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Two -c: each runs in its own transaction (DROP DATABASE needs that).
        let _ = Command::new(psql_bin())
            .args(["-X", "-q", "-d", &self.admin, "-c"])
            .arg(format!(
                "SELECT pg_drop_replication_slot('{}') FROM pg_replication_slots WHERE slot_name = '{0}'",
                self.name
            ))
            .arg("-c")
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .output();
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// jsonb_out text in the wire's style: no whitespace outside strings,
/// upper-case `\u` escapes.
fn compact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            if c == '\\' {
                let e = chars.next().unwrap();
                out.push(e);
                if e == 'u' {
                    out.extend(chars.by_ref().take(4).map(|h| h.to_ascii_uppercase()));
                }
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Resolves non-builtin OIDs from pg_type, as the replication driver will.
fn resolve_from_catalog(db: &Db, cache: &mut TypeCache, oids: Vec<Oid>) {
    let mut todo = unresolved(oids.iter().copied(), cache);
    while !todo.is_empty() {
        for oid in todo {
            let f = db.rows(
                "UTC",
                &format!(
                    "SELECT t.typname, t.typtype, t.typbasetype, t.typelem, \
                     t.typsubscript = 'array_subscript_handler'::regproc, t.typrelid, \
                     coalesce(e.typdelim, ','), EXISTS (SELECT 1 FROM pg_cast \
                     WHERE castsource = t.oid AND casttarget = 'json'::regtype) \
                     FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem WHERE t.oid = {oid}"
                ),
            );
            let f = &f[0];
            let kind = match (f[1].as_str(), f[4].as_str()) {
                _ if f[7] == "t" => TypeKind::CastToJson,
                ("d", _) => TypeKind::Domain {
                    base: Oid(f[2].parse().unwrap()),
                },
                ("c", _) => {
                    let sql = format!(
                        "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = {} \
                         AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                        f[5]
                    );
                    let fields = db.rows("UTC", &sql).into_iter().map(|a| CompositeField {
                        name: a[0].clone(),
                        type_oid: Oid(a[1].parse().unwrap()),
                    });
                    TypeKind::Composite {
                        fields: fields.collect(),
                    }
                }
                (_, "t") => TypeKind::Array {
                    elem: Oid(f[3].parse().unwrap()),
                    delim: f[6].as_bytes()[0],
                },
                _ => TypeKind::Scalar(Category::String),
            };
            let name = f[0].clone();
            cache.insert(oid, TypeInfo { name, kind });
        }
        // Types the new entries refer to (a composite's enum field, ...).
        todo = unresolved(oids.iter().copied(), cache);
    }
}

fn col_names() -> Vec<String> {
    let mut cols = vec!["id".to_string()];
    for (name, _, _) in TYPES {
        cols.push(format!("c_{name}"));
        cols.push(format!("a_{name}"));
    }
    cols
}

/// Creates the types, the tables (`t`: every type; `u`: updates and
/// deletes; `s`: a streamed transaction; `h`: hstore if available), the
/// publication and the slot. Returns whether `h` exists.
fn create_schema(db: &Db) -> bool {
    let mut ddl = String::from(SCHEMA);
    ddl.push_str("CREATE TABLE t (id int4 PRIMARY KEY");
    for (name, ty, _) in TYPES {
        ddl.push_str(&format!(", c_{name} {ty}, a_{name} {ty}[]"));
    }
    ddl.push_str(");");
    ddl.push_str("CREATE TABLE u (id int4 PRIMARY KEY, big text, n int4);");
    ddl.push_str("CREATE TABLE s (id int4 PRIMARY KEY, v text);");
    db.sql(&ddl);
    let has_hstore = db
        .sql("SELECT count(*) FROM pg_available_extensions WHERE name = 'hstore'")
        .trim()
        == "1";
    if has_hstore {
        db.sql("CREATE EXTENSION hstore; CREATE TABLE h (id int4 PRIMARY KEY, v hstore);");
    }
    db.sql("CREATE PUBLICATION pub FOR ALL TABLES;");
    db.sql(&format!(
        "SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
        db.name
    ));
    has_hstore
}

/// Inserts the rows of `t` in one transaction; returns how many.
fn fill(db: &Db) -> usize {
    let nr_rows = TYPES.iter().map(|t| t.2.len()).max().unwrap() + 5;
    let mut ins = String::from("BEGIN;");
    for k in 0..nr_rows {
        let mut vals = vec![(k + 1).to_string()];
        for (_, ty, samples) in TYPES {
            let s = |i: usize| format!("({})::{ty}", samples[i % samples.len()]);
            vals.push(samples.get(k).map_or("NULL".into(), |_| s(k)));
            vals.push(match k % 5 {
                0 => format!("ARRAY[{}, NULL, {}]::{ty}[]", s(k), s(k + 1)),
                1 => format!("ARRAY[[{}, {}], [NULL, {}]]::{ty}[]", s(k), s(k + 1), s(k)),
                2 => format!("'{{}}'::{ty}[]"),
                3 => format!(
                    "('[0:1]=' || ARRAY[{}, {}]::{ty}[]::text)::{ty}[]",
                    s(k),
                    s(k + 1)
                ),
                _ => "NULL".into(),
            });
        }
        ins.push_str(&format!("INSERT INTO t VALUES ({});", vals.join(", ")));
    }
    ins.push_str("COMMIT;");
    db.sql(&ins);
    nr_rows
}

/// `to_jsonb` of every column of every row, by (id, column).
fn oracle(db: &Db, tz: &str, cols: &[String]) -> HashMap<(String, String), String> {
    let exprs: Vec<String> = cols
        .iter()
        .map(|c| format!("coalesce(to_jsonb({c}), 'null')::text"))
        .collect();
    let sql = format!("SELECT id, {} FROM t ORDER BY id", exprs.join(", "));
    let mut map = HashMap::new();
    for f in db.rows(tz, &sql) {
        assert_eq!(f.len(), cols.len() + 1);
        for (c, v) in cols.iter().zip(&f[1..]) {
            map.insert((f[0].clone(), c.clone()), v.clone());
        }
    }
    map
}

/// Resolves the relation's non-builtin types and checks every column's
/// `typname` against pg_type.
fn relation_types(db: &Db, types: &mut TypeCache, r: &Relation) {
    let oids: Vec<Oid> = r.columns.iter().map(|c| c.type_oid).collect();
    resolve_from_catalog(db, types, oids.clone());
    let list: Vec<String> = oids.iter().map(Oid::to_string).collect();
    let sql = format!(
        "SELECT oid, typname FROM pg_type WHERE oid IN ({})",
        list.join(",")
    );
    let names: HashMap<String, String> = db
        .rows("UTC", &sql)
        .into_iter()
        .map(|f| (f[0].clone(), f[1].clone()))
        .collect();
    for c in &r.columns {
        let want = names[&c.type_oid.to_string()].as_str();
        assert_eq!(type_name(c.type_oid, types), Some(want), "{}", c.name);
    }
}

/// Decodes the slot in time zone `tz` and compares every column of every
/// row of `t` with `to_jsonb`; returns the number of values compared.
fn compare_zone(db: &Db, tz: &str, types: &mut TypeCache, nr_rows: usize) -> usize {
    let cols = col_names();
    let expected = oracle(db, tz, &cols);
    let (mut rels, mut dec) = (RelCache::new(), Decoder::new());
    let (mut rows_seen, mut compared) = (0, 0);
    for msg in db.changes(tz, "'proto_version', '1'") {
        let m = dec.decode(msg).expect("decode pgoutput");
        rels.apply(&m);
        if let Message::Relation(r) = &m {
            relation_types(db, types, r);
        }
        let Message::Insert(ins) = m else { continue };
        let rel = rels.get(ins.relation).expect("relation before insert");
        if rel.name == "h" {
            let Some(Column::Text(v)) = ins.new.get(1) else {
                panic!("hstore value")
            };
            let err = write_typed(&mut Vec::new(), rel.columns[1].type_oid, v, &*types);
            assert!(
                matches!(err, Err(TypedJsonError::NeedsDatabase(_))),
                "{err:?}"
            );
        }
        if rel.name != "t" {
            continue;
        }
        rows_seen += 1;
        let Some(Column::Text(id)) = ins.new.get(0) else {
            panic!("id")
        };
        let id = String::from_utf8(id.to_vec()).unwrap();
        for (col, value) in rel.columns.iter().zip(ins.new.iter()) {
            let want = &expected[&(id.clone(), col.name.clone())];
            let what = format!("{tz} row {id} column {}", col.name);
            let got = match value {
                Column::Null => "null".to_string(),
                Column::Text(text) => {
                    let mut out = Vec::new();
                    write_typed(&mut out, col.type_oid, text, &*types)
                        .unwrap_or_else(|e| panic!("{what}: {e} on {text:?}"));
                    String::from_utf8(out).unwrap()
                }
                other => panic!("{what}: unexpected {other:?}"),
            };
            let got_v: serde_json::Value = serde_json::from_str(&got).expect("valid JSON");
            let want_v: serde_json::Value = serde_json::from_str(want).unwrap();
            assert_eq!(got_v, want_v, "{what}");
            assert_eq!(got, compact(want), "{what} (bytes)");
            compared += 1;
        }
    }
    assert_eq!(rows_seen, nr_rows, "{tz}: every inserted row decoded");
    compared
}

#[test]
fn pg_types_match_to_jsonb() {
    let db = Db::create();
    let has_hstore = create_schema(&db);
    let nr_rows = fill(&db);
    if has_hstore {
        db.sql(r#"INSERT INTO h VALUES (1, 'a=>1, "b c"=>NULL');"#);
    }
    // One transaction per statement.
    for stmt in OTHER_DML.split(';').filter(|s| !s.trim().is_empty()) {
        db.sql(stmt);
    }
    db.sql("INSERT INTO s SELECT i, 'row ' || i FROM generate_series(1, 5000) i;");
    check_builtin_table(&db);

    // Filled once, as the driver's cache would be, and shared by all zones.
    let mut types = TypeCache::new();
    let compared: usize = ZONES
        .iter()
        .map(|tz| compare_zone(&db, tz, &mut types, nr_rows))
        .sum();
    assert_eq!(compared, ZONES.len() * nr_rows * col_names().len());
    eprintln!("compared {compared} values against to_jsonb");

    check_other_messages(&db);
    check_streamed_transaction(&db);
}

fn check_builtin_table(db: &Db) {
    let oids: Vec<String> = BUILTIN_TYPES.iter().map(|t| t.oid.to_string()).collect();
    let rows = db.rows(
        "UTC",
        &format!(
            "SELECT oid, typname, CASE WHEN typsubscript = 'array_subscript_handler'::regproc \
             THEN typelem ELSE 0 END FROM pg_type WHERE oid IN ({}) ORDER BY oid",
            oids.join(",")
        ),
    );
    assert_eq!(rows.len(), BUILTIN_TYPES.len(), "every builtin OID exists");
    for (f, t) in rows.iter().zip(BUILTIN_TYPES.iter()) {
        let elem = t.elem.map_or(0, |e| e.0).to_string();
        assert_eq!([&f[0], &f[1], &f[2]], [&t.oid.to_string(), t.name, &elem]);
    }
}

/// Changes to `u` whose messages [`check_other_messages`] expects.
const OTHER_DML: &str = "
INSERT INTO u VALUES (1, (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 2000) i), 0);
UPDATE u SET n = 1 WHERE id = 1;
ALTER TABLE u REPLICA IDENTITY FULL;
UPDATE u SET n = 2 WHERE id = 1;
ALTER TABLE u REPLICA IDENTITY DEFAULT;
UPDATE u SET id = 2 WHERE id = 1;
DELETE FROM u WHERE id = 2;
SELECT pg_logical_emit_message(true, 'realtime', 'hello');
SELECT pg_logical_emit_message(false, 'nontx', 'x');
TRUNCATE u;
";

/// Column values as strings for assertions: `n`, `u`, or the text.
fn cols(t: &TupleData) -> Vec<String> {
    t.iter()
        .map(|c| match c {
            Column::Null => "n".into(),
            Column::UnchangedToast => "u".into(),
            Column::Text(v) if v.len() > 100 => format!("<{} bytes>", v.len()),
            Column::Text(v) => String::from_utf8_lossy(v).into_owned(),
            Column::Binary(_) => "b".into(),
        })
        .collect()
}

/// UPDATE (unchanged TOAST, old row, old key), DELETE, TRUNCATE, Message,
/// with the Relation messages that announce replica identity changes.
fn check_other_messages(db: &Db) {
    let mut rels = RelCache::new();
    let mut dec = Decoder::new();
    let mut seen = Vec::new();
    let mut in_txn = false;
    for msg in db.changes("UTC", "'proto_version', '1'") {
        let m = dec.decode(msg).expect("decode pgoutput");
        rels.apply(&m);
        let is_u = |oid| rels.get(oid).is_some_and(|r| r.name == "u");
        let line = match &m {
            Message::Begin(_) => {
                in_txn = true;
                continue;
            }
            Message::Commit(c) => {
                assert!(c.end_lsn > c.commit_lsn);
                in_txn = false;
                continue;
            }
            Message::Relation(r) if r.name == "u" => {
                format!("R {:?}", r.replica_identity)
            }
            Message::Insert(i) if is_u(i.relation) => format!("I {:?}", cols(&i.new)),
            Message::Update(u) if is_u(u.relation) => {
                let old = match &u.old {
                    None => "-".to_string(),
                    Some(OldTuple::Key(t)) => format!("K{:?}", cols(t)),
                    Some(OldTuple::Full(t)) => format!("O{:?}", cols(t)),
                };
                format!("U {old} {:?}", cols(&u.new))
            }
            Message::Delete(d) if is_u(d.relation) => {
                assert!(matches!(d.old, OldTuple::Key(_)));
                format!("D {:?}", cols(d.old.tuple()))
            }
            Message::Truncate(t) => {
                assert!(t.relations.iter().all(|&r| is_u(r)));
                format!("T {}", t.relations.len())
            }
            Message::Message(lm) => format!(
                "M {} {} {} {}",
                lm.transactional,
                in_txn,
                lm.prefix,
                String::from_utf8_lossy(&lm.content)
            ),
            _ => continue,
        };
        seen.push(line);
    }
    let want = [
        "R Default",
        r#"I ["1", "<64000 bytes>", "0"]"#,
        r#"U - ["1", "u", "1"]"#,
        "R Full",
        r#"U O["1", "<64000 bytes>", "1"] ["1", "u", "2"]"#,
        "R Default",
        r#"U K["1", "n", "n"] ["2", "u", "2"]"#,
        r#"D ["2", "n", "n"]"#,
        "M true true realtime hello",
        "M false false nontx x",
        "R Default",
        "T 1",
    ];
    assert_eq!(seen, want);
}

/// A transaction bigger than logical_decoding_work_mem, read with protocol
/// 2 and streaming on, arrives in Stream Start/Stop chunks whose inserts
/// carry the transaction id, and ends with Stream Commit.
fn check_streamed_transaction(db: &Db) {
    let mut rels = RelCache::new();
    let types = TypeCache::new();
    let mut dec = Decoder::new();
    // Stream chunks seen per transaction id, and the committed ones.
    let mut chunks: HashMap<u32, usize> = HashMap::new();
    let mut committed = Vec::new();
    let (mut current, mut s_xid, mut inserts) = (None, None, 0);
    for msg in db.changes("UTC", "'proto_version', '2', 'streaming', 'on'") {
        let m = dec.decode(msg).expect("decode pgoutput v2");
        rels.apply(&m);
        match m {
            Message::StreamStart { xid, first_segment } => {
                let n = chunks.entry(xid).or_default();
                assert_eq!(first_segment, *n == 0, "first_segment of {xid}");
                *n += 1;
                current = Some(xid);
            }
            Message::StreamStop => current = None,
            Message::StreamCommit(c) => {
                assert!(chunks.contains_key(&c.xid));
                committed.push(c.xid);
            }
            Message::Insert(i) if rels.get(i.relation).is_some_and(|r| r.name == "s") => {
                assert!(dec.in_stream());
                assert!(i.xid.is_some() && i.xid == current);
                assert!(s_xid.is_none() || s_xid == i.xid, "one transaction");
                s_xid = i.xid;
                let (Some(Column::Text(id)), Some(Column::Text(v))) = (i.new.get(0), i.new.get(1))
                else {
                    panic!("s row")
                };
                let mut out = Vec::new();
                write_typed(&mut out, Oid(25), v, &types).unwrap();
                let id = std::str::from_utf8(id).unwrap();
                assert_eq!(String::from_utf8(out).unwrap(), format!("\"row {id}\""));
                inserts += 1;
            }
            _ => {}
        }
    }
    assert_eq!(inserts, 5000);
    let s_xid = s_xid.unwrap();
    assert!(
        chunks[&s_xid] >= 2,
        "a 5000-row transaction over 64kB streams in chunks"
    );
    assert_eq!(committed.iter().filter(|&&x| x == s_xid).count(), 1);
}
