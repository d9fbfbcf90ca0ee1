//! `nats-client`: the cross-node hop of a cluster without the rest of the
//! server. One "shard" (a glommio executor, built as the server builds
//! its shards) publishes to a subject; another receives from it through
//! nats-server, as shards on two nodes would. Which client sits between
//! the executors and nats-server is the question (issue 15, item 2):
//!
//! - `glommio`: the server's own [`NatsConn`] on each executor.
//! - `async-nats`: async-nats on a tokio current-thread runtime, one
//!   thread per node, with crossbeam queues and doorbells between it and
//!   the executor (see [`super::nats_bridge`]).
//!
//! The executors' code is the same for both (the [`Outbound`] and
//! [`Inbound`] halves differ). After probes that prove the subscription is
//! in effect and a warm-up, two measured phases:
//!
//! 1. saturation: `--messages` sent back to back, at most `--window`
//!    unreceived, handed on `--batch` at a time; messages/s from the first
//!    send to the last receipt;
//! 2. latency: `--rate` messages/s open loop for `--duration` s, each
//!    handed on at once; publish-to-receipt latency from the intended send
//!    time in the payload (so a stalled sender shows as latency).
//!
//! Each phase records the process's CPU (getrusage), each thread's CPU
//! (its `pthread` CPU clock), context switches and nats-server's CPU
//! (/proc). Every message carries a sequence number: losses and
//! reordering are counted, not assumed away.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use realtime::server::nats::NatsConn;
use serde::Serialize;

#[cfg(feature = "async-nats-bridge")]
use super::nats_bridge;
use super::{EXIT_ERROR, EXIT_FAIL, EXIT_PASS};
use crate::cli::{NatsClient, NatsClientArgs};
use crate::procfs::{self, Machine};
use crate::stats::{self, now_ns, LatencySummary};

/// What a message is for (its payload's first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Sent until one arrives: the subscription is in effect.
    Probe = 0,
    Warmup = 1,
    Saturation = 2,
    Latency = 3,
    /// The last message: the receiving side stops on it.
    Stop = 4,
}

const NR_PHASES: usize = 5;
/// Phase byte, sequence number, intended send time (ns, the loadgen clock).
const HEAD: usize = 17;
/// Smallest `--size`.
const MIN_SIZE: usize = 24;
/// How long the publisher waits for a phase's last message.
const DRAIN: Duration = Duration::from_secs(30);
/// How long a full window or a full queue is waited on before looking again.
pub const BACKOFF: Duration = Duration::from_micros(100);

impl Phase {
    fn of(b: u8) -> Option<Phase> {
        [
            Phase::Probe,
            Phase::Warmup,
            Phase::Saturation,
            Phase::Latency,
            Phase::Stop,
        ]
        .get(b as usize)
        .copied()
    }
}

/// The phase of a payload (`None`: not one of ours).
pub fn phase_of(p: &[u8]) -> Option<Phase> {
    p.first().and_then(|&b| Phase::of(b))
}

/// A payload of `size` bytes.
fn payload(phase: Phase, seq: u64, intended_ns: u64, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u8(phase as u8);
    b.put_u64_le(seq);
    b.put_u64_le(intended_ns);
    b.resize(size, b'x');
    b.freeze()
}

/// Sequence number and intended send time of a payload.
fn stamps(p: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(p.get(1..9)?.try_into().ok()?);
    let at = u64::from_le_bytes(p.get(9..HEAD)?.try_into().ok()?);
    Some((seq, at))
}

/// What the threads of a run share.
#[derive(Default)]
pub struct Shared {
    /// Messages received, per phase.
    received: [AtomicU64; NR_PHASES],
    /// Clock time of the last receipt.
    last_rx_ns: AtomicU64,
    /// Messages that arrived with a sequence number not above the last one.
    out_of_order: AtomicU64,
    /// CPU clocks of the run's threads, with their names.
    clocks: Mutex<Vec<(String, libc::clockid_t)>>,
    /// The first error of any thread (the run is abandoned).
    pub error: Mutex<Option<String>>,
    /// Set once the receiving side has seen the stop message.
    done: AtomicBool,
    /// Times a hand-over queue was full (async-nats).
    pub queue_full: AtomicU64,
    /// Doorbell writes: a side found the other asleep (async-nats).
    pub rings: AtomicU64,
    /// Slow-consumer events async-nats reported.
    pub slow_consumer: AtomicU64,
    /// Threads, RSS and peak RSS (bytes) just before the stop message.
    status: Mutex<(Option<u64>, Option<u64>, Option<u64>)>,
}

impl Shared {
    /// Notes the calling thread's CPU clock under `name`.
    pub fn register_thread(&self, name: &str) {
        let mut clk: libc::clockid_t = 0;
        // SAFETY: pthread_self is the calling thread; `clk` is written.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clk) };
        if rc == 0 {
            self.clocks.lock().unwrap().push((name.to_string(), clk));
        }
    }

    /// CPU seconds of every registered thread so far.
    fn thread_cpu(&self) -> Vec<(String, f64)> {
        let clocks = self.clocks.lock().unwrap();
        clocks
            .iter()
            .map(|(name, clk)| (name.clone(), clock_s(*clk)))
            .collect()
    }

    /// Records `e` unless an earlier error is there.
    pub fn fail(&self, e: String) {
        self.error.lock().unwrap().get_or_insert(e);
    }

    /// Notes the process's threads and memory while every thread lives.
    fn sample_status(&self) {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        };
        *self.status.lock().unwrap() = (
            field("Threads:"),
            field("VmRSS:").map(|k| k * 1024),
            field("VmHWM:").map(|k| k * 1024),
        );
    }

    fn received(&self, p: Phase) -> u64 {
        self.received[p as usize].load(Ordering::Acquire)
    }
}

/// The sending half of a client, as the publishing executor sees it.
pub trait Outbound {
    /// Hands one message on; it may only be queued.
    async fn send(&mut self, payload: Bytes) -> Result<(), String>;
    /// Makes everything handed on so far leave (glommio: one write;
    /// async-nats: the tokio thread is woken if it sleeps).
    async fn flush(&mut self) -> Result<(), String>;
}

/// The receiving half, as the receiving executor sees it.
pub trait Inbound {
    /// The next message's payload.
    async fn next(&mut self) -> Result<Bytes, String>;
}

/// The server's client on the executor.
struct Glommio {
    conn: NatsConn,
    subject: Bytes,
}

impl Outbound for Glommio {
    async fn send(&mut self, payload: Bytes) -> Result<(), String> {
        self.conn
            .publish(&self.subject, None, &payload)
            .map_err(|e| e.to_string())
    }

    async fn flush(&mut self) -> Result<(), String> {
        self.conn.flush().await.map_err(|e| e.to_string())
    }
}

impl Inbound for Glommio {
    async fn next(&mut self) -> Result<Bytes, String> {
        self.conn
            .next()
            .await
            .map(|m| m.payload)
            .map_err(|e| e.to_string())
    }
}

/// A glommio executor set up as the server's shards are.
pub fn executor(name: &str) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .io_memory(2 << 20)
        .preempt_timer(Duration::from_millis(50))
}

/// Seconds on CPU clock `clk` (NaN if it is not one, e.g. a thread that
/// has ended).
fn clock_s(clk: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel to fill.
    match unsafe { libc::clock_gettime(clk, &mut ts) } {
        0 => ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9,
        _ => f64::NAN,
    }
}

/// CPU seconds of the calling thread.
fn thread_cpu_s() -> f64 {
    clock_s(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Process CPU and context switches (getrusage).
#[derive(Debug, Clone, Copy)]
struct Usage {
    cpu_s: f64,
    voluntary: i64,
    involuntary: i64,
}

impl Usage {
    fn now() -> Usage {
        // SAFETY: an all-zero rusage is valid for the kernel to fill.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid out pointer.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Usage {
            cpu_s: s(ru.ru_utime) + s(ru.ru_stime),
            voluntary: ru.ru_nvcsw,
            involuntary: ru.ru_nivcsw,
        }
    }
}

/// Readings at the start of a phase.
struct Meter {
    t_ns: u64,
    usage: Usage,
    threads: Vec<(String, f64)>,
    nats_s: Option<f64>,
    rings: u64,
}

/// One measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub phase: &'static str,
    /// Messages sent.
    pub sent: u64,
    /// Messages received (the receiving side counts them).
    pub received: u64,
    /// First send to last receipt.
    pub wall_s: f64,
    pub msgs_per_s: f64,
    /// This process (both nodes' client sides), user + system.
    pub cpu_s: f64,
    /// `cpu_s` per million messages.
    pub cpu_s_per_million: f64,
    /// Per thread, CPU seconds per million messages.
    pub threads_per_million: Vec<(String, f64)>,
    /// Context switches of the process per message.
    pub voluntary_per_msg: f64,
    pub involuntary_per_msg: f64,
    /// Doorbell writes per message (async-nats bridge).
    pub rings_per_msg: f64,
    /// nats-server's CPU seconds over the phase (/proc, 10 ms ticks).
    pub nats_cpu_s: Option<f64>,
    pub nats_cpu_s_per_million: Option<f64>,
    /// Publish-to-receipt latency (filled in from the receiving side).
    pub latency: LatencySummary,
    /// How late the sender was on its schedule (latency phase).
    pub lag: LatencySummary,
    /// CPU the publishing executor spent going to sleep and waking up
    /// for its schedule (latency phase), per million messages: the same
    /// for every client, and no part of one (a shard publishes when it is
    /// awake anyway); counted in `cpu_s` and the publisher's thread.
    pub schedule_s_per_million: f64,
}

impl Meter {
    fn start(sh: &Shared, nats_pid: Option<u32>) -> Meter {
        Meter {
            t_ns: now_ns(),
            usage: Usage::now(),
            threads: sh.thread_cpu(),
            nats_s: nats_pid.and_then(|p| procfs::cpu_seconds(&p.to_string())),
            rings: sh.rings.load(Ordering::Relaxed),
        }
    }

    fn stop(self, sh: &Shared, nats_pid: Option<u32>, phase: Phase, sent: u64) -> PhaseResult {
        let usage = Usage::now();
        let nats_s = nats_pid.and_then(|p| procfs::cpu_seconds(&p.to_string()));
        let received = sh.received(phase);
        let end = sh.last_rx_ns.load(Ordering::Acquire).max(self.t_ns + 1);
        let wall_s = (end - self.t_ns) as f64 / 1e9;
        let per_m = |s: f64| s / received.max(1) as f64 * 1e6;
        let per_msg = |n: i64| n as f64 / received.max(1) as f64;
        let cpu_s = usage.cpu_s - self.usage.cpu_s;
        let threads = sh
            .thread_cpu()
            .into_iter()
            .zip(&self.threads)
            .map(|((name, b), (_, a))| (name, per_m(b - a)))
            .collect();
        let nats_cpu_s = nats_s.zip(self.nats_s).map(|(b, a)| b - a);
        PhaseResult {
            phase: match phase {
                Phase::Saturation => "saturation",
                Phase::Latency => "latency",
                _ => "other",
            },
            sent,
            received,
            wall_s,
            msgs_per_s: received as f64 / wall_s,
            cpu_s,
            cpu_s_per_million: per_m(cpu_s),
            threads_per_million: threads,
            voluntary_per_msg: per_msg(usage.voluntary - self.usage.voluntary),
            involuntary_per_msg: per_msg(usage.involuntary - self.usage.involuntary),
            rings_per_msg: (sh.rings.load(Ordering::Relaxed) - self.rings) as f64
                / received.max(1) as f64,
            nats_cpu_s,
            nats_cpu_s_per_million: nats_cpu_s.map(per_m),
            latency: LatencySummary::default(),
            lag: LatencySummary::default(),
            schedule_s_per_million: 0.0,
        }
    }
}

/// The publishing executor's work: probes, warm-up, the two phases, the
/// stop message.
pub async fn publish_side<O: Outbound>(
    out: &mut O,
    a: &NatsClientArgs,
    sh: &Shared,
    nats_pid: Option<u32>,
) -> Result<Vec<PhaseResult>, String> {
    let mut seq = 0u64;
    let size = a.size;
    let give_up = now_ns() + 10_000_000_000;
    while sh.received(Phase::Probe) == 0 {
        if now_ns() > give_up {
            return Err("no probe came through in 10 s".into());
        }
        seq += 1;
        out.send(payload(Phase::Probe, seq, now_ns(), size)).await?;
        out.flush().await?;
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    saturate(out, a, sh, Phase::Warmup, a.warmup, &mut seq).await?;

    let m = Meter::start(sh, nats_pid);
    saturate(out, a, sh, Phase::Saturation, a.messages, &mut seq).await?;
    let sat = m.stop(sh, nats_pid, Phase::Saturation, a.messages);

    let n = (a.rate * a.duration).round() as u64;
    let mut lag = stats::new_hist();
    let m = Meter::start(sh, nats_pid);
    let start = now_ns() + 1_000_000;
    let mut waiting_s = 0.0;
    for k in 0..n {
        let due = start + (k as f64 * 1e9 / a.rate) as u64;
        let now = now_ns();
        if due > now {
            let before = thread_cpu_s();
            glommio::timer::sleep(Duration::from_nanos(due - now)).await;
            waiting_s += thread_cpu_s() - before;
        }
        stats::record(&mut lag, now_ns().saturating_sub(due));
        seq += 1;
        out.send(payload(Phase::Latency, seq, due, size)).await?;
        out.flush().await?;
    }
    drained(sh, Phase::Latency, n).await;
    let mut lat = m.stop(sh, nats_pid, Phase::Latency, n);
    lat.lag = LatencySummary::of(&lag);
    lat.schedule_s_per_million = waiting_s / lat.received.max(1) as f64 * 1e6;

    sh.sample_status();
    seq += 1;
    out.send(payload(Phase::Stop, seq, now_ns(), size)).await?;
    out.flush().await?;
    Ok(vec![sat, lat])
}

/// Sends `n` messages of `phase` back to back, at most `--window`
/// unreceived, and waits for them to arrive.
async fn saturate<O: Outbound>(
    out: &mut O,
    a: &NatsClientArgs,
    sh: &Shared,
    phase: Phase,
    n: u64,
    seq: &mut u64,
) -> Result<(), String> {
    let batch = a.batch.max(1);
    let mut sent = 0;
    while sent < n {
        if sent - sh.received(phase) >= a.window {
            out.flush().await?;
            while sent - sh.received(phase) >= a.window {
                glommio::timer::sleep(BACKOFF).await;
            }
        }
        *seq += 1;
        sent += 1;
        out.send(payload(phase, *seq, now_ns(), a.size)).await?;
        if sent % batch == 0 {
            out.flush().await?;
        }
    }
    out.flush().await?;
    drained(sh, phase, n).await;
    Ok(())
}

/// Waits (at most [`DRAIN`]) until `n` messages of `phase` have arrived.
async fn drained(sh: &Shared, phase: Phase, n: u64) {
    let give_up = now_ns() + DRAIN.as_nanos() as u64;
    while sh.received(phase) < n && now_ns() < give_up {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

/// The receiving executor's work: counts, checks order, records latency
/// per phase until the stop message.
pub async fn receive_side<I: Inbound>(
    inb: &mut I,
    sh: &Shared,
) -> Result<Vec<Histogram<u64>>, String> {
    let mut hists: Vec<Histogram<u64>> = (0..NR_PHASES).map(|_| stats::new_hist()).collect();
    let mut last_seq = 0;
    loop {
        let p = inb.next().await?;
        let now = now_ns();
        let (Some(phase), Some((seq, at))) = (phase_of(&p), stamps(&p)) else {
            return Err("a payload that is not the loadgen's".into());
        };
        if seq <= last_seq {
            sh.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        last_seq = seq;
        stats::record(&mut hists[phase as usize], now.saturating_sub(at));
        sh.last_rx_ns.store(now, Ordering::Release);
        sh.received[phase as usize].fetch_add(1, Ordering::Release);
        if phase == Phase::Stop {
            sh.done.store(true, Ordering::Release);
            return Ok(hists);
        }
    }
}

/// Publishing and receiving executors with the server's client on each.
fn start_glommio(
    a: &NatsClientArgs,
    sh: &Arc<Shared>,
    nats_pid: Option<u32>,
) -> Result<Sides, String> {
    let addr = SocketAddr::V4(a.nats);
    let subject = Bytes::from(a.subject.clone().into_bytes());
    let (sh2, subject2) = (sh.clone(), subject.clone());
    let rx = executor("lg-shard-sub")
        .spawn(move || async move {
            sh2.register_thread("shard-sub");
            let go = async {
                let conn = NatsConn::connect(addr, "lg-sub", Duration::from_secs(5)).await;
                let mut conn = conn.map_err(|e| e.to_string())?;
                conn.subscribe(&subject2, None, 1)
                    .map_err(|e| e.to_string())?;
                conn.round_trip().await.map_err(|e| e.to_string())?;
                receive_side(
                    &mut Glommio {
                        conn,
                        subject: subject2,
                    },
                    &sh2,
                )
                .await
            };
            go.await.inspect_err(|e| sh2.fail(format!("receiver: {e}")))
        })
        .map_err(|e| e.to_string())?;
    let (sh2, a2) = (sh.clone(), a.clone());
    let tx = executor("lg-shard-pub")
        .spawn(move || async move {
            sh2.register_thread("shard-pub");
            let go = async {
                let conn = NatsConn::connect(addr, "lg-pub", Duration::from_secs(5)).await;
                let conn = conn.map_err(|e| e.to_string())?;
                let mut out = Glommio { conn, subject };
                publish_side(&mut out, &a2, &sh2, nats_pid).await
            };
            go.await
                .inspect_err(|e| sh2.fail(format!("publisher: {e}")))
        })
        .map_err(|e| e.to_string())?;
    Ok(Sides {
        tx,
        rx,
        others: Vec::new(),
    })
}

/// The threads of a run: the two executors and any helper threads.
pub struct Sides {
    pub tx: glommio::ExecutorJoinHandle<Result<Vec<PhaseResult>, String>>,
    pub rx: glommio::ExecutorJoinHandle<Result<Vec<Histogram<u64>>, String>>,
    pub others: Vec<std::thread::JoinHandle<()>>,
}

/// What a run reports.
#[derive(Debug, Serialize)]
struct Report {
    scenario: &'static str,
    client: NatsClient,
    params: NatsClientArgs,
    machine: Machine,
    /// This process's CPUs (taskset).
    cpus: Vec<usize>,
    nats_pid: Option<u32>,
    phases: Vec<PhaseResult>,
    /// Received with a sequence number not above the previous one.
    out_of_order: u64,
    queue_full: u64,
    slow_consumer: u64,
    /// Threads of the process at the end (executors, their helpers, tokio).
    threads: Option<u64>,
    rss_bytes: Option<u64>,
    /// Peak resident set (VmHWM).
    hwm_bytes: Option<u64>,
}

/// Runs the scenario; returns the exit code.
pub fn run(a: &NatsClientArgs) -> i32 {
    if a.size < MIN_SIZE || a.rate <= 0.0 || a.window == 0 {
        eprintln!("realtime-loadgen: nats-client: --size >= {MIN_SIZE}, --rate > 0, --window > 0");
        return EXIT_ERROR;
    }
    let nats_pid = a
        .nats_pid
        .or_else(|| procfs::find_listener_pid(a.nats.port()));
    if nats_pid.is_none() {
        eprintln!("realtime-loadgen: nats-client: no nats-server pid (its CPU goes unreported)");
    }
    let sh = Arc::new(Shared::default());
    let sides = match a.client {
        NatsClient::Glommio => start_glommio(a, &sh, nats_pid),
        #[cfg(feature = "async-nats-bridge")]
        NatsClient::AsyncNats => nats_bridge::start(a, &sh, nats_pid),
        #[cfg(not(feature = "async-nats-bridge"))]
        NatsClient::AsyncNats => Err("built without async-nats: cargo build --release \
             -p realtime-loadgen --features async-nats-bridge (scripts/nats-clients does)"
            .into()),
    };
    let sides = match sides {
        Ok(s) => s,
        Err(e) => {
            eprintln!("realtime-loadgen: nats-client: {e}");
            return EXIT_ERROR;
        }
    };
    let give_up = now_ns() + a.timeout * 1_000_000_000;
    while !sh.done.load(Ordering::Acquire) {
        if let Some(e) = sh.error.lock().unwrap().clone() {
            eprintln!("realtime-loadgen: nats-client: {e}");
            return EXIT_ERROR;
        }
        if now_ns() > give_up {
            eprintln!(
                "realtime-loadgen: nats-client: not done after {} s",
                a.timeout
            );
            return EXIT_ERROR;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (threads, rss, hwm) = *sh.status.lock().unwrap();
    let (phases, hists) = match (sides.tx.join(), sides.rx.join()) {
        (Ok(Ok(p)), Ok(Ok(h))) => (p, h),
        (tx, rx) => {
            eprintln!("realtime-loadgen: nats-client: publisher {tx:?}, receiver {rx:?}");
            return EXIT_ERROR;
        }
    };
    for t in sides.others {
        let _ = t.join();
    }
    let phases = phases
        .into_iter()
        .map(|mut p| {
            let i = match p.phase {
                "saturation" => Phase::Saturation,
                _ => Phase::Latency,
            };
            p.latency = LatencySummary::of(&hists[i as usize]);
            p
        })
        .collect::<Vec<_>>();
    let report = Report {
        scenario: "nats-client",
        client: a.client,
        params: a.clone(),
        machine: Machine::detect(),
        cpus: procfs::affinity(0),
        nats_pid,
        out_of_order: sh.out_of_order.load(Ordering::Relaxed),
        queue_full: sh.queue_full.load(Ordering::Relaxed),
        slow_consumer: sh.slow_consumer.load(Ordering::Relaxed),
        threads,
        rss_bytes: rss,
        hwm_bytes: hwm,
        phases,
    };
    print!("{}", markdown(&report));
    if let Some(path) = &a.out {
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("realtime-loadgen: {}: {e}", path.display());
            return EXIT_ERROR;
        }
    }
    let lost = report.phases.iter().any(|p| p.received != p.sent);
    if lost || report.out_of_order > 0 {
        eprintln!("realtime-loadgen: nats-client: messages lost or out of order");
        return EXIT_FAIL;
    }
    EXIT_PASS
}

/// A short table of the run.
fn markdown(r: &Report) -> String {
    let name = match r.client {
        NatsClient::Glommio => "glommio",
        NatsClient::AsyncNats => "async-nats",
    };
    let mut s = format!(
        "\n## nats-client {name}: {} B payloads\n\n\
         | phase | sent | received | msg/s | client CPU s/M | of which schedule | per thread s/M | nats-server CPU s/M | csw/msg | rings/msg | p50 ms | p99 ms | p99.9 ms |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        r.params.size
    );
    for p in &r.phases {
        let threads = p
            .threads_per_million
            .iter()
            .map(|(n, v)| format!("{n} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        let nats = p
            .nats_cpu_s_per_million
            .map_or("-".into(), |v| format!("{v:.2}"));
        s += &format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {threads} | {nats} | {:.2} | {:.2} | {:.3} | {:.3} | {:.3} |\n",
            p.phase,
            p.sent,
            p.received,
            p.msgs_per_s,
            p.cpu_s_per_million,
            p.schedule_s_per_million,
            p.voluntary_per_msg + p.involuntary_per_msg,
            p.rings_per_msg,
            p.latency.p50_ms,
            p.latency.p99_ms,
            p.latency.p999_ms,
        );
    }
    let mib = |b: Option<u64>| b.map_or("-".into(), |b| format!("{:.1}", b as f64 / 1048576.0));
    s += &format!(
        "\nthreads {}, RSS {} MiB (peak {} MiB), out of order {}, queue full {}, slow consumer {}\n",
        r.threads.map_or("-".into(), |t| t.to_string()),
        mib(r.rss_bytes),
        mib(r.hwm_bytes),
        r.out_of_order,
        r.queue_full,
        r.slow_consumer
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let p = payload(Phase::Latency, 42, 1_234_567, 200);
        assert_eq!(p.len(), 200);
        assert_eq!(phase_of(&p), Some(Phase::Latency));
        assert_eq!(stamps(&p), Some((42, 1_234_567)));
        assert_eq!(phase_of(&[9]), None);
        assert_eq!(stamps(&p[..10]), None);
    }
}
