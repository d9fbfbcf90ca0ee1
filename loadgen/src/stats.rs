//! Counting and timing: the shared clock, per-executor counters that the
//! monitor thread samples, latency histograms and their summaries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The process-wide clock origin: every timestamp in a payload is
/// nanoseconds since this instant (CLOCK_MONOTONIC, same on every core).
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the loadgen's clock epoch.
#[inline]
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters of one executor, bumped with relaxed atomics (each
        /// executor owns one, the monitor thread only reads). Aligned to
        /// 128 bytes so that the rows of different cores, side by side in
        /// one vector, never share a cache-line pair.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A snapshot of [`Counters`] (or a sum or difference of snapshots).
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
        pub struct Tally {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            /// Reads every counter.
            pub fn snapshot(&self) -> Tally {
                Tally { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl std::ops::Add for Tally {
            type Output = Tally;
            fn add(self, o: Tally) -> Tally {
                Tally { $($name: self.$name + o.$name,)* }
            }
        }

        impl std::ops::Sub for Tally {
            type Output = Tally;
            fn sub(self, o: Tally) -> Tally {
                Tally { $($name: self.$name.saturating_sub(o.$name),)* }
            }
        }
    };
}

counters! {
    /// WebSocket (or HTTP) connections established.
    connects,
    /// Connection attempts refused or failed (TCP, HTTP status, timeout).
    connect_failed,
    /// Established connections that ended without us closing them.
    disconnects,
    /// Connections we closed on purpose (join-storm reconnects, end of run).
    closes,
    /// `phx_join` answered ok.
    joins_ok,
    /// `phx_join` answered with an error.
    join_failed,
    /// `phx_leave` answered ok.
    leaves_ok,
    /// Messages sent by publishers (broadcasts, presence ops, REST posts).
    sends,
    /// Timed messages received (broadcasts, presence diffs).
    deliveries,
    /// Presence diffs received without a timestamp (leaves).
    untimed,
    /// Acks (ok replies to pushes, 2xx REST answers).
    acks,
    /// Error replies to pushes and non-2xx REST answers.
    push_errors,
    /// Channels the server closed or errored (`phx_close`, `phx_error`,
    /// `system` errors) that we did not leave.
    channel_closed,
    /// Bytes read from sockets.
    bytes_in,
}

impl Tally {
    /// Every error kind added up.
    pub fn errors(&self) -> u64 {
        self.connect_failed
            + self.disconnects
            + self.join_failed
            + self.push_errors
            + self.channel_closed
    }

    /// Connections currently open.
    pub fn open(&self) -> u64 {
        self.connects
            .saturating_sub(self.disconnects)
            .saturating_sub(self.closes)
    }
}

/// Adds `n` to a counter.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Error reasons seen (first 64 distinct texts), for the report.
#[derive(Debug, Default)]
pub struct Reasons(Mutex<BTreeMap<String, u64>>);

impl Reasons {
    /// Counts one occurrence of `reason`.
    pub fn note(&self, reason: impl Into<String>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let reason = reason.into();
        if m.len() < 64 || m.contains_key(&reason) {
            *m.entry(reason).or_default() += 1;
        }
    }

    /// The reasons and their counts.
    pub fn take(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A latency histogram in nanoseconds, 1 ns to 10 min at 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("static histogram bounds")
}

/// Records a latency, clamping into the histogram's range.
#[inline]
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.max(1));
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarises `h` (ns); all zero when empty.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / 1e6,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// The HDR percentile curve: `(percentile, latency ms)` points from 0 up to
/// the largest sample, denser towards the tail.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut pts: Vec<(f64, f64)> = h
        .iter_quantiles(5)
        .map(|v| {
            (
                v.quantile_iterated_to() * 100.0,
                v.value_iterated_to() as f64 / 1e6,
            )
        })
        .collect();
    pts.dedup_by(|a, b| a.0 == b.0);
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_uniform_histogram() {
        let mut h = new_hist();
        for ms in 1..=1000u64 {
            record(&mut h, ms * 1_000_000);
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 1000);
        let close = |a: f64, b: f64| (a - b).abs() / b < 0.01;
        assert!(close(s.p50_ms, 500.0), "{s:?}");
        assert!(close(s.p90_ms, 900.0), "{s:?}");
        assert!(close(s.p99_ms, 990.0), "{s:?}");
        assert!(close(s.p999_ms, 999.0), "{s:?}");
        assert!(close(s.max_ms, 1000.0), "{s:?}");
        assert!(close(s.mean_ms, 500.5), "{s:?}");
        assert_eq!(LatencySummary::of(&new_hist()), LatencySummary::default());
    }

    #[test]
    fn curve_is_monotonic_and_reaches_the_max() {
        let mut h = new_hist();
        for i in 0..10_000u64 {
            record(&mut h, 1_000 + i * i);
        }
        let c = percentile_curve(&h);
        assert!(c.len() > 10);
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        let last = c.last().unwrap();
        assert!((last.0 - 100.0).abs() < 1e-9);
        assert!((last.1 - h.max() as f64 / 1e6).abs() / last.1 < 0.01);
    }

    #[test]
    fn record_clamps() {
        let mut h = new_hist();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn tallies_add_and_subtract() {
        let c = Counters::default();
        bump(&c.deliveries, 5);
        bump(&c.connects, 3);
        bump(&c.disconnects, 1);
        bump(&c.join_failed, 2);
        let a = c.snapshot();
        assert_eq!(a.open(), 2);
        assert_eq!(a.errors(), 3);
        assert_eq!((a + a).deliveries, 10);
        assert_eq!((a - a), Tally::default());
        let r = Reasons::default();
        r.note("x");
        r.note("x");
        assert_eq!(r.take()["x"], 2);
    }
}
