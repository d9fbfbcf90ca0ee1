//! Postgres Changes on the server's hot path, without a database: pgoutput
//! decode of INSERT and UPDATE messages, the typed JSON of a change
//! (`write_change`), and binding evaluation against 1 / 100 / 1k
//! subscriptions' filters.
//!
//! Messages are built byte by byte by [`Msg`] in the layout a PG15
//! walsender sends with `proto_version '1'`. Rows are realistic for a
//! Supabase table: an int8 key, int4, bool, text, timestamptz, uuid, jsonb,
//! numeric, then text columns up to the width (5 or 20 columns).

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use realtime::proto::pg::pgoutput::{decode, Message, Relation};
use realtime::proto::pg::replication::PgTimestamp;
use realtime::proto::pg::types::BuiltinsOnly;
use realtime::realtime::postgres_changes::binding::{parse_binding, Binding};
use realtime::realtime::postgres_changes::change::Change;
use realtime::realtime::postgres_changes::eval::Tri;
use realtime::realtime::postgres_changes::payload::{write_change, PayloadOptions};
use realtime_bench::{count_allocs, CountingAlloc, Report};
use std::hint::black_box;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Table widths measured.
const WIDTHS: [usize; 2] = [5, 20];
/// Subscription counts for filter evaluation.
const SUBS: [usize; 3] = [1, 100, 1_000];
/// The relation's OID in every message.
const REL_OID: i32 = 16_400;

/// A pgoutput message under construction.
struct Msg(Vec<u8>);

impl Msg {
    fn new(tag: u8) -> Msg {
        Msg(vec![tag])
    }
    fn u8(mut self, v: u8) -> Msg {
        self.0.push(v);
        self
    }
    fn i16(mut self, v: i16) -> Msg {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Msg {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A NUL-terminated string.
    fn cstr(mut self, s: &str) -> Msg {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    /// TupleData with every value in text form.
    fn tuple(mut self, values: &[String]) -> Msg {
        self = self.i16(values.len() as i16);
        for v in values {
            self = self.u8(b't').i32(v.len() as i32);
            self.0.extend_from_slice(v.as_bytes());
        }
        self
    }
    fn bytes(self) -> Bytes {
        Bytes::from(self.0)
    }
}

/// Column (name, type OID) number `i`.
fn column(i: usize) -> (String, i32) {
    match i {
        0 => ("id".into(), 20),            // int8
        1 => ("owner_id".into(), 23),      // int4
        2 => ("done".into(), 16),          // bool
        3 => ("title".into(), 25),         // text
        4 => ("inserted_at".into(), 1184), // timestamptz
        5 => ("ref".into(), 2950),         // uuid
        6 => ("meta".into(), 3802),        // jsonb
        7 => ("price".into(), 1700),       // numeric
        n => (format!("note_{n}"), 25),
    }
}

/// Row `k`'s text value of column `i`.
fn value(i: usize, k: u64) -> String {
    match i {
        0 => k.to_string(),
        1 => (k % 97).to_string(),
        2 => if k % 2 == 0 { "t" } else { "f" }.into(),
        3 => format!("buy milk and bread, item {k}"),
        4 => "2026-11-28 16:45:12.345678+00".into(),
        5 => "3f2a8c1e-5b7d-4e21-9a0c-6d8e2f1b4c77".into(),
        6 => format!("{{\"tags\": [\"a\", \"b\"], \"n\": {k}, \"ok\": true}}"),
        7 => "1234.50".into(),
        n => format!("free text column {n} of row {k}"),
    }
}

/// The Relation message for a table of `width` columns (key: `id`).
fn relation(width: usize) -> Relation {
    let mut m = Msg::new(b'R')
        .i32(REL_OID)
        .cstr("public")
        .cstr("todos")
        .u8(b'd')
        .i16(width as i16);
    for i in 0..width {
        let (name, oid) = column(i);
        m = m.u8(u8::from(i == 0)).cstr(&name).i32(oid).i32(-1);
    }
    match decode(m.bytes()) {
        Ok(Message::Relation(r)) => r,
        other => panic!("relation did not decode: {other:?}"),
    }
}

/// An INSERT of row `k`.
fn insert(width: usize, k: u64) -> Bytes {
    let row: Vec<String> = (0..width).map(|i| value(i, k)).collect();
    Msg::new(b'I').i32(REL_OID).u8(b'N').tuple(&row).bytes()
}

/// An UPDATE of row `k` under the default replica identity (no old tuple).
fn update(width: usize, k: u64) -> Bytes {
    let row: Vec<String> = (0..width).map(|i| value(i, k + 1)).collect();
    Msg::new(b'U').i32(REL_OID).u8(b'N').tuple(&row).bytes()
}

/// Decoding one message (a clone of `Bytes` is a refcount bump).
fn bench_decode(c: &mut Criterion, report: &mut Report) {
    let mut g = c.benchmark_group("pg_decode");
    for width in WIDTHS {
        for (kind, msg) in [("insert", insert(width, 7)), ("update", update(width, 7))] {
            g.throughput(Throughput::Bytes(msg.len() as u64));
            let id = format!("{kind}/{width}");
            g.bench_with_input(BenchmarkId::new(kind, width), &msg, |b, m| {
                b.iter(|| decode(black_box(m.clone())))
            });
            let (_, allocs) = count_allocs(|| decode(msg.clone()));
            report.note_allocs(&format!("pg_decode/{id}"), allocs, 1);
        }
    }
    g.finish();
}

/// Rendering one decoded change as the `data` object of a message.
fn bench_json(c: &mut Criterion, report: &mut Report) {
    let mut g = c.benchmark_group("pg_json");
    let at = PgTimestamp::from_unix_micros(1_795_884_312_345_678);
    let opts = PayloadOptions::default();
    for width in WIDTHS {
        let rel = relation(width);
        let pk = [0usize];
        for (kind, msg) in [("insert", insert(width, 7)), ("update", update(width, 7))] {
            let msg = decode(msg).expect("valid message");
            let change = Change::from_message(&msg, &rel, &pk, at).expect("a row change");
            let mut out = Vec::with_capacity(4096);
            let _ = write_change(&mut out, &change, &BuiltinsOnly, &opts);
            g.throughput(Throughput::Bytes(out.len() as u64));
            g.bench_function(BenchmarkId::new(kind, width), |b| {
                b.iter(|| {
                    out.clear();
                    write_change(&mut out, black_box(&change), &BuiltinsOnly, &opts)
                })
            });
            let (_, allocs) = count_allocs(|| {
                out.clear();
                write_change(&mut out, &change, &BuiltinsOnly, &opts)
            });
            report.note_allocs(&format!("pg_json/{kind}/{width}"), allocs, 1);
            report.note(
                &format!("pg_json/{kind}/{width}"),
                "json_bytes",
                out.len() as u64,
            );
        }
    }
    g.finish();
}

/// `n` bindings on the table, `owner_id=eq.<j>` for j in 0..n: one of
/// them matches the change (owner 7), the rest do not.
fn bindings(n: usize) -> Vec<Binding> {
    (0..n)
        .map(|j| {
            let raw = serde_json::json!({
                "event": "*",
                "schema": "public",
                "table": "todos",
                "filter": format!("owner_id=eq.{j}"),
            });
            let serde_json::Value::Object(map) = raw else {
                unreachable!()
            };
            parse_binding(&map, j as u64).expect("valid binding")
        })
        .collect()
}

/// Evaluating every subscription's binding against one change: what the
/// server does per change per subscription before anything is rendered.
fn bench_filter(c: &mut Criterion, report: &mut Report) {
    let mut g = c.benchmark_group("pg_filter");
    let at = PgTimestamp::from_unix_micros(1_795_884_312_345_678);
    let rel = relation(WIDTHS[0]);
    let pk = [0usize];
    let msg = decode(insert(WIDTHS[0], 7)).expect("valid message");
    let change = Change::from_message(&msg, &rel, &pk, at).expect("a row change");
    for n in SUBS {
        let subs = bindings(n);
        let eval = || {
            subs.iter()
                .filter(|b| b.eval(black_box(&change)) == Tri::True)
                .count()
        };
        assert_eq!(eval(), usize::from(n > 7));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("eq_eval", n), |b| b.iter(eval));
        let (_, allocs) = count_allocs(eval);
        report.note_allocs(&format!("pg_filter/eq_eval/{n}"), allocs, n as u64);
        let relation_only = || {
            subs.iter()
                .filter(|b| b.matches_relation(black_box("public"), black_box("todos")))
                .count()
        };
        g.bench_function(BenchmarkId::new("matches_relation", n), |b| {
            b.iter(relation_only)
        });
        let (_, allocs) = count_allocs(relation_only);
        report.note_allocs(&format!("pg_filter/matches_relation/{n}"), allocs, n as u64);
    }
    g.finish();
}

fn main() {
    let mut report = Report::start("pg");
    let mut c = realtime_bench::criterion();
    bench_decode(&mut c, &mut report);
    bench_json(&mut c, &mut report);
    bench_filter(&mut c, &mut report);
    report.finish();
    c.final_summary();
}
