//! The cross-shard hop: `Arc` messages from one glommio executor to another
//! on a second thread (pinned to the first two cores this process may use,
//! as the shards are), over the queue the server uses today and the one it
//! could use instead:
//!
//! - `mesh`: glommio's channel mesh (`MeshBuilder::full(2, 1024)`), as
//!   `realtime_shards::PoolBuilder` builds it. The sender calls `try_send_to`
//!   and falls back to `send_to(..).await` when the queue is full (what the
//!   outbox's drain task does); the receiver awaits `recv()`. A receiver with
//!   nothing to do registers its waker with its reactor; a sender that
//!   pushes rings the receiving executor's eventfd only when that executor
//!   has gone to sleep (glommio's sleep notifier).
//! - `crossbeam`: `crossbeam_channel::bounded(1024)`. crossbeam knows
//!   nothing of glommio, and glommio's notifier is private, so each
//!   direction gets the same protocol built from public parts: a
//!   [`Bell`], an `AtomicBool` "sleeping" flag plus a Unix socket pair
//!   whose read end the waiting executor reads through glommio's reactor.
//!   A receiver that finds the queue empty sets the flag, re-checks the
//!   queue, and only then awaits a byte; a sender, after each push, checks
//!   the flag (one SeqCst fence and a load) and writes one byte only when
//!   it was set. A full queue is waited for the same way with a second bell
//!   that the receiver rings after each pop. So neither side spins and the
//!   sleeping side costs a syscall only when it really slept: the same
//!   shape as glommio's notifier, which is why the comparison is fair. A
//!   receiver that polled with a zero timer instead would never let its
//!   core sleep; that is not a design the server could ship.
//!
//! Both carry the same message: a stand-in for the server's
//! `realtime::interest::Forward` (two `Arc<str>`, two `Option<Bytes>`, an
//! id, flags) plus the time it was sent, allocated per message by the
//! sender and dropped by the receiver, as the server does.
//!
//! Two groups:
//! - `hop/burst/*`: bursts of [`BURST`] messages, the receiver acking each
//!   burst; criterion's time is the sender's, from its first send to the
//!   ack (throughput in messages/s). Notes: CPU time per message on each
//!   thread (`getrusage(RUSAGE_THREAD)`, user + system, the machine is
//!   shared so wall time overstates), how often the sender found the queue
//!   full and the receiver found it empty, per burst.
//! - `hop/idle_one_way/*`: one message at a time, each after both executors
//!   slept [`IDLE_GAP`]; criterion's time is the one-way latency the
//!   receiver measures (send stamp to receipt, so it includes waking the
//!   receiver). The receiver sends the message back; notes give the
//!   round trip, percentiles of the one-way time, and CPU per ping.
//!
//! Both groups set their own sampling (flat, 10 samples, short times):
//! the idle group sleeps far longer than it measures, and each sample
//! starts two fresh executors.

use std::future::Future;
use std::io::Write;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::pin;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use futures_lite::AsyncReadExt;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::channels::shared_channel::ConnectedReceiver;
use glommio::{GlommioError, LocalExecutorBuilder, Placement, ResourceType};
use realtime_bench::{CountingAlloc, Report};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Slots per direction, as `PoolBuilder::mesh_capacity` defaults to.
const CAPACITY: usize = 1024;
/// Messages per burst in `hop/burst`.
const BURST: usize = 100_000;
/// How long both executors sleep before each idle ping: long enough for
/// the receiver to have parked in the kernel.
const IDLE_GAP: Duration = Duration::from_micros(200);

/// A stand-in for `realtime::interest::Forward`, same fields and sizes.
struct Forward {
    tenant: Arc<str>,
    topic: Arc<str>,
    private: bool,
    v1: Option<Bytes>,
    v2: Option<Bytes>,
    class: u8,
    kind0: bool,
    id: Option<Box<str>>,
    /// When the sender made it (read by the idle group).
    sent: Instant,
}

type Msg = Arc<Forward>;

/// A fresh message sharing `proto`'s strings and frame, as the publisher
/// makes one per broadcast from the frames its local subscribers got.
fn forward(proto: &Forward) -> Msg {
    Arc::new(Forward {
        tenant: proto.tenant.clone(),
        topic: proto.topic.clone(),
        private: proto.private,
        v1: proto.v1.clone(),
        v2: proto.v2.clone(),
        class: proto.class,
        kind0: proto.kind0,
        id: proto.id.clone(),
        sent: Instant::now(),
    })
}

fn proto() -> Forward {
    Forward {
        tenant: Arc::from("realtime-dev"),
        topic: Arc::from("realtime:room-1"),
        private: false,
        v1: None,
        v2: Some(Bytes::from(vec![b'x'; 160])),
        class: 0,
        kind0: false,
        id: None,
        sent: Instant::now(),
    }
}

/// User and system CPU time of the calling thread.
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    user: Duration,
    sys: Duration,
}

impl Cpu {
    fn now() -> Cpu {
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid rusage for the kernel to fill.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
        assert_eq!(rc, 0, "getrusage(RUSAGE_THREAD)");
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Cpu {
            user: tv(ru.ru_utime),
            sys: tv(ru.ru_stime),
        }
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            user: self.user - before.user,
            sys: self.sys - before.sys,
        }
    }

    fn add(&mut self, other: Cpu) {
        self.user += other.user;
        self.sys += other.sys;
    }
}

/// A doorbell for one waiting side: the flag says it sleeps, the socket
/// wakes it.
struct Bell {
    sleeping: AtomicBool,
    /// Write end (non-blocking), used by the other thread.
    ring: StdUnixStream,
}

impl Bell {
    /// A bell and the read end its waiter will own.
    fn new() -> (Arc<Bell>, OwnedFd) {
        let (ring, wait) = StdUnixStream::pair().expect("socketpair");
        ring.set_nonblocking(true).expect("non-blocking");
        wait.set_nonblocking(true).expect("non-blocking");
        let bell = Bell {
            sleeping: AtomicBool::new(false),
            ring,
        };
        (Arc::new(bell), OwnedFd::from(wait))
    }

    /// Called after making the waiter's condition true: wakes it if it
    /// sleeps. A full socket buffer already holds a wake-up, so a failed
    /// write loses nothing.
    fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::Relaxed) {
            let _ = (&self.ring).write(&[1]);
        }
    }
}

/// The waiting side of a [`Bell`], inside its executor.
struct Waiter {
    bell: Arc<Bell>,
    wait: glommio::net::UnixStream,
}

impl Waiter {
    fn new((bell, fd): (Arc<Bell>, OwnedFd)) -> Waiter {
        // SAFETY: the descriptor is an open, owned socket handed over here.
        let wait = unsafe { glommio::net::UnixStream::from_raw_fd(fd.into_raw_fd()) };
        Waiter { bell, wait }
    }

    /// Sleeps until rung, unless `ready` already holds once the flag is up.
    /// May return early (a stale byte); callers re-check.
    async fn sleep_unless(&mut self, ready: impl Fn() -> bool) {
        self.bell.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !ready() {
            let mut buf = [0u8; 64];
            let _ = self.wait.read(&mut buf).await;
        }
        self.bell.sleeping.store(false, Ordering::Relaxed);
    }
}

/// What one executor builds its end of the link from.
enum Seed {
    Mesh(MeshBuilder<Msg, Full>),
    Crossbeam {
        tx: Sender<Msg>,
        rx: Receiver<Msg>,
        /// Rung after each push (the peer waits for data on it).
        data_out: Arc<Bell>,
        /// Rung after each pop (the peer waits for room on it).
        room_out: Arc<Bell>,
        data_in: (Arc<Bell>, OwnedFd),
        room_in: (Arc<Bell>, OwnedFd),
    },
}

/// One executor's end of the link, both directions.
// One per executor, built once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum End {
    Mesh {
        tx: Senders<Msg>,
        rx: ConnectedReceiver<Msg>,
        peer: usize,
    },
    Crossbeam {
        tx: Sender<Msg>,
        rx: Receiver<Msg>,
        data_out: Arc<Bell>,
        room_out: Arc<Bell>,
        data_in: Waiter,
        room_in: Waiter,
    },
}

/// Polls `fut`, counting in `waits` whether its first poll was pending.
async fn counted<T>(fut: impl Future<Output = T>, waits: &mut u64) -> T {
    let mut fut = pin!(fut);
    let mut first = true;
    std::future::poll_fn(|cx| {
        let p = fut.as_mut().poll(cx);
        if first && p.is_pending() {
            *waits += 1;
        }
        first = false;
        p
    })
    .await
}

impl Seed {
    /// Joins the link.
    async fn connect(self) -> End {
        match self {
            Seed::Mesh(mesh) => {
                let (tx, mut rx) = mesh.join().await.expect("joining the mesh");
                // The mesh numbers peers in join order; the roles follow
                // the executor (and so the core), not that order.
                let (peer, rx) = rx.streams().pop().expect("one peer");
                End::Mesh { tx, rx, peer }
            }
            Seed::Crossbeam {
                tx,
                rx,
                data_out,
                room_out,
                data_in,
                room_in,
            } => End::Crossbeam {
                tx,
                rx,
                data_out,
                room_out,
                data_in: Waiter::new(data_in),
                room_in: Waiter::new(room_in),
            },
        }
    }
}

impl End {
    /// Sends `m`, waiting for room if the queue is full; counts in `fulls`
    /// whether it was.
    async fn send(&mut self, m: Msg, fulls: &mut u64) {
        match self {
            End::Mesh { tx, peer, .. } => match tx.try_send_to(*peer, m) {
                Ok(()) => {}
                Err(GlommioError::WouldBlock(ResourceType::Channel(m))) => {
                    *fulls += 1;
                    if tx.send_to(*peer, m).await.is_err() {
                        panic!("mesh peer gone");
                    }
                }
                Err(e) => panic!("mesh send: {e}"),
            },
            End::Crossbeam {
                tx,
                data_out,
                room_in,
                ..
            } => {
                let mut m = m;
                loop {
                    match tx.try_send(m) {
                        Ok(()) => return data_out.ring(),
                        Err(TrySendError::Full(back)) => {
                            *fulls += 1;
                            m = back;
                            room_in.sleep_unless(|| !tx.is_full()).await;
                        }
                        Err(TrySendError::Disconnected(_)) => panic!("crossbeam peer gone"),
                    }
                }
            }
        }
    }

    /// Receives one message; counts in `waits` whether none was waiting.
    async fn recv(&mut self, waits: &mut u64) -> Msg {
        match self {
            End::Mesh { rx, .. } => counted(rx.recv(), waits).await.expect("mesh peer gone"),
            End::Crossbeam {
                rx,
                room_out,
                data_in,
                ..
            } => {
                let mut waited = false;
                loop {
                    match rx.try_recv() {
                        Ok(m) => {
                            room_out.ring();
                            *waits += u64::from(waited);
                            return m;
                        }
                        Err(TryRecvError::Empty) => {
                            waited = true;
                            data_in.sleep_unless(|| !rx.is_empty()).await;
                        }
                        Err(TryRecvError::Disconnected) => panic!("crossbeam peer gone"),
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mesh,
    Crossbeam,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mesh => "mesh",
            Kind::Crossbeam => "crossbeam",
        }
    }

    /// The two executors' seeds.
    fn seeds(self) -> [Seed; 2] {
        match self {
            Kind::Mesh => {
                let mesh = MeshBuilder::full(2, CAPACITY);
                [Seed::Mesh(mesh.clone()), Seed::Mesh(mesh)]
            }
            Kind::Crossbeam => {
                let (tx01, rx01) = crossbeam_channel::bounded(CAPACITY);
                let (tx10, rx10) = crossbeam_channel::bounded(CAPACITY);
                // data[i]: role i waits for data; room[i]: role i waits for room.
                let data = [Bell::new(), Bell::new()];
                let room = [Bell::new(), Bell::new()];
                let [d0, d1] = data;
                let [r0, r1] = room;
                let s0 = Seed::Crossbeam {
                    tx: tx01,
                    rx: rx10,
                    data_out: d1.0.clone(),
                    room_out: r1.0.clone(),
                    data_in: (d0.0.clone(), d0.1),
                    room_in: (r0.0.clone(), r0.1),
                };
                let s1 = Seed::Crossbeam {
                    tx: tx10,
                    rx: rx01,
                    data_out: d0.0,
                    room_out: r0.0,
                    data_in: d1,
                    room_in: r1,
                };
                [s0, s1]
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Job {
    /// `n` bursts of `BURST` messages from role 0 to role 1, each acked.
    Bursts(u64),
    /// `n` pings from role 0, each after `IDLE_GAP`, echoed by role 1.
    Pings(u64),
}

/// What one side measured.
#[derive(Debug, Default)]
struct Side {
    cpu: Cpu,
    /// Role 0: time of the bursts, or of the round trips.
    timed: Duration,
    /// Role 1 in `Pings`: each one-way time.
    one_way: Vec<Duration>,
    /// Sends that found the queue full.
    fulls: u64,
    /// Receives that found the queue empty.
    waits: u64,
}

async fn side(role: usize, mut end: End, job: Job, start: Arc<Barrier>) -> Side {
    let proto = proto();
    let mut s = Side::default();
    let (mut fulls, mut waits) = (0, 0);
    start.wait();
    let cpu = Cpu::now();
    match (job, role) {
        (Job::Bursts(n), 0) => {
            for _ in 0..n {
                let t0 = Instant::now();
                for _ in 0..BURST {
                    end.send(forward(&proto), &mut fulls).await;
                }
                drop(end.recv(&mut waits).await);
                s.timed += t0.elapsed();
            }
        }
        (Job::Bursts(n), _) => {
            for _ in 0..n {
                for _ in 0..BURST {
                    drop(end.recv(&mut waits).await);
                }
                end.send(forward(&proto), &mut fulls).await;
            }
        }
        (Job::Pings(n), 0) => {
            for _ in 0..n {
                glommio::timer::sleep(IDLE_GAP).await;
                let t0 = Instant::now();
                end.send(forward(&proto), &mut fulls).await;
                drop(end.recv(&mut waits).await);
                s.timed += t0.elapsed();
            }
        }
        (Job::Pings(n), _) => {
            s.one_way.reserve(n as usize);
            for _ in 0..n {
                let m = end.recv(&mut waits).await;
                s.one_way.push(m.sent.elapsed());
                end.send(m, &mut fulls).await;
            }
        }
    }
    s.cpu = Cpu::now().since(cpu);
    (s.fulls, s.waits) = (fulls, waits);
    s
}

/// Runs `job` over a fresh link of `kind` between two executors pinned to
/// the first two allowed cores (role `i` on the `i`-th); returns role 0's
/// and role 1's measures.
fn run(kind: Kind, job: Job) -> [Side; 2] {
    let cpus = realtime_shards::pinnable_cpus();
    let start = Arc::new(Barrier::new(2));
    let handles: Vec<_> = kind
        .seeds()
        .into_iter()
        .enumerate()
        .map(|(i, seed)| {
            let placement = match cpus.len() {
                0 | 1 => Placement::Unbound,
                n => Placement::Fixed(cpus[i % n]),
            };
            let start = start.clone();
            LocalExecutorBuilder::new(placement)
                .name(&format!("hop-{i}"))
                .io_memory(2 << 20)
                .spawn(move || async move {
                    let end = seed.connect().await;
                    side(i, end, job, start).await
                })
                .expect("spawning an executor")
        })
        .collect();
    let sides: Vec<Side> = handles
        .into_iter()
        .map(|h| h.join().expect("executor"))
        .collect();
    sides.try_into().expect("two sides")
}

/// Sums over every run of one bench id.
#[derive(Default)]
struct Totals {
    nr_units: u64,
    cpu: [Cpu; 2],
    timed: Duration,
    fulls: u64,
    waits: u64,
    one_way: Vec<Duration>,
}

impl Totals {
    fn add(&mut self, units: u64, [a, b]: [Side; 2]) {
        self.nr_units += units;
        self.cpu[0].add(a.cpu);
        self.cpu[1].add(b.cpu);
        self.timed += a.timed;
        self.fulls += a.fulls;
        self.waits += b.waits;
        self.one_way.extend(b.one_way);
    }

    /// CPU notes per unit (message or ping), in ns.
    fn note_cpu(&self, report: &mut Report, id: &str, unit: &str) {
        let per = |d: Duration| d.as_nanos() as f64 / self.nr_units.max(1) as f64;
        for (side, cpu) in ["sender", "receiver"].iter().zip(self.cpu) {
            report.note(
                id,
                &format!("{side}_cpu_ns_per_{unit}"),
                per(cpu.user + cpu.sys),
            );
            report.note(id, &format!("{side}_sys_ns_per_{unit}"), per(cpu.sys));
        }
    }
}

/// Benches `kind` under `g`: each criterion call runs `job(n)` on fresh
/// executors and reports `timed` of its sides; returns the sums, with
/// `units` per iteration.
fn measure(
    g: &mut BenchmarkGroup<'_, WallTime>,
    kind: Kind,
    job: fn(u64) -> Job,
    units: u64,
    timed: fn(&[Side; 2]) -> Duration,
) -> Totals {
    let mut t = Totals::default();
    g.bench_function(kind.name(), |b| {
        b.iter_custom(|n| {
            let sides = run(kind, job(n));
            let d = timed(&sides);
            t.add(n * units, sides);
            d
        })
    });
    t
}

fn bench_burst(c: &mut Criterion, report: &mut Report) {
    let mut g = c.benchmark_group("hop/burst");
    g.throughput(Throughput::Elements(BURST as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for kind in [Kind::Mesh, Kind::Crossbeam] {
        let t = measure(&mut g, kind, Job::Bursts, BURST as u64, |[a, _]| a.timed);
        if t.nr_units == 0 {
            continue; // filtered out
        }
        let id = format!("hop/burst/{}", kind.name());
        t.note_cpu(report, &id, "msg");
        let bursts = (t.nr_units / BURST as u64).max(1) as f64;
        report.note(&id, "sender_full_per_burst", t.fulls as f64 / bursts);
        report.note(&id, "receiver_empty_per_burst", t.waits as f64 / bursts);
        eprintln!(
            "{id}: cpu sender {:?} receiver {:?}; full {} empty {} over {} msgs",
            t.cpu[0].user + t.cpu[0].sys,
            t.cpu[1].user + t.cpu[1].sys,
            t.fulls,
            t.waits,
            t.nr_units
        );
    }
    g.finish();
}

fn bench_idle(c: &mut Criterion, report: &mut Report) {
    let mut g = c.benchmark_group("hop/idle_one_way");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_millis(1500));
    for kind in [Kind::Mesh, Kind::Crossbeam] {
        let mut t = measure(&mut g, kind, Job::Pings, 1, |[_, b]| b.one_way.iter().sum());
        if t.one_way.is_empty() {
            continue; // filtered out
        }
        let id = format!("hop/idle_one_way/{}", kind.name());
        t.note_cpu(report, &id, "ping");
        let n = t.one_way.len();
        report.note(&id, "rtt_us", t.timed.as_secs_f64() * 1e6 / n as f64);
        t.one_way.sort_unstable();
        let pct = |q: f64| t.one_way[((n as f64 * q) as usize).min(n - 1)];
        for (name, q) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)] {
            let us = pct(q).as_secs_f64() * 1e6;
            report.note(&id, &format!("one_way_{name}_us"), us);
        }
        report.note(&id, "receiver_woken_share", t.waits as f64 / n as f64);
        let slow = t.one_way.iter().filter(|d| **d > Duration::from_millis(1));
        let slow = slow.count() as f64 / n as f64;
        report.note(&id, "over_1ms_share", slow);
        eprintln!(
            "{id}: {n} pings, one-way p50 {:?} p99 {:?}, over 1 ms {:.2} %, cpu/ping sender {:?} receiver {:?}",
            pct(0.5),
            pct(0.99),
            slow * 100.0,
            (t.cpu[0].user + t.cpu[0].sys) / n as u32,
            (t.cpu[1].user + t.cpu[1].sys) / n as u32,
        );
    }
    g.finish();
}

fn main() {
    let mut report = Report::start("hop");
    let mut c = realtime_bench::criterion();
    bench_burst(&mut c, &mut report);
    bench_idle(&mut c, &mut report);
    report.finish();
    c.final_summary();
}
