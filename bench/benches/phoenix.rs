//! Phoenix serializers on realtime-js frames: `decode_text` (vsn 1.0.0 and
//! 2.0.0), `decode_binary` (kind 3), `encode_message` (v1/v2),
//! `encode_user_broadcast` (kind 4) and the v1 JSON conversion of a user
//! broadcast. Throughput is frame bytes/s (input for decode, output for
//! encode). Encoders write into one reused buffer, so encode numbers are the
//! serializer alone; the frame allocation is in `ws/encode` and `fanout`.
//!
//! `decode_compare/simd_json_*` parses the same v2 frames into a borrowed
//! simd-json value, for the serde_json-vs-simd-json decision in
//! perf/DECISIONS.md (simd-json needs a mutable copy; the copy is made
//! outside the timed routine).

use bytes::BytesMut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use realtime::proto::phoenix::{
    decode_binary, decode_text, encode_message, encode_user_broadcast, encode_user_broadcast_json,
    Encoding, Ref, Vsn,
};
use realtime_bench::fixtures::{self, TOPIC, USER_EVENT};
use realtime_bench::{count_allocs, CountingAlloc, Report};
use std::hint::black_box;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Broadcast payload sizes: a cursor/chat message and a larger state blob.
const SIZES: [(usize, &str); 2] = [(100, "100B"), (3000, "3KB")];

fn bench_decode(c: &mut Criterion, report: &mut Report) {
    let mut cases: Vec<(String, Vsn, Vec<u8>)> = Vec::new();
    for (len, name) in SIZES {
        let p = fixtures::json_payload(len);
        cases.push((
            format!("v2_broadcast/{name}"),
            Vsn::V2,
            fixtures::v2_broadcast_push(&p),
        ));
        cases.push((
            format!("v1_broadcast/{name}"),
            Vsn::V1,
            fixtures::v1_broadcast_push(&p),
        ));
    }
    cases.push(("v2_join/config".into(), Vsn::V2, fixtures::v2_join()));
    cases.push(("v1_join/config".into(), Vsn::V1, fixtures::v1_join()));

    let mut g = c.benchmark_group("phoenix/decode_text");
    for (name, vsn, frame) in &cases {
        let id = format!("phoenix/decode_text/{name}");
        let (ok, allocs) = count_allocs(|| decode_text(*vsn, frame).is_ok());
        assert!(ok, "{id}");
        report.note_allocs(&id, allocs, 1);
        report.note(&id, "frame_bytes", frame.len() as u64);
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(name.as_str(), |b| {
            b.iter(|| decode_text(*vsn, black_box(frame)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("phoenix/decode_binary");
    for (len, name) in SIZES {
        let frame = fixtures::kind3_push(fixtures::json_payload(len).as_bytes());
        let id = format!("phoenix/decode_binary/kind3/{name}");
        let (ok, allocs) = count_allocs(|| decode_binary(&frame).is_ok());
        assert!(ok, "{id}");
        report.note_allocs(&id, allocs, 1);
        report.note(&id, "frame_bytes", frame.len() as u64);
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(BenchmarkId::new("kind3", name), |b| {
            b.iter(|| decode_binary(black_box(&frame)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("phoenix/decode_compare");
    for (name, _, frame) in cases.iter().filter(|(_, v, _)| *v == Vsn::V2) {
        g.throughput(Throughput::Bytes(frame.len() as u64));
        let id = format!("simd_json_{}", name.replace('/', "_"));
        g.bench_function(id.as_str(), |b| {
            b.iter_batched(
                || frame.clone(),
                |mut copy| {
                    let ok = simd_json::to_borrowed_value(&mut copy).is_ok();
                    // The copy goes back to criterion, dropped untimed.
                    (ok, copy)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion, report: &mut Report) {
    let join_ref = Ref::from_str_value("3");
    let mut g = c.benchmark_group("phoenix/encode");
    for (len, name) in SIZES {
        let user_payload = fixtures::json_payload(len);
        let envelope = fixtures::broadcast_envelope(&user_payload);
        let mut out = BytesMut::with_capacity(2 * len + 256);

        for vsn in [Vsn::V2, Vsn::V1] {
            let encode = |out: &mut BytesMut| {
                out.clear();
                encode_message(
                    vsn,
                    out,
                    Some(&join_ref),
                    None,
                    TOPIC,
                    "broadcast",
                    envelope.as_bytes(),
                );
            };
            encode(&mut out);
            let tag = if vsn == Vsn::V2 { "v2" } else { "v1" };
            let id = format!("phoenix/encode/message_{tag}/{name}");
            report.note(&id, "frame_bytes", out.len() as u64);
            let (_, allocs) = count_allocs(|| encode(&mut out));
            report.note_allocs(&id, allocs, 1);
            g.throughput(Throughput::Bytes(out.len() as u64));
            g.bench_function(BenchmarkId::new(format!("message_{tag}"), name), |b| {
                b.iter(|| encode(black_box(&mut out)))
            });
        }

        let kind4 = |out: &mut BytesMut| {
            out.clear();
            encode_user_broadcast(
                out,
                TOPIC,
                USER_EVENT,
                b"",
                Encoding::Json,
                user_payload.as_bytes(),
            )
            .expect("short fields")
        };
        kind4(&mut out);
        let id = format!("phoenix/encode/user_broadcast_kind4/{name}");
        report.note(&id, "frame_bytes", out.len() as u64);
        let (_, allocs) = count_allocs(|| kind4(&mut out));
        report.note_allocs(&id, allocs, 1);
        g.throughput(Throughput::Bytes(out.len() as u64));
        g.bench_function(BenchmarkId::new("user_broadcast_kind4", name), |b| {
            b.iter(|| kind4(black_box(&mut out)))
        });

        let v1_json = |out: &mut BytesMut| {
            out.clear();
            encode_user_broadcast_json(out, USER_EVENT, None, user_payload.as_bytes());
        };
        v1_json(&mut out);
        let id = format!("phoenix/encode/user_broadcast_json_v1/{name}");
        report.note(&id, "payload_bytes", out.len() as u64);
        g.throughput(Throughput::Bytes(out.len() as u64));
        g.bench_function(BenchmarkId::new("user_broadcast_json_v1", name), |b| {
            b.iter(|| v1_json(black_box(&mut out)))
        });
    }
    g.finish();
}

fn main() {
    let mut report = Report::start("phoenix");
    let mut c = realtime_bench::criterion();
    bench_decode(&mut c, &mut report);
    bench_encode(&mut c, &mut report);
    report.finish();
    c.final_summary();
}
