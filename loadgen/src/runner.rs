//! Executors and the monitor.
//!
//! One glommio executor per loadgen core runs the scenario's connections.
//! The main thread (pinned to the same cores, asleep almost always) is the
//! monitor: it drives the phases (setup, run, stop), samples counters and
//! /proc once a second for the timeline, and draws the progress bar.

use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::procfs;
use crate::stats::{now_ns, Counters, Reasons, Tally};

/// Connections are being opened and joined.
pub const SETUP: u8 = 0;
/// The measured load is running.
pub const RUN: u8 = 1;
/// Everything winds down.
pub const STOP: u8 = 2;

/// State shared by the executors and the monitor.
#[derive(Debug)]
pub struct Shared {
    /// One counter set per executor.
    pub counters: Vec<Counters>,
    /// Error texts seen.
    pub reasons: Reasons,
    /// Current phase ([`SETUP`], [`RUN`], [`STOP`]).
    pub phase: AtomicU8,
    /// Schedule origin (clock ns) once [`RUN`] begins.
    pub start_ns: AtomicU64,
    /// Connections fully set up (connected and joined).
    pub ready: AtomicU64,
    /// Connections that gave up during setup.
    pub setup_failed: AtomicU64,
    /// Receiver threads still reading (executors keep their sockets open
    /// until this is zero).
    pub rx_running: AtomicUsize,
}

impl Shared {
    /// Shared state for `nr` executors.
    pub fn new(nr: usize) -> Arc<Shared> {
        Arc::new(Shared {
            counters: (0..nr).map(|_| Counters::default()).collect(),
            reasons: Reasons::default(),
            phase: AtomicU8::new(SETUP),
            start_ns: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            setup_failed: AtomicU64::new(0),
            rx_running: AtomicUsize::new(0),
        })
    }

    /// Sum of every executor's counters.
    pub fn tally(&self) -> Tally {
        self.counters
            .iter()
            .fold(Tally::default(), |a, c| a + c.snapshot())
    }

    /// The current phase.
    pub fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    /// Starts the run phase with the schedule origin at `start_ns`.
    pub fn start(&self, start_ns: u64) {
        self.start_ns.store(start_ns, Ordering::Release);
        self.phase.store(RUN, Ordering::Release);
    }

    /// Tells every executor to finish.
    pub fn stop(&self) {
        self.phase.store(STOP, Ordering::Release);
    }
}

/// What an executor's tasks get to see.
#[derive(Debug, Clone)]
pub struct ExecCtx {
    /// Executor index (0-based).
    pub id: usize,
    /// Number of executors.
    pub nr: usize,
    /// The shared state.
    pub shared: Arc<Shared>,
}

impl ExecCtx {
    /// This executor's counters.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters[self.id]
    }

    /// Waits until the phase is at least `phase`; returns the phase.
    pub async fn wait_phase(&self, phase: u8) -> u8 {
        loop {
            let p = self.shared.phase();
            if p >= phase {
                return p;
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for the end of the run and for the receivers to let go of
    /// this executor's sockets.
    pub async fn wait_stop(&self) {
        self.wait_phase(STOP).await;
        while self.shared.rx_running.load(Ordering::Acquire) > 0 {
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Whether the run is over.
    pub fn stopping(&self) -> bool {
        self.shared.phase() == STOP
    }

    /// The schedule origin (valid once [`RUN`] began).
    pub fn start_ns(&self) -> u64 {
        self.shared.start_ns.load(Ordering::Acquire)
    }
}

/// Starts one executor per core in `cores`, each running `f`.
pub fn spawn<T, F, Fut>(
    cores: &[usize],
    shared: &Arc<Shared>,
    f: F,
) -> std::io::Result<Vec<ExecutorJoinHandle<T>>>
where
    T: Send + 'static,
    F: Fn(ExecCtx) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
{
    let mut handles = Vec::new();
    for (id, &cpu) in cores.iter().enumerate() {
        let ctx = ExecCtx {
            id,
            nr: cores.len(),
            shared: shared.clone(),
        };
        let f = f.clone();
        let h = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("loadgen-{id}"))
            // No registered buffers are used; stay far below RLIMIT_MEMLOCK.
            .io_memory(256 << 10)
            .ring_depth(512)
            .preempt_timer(Duration::from_millis(20))
            .spawn(move || f(ctx))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        handles.push(h);
    }
    Ok(handles)
}

/// Joins executors, collecting their outputs.
pub fn join<T: Send + 'static>(handles: Vec<ExecutorJoinHandle<T>>) -> Result<Vec<T>, String> {
    handles
        .into_iter()
        .map(|h| h.join().map_err(|e| format!("executor failed: {e}")))
        .collect()
}

/// One reading of everything that moves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Clock ns when taken.
    pub t_ns: u64,
    /// Counter totals.
    pub tally: Tally,
    /// Server CPU seconds so far (when the pid is known).
    pub server_cpu_s: Option<f64>,
    /// Server RSS bytes.
    pub server_rss: Option<u64>,
    /// nats-server CPU seconds so far (when its pid is given).
    pub nats_cpu_s: Option<f64>,
    /// Busy seconds of the cores the server is pinned to (softirq included).
    pub server_cores_s: Option<f64>,
    /// This process's CPU seconds so far.
    pub loadgen_cpu_s: f64,
}

/// The main thread's view of a run.
pub struct Monitor {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Server pids for /proc readings (summed).
    pub server_pids: Vec<u32>,
    /// nats-server pid, read apart.
    pub nats_pid: Option<u32>,
    /// The cores the server is pinned to (None: not pinned, or unknown).
    pub server_cores: Option<Vec<usize>>,
    /// The progress bar (hidden when quiet or not a tty).
    bar: ProgressBar,
}

impl Monitor {
    /// A monitor; the bar draws only when `show` and stderr is a terminal.
    pub fn new(
        shared: Arc<Shared>,
        server_pids: &[u32],
        nats_pid: Option<u32>,
        show: bool,
    ) -> Monitor {
        let bar = if show && std::io::stderr().is_terminal() {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b
        } else {
            ProgressBar::hidden()
        };
        let mut cores: Vec<usize> = server_pids
            .iter()
            .flat_map(|&p| procfs::process_cpus(p))
            .collect();
        cores.sort_unstable();
        cores.dedup();
        let server_cores = (!server_pids.is_empty())
            .then_some(cores)
            .filter(|a| !a.is_empty() && a.len() < procfs::online_cpus().len());
        Monitor {
            shared,
            server_pids: server_pids.to_vec(),
            nats_pid,
            server_cores,
            bar,
        }
    }

    /// Reads counters and /proc now.
    pub fn sample(&self) -> Sample {
        // A sum over every server pid; None if any reading fails.
        let sum = |f: fn(&str) -> Option<f64>| -> Option<f64> {
            if self.server_pids.is_empty() {
                return None;
            }
            self.server_pids.iter().map(|p| f(&p.to_string())).sum()
        };
        Sample {
            t_ns: now_ns(),
            tally: self.shared.tally(),
            server_cpu_s: sum(procfs::cpu_seconds),
            server_rss: sum(|p| procfs::rss_bytes(p).map(|b| b as f64)).map(|b| b as u64),
            nats_cpu_s: self
                .nats_pid
                .and_then(|p| procfs::cpu_seconds(&p.to_string())),
            server_cores_s: self
                .server_cores
                .as_deref()
                .and_then(procfs::cpus_busy_seconds),
            loadgen_cpu_s: procfs::cpu_seconds("self").unwrap_or(0.0),
        }
    }

    /// Shows `msg` on the bar.
    pub fn status(&self, msg: String) {
        self.bar.set_message(msg);
        self.bar.tick();
    }

    /// Waits until `target` connections are set up (or failed), or
    /// `limit` passes. Returns whether every connection came up.
    pub fn wait_ready(&self, target: u64, limit: Duration) -> bool {
        let deadline = now_ns() + limit.as_nanos() as u64;
        loop {
            let ready = self.shared.ready.load(Ordering::Acquire);
            let failed = self.shared.setup_failed.load(Ordering::Acquire);
            let t = self.shared.tally();
            self.status(format!(
                "setup: {ready}/{target} ready, {failed} failed, {} errors",
                t.errors()
            ));
            if ready + failed >= target {
                return failed == 0;
            }
            if now_ns() > deadline {
                self.shared.reasons.note(format!(
                    "setup timed out after {}s with {ready}/{target} ready",
                    limit.as_secs()
                ));
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sleeps until clock time `t_ns`, refreshing the bar with live rates.
    pub fn sleep_until(&self, t_ns: u64, label: &str, last: &mut Sample) {
        loop {
            let now = now_ns();
            if now >= t_ns {
                return;
            }
            std::thread::sleep(Duration::from_nanos((t_ns - now).min(250_000_000)));
            let s = self.sample();
            let dt = (s.t_ns - last.t_ns) as f64 / 1e9;
            if dt >= 0.9 {
                let d = s.tally - last.tally;
                self.status(format!(
                    "{label}: {} conns | {:.0} sends/s | {:.0} deliveries/s | {:.0} joins/s | {} errors",
                    s.tally.open(),
                    d.sends as f64 / dt,
                    d.deliveries as f64 / dt,
                    d.joins_ok as f64 / dt,
                    s.tally.errors()
                ));
                *last = s;
            }
        }
    }

    /// Samples once a second from `start_ns` for `total_ns`, plus exactly at
    /// every offset in `marks` (step boundaries). Returns the timeline
    /// (first sample at the start) and the samples at the marks.
    pub fn record(
        &self,
        start_ns: u64,
        total_ns: u64,
        marks: &[u64],
        label: &str,
    ) -> (Vec<Sample>, Vec<Sample>) {
        let mut last = self.sample();
        // The first reading must precede the first scheduled event.
        self.sleep_until(start_ns.saturating_sub(2_000_000), label, &mut last);
        let mut timeline = vec![self.sample()];
        let mut at_marks = Vec::new();
        let mut marks = marks.to_vec();
        marks.sort_unstable();
        let mut mi = 0;
        let mut next_sec = 1u64;
        loop {
            let sec_t = next_sec * 1_000_000_000;
            let mark_t = marks.get(mi).copied().unwrap_or(u64::MAX);
            let t = sec_t.min(mark_t).min(total_ns);
            self.sleep_until(start_ns + t, label, &mut last);
            let s = self.sample();
            if t == mark_t {
                at_marks.push(s);
                mi += 1;
            }
            if t == sec_t || t == total_ns {
                timeline.push(s);
                next_sec += 1;
            }
            if t >= total_ns {
                while at_marks.len() < marks.len() {
                    at_marks.push(s);
                }
                break;
            }
        }
        (timeline, at_marks)
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
