//! Scenarios and what they share: the resolved common options ([`Env`]),
//! opening and joining connections, handing them to the receivers,
//! recording latencies, and turning samples into a [`Report`].

mod env;

pub mod broadcast;
pub mod connect;
pub mod db_broadcast;
pub mod join_storm;
#[cfg(feature = "async-nats-bridge")]
mod nats_bridge;
pub mod nats_client;
pub mod pg_changes;
mod pg_cost;
mod pg_db;
mod pg_rls;
pub mod presence;
mod recvlogical;
pub mod rest;
pub mod smoke;
mod stepped;
mod tenants;

pub use env::Env;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use realtime::proto::phoenix::Vsn;

use crate::cli::Target;
use crate::conn::{self, Frame, Reader, Socket};
use crate::peers;
use crate::phx::{self, Control, JoinConfig};
use crate::report::{self, Report, StepResult};
use crate::runner::{ExecCtx, Monitor, Sample, Shared, RUN, STOP};
use crate::rx::{Handoff, Role};
use crate::sched::Schedule;
use crate::stats::{self, bump, now_ns, Counters, LatencySummary};

/// Conventional exit codes.
pub const EXIT_PASS: i32 = 0;
/// A threshold was violated (or smoke saw nothing flow).
pub const EXIT_FAIL: i32 = 1;
/// Could not run (bad options, server unreachable, not implemented).
pub const EXIT_ERROR: i32 = 2;

/// Latencies one executor records.
#[derive(Debug, Clone)]
pub struct ExecOut {
    /// Delivery (or join) latency, all steps.
    pub lat: Histogram<u64>,
    /// Per step, by intended send time.
    pub steps: Vec<Histogram<u64>>,
    /// Ack / reply / HTTP response latency.
    pub ack: Histogram<u64>,
    /// Sender lag behind the schedule.
    pub lag: Histogram<u64>,
    /// Clock time of the last event of interest (e.g. the last join reply).
    pub last_ns: u64,
}

impl ExecOut {
    /// Empty histograms for `nr_steps` steps.
    pub fn new(nr_steps: usize) -> ExecOut {
        ExecOut {
            lat: stats::new_hist(),
            steps: (0..nr_steps).map(|_| stats::new_hist()).collect(),
            ack: stats::new_hist(),
            lag: stats::new_hist(),
            last_ns: 0,
        }
    }

    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &ExecOut) {
        let _ = self.lat.add(&o.lat);
        for (a, b) in self.steps.iter_mut().zip(&o.steps) {
            let _ = a.add(b);
        }
        let _ = self.ack.add(&o.ack);
        let _ = self.lag.add(&o.lag);
        self.last_ns = self.last_ns.max(o.last_ns);
    }
}

/// An executor's recorder: latencies bucketed by the schedule step their
/// message was intended in.
pub struct Recorder {
    /// The histograms.
    pub out: ExecOut,
    /// The schedule (None: one bucket).
    pub sched: Option<Schedule>,
    /// Schedule origin once the run began (0 before).
    pub start_ns: u64,
}

/// Shared handle to an executor's recorder.
pub type Rec = Rc<RefCell<Recorder>>;

impl Recorder {
    /// A shared recorder for `sched` (executor tasks).
    pub fn new(sched: Option<Schedule>) -> Rec {
        Rc::new(RefCell::new(Recorder::plain(sched)))
    }

    /// A recorder owned by one thread (receivers).
    pub fn plain(sched: Option<Schedule>) -> Recorder {
        let n = sched.as_ref().map_or(1, |s| s.steps().len());
        Recorder {
            out: ExecOut::new(n),
            sched,
            start_ns: 0,
        }
    }

    /// Records a message intended at `intended` and seen at `now`.
    #[inline]
    pub fn delivery(&mut self, intended: u64, now: u64) {
        let lat = now.saturating_sub(intended);
        stats::record(&mut self.out.lat, lat);
        if intended >= self.start_ns && self.start_ns > 0 {
            let step = self
                .sched
                .as_ref()
                .map_or(0, |s| s.step_at(intended - self.start_ns));
            if let Some(h) = self.out.steps.get_mut(step) {
                stats::record(h, lat);
            }
        }
    }

    /// Takes the histograms out.
    pub fn take(&mut self) -> ExecOut {
        let n = self.out.steps.len();
        std::mem::replace(&mut self.out, ExecOut::new(n))
    }
}

/// Merges executor outputs.
pub fn merge(outs: &[ExecOut]) -> ExecOut {
    let mut all = ExecOut::new(outs.first().map_or(1, |o| o.steps.len()));
    for o in outs {
        all.merge(o);
    }
    all
}

/// A set-up connection.
pub struct Conn {
    /// The socket.
    pub sock: Rc<Socket>,
    /// Its read state.
    pub rd: Reader,
    /// The first `system` message (ok, text) that arrived while joining:
    /// it can share a read with the join reply, so the join must keep it
    /// for whoever waits for it next.
    pub early_system: Option<(bool, String)>,
}

/// Sleeps until setup slot `local_idx` of an executor opening `rate`
/// connections/s from clock time `t0`.
pub async fn pace(t0: u64, local_idx: u64, rate: f64) {
    if rate <= 0.0 {
        return;
    }
    let due = t0 + (local_idx as f64 / rate * 1e9) as u64;
    let now = now_ns();
    if due > now {
        glommio::timer::sleep(Duration::from_nanos(due - now)).await;
    }
}

/// Waits until event `k` of `sched` is due (the run started at `start`)
/// and records how late that finds it; `None` once the schedule is over or
/// the run is stopping.
pub async fn until_due(
    ctx: &ExecCtx,
    sched: &Schedule,
    start: u64,
    k: u64,
    rec: &Rec,
) -> Option<u64> {
    while !ctx.stopping() {
        let due = start + sched.offset_of(k)?;
        let now = now_ns();
        if due > now {
            glommio::timer::sleep(Duration::from_nanos(due - now)).await;
            continue;
        }
        stats::record(&mut rec.borrow_mut().out.lag, now - due);
        return Some(due);
    }
    None
}

/// The end of an executor whose tasks run on their own: notes the run's
/// start, waits for the stop, drops `tasks` and hands back the recording.
pub async fn run_then_take<T>(ctx: &ExecCtx, rec: &Rec, tasks: Vec<T>) -> ExecOut {
    if ctx.wait_phase(RUN).await == RUN {
        rec.borrow_mut().start_ns = ctx.start_ns();
    }
    ctx.wait_stop().await;
    drop(tasks);
    let out = rec.borrow_mut().take();
    out
}

/// Starts the run 300 ms from now, records the monitor over the steps of
/// `sched` plus `drain_s` seconds (a sample at each step boundary), then
/// stops it: `(start, samples over the window, samples at the boundaries)`.
pub fn run_steps(
    mon: &Monitor,
    shared: &Shared,
    sched: &Schedule,
    drain_s: f64,
    name: &str,
) -> (u64, Vec<Sample>, Vec<Sample>) {
    let start = now_ns() + 300_000_000;
    shared.start(start);
    let n = sched.steps().len();
    let marks: Vec<u64> = (1..=n).map(|i| sched.step_start_ns(i)).collect();
    let window_ns = sched.total_ns() + (drain_s * 1e9) as u64;
    let (samples, at_marks) = mon.record(start, window_ns, &marks, name);
    shared.stop();
    (start, samples, at_marks)
}

/// The report parts every stepped run fills alike: connections, the load
/// window, per-step results, RSS per connection, latency and its curve.
/// `samples` are the monitor's over the window, `at_marks` those taken at
/// the step boundaries; `rss` is the server's before and after setup.
#[allow(clippy::too_many_arguments)]
pub fn fill_stepped(
    r: &mut Report,
    sched: &Schedule,
    samples: &[Sample],
    at_marks: Vec<Sample>,
    all: &ExecOut,
    nr_cores: usize,
    rss: (Option<u64>, Option<u64>),
    ready: u64,
) {
    r.connections = ready;
    let (first, last) = (samples[0], *samples.last().unwrap_or(&samples[0]));
    fill_window(r, &first, &last, nr_cores, Some(sched.total_ns()));
    let mut step_marks = vec![first];
    step_marks.extend(at_marks);
    fill_steps(r, sched, &step_marks, all, nr_cores);
    fill_rss(r, rss.0, rss.1, ready);
    r.latency = LatencySummary::of(&all.lat);
    r.latency_curve = stats::percentile_curve(&all.lat);
}

/// Connects (connection number `idx`) and joins every topic in `topics`
/// with `cfg`, waiting for all replies. Counts connects and joins; on
/// failure notes the reason and returns it.
pub async fn open_and_join(
    ctx: &ExecCtx,
    env: &Env,
    vsn: Vsn,
    idx: u64,
    topics: &[String],
    cfg: &JoinConfig,
) -> Result<Conn, String> {
    let c = ctx.counters();
    let mut rd = Reader::default();
    let sock = match conn::ws_connect(&env.ep, vsn, idx, &mut rd, env.connect_timeout).await {
        Ok(s) => s,
        Err(e) => {
            bump(&c.connect_failed, 1);
            let e = e.to_string();
            ctx.shared.reasons.note(e.clone());
            return Err(e);
        }
    };
    bump(&c.connects, 1);
    let mut conn = Conn {
        sock,
        rd,
        early_system: None,
    };
    let joined = match env.target {
        Target::Realtime => join_all(ctx, &mut conn, topics, cfg, env.connect_timeout).await,
        peer => attach_peer(ctx, &mut conn, peer, topics, env.connect_timeout).await,
    };
    if let Err(e) = joined {
        bump(&c.disconnects, 1);
        return Err(e);
    }
    Ok(conn)
}

/// Sends a join per topic (join refs "1", "2", ...) and waits for every
/// reply. A join error is counted and noted, and fails the call.
pub async fn join_all(
    ctx: &ExecCtx,
    conn: &mut Conn,
    topics: &[String],
    cfg: &JoinConfig,
    limit: Duration,
) -> Result<(), String> {
    let c = ctx.counters();
    let vsn = conn.sock.vsn;
    let mut out = Vec::new();
    let mut waiting: HashMap<String, String> = HashMap::new();
    for (i, t) in topics.iter().enumerate() {
        let r = (i + 1).to_string();
        let msg = phx::join(vsn, t, &r, cfg);
        crate::wire::put_frame(
            &mut out,
            realtime::proto::ws::OpCode::Text,
            &msg,
            conn.sock.mask,
        );
        waiting.insert(r, t.clone());
    }
    conn.sock.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut failure = None;
    let early = &mut conn.early_system;
    let wait = async {
        while !waiting.is_empty() {
            let mut on = |f: Frame<'_>| {
                let Frame::Text(t) = f else { return };
                let control = phx::control(vsn, t);
                if let Control::System { ok, message } = &control {
                    early.get_or_insert((*ok, message.to_string()));
                }
                if let Control::Reply {
                    topic,
                    msg_ref: Some(r),
                    ok,
                    response,
                } = control
                {
                    if waiting.get(&r) == Some(&topic) {
                        waiting.remove(&r);
                        if ok {
                            bump(&c.joins_ok, 1);
                        } else {
                            bump(&c.join_failed, 1);
                            let reason = format!("join refused: {response}");
                            ctx.shared.reasons.note(reason.clone());
                            failure.get_or_insert(reason);
                        }
                    }
                }
            };
            if let Err(e) = conn::read_batch(&conn.sock, &mut conn.rd, &mut on).await {
                let e = format!("during join: {e}");
                ctx.shared.reasons.note(e.clone());
                return Err(e);
            }
        }
        Ok(())
    };
    match conn::timeout(limit, wait).await {
        Some(Ok(())) => failure.map_or(Ok(()), Err),
        Some(Err(e)) => Err(e),
        None => {
            ctx.shared.reasons.note("join reply timed out");
            Err("join reply timed out".into())
        }
    }
}

/// The peer counterpart of [`join_all`]: subscribes to every topic (NATS
/// also says `CONNECT`, even with no topics) and waits for the peer to
/// confirm. Counts one join per topic.
async fn attach_peer(
    ctx: &ExecCtx,
    conn: &mut Conn,
    target: Target,
    topics: &[String],
    limit: Duration,
) -> Result<(), String> {
    let (msgs, mut waiting) = peers::attach(target, topics);
    let mut out = Vec::new();
    for (m, binary) in &msgs {
        let op = if *binary {
            realtime::proto::ws::OpCode::Binary
        } else {
            realtime::proto::ws::OpCode::Text
        };
        crate::wire::put_frame(&mut out, op, m, conn.sock.mask);
    }
    conn.sock.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut inbound = peers::Inbound::default();
    let mut failure: Option<String> = None;
    let wait = async {
        while waiting > 0 && failure.is_none() {
            let mut on = |f: Frame<'_>| {
                let r = inbound.feed(target, f, &mut |e| match e {
                    peers::Event::Confirmed => waiting = waiting.saturating_sub(1),
                    peers::Event::Error(why) => {
                        failure.get_or_insert(format!(
                            "{} refused: {}",
                            target.name(),
                            String::from_utf8_lossy(why).trim()
                        ));
                    }
                    peers::Event::Delivery(_) | peers::Event::Ping => {}
                });
                if let Err(e) = r {
                    failure.get_or_insert(e);
                }
            };
            conn::read_batch(&conn.sock, &mut conn.rd, &mut on)
                .await
                .map_err(|e| format!("during subscribe: {e}"))?;
        }
        Ok::<(), String>(())
    };
    let r = match conn::timeout(limit, wait).await {
        Some(Ok(())) => failure.map_or(Ok(()), Err),
        Some(Err(e)) => Err(e),
        None => Err(format!("{} subscribe timed out", target.name())),
    };
    match &r {
        Ok(()) => bump(&ctx.counters().joins_ok, topics.len() as u64),
        Err(e) => {
            bump(&ctx.counters().join_failed, 1);
            ctx.shared.reasons.note(e.clone());
        }
    }
    r
}

/// Notes a connection that ended during the run (not at stop).
pub fn note_disconnect(ctx: &ExecCtx, why: impl std::fmt::Display) {
    note_disconnect_at(&ctx.shared, ctx.counters(), why);
}

/// [`note_disconnect`] for code outside the executors.
pub fn note_disconnect_at(shared: &Shared, c: &Counters, why: impl std::fmt::Display) {
    if shared.phase() != STOP {
        bump(&c.disconnects, 1);
        shared.reasons.note(format!("disconnected: {why}"));
    }
}

/// Counts a control message that signals trouble on a channel.
pub fn note_control(ctx: &ExecCtx, ctl: &Control) {
    note_control_at(&ctx.shared, ctx.counters(), ctl);
}

/// [`note_control`] for code outside the executors.
pub fn note_control_at(shared: &Shared, c: &Counters, ctl: &Control) {
    match ctl {
        Control::Close { topic } | Control::ChannelError { topic } => {
            bump(&c.channel_closed, 1);
            shared
                .reasons
                .note(format!("channel closed by server ({topic})"));
        }
        Control::System { ok: false, message } => {
            shared.reasons.note(format!("system error: {message}"));
        }
        Control::Reply {
            ok: false,
            response,
            ..
        } => {
            bump(&c.push_errors, 1);
            shared.reasons.note(format!("error reply: {response}"));
        }
        _ => {}
    }
}

/// Sockets an executor keeps open while receivers read them.
pub type Held = Rc<RefCell<Vec<Rc<Socket>>>>;

/// Moves a set-up connection's reads to a receiver thread; `held` keeps
/// the socket open until the executor ends (after the receivers stopped).
pub fn hand_off(tx: &std::sync::mpsc::Sender<Handoff>, conn: Conn, role: Role, held: &Held) {
    let Conn { sock, rd, .. } = conn;
    let _ = tx.send(Handoff {
        fd: sock.raw_fd(),
        rd,
        vsn: sock.vsn,
        mask: sock.mask,
        role,
    });
    held.borrow_mut().push(sock);
}

/// Measurement window figures from the samples at its two ends. Rates
/// are per second of `active_ns` (the offered-load period, without the
/// drain at the end) when given, else of the whole window.
pub fn fill_window(
    r: &mut Report,
    a: &Sample,
    b: &Sample,
    nr_cores: usize,
    active_ns: Option<u64>,
) {
    let dt = ((b.t_ns - a.t_ns) as f64 / 1e9).max(1e-9);
    let d = b.tally - a.tally;
    let active = active_ns.map_or(dt, |n| (n as f64 / 1e9).max(1e-9));
    r.duration_s = active;
    r.window = d;
    r.totals = b.tally;
    r.sends_per_sec = d.sends as f64 / active;
    r.deliveries_per_sec = d.deliveries as f64 / active;
    r.server.cpu_s = report::server_cpu(a, b);
    r.server.cpu_s_per_million_deliveries = report::per_million(r.server.cpu_s, d.deliveries);
    r.server.cores_cpu_s = report::server_cores_cpu(a, b);
    r.server.cores_cpu_s_per_million_deliveries =
        report::per_million(r.server.cores_cpu_s, d.deliveries);
    r.server.rss_end_bytes = b.server_rss;
    r.server.nats_cpu_s = report::nats_cpu(a, b);
    r.server.nats_cpu_s_per_million_deliveries =
        report::per_million(r.server.nats_cpu_s, d.deliveries);
    r.loadgen.cpu_s = b.loadgen_cpu_s - a.loadgen_cpu_s;
    r.loadgen.utilization = r.loadgen.cpu_s / (dt * nr_cores.max(1) as f64);
    if r.loadgen.utilization > 0.9 {
        r.warnings.push(format!(
            "loadgen CPU at {:.0}% of its cores: it may have been the bottleneck, so the \
             server figures are lower bounds",
            r.loadgen.utilization * 100.0
        ));
    }
}

/// Per-step figures from the samples at the step boundaries (`marks[0]`
/// at the start, then one at the end of each step).
pub fn fill_steps(
    r: &mut Report,
    sched: &Schedule,
    marks: &[Sample],
    out: &ExecOut,
    nr_cores: usize,
) {
    r.step_curves = sched
        .steps()
        .iter()
        .zip(&out.steps)
        .filter(|(_, h)| !h.is_empty())
        .map(|(st, h)| (format!("{:.0}/s", st.rate), stats::percentile_curve(h)))
        .collect();
    r.steps = sched
        .steps()
        .iter()
        .enumerate()
        .filter_map(|(i, st)| {
            let (a, b) = (marks.get(i)?, marks.get(i + 1)?);
            let dt = ((b.t_ns - a.t_ns) as f64 / 1e9).max(1e-9);
            let d = b.tally - a.tally;
            let cpu = report::server_cpu(a, b);
            Some(StepResult {
                rate: st.rate,
                duration_s: dt,
                sends_per_sec: d.sends as f64 / dt,
                deliveries_per_sec: d.deliveries as f64 / dt,
                latency: out.steps.get(i).map(LatencySummary::of).unwrap_or_default(),
                server_cpu_s: cpu,
                cpu_s_per_million_deliveries: report::per_million(cpu, d.deliveries),
                cores_cpu_s_per_million_deliveries: report::per_million(
                    report::server_cores_cpu(a, b),
                    d.deliveries,
                ),
                nats_cpu_s: report::nats_cpu(a, b),
                loadgen_utilization: (b.loadgen_cpu_s - a.loadgen_cpu_s)
                    / (dt * nr_cores.max(1) as f64),
            })
        })
        .collect();
}

/// RSS per connection from the before/loaded readings.
pub fn fill_rss(r: &mut Report, before: Option<u64>, loaded: Option<u64>, conns: u64) {
    r.server.rss_before_bytes = before;
    r.server.rss_loaded_bytes = loaded;
    if let (Some(b), Some(l)) = (before, loaded) {
        if conns > 0 {
            r.server.rss_per_conn_bytes = Some((l as f64 - b as f64) / conns as f64);
        }
    }
}

/// Checks thresholds, writes the JSON and SVGs, prints the summary;
/// returns the exit code.
pub fn finish(mut r: Report, env: &Env, reasons: &stats::Reasons) -> i32 {
    r.error_reasons = reasons.take();
    r.errors = r.totals.errors();
    r.check(&env.common.thresholds);
    if let Some(path) = &env.common.out {
        match serde_json::to_string_pretty(&r) {
            Ok(j) => {
                if let Err(e) = std::fs::write(path, j + "\n") {
                    eprintln!("realtime-loadgen: writing {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("realtime-loadgen: encoding the result: {e}"),
        }
    }
    if let Some(dir) = &env.common.svg_dir {
        if let Err(e) = r.write_svgs(dir) {
            eprintln!("realtime-loadgen: writing SVGs to {}: {e}", dir.display());
        }
    }
    print!("{}", r.markdown());
    let failures = r.failures();
    for f in &failures {
        eprintln!("{f}");
    }
    if failures.is_empty() {
        EXIT_PASS
    } else {
        EXIT_FAIL
    }
}

/// Topic name `realtime:lg-<i>`.
pub fn topic(i: u64) -> String {
    format!("realtime:lg-{i}")
}
