//! Results: the JSON document, the markdown summary, SVG plots and the
//! threshold checks that turn a run into pass/fail.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::procfs::Machine;
use crate::runner::Sample;
use crate::stats::{LatencySummary, Tally};
use crate::svg;

/// Server resource use over the measurement window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerUsage {
    /// The pid read (None: not found, nothing measured).
    pub pid: Option<u32>,
    /// Every pid read (a cluster's nodes); the figures below are sums.
    pub pids: Vec<u32>,
    /// nats-server CPU seconds in the window (when `--nats-pid` is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_cpu_s: Option<f64>,
    /// nats-server CPU seconds per million deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_cpu_s_per_million_deliveries: Option<f64>,
    /// CPU seconds (user + system) used in the window.
    pub cpu_s: Option<f64>,
    /// CPU seconds per million deliveries.
    pub cpu_s_per_million_deliveries: Option<f64>,
    /// Busy seconds of the server's (pinned) cores in the window, softirq
    /// included: on loopback the sender's core also runs the receiver's TCP
    /// input, which /proc/<pid>/stat does not charge to the server. Anything
    /// else running on those cores is counted too.
    pub cores_cpu_s: Option<f64>,
    /// `cores_cpu_s` per million deliveries.
    pub cores_cpu_s_per_million_deliveries: Option<f64>,
    /// RSS before any loadgen connection.
    pub rss_before_bytes: Option<u64>,
    /// RSS once every connection was set up.
    pub rss_loaded_bytes: Option<u64>,
    /// RSS at the end of the window.
    pub rss_end_bytes: Option<u64>,
    /// (loaded - before) / connections.
    pub rss_per_conn_bytes: Option<f64>,
}

/// The loadgen's own CPU use, to tell whether it was the bottleneck.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadgenUsage {
    /// Cores the executors ran on.
    pub cores: Vec<usize>,
    /// CPU seconds used in the window.
    pub cpu_s: f64,
    /// cpu_s / (window x cores).
    pub utilization: f64,
}

/// One rate step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepResult {
    /// Offered rate (ops/s).
    pub rate: f64,
    /// Step length.
    pub duration_s: f64,
    /// Achieved sends/s.
    pub sends_per_sec: f64,
    /// Deliveries/s received in the step.
    pub deliveries_per_sec: f64,
    /// Latency of messages *intended* in this step.
    pub latency: LatencySummary,
    /// Server CPU seconds in the step.
    pub server_cpu_s: Option<f64>,
    /// Server CPU seconds per million deliveries in the step.
    pub cpu_s_per_million_deliveries: Option<f64>,
    /// Server core busy seconds (softirq included) per million deliveries.
    pub cores_cpu_s_per_million_deliveries: Option<f64>,
    /// nats-server CPU seconds in the step (when its pid is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_cpu_s: Option<f64>,
    /// Loadgen CPU utilisation in the step.
    pub loadgen_utilization: f64,
}

/// One timeline bucket (1 s).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Point {
    /// End of the bucket, seconds since the run started.
    pub t_s: f64,
    /// Sends/s.
    pub sends_per_sec: f64,
    /// Deliveries/s.
    pub deliveries_per_sec: f64,
    /// Joins/s.
    pub joins_per_sec: f64,
    /// Errors in the bucket.
    pub errors: u64,
    /// Server CPU use (100 = one core).
    pub server_cpu_pct: Option<f64>,
    /// Busy share of the server's cores (100 = one core), softirq included.
    pub server_cores_pct: Option<f64>,
    /// Loadgen CPU use (100 = one core).
    pub loadgen_cpu_pct: f64,
}

/// A threshold and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The limit given.
    pub limit: f64,
    /// The measured value (None: not measured, which fails).
    pub value: Option<f64>,
    /// Verdict.
    pub pass: bool,
}

/// Everything a run produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Target kind (`realtime`).
    pub target: String,
    /// Scenario parameters as given.
    pub params: serde_json::Value,
    /// Where it ran.
    pub machine: Option<Machine>,
    /// Unix time the run started.
    pub started_unix: u64,
    /// Measurement window.
    pub duration_s: f64,
    /// Connections set up.
    pub connections: u64,
    /// Counter deltas over the window.
    pub window: Tally,
    /// Counter totals for the whole run, setup included.
    pub totals: Tally,
    /// Sends/s over the window.
    pub sends_per_sec: f64,
    /// Deliveries/s over the window.
    pub deliveries_per_sec: f64,
    /// Deliveries the server owed (sends x receivers), when known.
    pub expected_deliveries: Option<u64>,
    /// deliveries / expected.
    pub delivery_ratio: Option<f64>,
    /// Joins/s (setup ramp or storm).
    pub joins_per_sec: Option<f64>,
    /// Delivery (or join) latency from the intended send time.
    pub latency: LatencySummary,
    /// Ack / reply / HTTP response latency, when measured.
    pub ack_latency: Option<LatencySummary>,
    /// How late senders were against the schedule.
    pub send_lag: Option<LatencySummary>,
    /// Errors (all kinds) over the whole run.
    pub errors: u64,
    /// Error texts and counts.
    pub error_reasons: BTreeMap<String, u64>,
    /// Server usage.
    pub server: ServerUsage,
    /// Loadgen usage.
    pub loadgen: LoadgenUsage,
    /// Per-step results.
    pub steps: Vec<StepResult>,
    /// 1 s timeline.
    pub timeline: Vec<Point>,
    /// HDR percentile curve `(percentile, ms)`.
    pub latency_curve: Vec<(f64, f64)>,
    /// The same per rate step (when there are several).
    pub step_curves: Vec<(String, Vec<(f64, f64)>)>,
    /// Caveats found while measuring.
    pub warnings: Vec<String>,
    /// Threshold checks.
    pub checks: Vec<Check>,
    /// All checks passed.
    pub pass: bool,
    /// Scenario-specific figures (e.g. the pg_recvlogical comparison).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
    /// Markdown for [`Report::extra`], appended to the summary table.
    #[serde(skip)]
    pub extra_md: Option<String>,
}

/// CPU seconds between two samples of the server.
pub fn server_cpu(a: &Sample, b: &Sample) -> Option<f64> {
    Some(b.server_cpu_s? - a.server_cpu_s?)
}

/// nats-server CPU seconds between two samples.
pub fn nats_cpu(a: &Sample, b: &Sample) -> Option<f64> {
    Some(b.nats_cpu_s? - a.nats_cpu_s?)
}

/// Busy seconds of the server's cores between two samples.
pub fn server_cores_cpu(a: &Sample, b: &Sample) -> Option<f64> {
    Some(b.server_cores_s? - a.server_cores_s?)
}

/// CPU seconds per million of `n` deliveries.
pub fn per_million(cpu_s: Option<f64>, n: u64) -> Option<f64> {
    cpu_s.filter(|_| n > 0).map(|c| c / (n as f64 / 1e6))
}

/// The 1 s buckets between consecutive samples.
pub fn timeline(samples: &[Sample], start_ns: u64) -> Vec<Point> {
    samples
        .windows(2)
        .map(|w| {
            let dt = ((w[1].t_ns - w[0].t_ns) as f64 / 1e9).max(1e-9);
            let d = w[1].tally - w[0].tally;
            Point {
                t_s: (w[1].t_ns.saturating_sub(start_ns)) as f64 / 1e9,
                sends_per_sec: d.sends as f64 / dt,
                deliveries_per_sec: d.deliveries as f64 / dt,
                joins_per_sec: d.joins_ok as f64 / dt,
                errors: d.errors(),
                server_cpu_pct: server_cpu(&w[0], &w[1]).map(|c| c / dt * 100.0),
                server_cores_pct: server_cores_cpu(&w[0], &w[1]).map(|c| c / dt * 100.0),
                loadgen_cpu_pct: (w[1].loadgen_cpu_s - w[0].loadgen_cpu_s) / dt * 100.0,
            }
        })
        .collect()
}

/// Threshold flags shared by every scenario.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct Thresholds {
    /// Fail (exit 1) below this many deliveries/s (the best step when stepped).
    #[arg(long)]
    pub min_deliveries_per_sec: Option<f64>,
    /// Fail above this p99 latency in ms (every step must meet it).
    #[arg(long)]
    pub max_p99_ms: Option<f64>,
    /// Fail above this server RSS per connection (bytes).
    #[arg(long)]
    pub max_rss_per_conn_bytes: Option<f64>,
    /// Fail below this many joins/s.
    #[arg(long)]
    pub min_joins_per_sec: Option<f64>,
}

impl Report {
    /// Applies `t`, filling `checks` and `pass`.
    pub fn check(&mut self, t: &Thresholds) {
        let mut checks = Vec::new();
        if let Some(min) = t.min_deliveries_per_sec {
            let best = self
                .steps
                .iter()
                .map(|s| s.deliveries_per_sec)
                .fold(self.deliveries_per_sec, f64::max);
            checks.push(Check {
                name: "deliveries/s >=".into(),
                limit: min,
                value: Some(best),
                pass: best >= min,
            });
        }
        if let Some(max) = t.max_p99_ms {
            let worst = self
                .steps
                .iter()
                .filter(|s| s.latency.count > 0)
                .map(|s| s.latency.p99_ms)
                .fold(self.latency.p99_ms, f64::max);
            let measured = self.latency.count > 0;
            checks.push(Check {
                name: "p99 ms <=".into(),
                limit: max,
                value: measured.then_some(worst),
                pass: measured && worst <= max,
            });
        }
        if let Some(max) = t.max_rss_per_conn_bytes {
            let v = self.server.rss_per_conn_bytes;
            checks.push(Check {
                name: "server RSS bytes/conn <=".into(),
                limit: max,
                value: v,
                pass: v.is_some_and(|v| v <= max),
            });
        }
        if let Some(min) = t.min_joins_per_sec {
            let v = self.joins_per_sec;
            checks.push(Check {
                name: "joins/s >=".into(),
                limit: min,
                value: v,
                pass: v.is_some_and(|v| v >= min),
            });
        }
        self.pass = checks.iter().all(|c| c.pass);
        // After any a scenario set itself (db-broadcast: every delivery due).
        self.checks.extend(checks);
    }

    /// Reasons the run failed its thresholds, one line each.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| match c.value {
                Some(v) => format!("FAIL: {} {} (measured {:.3})", c.name, c.limit, v),
                None => format!("FAIL: {} {} (not measured)", c.name, c.limit),
            })
            .collect()
    }

    /// The markdown summary.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("n/a".to_string(), |v| format!("{v:.2}{unit}"));
        let _ = writeln!(
            o,
            "## realtime-loadgen `{}` (target `{}`)\n",
            self.scenario, self.target
        );
        if let Some(m) = &self.machine {
            let _ = writeln!(
                o,
                "Machine: {} CPUs, {}, kernel {}; loadgen cores {:?}\n",
                m.nproc, m.cpu_model, m.kernel, self.loadgen.cores
            );
        }
        let _ = writeln!(o, "Parameters: `{}`\n", self.params);
        let _ = writeln!(o, "| metric | value |\n|---|---|");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(o, "| {k} | {v} |");
        };
        row(
            "load period (rates are per second of it)",
            format!("{:.1} s", self.duration_s),
        );
        row("connections", self.connections.to_string());
        row("sends/s", format!("{:.0}", self.sends_per_sec));
        row("deliveries/s", format!("{:.0}", self.deliveries_per_sec));
        if let (Some(e), Some(r)) = (self.expected_deliveries, self.delivery_ratio) {
            row(
                "deliveries / expected",
                format!("{} / {} ({:.4})", self.window.deliveries, e, r),
            );
        }
        if let Some(j) = self.joins_per_sec {
            row("joins/s", format!("{j:.0}"));
        }
        let l = &self.latency;
        row(
            "latency p50 / p90 / p99 / p99.9 / max",
            format!(
                "{:.3} / {:.3} / {:.3} / {:.3} / {:.3} ms ({} samples)",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
            ),
        );
        if let Some(a) = &self.ack_latency {
            row(
                "reply latency p50 / p99 / max",
                format!("{:.3} / {:.3} / {:.3} ms", a.p50_ms, a.p99_ms, a.max_ms),
            );
        }
        if let Some(a) = &self.send_lag {
            row(
                "send lag behind schedule p99 / max",
                format!("{:.3} / {:.3} ms", a.p99_ms, a.max_ms),
            );
        }
        row("errors", self.errors.to_string());
        row("server CPU-s", opt(self.server.cpu_s, ""));
        row(
            "server CPU-s per million deliveries",
            opt(self.server.cpu_s_per_million_deliveries, ""),
        );
        row(
            "server core busy-s (softirq incl.) / per million",
            format!(
                "{} / {}",
                opt(self.server.cores_cpu_s, ""),
                opt(self.server.cores_cpu_s_per_million_deliveries, "")
            ),
        );
        row(
            "server RSS before / loaded / end",
            format!(
                "{} / {} / {}",
                mib(self.server.rss_before_bytes),
                mib(self.server.rss_loaded_bytes),
                mib(self.server.rss_end_bytes)
            ),
        );
        row(
            "server RSS per connection",
            opt(self.server.rss_per_conn_bytes, " B"),
        );
        row(
            "loadgen CPU-s (utilisation)",
            format!(
                "{:.2} ({:.0}% of {} core(s))",
                self.loadgen.cpu_s,
                self.loadgen.utilization * 100.0,
                self.loadgen.cores.len()
            ),
        );
        if let Some(md) = &self.extra_md {
            let _ = write!(o, "\n{md}");
        }
        if self.steps.len() > 1 {
            let _ = writeln!(
                o,
                "\n| offered/s | sends/s | deliveries/s | p50 ms | p99 ms | p99.9 ms | max ms | server CPU-s/M | core busy-s/M | loadgen util |\n|---|---|---|---|---|---|---|---|---|---|"
            );
            for s in &self.steps {
                let _ = writeln!(
                    o,
                    "| {:.0} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {:.0}% |",
                    s.rate,
                    s.sends_per_sec,
                    s.deliveries_per_sec,
                    s.latency.p50_ms,
                    s.latency.p99_ms,
                    s.latency.p999_ms,
                    s.latency.max_ms,
                    opt(s.cpu_s_per_million_deliveries, ""),
                    opt(s.cores_cpu_s_per_million_deliveries, ""),
                    s.loadgen_utilization * 100.0
                );
            }
        }
        if !self.error_reasons.is_empty() {
            let _ = writeln!(o, "\nErrors:");
            for (r, n) in &self.error_reasons {
                let _ = writeln!(o, "- {n} x {r}");
            }
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(o, "\nWarnings:");
            for w in &self.warnings {
                let _ = writeln!(o, "- {w}");
            }
        }
        if !self.checks.is_empty() {
            let _ = writeln!(
                o,
                "\n| check | limit | measured | verdict |\n|---|---|---|---|"
            );
            for c in &self.checks {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} |",
                    c.name,
                    c.limit,
                    opt(c.value, ""),
                    if c.pass { "pass" } else { "FAIL" }
                );
            }
        }
        o
    }

    /// Writes `<scenario>-throughput.svg` and `<scenario>-latency.svg`.
    pub fn write_svgs(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let pts = |f: fn(&Point) -> f64| -> Vec<(f64, f64)> {
            self.timeline.iter().map(|p| (p.t_s, f(p))).collect()
        };
        let mut series = vec![svg::Series {
            name: "deliveries/s".into(),
            points: pts(|p| p.deliveries_per_sec),
            dashed: false,
        }];
        // Sends scaled by the fan-out, so offered and achieved share an axis.
        let fanout = match self.expected_deliveries {
            Some(e) if self.window.sends > 0 => e as f64 / self.window.sends as f64,
            _ => 1.0,
        };
        if self.timeline.iter().any(|p| p.sends_per_sec > 0.0) {
            series.push(svg::Series {
                name: if fanout == 1.0 {
                    "sends/s".into()
                } else {
                    format!("sends/s x {fanout:.0} receivers")
                },
                points: self
                    .timeline
                    .iter()
                    .map(|p| (p.t_s, p.sends_per_sec * fanout))
                    .collect(),
                dashed: true,
            });
        }
        if self.timeline.iter().any(|p| p.joins_per_sec > 0.0) {
            series.push(svg::Series {
                name: "joins/s".into(),
                points: pts(|p| p.joins_per_sec),
                dashed: false,
            });
        }
        let chart = svg::Chart {
            title: format!("{}: throughput per second", self.scenario),
            x_label: "time (s)".into(),
            y_label: "per second".into(),
            x_ticks: None,
            series,
        };
        std::fs::write(
            dir.join(format!("{}-throughput.svg", self.scenario)),
            svg::render(&chart),
        )?;
        let lat = svg::latency_chart(
            &format!("{}: latency by percentile", self.scenario),
            &if self.step_curves.len() > 1 {
                self.step_curves.clone()
            } else {
                vec![("all".to_string(), self.latency_curve.clone())]
            },
        );
        std::fs::write(dir.join(format!("{}-latency.svg", self.scenario)), lat)
    }
}

/// Bytes as MiB text.
fn mib(b: Option<u64>) -> String {
    b.map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            scenario: "broadcast".into(),
            deliveries_per_sec: 1000.0,
            latency: LatencySummary {
                count: 10,
                p99_ms: 4.0,
                ..Default::default()
            },
            steps: vec![
                StepResult {
                    deliveries_per_sec: 2000.0,
                    latency: LatencySummary {
                        count: 5,
                        p99_ms: 6.0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                StepResult::default(),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn thresholds_use_best_throughput_and_worst_p99() {
        let mut r = report();
        r.check(&Thresholds {
            min_deliveries_per_sec: Some(1500.0),
            max_p99_ms: Some(5.0),
            ..Default::default()
        });
        assert!(!r.pass);
        assert!(r.checks[0].pass);
        assert!(!r.checks[1].pass);
        assert_eq!(r.failures().len(), 1);
        assert!(r.failures()[0].contains("p99"));
    }

    #[test]
    fn unmeasured_values_fail_their_checks() {
        let mut r = report();
        r.check(&Thresholds {
            max_rss_per_conn_bytes: Some(2048.0),
            min_joins_per_sec: Some(1.0),
            ..Default::default()
        });
        assert!(!r.pass);
        assert!(r.failures().iter().all(|f| f.contains("not measured")));
        let mut ok = report();
        ok.check(&Thresholds::default());
        assert!(ok.pass);
    }

    #[test]
    fn timeline_rates_per_bucket() {
        let mut a = Sample {
            t_ns: 1_000_000_000,
            server_cpu_s: Some(1.0),
            ..Default::default()
        };
        a.tally.deliveries = 100;
        let mut b = a;
        b.t_ns = 3_000_000_000;
        b.tally.deliveries = 300;
        b.server_cpu_s = Some(2.0);
        let t = timeline(&[a, b], 1_000_000_000);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].t_s, 2.0);
        assert_eq!(t[0].deliveries_per_sec, 100.0);
        assert_eq!(t[0].server_cpu_pct, Some(50.0));
        assert_eq!(per_million(Some(2.0), 4_000_000), Some(0.5));
        assert_eq!(per_million(Some(2.0), 0), None);
    }

    #[test]
    fn markdown_mentions_the_key_figures() {
        let mut r = report();
        r.check(&Thresholds {
            max_p99_ms: Some(5.0),
            ..Default::default()
        });
        let md = r.markdown();
        assert!(md.contains("| deliveries/s | 1000 |"));
        assert!(md.contains("FAIL"));
        assert!(md.contains("| offered/s |"));
    }
}
