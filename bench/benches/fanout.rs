//! The fastlane: one broadcast to N subscribers of one topic through
//! `Hub::fanout`, with [`BenchQueue`] standing in for each socket's queue.
//! Throughput is in deliveries (criterion "elements"), so `time / N` is the
//! time per delivery.
//!
//! Serialize once, clone `Bytes`: `Hub::fanout` encodes the message once per
//! wire form present on the topic (v2 text, v1 text or kind 4) into a
//! complete WebSocket frame, and for each subscriber does only this: compare
//! its channel with `exclude`, look up the cached frame for its `vsn`, clone
//! the `Bytes` (an atomic refcount increment through the `Bytes` vtable),
//! and call `Outbound::push` through `Rc<dyn Outbound>` (state check, byte
//! counter, `RefCell` borrow, `VecDeque::push_back`, waker take). No JSON
//! work, no copy and no allocation per subscriber: one fan-out makes the
//! same 2 allocations per wire form (the frame buffer and the shared header
//! `Bytes` creates on freeze) at 10 and at 10k subscribers (`allocs_per_op`
//! note), so `allocs_per_unit` falls as 2/N.
//!
//! Confirmed by the first baseline (perf/bench/BASELINE.md, shared 2-core
//! VM): ~20 ns per delivery at 10k subscribers, of which `clone_only` (the
//! `Bytes` clone plus a vector push) is ~16 ns and the raw atomic increment
//! ~6.5 ns; the same clone of an `Rc<[u8]>` is ~3 ns. The writer dropping
//! the frame adds ~12 ns (`json_text_drain`).
//!
//! Baselines that split the per-delivery cost:
//! - `clone_only`: the same frame cloned into a `Vec<Bytes>` (the refcount
//!   increment and a vector push, nothing else);
//! - `atomic_add_only`: n relaxed `fetch_add`s on one counter, the atomic
//!   increment inside `Bytes::clone` alone;
//! - `rc_clone_only`: the same with an `Rc<[u8]>`, whose count is not atomic
//!   (what a shard-local frame type would pay);
//! - `push_only`: a clone pushed into every queue through `Rc<dyn
//!   Outbound>` without the hub (what the hub adds on top is the cache
//!   lookup, the `exclude` check and the per-subscriber loop over `Sub`);
//! - `json_text_drain`: the fan-out plus the writer's side (popping every
//!   frame and dropping it: the refcount decrement), i.e. the whole
//!   in-memory cost of a delivery short of the socket write.
//!
//! `writer_coalesce` times the writer's copy of k queued frames into one
//! buffer, freshly allocated per batch or reused.
//!
//! Queues are drained between timed batches (untimed except in
//! `json_text_drain`), keeping their capacity as the server does for small
//! queues, so no timed push reallocates a deque.

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput};
use realtime::proto::phoenix::{Encoding, Vsn};
use realtime::realtime::hub::{Hub, Outbound, Outgoing, Sub};
use realtime_bench::fixtures::{self, TOPIC, USER_EVENT};
use realtime_bench::{count_allocs, BenchQueue, CountingAlloc, Report};
use std::hint::black_box;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Subscriber counts; 1 is the encode-only baseline.
const SUBSCRIBERS: [usize; 4] = [1, 10, 1_000, 10_000];
/// The server's default `WEBSOCKET_QUEUE_BYTES`.
const QUEUE_LIMIT: usize = 4 * 1024 * 1024;
/// Broadcast payload size (the loadgen's headline scenario).
const PAYLOAD: usize = 100;

/// Which serializers the subscribers speak.
#[derive(Clone, Copy)]
enum Mix {
    AllV2,
    /// Even channels v2, odd channels v1.
    Half,
}

struct Topic {
    hub: Hub,
    queues: Vec<Rc<BenchQueue>>,
}

impl Topic {
    fn new(n: usize, mix: Mix) -> Topic {
        let mut hub = Hub::default();
        let mut queues = Vec::with_capacity(n);
        for i in 0..n {
            let q = BenchQueue::new(QUEUE_LIMIT);
            let vsn = match mix {
                Mix::AllV2 => Vsn::V2,
                Mix::Half if i % 2 == 0 => Vsn::V2,
                Mix::Half => Vsn::V1,
            };
            let out: Rc<dyn Outbound> = q.clone();
            hub.subscribe(TOPIC, Sub::public(i as u64, vsn, out));
            queues.push(q);
        }
        Topic { hub, queues }
    }

    fn drain(&self) {
        for q in &self.queues {
            q.drain();
        }
    }
}

/// Fan-outs per timed batch: enough deliveries per batch (~16k) that the
/// timer is noise, with queues never deeper than 64 frames.
fn batch(n: usize) -> u64 {
    (16_384 / n).clamp(1, 64) as u64
}

/// Times `iters` calls of `op`, in batches of `batch(n)`, running `between`
/// untimed after each batch.
fn timed(n: usize, iters: u64, mut op: impl FnMut(), mut between: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let m = left.min(batch(n));
        let start = Instant::now();
        for _ in 0..m {
            op();
        }
        total += start.elapsed();
        between();
        left -= m;
    }
    total
}

fn bench_hub(c: &mut Criterion, report: &mut Report) {
    let envelope = fixtures::broadcast_envelope(&fixtures::json_payload(PAYLOAD));
    let user_payload = fixtures::json_payload(PAYLOAD);
    let json = Outgoing::Json {
        event: "broadcast",
        payload: envelope.as_bytes(),
    };
    let user = Outgoing::User {
        event: USER_EVENT,
        encoding: Encoding::Json,
        metadata: b"",
        payload: user_payload.as_bytes(),
    };
    let cases: [(&str, Mix, &Outgoing<'_>, bool); 4] = [
        ("json_text", Mix::AllV2, &json, false),
        ("user_kind4_v2", Mix::AllV2, &user, false),
        ("mixed_v1_v2", Mix::Half, &user, false),
        ("json_text_drain", Mix::AllV2, &json, true),
    ];
    let mut g = c.benchmark_group("fanout");
    for (name, mix, msg, drain_timed) in cases {
        for n in SUBSCRIBERS {
            if drain_timed && n == 1 {
                continue;
            }
            let topic = Topic::new(n, mix);
            let fan = || black_box(topic.hub.fanout(TOPIC, msg, None));
            // Warm the deques, then count one fan-out's allocations.
            fan();
            topic.drain();
            let (delivered, allocs) = count_allocs(fan);
            assert_eq!(delivered, n as u64, "{name}/{n}");
            let frame_bytes = topic.queues[0].nr_bytes();
            topic.drain();
            let id = format!("fanout/{name}/{n}");
            report.note_allocs(&id, allocs, n as u64);
            report.note(&id, "frame_bytes", frame_bytes as u64);

            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter_custom(|iters| {
                    if drain_timed {
                        let fan_and_drain = || {
                            fan();
                            topic.drain();
                        };
                        timed(n, iters, fan_and_drain, || {})
                    } else {
                        timed(
                            n,
                            iters,
                            || {
                                fan();
                            },
                            || topic.drain(),
                        )
                    }
                })
            });
        }
    }
    g.finish();
}

fn bench_baselines(c: &mut Criterion) {
    let frame = realtime::realtime::frames::message(
        Vsn::V2,
        None,
        None,
        TOPIC,
        "broadcast",
        fixtures::broadcast_envelope(&fixtures::json_payload(PAYLOAD)).as_bytes(),
    );
    let mut g = c.benchmark_group("fanout");
    for n in &SUBSCRIBERS[1..] {
        let n = *n;
        g.throughput(Throughput::Elements(n as u64));

        let mut sink: Vec<Bytes> = Vec::with_capacity(n * batch(n) as usize);
        g.bench_function(BenchmarkId::new("clone_only", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let m = left.min(batch(n));
                    let start = Instant::now();
                    for _ in 0..m {
                        for _ in 0..n {
                            sink.push(black_box(&frame).clone());
                        }
                    }
                    total += start.elapsed();
                    sink.clear();
                    left -= m;
                }
                total
            })
        });

        // Only the atomic increment `Bytes::clone` does on a shared frame
        // (one counter, n relaxed `fetch_add`s): the floor of `clone_only`.
        let counter = AtomicUsize::new(0);
        g.bench_function(BenchmarkId::new("atomic_add_only", n), |b| {
            b.iter(|| {
                let c = black_box(&counter);
                for _ in 0..n {
                    c.fetch_add(1, Relaxed);
                }
            })
        });

        // The same loop with a non-atomic refcount (`Rc<[u8]>`): what a
        // clone costs when the count needs no `lock` prefix.
        let rc_frame: Rc<[u8]> = Rc::from(&frame[..]);
        let mut rc_sink: Vec<Rc<[u8]>> = Vec::with_capacity(n * batch(n) as usize);
        g.bench_function(BenchmarkId::new("rc_clone_only", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let m = left.min(batch(n));
                    let start = Instant::now();
                    for _ in 0..m {
                        for _ in 0..n {
                            rc_sink.push(Rc::clone(black_box(&rc_frame)));
                        }
                    }
                    total += start.elapsed();
                    rc_sink.clear();
                    left -= m;
                }
                total
            })
        });

        let queues: Vec<Rc<BenchQueue>> = (0..n).map(|_| BenchQueue::new(QUEUE_LIMIT)).collect();
        let outs: Vec<Rc<dyn Outbound>> = queues
            .iter()
            .map(|q| q.clone() as Rc<dyn Outbound>)
            .collect();
        g.bench_function(BenchmarkId::new("push_only", n), |b| {
            b.iter_custom(|iters| {
                timed(
                    n,
                    iters,
                    || {
                        for out in &outs {
                            out.push(black_box(&frame).clone());
                        }
                    },
                    || queues.iter().for_each(|q| q.drain()),
                )
            })
        });
    }
    g.finish();
}

/// The writer's side when several frames wait on one socket: they are
/// copied into one buffer for one write. `fresh` allocates that buffer per
/// batch (`BytesMut::with_capacity(total)`, as the server's writer does
/// today); `reused` copies into a buffer kept across batches. Elements are
/// frames, so the time per element is the coalescing cost per delivery.
fn bench_coalesce(c: &mut Criterion) {
    let frame = realtime::realtime::frames::message(
        Vsn::V2,
        None,
        None,
        TOPIC,
        "broadcast",
        fixtures::broadcast_envelope(&fixtures::json_payload(PAYLOAD)).as_bytes(),
    );
    let mut g = c.benchmark_group("writer_coalesce");
    for k in [4usize, 16, 64] {
        let batch: Vec<Bytes> = (0..k).map(|_| frame.clone()).collect();
        let total: usize = batch.iter().map(Bytes::len).sum();
        g.throughput(Throughput::Elements(k as u64));
        g.bench_function(BenchmarkId::new("fresh", k), |b| {
            b.iter(|| {
                let mut joined = BytesMut::with_capacity(total);
                for f in black_box(&batch) {
                    joined.extend_from_slice(f);
                }
                black_box(&joined);
            })
        });
        let mut reused = BytesMut::with_capacity(64 * 1024);
        g.bench_function(BenchmarkId::new("reused", k), |b| {
            b.iter(|| {
                reused.clear();
                for f in black_box(&batch) {
                    reused.extend_from_slice(f);
                }
                black_box(&reused);
            })
        });
    }
    g.finish();
}

fn main() {
    let mut report = Report::start("fanout");
    let mut c = realtime_bench::criterion();
    bench_hub(&mut c, &mut report);
    bench_baselines(&mut c);
    bench_coalesce(&mut c);
    report.finish();
    c.final_summary();
}
