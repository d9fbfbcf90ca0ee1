//! `presence`: C channels with M members each (one connection per member,
//! presence enabled with key `m<i>`). A driver per executor alternates
//! track and untrack across its members at an open-loop rate; every member
//! of the channel receives each `presence_diff`. A track's meta carries its
//! intended time, so the diff's `joins` give the latency.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use glommio::spawn_local;
use realtime::proto::ws::OpCode;

use super::{
    fill_rss, fill_steps, fill_window, finish, hand_off, merge, note_disconnect, open_and_join,
    pace, topic, Env, ExecOut, Held, Rec, Recorder, EXIT_ERROR,
};
use crate::cli::PresenceArgs;
use crate::conn::{Heartbeats, Socket};
use crate::phx::{self, TS_DIGITS};
use crate::report;
use crate::runner::{self, ExecCtx, Monitor, Shared, RUN};
use crate::rx::{Handoff, Receivers, Role};
use crate::sched::{parse_rates, Schedule};
use crate::stats::{self, bump, now_ns, LatencySummary};
use crate::wire;

/// The ref of every presence push.
pub const PRESENCE_REF: &str = "p";

/// Runs the scenario; returns the exit code.
pub fn run(a: &PresenceArgs) -> i32 {
    let rates = match parse_rates(&a.rate) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    let sched = Schedule::stepped(&rates, (a.duration * 1e9) as u64);
    let total = a.channels.max(1) * a.members.max(1);
    let env = match Env::resolve(&a.common, total) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    let shared = Shared::new(env.cores.len());
    let mon = Monitor::new(shared.clone(), env.server_pid, !env.common.quiet);
    let before = mon.sample();
    let receivers = match Receivers::start(&env.cores, &shared, Some(sched.clone())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("realtime-loadgen: starting receivers: {e}");
            return EXIT_ERROR;
        }
    };
    let txs = receivers.senders();
    let handles = {
        let (env, a, sched) = (env.clone(), Arc::new(a.clone()), sched.clone());
        match runner::spawn(&env.cores.clone(), &shared, move |ctx| {
            let tx = txs[ctx.id % txs.len()].clone();
            exec(ctx, env.clone(), a.clone(), sched.clone(), total, tx)
        }) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("realtime-loadgen: starting executors: {e}");
                return EXIT_ERROR;
            }
        }
    };
    mon.wait_ready(total, Duration::from_secs(env.common.setup_timeout));
    let ready = shared.ready.load(Ordering::Acquire);
    if ready == 0 {
        shared.stop();
        let _ = runner::join(handles);
        let _ = receivers.join();
        mon.finish();
        eprintln!(
            "realtime-loadgen: no member could join: {:?}",
            shared.reasons.take()
        );
        return EXIT_ERROR;
    }
    let loaded = mon.sample();
    let start = now_ns() + 300_000_000;
    shared.start(start);
    let n = sched.steps().len();
    let marks: Vec<u64> = (1..=n).map(|i| sched.step_start_ns(i)).collect();
    let window_ns = sched.total_ns() + (a.drain * 1e9) as u64;
    let (samples, at_marks) = mon.record(start, window_ns, &marks, "presence");
    shared.stop();
    let outs = match runner::join(handles).and_then(|mut o| {
        o.extend(receivers.join()?);
        Ok(o)
    }) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    mon.finish();
    let all = merge(&outs);
    let mut r = env.report("presence", serde_json::to_value(a).unwrap_or_default());
    r.connections = ready;
    let (first, last) = (samples[0], *samples.last().unwrap_or(&samples[0]));
    fill_window(
        &mut r,
        &first,
        &last,
        env.cores.len(),
        Some(sched.total_ns()),
    );
    let mut step_marks = vec![first];
    step_marks.extend(at_marks);
    fill_steps(&mut r, &sched, &step_marks, &all, env.cores.len());
    fill_rss(&mut r, before.server_rss, loaded.server_rss, ready);
    r.latency = LatencySummary::of(&all.lat);
    r.latency_curve = stats::percentile_curve(&all.lat);
    r.ack_latency = None;
    r.send_lag = Some(LatencySummary::of(&all.lag));
    let expected = r.window.sends * a.members.max(1);
    r.expected_deliveries = Some(expected);
    r.delivery_ratio = (expected > 0).then(|| r.window.deliveries as f64 / expected as f64);
    r.timeline = report::timeline(&samples, start);
    r.warnings.push(
        "deliveries are presence_diff messages (tracks and untracks); latency is timed on \
         tracks only. The server limits presence per channel (CLIENT_PRESENCE_MAX_CALLS per \
         CLIENT_PRESENCE_WINDOW_MS) and per tenant (TENANT_MAX_PRESENCE_EVENTS_PER_SECOND)"
            .into(),
    );
    finish(r, &env, &shared.reasons)
}

/// A member the driver can churn.
struct Member {
    /// Its socket.
    sock: Rc<Socket>,
    /// The masked track frame with a zero timestamp.
    track: Vec<u8>,
    /// Offset of the timestamp digits in `track`.
    ts_in_frame: usize,
    /// Offset of the digits in the track message (mask phase).
    ts_in_msg: usize,
    /// The masked untrack frame.
    untrack: Vec<u8>,
    /// Currently tracked.
    tracked: Cell<bool>,
}

/// One executor: its members and one churn driver.
async fn exec(
    ctx: ExecCtx,
    env: Arc<Env>,
    a: Arc<PresenceArgs>,
    sched: Schedule,
    total: u64,
    tx: Sender<Handoff>,
) -> ExecOut {
    let rec = Recorder::new(Some(sched.clone()));
    let hb = Rc::new(Heartbeats::default());
    let held = Held::default();
    let members: Rc<std::cell::RefCell<Vec<Rc<Member>>>> = Rc::default();
    let mut tasks = vec![spawn_local(hb.clone().run(env.heartbeat))];
    let t0 = now_ns();
    let rate = env.common.connect_rate / ctx.nr as f64;
    let nr = ctx.nr as u64;
    let channels = a.channels.max(1);
    for (local, i) in (0..total).filter(|i| i % nr == ctx.id as u64).enumerate() {
        let (ctx, env, a, hb, members, tx, held) = (
            ctx.clone(),
            env.clone(),
            a.clone(),
            hb.clone(),
            members.clone(),
            tx.clone(),
            held.clone(),
        );
        tasks.push(spawn_local(async move {
            pace(t0, local as u64, rate).await;
            let t = topic(i % channels);
            let mut cfg = env.join_config();
            cfg.presence_key = Some(format!("m{i}"));
            let Ok(conn) =
                open_and_join(&ctx, &env, a.vsn, i, std::slice::from_ref(&t), &cfg).await
            else {
                ctx.shared.setup_failed.fetch_add(1, Ordering::AcqRel);
                return;
            };
            let sock = conn.sock.clone();
            let (payload, at) = phx::ts_payload(a.payload_size);
            let tm = phx::presence_track(a.vsn, &t, "1", PRESENCE_REF, &payload, at);
            let mut track = Vec::new();
            let ts_in_frame =
                wire::put_frame(&mut track, OpCode::Text, &tm.bytes, sock.mask) + tm.ts_at;
            let mut untrack = Vec::new();
            let um = phx::presence_untrack(a.vsn, &t, "1", PRESENCE_REF);
            wire::put_frame(&mut untrack, OpCode::Text, &um, sock.mask);
            members.borrow_mut().push(Rc::new(Member {
                sock: sock.clone(),
                track,
                ts_in_frame,
                ts_in_msg: tm.ts_at,
                untrack,
                tracked: Cell::new(false),
            }));
            ctx.shared.ready.fetch_add(1, Ordering::AcqRel);
            hb.add(&sock);
            hand_off(&tx, conn, Role::Presence, &held);
        }));
    }
    if ctx.wait_phase(RUN).await == RUN {
        let start = ctx.start_ns();
        rec.borrow_mut().start_ns = start;
        let mine = members.borrow().clone();
        if !mine.is_empty() {
            // This executor's share of the offered rate.
            let share = mine.len() as f64 / total as f64;
            let rates: Vec<f64> = sched.steps().iter().map(|s| s.rate * share).collect();
            let step_ns = sched.steps().first().map_or(0, |s| s.duration_ns);
            let my = Schedule::stepped(&rates, step_ns);
            tasks.push(spawn_local(drive(
                ctx.clone(),
                my,
                start,
                mine,
                rec.clone(),
            )));
        }
    }
    ctx.wait_stop().await;
    drop(tasks);
    let out = rec.borrow_mut().take();
    out
}

/// Alternates track/untrack over `members` on schedule `sched`.
async fn drive(ctx: ExecCtx, sched: Schedule, start: u64, members: Vec<Rc<Member>>, rec: Rec) {
    let c = ctx.counters();
    let mut k = 0u64;
    let mut buf = Vec::new();
    while !ctx.stopping() {
        let Some(off) = sched.offset_of(k) else { break };
        let due = start + off;
        let now = now_ns();
        if due > now {
            glommio::timer::sleep(Duration::from_nanos(due - now)).await;
            continue;
        }
        stats::record(&mut rec.borrow_mut().out.lag, now - due);
        let m = &members[(k % members.len() as u64) as usize];
        k += 1;
        let frame: &[u8] = if m.tracked.get() {
            &m.untrack
        } else {
            buf.clear();
            buf.extend_from_slice(&m.track);
            let mut d = [0u8; TS_DIGITS];
            phx::write_ts(&mut d, due);
            let at = m.ts_in_frame;
            m.sock
                .mask
                .patch(&mut buf[at..at + TS_DIGITS], m.ts_in_msg, &d);
            &buf
        };
        m.tracked.set(!m.tracked.get());
        if let Err(e) = m.sock.write_all(frame).await {
            note_disconnect(&ctx, format!("presence write: {e}"));
            continue;
        }
        bump(&c.sends, 1);
    }
}
