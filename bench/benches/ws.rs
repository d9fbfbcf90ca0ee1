//! WebSocket framing: server frame encode (`FrameBuilder`) and client frame
//! decode (`Decoder`, masked, single and fragmented), in bytes/s of payload.
//!
//! Decode inputs are copied into a fresh `BytesMut` outside the timed
//! routine (criterion's `iter_batched`), because decoding unmasks in place
//! and consumes the buffer.

use bytes::BytesMut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use realtime::proto::ws::{apply_mask, client_frame, Decoder, FrameBuilder, Message, OpCode};
use realtime_bench::{count_allocs, CountingAlloc, Report};
use std::hint::black_box;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MASK: [u8; 4] = [0x5c, 0x1e, 0xa7, 0x03];
const SIZES: [(usize, &str); 3] = [(100, "100B"), (1024, "1KB"), (64 * 1024, "64KB")];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The whole encode a fan-out does per message: allocate the frame, append
/// the payload, back-patch the header, freeze.
fn encode(payload: &[u8]) -> bytes::Bytes {
    let mut fb = FrameBuilder::new(OpCode::Text, payload.len());
    fb.body().extend_from_slice(payload);
    fb.finish()
}

fn bench_encode(c: &mut Criterion, report: &mut Report) {
    let mut g = c.benchmark_group("ws/encode");
    for (len, name) in SIZES {
        let p = payload(len);
        let id = format!("ws/encode/frame_builder/{name}");
        let (_, allocs) = count_allocs(|| encode(&p));
        report.note_allocs(&id, allocs, 1);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("frame_builder", name), &p, |b, p| {
            b.iter(|| encode(black_box(p)))
        });
    }
    g.finish();
}

/// Wire bytes of one message split into `nr_fragments` masked frames.
fn fragmented(p: &[u8], nr_fragments: usize) -> Vec<u8> {
    let step = p.len().div_ceil(nr_fragments);
    let parts: Vec<&[u8]> = p.chunks(step).collect();
    let mut wire = Vec::with_capacity(p.len() + 14 * parts.len());
    for (i, part) in parts.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        wire.extend(client_frame(op, i + 1 == parts.len(), part, MASK));
    }
    wire
}

fn decode_one(dec: &mut Decoder, mut buf: BytesMut) -> Message {
    match dec.decode(&mut buf) {
        Ok(Some(m)) => m,
        other => panic!("fixture did not decode: {other:?}"),
    }
}

fn bench_decode(c: &mut Criterion, report: &mut Report) {
    let mut g = c.benchmark_group("ws/decode");
    let cases = [
        ("single", 1usize, &SIZES[..]),
        ("fragmented_x4", 4, &SIZES[1..]),
        ("fragmented_x64", 64, &SIZES[2..]),
    ];
    for (kind, nr_fragments, sizes) in cases {
        for &(len, name) in sizes {
            let p = payload(len);
            let wire = if nr_fragments == 1 {
                client_frame(OpCode::Text, true, &p, MASK)
            } else {
                fragmented(&p, nr_fragments)
            };
            let mut dec = Decoder::new(1 << 20);
            let msg = decode_one(&mut dec, BytesMut::from(&wire[..]));
            assert_eq!(msg, Message::Text(p.clone().into()), "{kind}/{name}");
            let id = format!("ws/decode/{kind}/{name}");
            let buf = BytesMut::from(&wire[..]);
            let (_, allocs) = count_allocs(|| decode_one(&mut dec, buf));
            report.note_allocs(&id, allocs, 1);
            report.note(&id, "wire_bytes", wire.len() as u64);

            g.throughput(Throughput::Bytes(len as u64));
            let size = if len > 4096 {
                BatchSize::LargeInput
            } else {
                BatchSize::SmallInput
            };
            g.bench_function(BenchmarkId::new(kind, name), |b| {
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |buf| decode_one(&mut dec, buf),
                    size,
                )
            });
        }
    }
    g.finish();
}

/// Unmasking alone, in place: the part of decode that touches every byte.
fn bench_unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws/unmask");
    for (len, name) in SIZES {
        let mut p = payload(len);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::new("apply_mask", name), |b| {
            b.iter(|| apply_mask(black_box(&mut p), MASK))
        });
    }
    g.finish();
}

fn main() {
    let mut report = Report::start("ws");
    let mut c = realtime_bench::criterion();
    bench_encode(&mut c, &mut report);
    bench_decode(&mut c, &mut report);
    bench_unmask(&mut c);
    report.finish();
    c.final_summary();
}
