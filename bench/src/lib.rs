//! Fixtures shared by the criterion benches of the server's codecs,
//! fan-out and presence (crate `realtime-bench`). Nothing here opens a
//! socket or starts a server: every bench drives the server's sans-io APIs.
//!
//! # Layout
//!
//! - [`env`]: the environment a run is recorded with (nproc, CPU model,
//!   kernel, rustc, git commit, date, load average).
//! - [`alloc`]: the server's allocator (jemalloc) wrapped with an
//!   allocation counter that is off during timed loops.
//! - [`report`]: side files next to criterion's output (environment and
//!   per-bench notes such as allocations per operation) that
//!   `scripts/bench` merges into `perf/bench/`.
//! - [`fixtures`]: realtime-js frames, broadcast payloads, presence metas.
//! - [`queue`]: an `Outbound` that behaves like the server's socket queue.
//!
//! The bench targets themselves are in `benches/`: `ws`, `phoenix`,
//! `fanout`, `presence`, `pg`, and `hop` (the one that is not sans-io: two
//! glommio executors on two threads, the shards' mesh against crossbeam).

use std::time::Duration;

pub mod alloc;
pub mod env;
pub mod fixtures;
pub mod queue;
pub mod report;

pub use alloc::{count_allocs, AllocStats, CountingAlloc};
pub use env::Env;
pub use queue::BenchQueue;
pub use report::Report;

/// Criterion settings shared by every bench target: one second of warm-up,
/// three of measurement and 50 samples, so a full run stays within minutes
/// on a 2-core VM. Flags on the command line (`--warm-up-time`,
/// `--measurement-time`, `--sample-size`, `--noplot`) override these.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args()
}
