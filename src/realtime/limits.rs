//! Rolling-average rate counters, the way the Elixir server's `RateCounter`
//! measures tenant limits: events are summed per tick, the last
//! `nr_buckets` ticks are kept, and the average rate is recomputed once per
//! tick. A limit is *triggered* while that average is at or above it.

use std::collections::VecDeque;

/// A per-tick event counter with a rolling window.
#[derive(Debug, Clone)]
pub struct RateCounter {
    /// Length of one bucket (the Elixir default for tenant limits is 5 s).
    tick_ms: u64,
    /// How many finished buckets the average spans (default 12, i.e. 60 s).
    nr_buckets: usize,
    /// Start of the bucket being filled.
    tick_start_ms: u64,
    /// Events in the bucket being filled.
    current: u64,
    /// Finished buckets, newest first.
    buckets: VecDeque<u64>,
    /// Average events per second over `buckets`, updated at each tick.
    avg: f64,
}

impl RateCounter {
    /// The tenant-limit counter: 5 s ticks, 12 buckets.
    pub fn tenant(now_ms: u64) -> Self {
        Self::new(5_000, 12, now_ms)
    }

    /// A counter with the given tick and window.
    pub fn new(tick_ms: u64, nr_buckets: usize, now_ms: u64) -> Self {
        Self {
            tick_ms: tick_ms.max(1),
            nr_buckets: nr_buckets.max(1),
            tick_start_ms: now_ms,
            current: 0,
            buckets: VecDeque::with_capacity(nr_buckets.max(1)),
            avg: 0.0,
        }
    }

    fn roll(&mut self, now_ms: u64) {
        while now_ms >= self.tick_start_ms + self.tick_ms {
            self.buckets.push_front(std::mem::take(&mut self.current));
            self.buckets.truncate(self.nr_buckets);
            self.tick_start_ms += self.tick_ms;
            // After a long quiet spell, skip whole empty windows at once.
            if now_ms - self.tick_start_ms > self.tick_ms * self.nr_buckets as u64 {
                self.buckets.clear();
                self.tick_start_ms = now_ms - (now_ms - self.tick_start_ms) % self.tick_ms;
            }
            let sum: u64 = self.buckets.iter().sum();
            let n = self.buckets.len().max(1) as f64;
            self.avg = sum as f64 / n / (self.tick_ms as f64 / 1000.0);
        }
    }

    /// Counts `n` events at `now_ms`.
    pub fn add(&mut self, n: u64, now_ms: u64) {
        self.roll(now_ms);
        self.current += n;
    }

    /// Average events per second as of the last finished tick.
    pub fn avg(&mut self, now_ms: u64) -> f64 {
        self.roll(now_ms);
        self.avg
    }

    /// Whether the average is at or above `limit`.
    pub fn triggered(&mut self, limit: u64, now_ms: u64) -> bool {
        self.avg(now_ms) >= limit as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_updates_per_tick() {
        let mut c = RateCounter::tenant(0);
        c.add(600, 1_000);
        assert_eq!(c.avg(4_999), 0.0, "no finished tick yet");
        assert_eq!(c.avg(5_000), 120.0);
        assert!(c.triggered(100, 5_000));
        assert!(!c.triggered(121, 5_000));
        // A quiet second tick halves the average over two buckets.
        assert_eq!(c.avg(10_000), 60.0);
    }

    #[test]
    fn window_forgets_old_buckets() {
        let mut c = RateCounter::new(1_000, 3, 0);
        c.add(30, 0);
        assert_eq!(c.avg(1_000), 30.0);
        assert_eq!(c.avg(3_000), 10.0);
        assert_eq!(c.avg(4_000), 0.0);
        assert_eq!(c.avg(1_000_000), 0.0);
        c.add(5, 1_000_000);
        assert_eq!(
            c.avg(1_001_000),
            5.0,
            "average over the buckets filled so far"
        );
    }
}
