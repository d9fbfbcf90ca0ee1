//! Presence on one topic with 10 / 1k / 10k members (one meta each, one key
//! each): a join (track of a new owner), an update (track of a changed
//! meta), a leave, each including the `presence_diff` payload it produces
//! (`Diff::to_json`), and the `presence_state` payload (`state_json`) a
//! joiner receives.
//!
//! `track_from_wire` adds what the server's presence handler does before
//! `track`: parse the client's `{"type","event","payload"}` into a
//! `serde_json::Value` and clone the `payload` map out of it.
//! `meta_clone` and `meta_take` time only that last step, the clone the
//! handler does versus taking the map out of the parsed value.
//!
//! Metas are prepared (cloned) untimed before each timed batch; batches are
//! at most N/16 operations so the member count stays within ~6% of N.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::SeedableRng;
use realtime::realtime::presence::{OwnerId, TopicPresence};
use realtime_bench::fixtures::{presence_key, presence_meta};
use realtime_bench::{count_allocs, CountingAlloc, Report};
use serde_json::{Map, Value};
use std::hint::black_box;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MEMBERS: [usize; 3] = [10, 1_000, 10_000];

/// A topic with `n` members, owners `0..n`, each under its own key.
fn topic(n: usize, rng: &mut StdRng) -> TopicPresence {
    let mut p = TopicPresence::default();
    for i in 0..n as OwnerId {
        p.track_with(i, &presence_key(i), presence_meta(i, 0), rng);
    }
    p
}

/// Operations per timed batch.
fn batch(n: usize) -> u64 {
    (n as u64 / 16).clamp(1, 64)
}

/// The topic under test and what its operations need.
struct State {
    /// Members currently tracked.
    n: usize,
    /// The topic's presence.
    p: TopicPresence,
    /// Seeded, so runs make the same refs.
    rng: StdRng,
    /// Reused output of `Diff::to_json`.
    diff_json: Vec<u8>,
    /// Owners the current `leave` batch removes, re-tracked after it.
    gone: Vec<OwnerId>,
}

impl State {
    fn new(n: usize) -> State {
        let mut rng = StdRng::seed_from_u64(42);
        State {
            n,
            p: topic(n, &mut rng),
            rng,
            diff_json: Vec::with_capacity(1024),
            gone: Vec::new(),
        }
    }

    /// Tracks and writes the diff (the work of a join or an update).
    fn track(&mut self, owner: OwnerId, key: &str, meta: Map<String, Value>) {
        self.diff_json.clear();
        let d = self.p.track_with(owner, key, meta, &mut self.rng);
        d.expect("a change").to_json(&mut self.diff_json);
    }

    /// Leaves and writes the diff.
    fn leave(&mut self, owner: OwnerId) {
        self.diff_json.clear();
        let d = self.p.leave(owner);
        d.expect("a leave").to_json(&mut self.diff_json);
    }
}

/// Runs `iters` operations in batches: `prepare` (untimed) returns the
/// inputs of up to `k` operations, `op` is timed over them, `restore`
/// (untimed) undoes their effect on the topic given the same inputs' ids.
fn timed<I>(
    s: &mut State,
    iters: u64,
    mut prepare: impl FnMut(&mut State, u64) -> Vec<I>,
    mut op: impl FnMut(&mut State, I),
    mut restore: impl FnMut(&mut State),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let k = left.min(batch(s.n));
        let inputs = prepare(s, k);
        let start = Instant::now();
        for input in inputs {
            op(s, input);
        }
        total += start.elapsed();
        restore(s);
        left -= k;
    }
    total
}

fn bench_ops(c: &mut Criterion, report: &mut Report) {
    let mut g = c.benchmark_group("presence");
    for n in MEMBERS {
        let mut s = State::new(n);
        let joiner = n as OwnerId;

        // One of each op, counted, to record allocations per op.
        let (meta, key) = (presence_meta(joiner, 0), presence_key(joiner));
        let (_, allocs) = count_allocs(|| s.track(joiner, &key, meta));
        report.note_allocs(&format!("presence/join/{n}"), allocs, 1);
        let (_, allocs) = count_allocs(|| s.leave(joiner));
        report.note_allocs(&format!("presence/leave/{n}"), allocs, 1);
        let (meta, key) = (presence_meta(0, 1), presence_key(0));
        let (_, allocs) = count_allocs(|| s.track(0, &key, meta));
        report.note_allocs(&format!("presence/update/{n}"), allocs, 1);
        report.note(
            &format!("presence/join/{n}"),
            "diff_bytes",
            s.diff_json.len() as u64,
        );

        g.throughput(Throughput::Elements(1));
        let meta = presence_meta(joiner, 0);
        g.bench_function(BenchmarkId::new("join", n), |b| {
            b.iter_custom(|iters| {
                timed(
                    &mut s,
                    iters,
                    |_, k| {
                        (joiner..joiner + k)
                            .map(|o| (o, presence_key(o), meta.clone()))
                            .collect()
                    },
                    |s, (owner, key, meta)| s.track(owner, &key, meta),
                    |s| {
                        for owner in joiner..joiner + batch(n) {
                            s.p.leave(owner);
                        }
                    },
                )
            })
        });

        let (mut owner, mut variant) = (0, 1u32);
        g.bench_function(BenchmarkId::new("update", n), |b| {
            b.iter_custom(|iters| {
                timed(
                    &mut s,
                    iters,
                    |s, k| {
                        variant += 1;
                        (0..k)
                            .map(|_| {
                                owner = (owner + 1) % s.n as OwnerId;
                                (owner, presence_key(owner), presence_meta(owner, variant))
                            })
                            .collect()
                    },
                    |s, (owner, key, meta)| s.track(owner, &key, meta),
                    |_| {},
                )
            })
        });

        g.bench_function(BenchmarkId::new("leave", n), |b| {
            b.iter_custom(|iters| {
                timed(
                    &mut s,
                    iters,
                    |s, k| {
                        s.gone = (0..k)
                            .map(|_| {
                                owner = (owner + 1) % s.n as OwnerId;
                                owner
                            })
                            .collect();
                        s.gone.clone()
                    },
                    |s, owner| s.leave(owner),
                    |s| {
                        for o in std::mem::take(&mut s.gone) {
                            let meta = presence_meta(o, 0);
                            s.p.track_with(o, &presence_key(o), meta, &mut s.rng);
                        }
                    },
                )
            })
        });

        let mut state = Vec::new();
        s.p.state_json(&mut state);
        assert_eq!(s.p.len(), n);
        report.note(
            &format!("presence/state_json/{n}"),
            "payload_bytes",
            state.len() as u64,
        );
        g.throughput(Throughput::Bytes(state.len() as u64));
        g.bench_function(BenchmarkId::new("state_json", n), |b| {
            b.iter(|| {
                state.clear();
                s.p.state_json(black_box(&mut state));
            })
        });
    }
    g.finish();
}

/// The client's track message as realtime-js sends it (the Phoenix payload).
fn track_message(member: u64, variant: u32) -> String {
    let meta = Value::Object(presence_meta(member, variant));
    format!(r#"{{"type":"presence","event":"track","payload":{meta}}}"#)
}

fn bench_wire(c: &mut Criterion, report: &mut Report) {
    let mut g = c.benchmark_group("presence");
    g.throughput(Throughput::Elements(1));
    let raw = track_message(7, 3);

    // The handler's steps: parse, clone the payload map out, track.
    let n = 1_000;
    let mut s = State::new(n);
    let mut variant = 0u32;
    let msgs: Vec<String> = (0..2).map(|v| track_message(0, v)).collect();
    g.bench_function(BenchmarkId::new("track_from_wire", n), |b| {
        b.iter(|| {
            variant ^= 1;
            let payload: Value = serde_json::from_str(&msgs[variant as usize]).unwrap_or_default();
            let meta = payload
                .get("payload")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            s.track(0, &presence_key(0), meta);
        })
    });

    let parsed: Value = serde_json::from_str(&raw).expect("fixture is JSON");
    let (_, allocs) = count_allocs(|| parsed.get("payload").and_then(Value::as_object).cloned());
    report.note_allocs("presence/meta_clone/handler", allocs, 1);
    g.bench_function(BenchmarkId::new("meta_clone", "handler"), |b| {
        b.iter(|| {
            black_box(&parsed)
                .get("payload")
                .and_then(Value::as_object)
                .cloned()
        })
    });
    g.bench_function(BenchmarkId::new("meta_take", "handler"), |b| {
        b.iter_batched(
            || parsed.clone(),
            |mut v| {
                let meta: Option<Map<String, Value>> = match v.get_mut("payload").map(Value::take) {
                    Some(Value::Object(m)) => Some(m),
                    _ => None,
                };
                (meta, v)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn main() {
    let mut report = Report::start("presence");
    let mut c = realtime_bench::criterion();
    bench_ops(&mut c, &mut report);
    bench_wire(&mut c, &mut report);
    report.finish();
    c.final_summary();
}
