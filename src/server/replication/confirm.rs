//! Which LSN may be reported to Postgres as flushed.
//!
//! A change counts as handled once its frames are in every subscriber's
//! socket queue, but a queue lives in this process: if the process dies
//! between the fan-out and the socket write, a confirmation already sent
//! would make Postgres forget a change no client received. [`FlushGate`]
//! therefore reports an LSN only once it has been fanned out for
//! [`HOLD`], time in which the socket writers (tasks of the same shard,
//! run as soon as the stream loop waits) have put the frames on the wire.
//! The cost is that Postgres keeps WAL for `HOLD` longer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::proto::pg::replication::Lsn;

/// How long an LSN waits between fan-out and being reported.
pub const HOLD: Duration = Duration::from_millis(500);

/// Fan-outs closer together than this share one sample (the later LSN
/// takes the earlier time), so a busy stream keeps few samples; an LSN is
/// thus held at least `HOLD - COALESCE`.
const COALESCE: Duration = Duration::from_millis(10);

/// LSNs fanned out, oldest first, until they are old enough to report.
#[derive(Debug)]
pub struct FlushGate {
    /// How long to hold (tests shorten it).
    hold: Duration,
    /// (time of fan-out, LSN), strictly increasing in both.
    samples: VecDeque<(Instant, Lsn)>,
    /// The greatest LSN held long enough.
    reportable: Lsn,
}

impl Default for FlushGate {
    fn default() -> Self {
        FlushGate::new(HOLD)
    }
}

impl FlushGate {
    /// A gate holding LSNs for `hold`.
    pub fn new(hold: Duration) -> Self {
        FlushGate {
            hold,
            samples: VecDeque::new(),
            reportable: Lsn::INVALID,
        }
    }

    /// Everything up to `lsn` is in subscriber queues as of `now`.
    pub fn fanned_out(&mut self, lsn: Lsn, now: Instant) {
        let last = self.samples.back().map_or(self.reportable, |s| s.1);
        if lsn <= last {
            return;
        }
        match self.samples.back_mut() {
            Some((t, l)) if now.saturating_duration_since(*t) < COALESCE => *l = lsn,
            _ => self.samples.push_back((now, lsn)),
        }
    }

    /// The greatest LSN fanned out at least the hold time before `now`
    /// (`0/0`, which Postgres ignores, until there is one).
    pub fn reportable(&mut self, now: Instant) -> Lsn {
        while let Some(&(t, l)) = self.samples.front() {
            if now.saturating_duration_since(t) < self.hold {
                break;
            }
            self.reportable = l;
            self.samples.pop_front();
        }
        self.reportable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lsn_is_reported_only_after_the_hold() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut g = FlushGate::new(ms(100));
        assert_eq!(g.reportable(t0), Lsn::INVALID);
        g.fanned_out(Lsn(10), t0);
        g.fanned_out(Lsn(20), t0 + ms(50));
        assert_eq!(g.reportable(t0 + ms(99)), Lsn::INVALID);
        assert_eq!(g.reportable(t0 + ms(100)), Lsn(10));
        assert_eq!(g.reportable(t0 + ms(149)), Lsn(10));
        assert_eq!(g.reportable(t0 + ms(150)), Lsn(20));
        // Never goes back, and stale fan-outs are ignored.
        g.fanned_out(Lsn(5), t0 + ms(200));
        assert_eq!(g.reportable(t0 + ms(400)), Lsn(20));
    }

    #[test]
    fn close_fan_outs_share_a_sample() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut g = FlushGate::new(ms(100));
        for i in 1..=5u64 {
            g.fanned_out(Lsn(i), t0 + ms(i));
        }
        assert_eq!(g.samples.len(), 1);
        // Held from the first of them: at least hold - COALESCE for the last.
        assert_eq!(g.reportable(t0 + ms(100)), Lsn::INVALID);
        assert_eq!(g.reportable(t0 + ms(101)), Lsn(5));
    }
}
