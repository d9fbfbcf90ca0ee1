//! Open-loop schedules: when each operation *should* happen.
//!
//! A schedule is a list of steps, each a constant rate held for a duration.
//! Event `k` (0-based) is due at the time `t` where the cumulative count
//! `N(t)` (the integral of the rate) reaches `k`. Senders work from these
//! intended times, never from when the previous send finished, and embed the
//! intended time in the message, so a stall shows up as latency instead of
//! silently lowering the offered load (no coordinated omission).

/// One constant-rate stretch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Events per second (0 is a pause).
    pub rate: f64,
    /// How long the step lasts, ns.
    pub duration_ns: u64,
}

/// A piecewise-constant rate over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The steps in order.
    steps: Vec<Step>,
    /// Start offset of each step (ns from the schedule start), plus the end.
    starts_ns: Vec<u64>,
    /// Events due before each step starts, plus the total (fractional).
    counts: Vec<f64>,
}

impl Schedule {
    /// A schedule of `steps`.
    pub fn new(steps: Vec<Step>) -> Schedule {
        let mut starts_ns = vec![0];
        let mut counts = vec![0.0];
        for s in &steps {
            starts_ns.push(starts_ns.last().unwrap() + s.duration_ns);
            counts.push(counts.last().unwrap() + s.rate.max(0.0) * s.duration_ns as f64 / 1e9);
        }
        Schedule {
            steps,
            starts_ns,
            counts,
        }
    }

    /// One step per rate, each lasting `step_ns`.
    pub fn stepped(rates: &[f64], step_ns: u64) -> Schedule {
        Schedule::new(
            rates
                .iter()
                .map(|&rate| Step {
                    rate,
                    duration_ns: step_ns,
                })
                .collect(),
        )
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Start offset of step `i` (`i == steps().len()` gives the end).
    pub fn step_start_ns(&self, i: usize) -> u64 {
        self.starts_ns[i.min(self.steps.len())]
    }

    /// Length of the whole schedule, ns.
    pub fn total_ns(&self) -> u64 {
        *self.starts_ns.last().unwrap()
    }

    /// How many events the schedule holds.
    pub fn total_events(&self) -> u64 {
        self.counts.last().unwrap().ceil() as u64
    }

    /// The step an offset falls in (offsets past the end map to the last step).
    pub fn step_at(&self, offset_ns: u64) -> usize {
        let i = self.starts_ns.partition_point(|&s| s <= offset_ns);
        i.saturating_sub(1).min(self.steps.len().saturating_sub(1))
    }

    /// The intended offset (ns from the start) of event `k`, or `None` when
    /// the schedule ends before it.
    pub fn offset_of(&self, k: u64) -> Option<u64> {
        let kf = k as f64;
        if kf >= *self.counts.last().unwrap() {
            return None;
        }
        // The step whose cumulative count range holds k.
        let i = self.counts.partition_point(|&c| c <= kf).saturating_sub(1);
        let step = self.steps[i];
        let into = (kf - self.counts[i]) / step.rate * 1e9;
        Some(self.starts_ns[i] + into.round() as u64)
    }
}

/// Parses a comma-separated list of rates (`"1000"`, `"20,40,80"`, `"1e5"`).
pub fn parse_rates(s: &str) -> Result<Vec<f64>, String> {
    let rates: Result<Vec<f64>, _> = s.split(',').map(|r| r.trim().parse::<f64>()).collect();
    let rates = rates.map_err(|e| format!("bad rate list {s:?}: {e}"))?;
    if rates.is_empty() || rates.iter().any(|r| !r.is_finite() || *r < 0.0) {
        return Err(format!("bad rate list {s:?}: rates must be >= 0"));
    }
    Ok(rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn constant_rate_spaces_events_evenly() {
        let s = Schedule::stepped(&[4.0], 2 * S);
        assert_eq!(s.total_events(), 8);
        let offs: Vec<u64> = (0..9).filter_map(|k| s.offset_of(k)).collect();
        assert_eq!(
            offs,
            vec![
                0,
                S / 4,
                S / 2,
                3 * S / 4,
                S,
                5 * S / 4,
                3 * S / 2,
                7 * S / 4
            ]
        );
    }

    #[test]
    fn steps_change_the_spacing() {
        let s = Schedule::stepped(&[1.0, 10.0, 0.0, 2.0], S);
        assert_eq!(s.total_events(), 13);
        assert_eq!(s.offset_of(0), Some(0));
        assert_eq!(s.offset_of(1), Some(S));
        assert_eq!(s.offset_of(2), Some(S + S / 10));
        // The pause holds no events; the last step starts at 3 s.
        assert_eq!(s.offset_of(11), Some(3 * S));
        assert_eq!(s.offset_of(12), Some(3 * S + S / 2));
        assert_eq!(s.offset_of(13), None);
        assert_eq!(s.step_at(0), 0);
        assert_eq!(s.step_at(S), 1);
        assert_eq!(s.step_at(2 * S + 1), 2);
        assert_eq!(s.step_at(99 * S), 3);
        assert_eq!(s.step_start_ns(4), 4 * S);
    }

    #[test]
    fn offsets_are_monotonic_and_match_the_rate() {
        let s = Schedule::stepped(&[333.0, 1234.5, 7.0], S / 2);
        let offs: Vec<u64> = (0..s.total_events())
            .map(|k| s.offset_of(k).unwrap())
            .collect();
        assert!(offs.windows(2).all(|w| w[0] < w[1]));
        // Events inside each step match its rate.
        let in_step = |i: usize| offs.iter().filter(|&&o| s.step_at(o) == i).count();
        assert_eq!(in_step(0), 167);
        assert_eq!(in_step(1), 617);
        assert_eq!(in_step(2), 4);
    }

    #[test]
    fn fractional_totals_round_up() {
        let s = Schedule::stepped(&[1.5], S);
        assert_eq!(s.total_events(), 2);
        assert!(s.offset_of(1).is_some());
        assert!(s.offset_of(2).is_none());
    }

    #[test]
    fn rate_lists() {
        assert_eq!(parse_rates("10").unwrap(), vec![10.0]);
        assert_eq!(parse_rates("1e3, 2000").unwrap(), vec![1000.0, 2000.0]);
        assert!(parse_rates("x").is_err());
        assert!(parse_rates("-1").is_err());
    }
}
