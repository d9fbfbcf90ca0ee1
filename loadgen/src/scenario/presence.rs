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

use glommio::spawn_local;
use realtime::proto::ws::OpCode;

use super::{
    finish, hand_off, note_disconnect, open_and_join, pace, topic, until_due, Env, ExecOut, Held,
    Rec, Recorder,
};
use crate::cli::PresenceArgs;
use crate::conn::{Heartbeats, Socket};
use crate::phx::{self, TS_DIGITS};
use crate::runner::{ExecCtx, RUN};
use crate::rx::{Handoff, Role};
use crate::sched::Schedule;
use crate::stats::{bump, now_ns};
use crate::wire;

use super::stepped::{self, Stepped};

/// The ref of every presence push.
pub const PRESENCE_REF: &str = "p";

/// Runs the scenario; returns the exit code.
pub fn run(a: &PresenceArgs) -> i32 {
    let total = a.channels.max(1) * a.members.max(1);
    let plan = stepped::Plan {
        scenario: "presence",
        common: &a.common,
        params: serde_json::to_value(a).unwrap_or_default(),
        rates: &a.rate,
        duration: a.duration,
        drain: a.drain,
        nr_conns: total,
        refuse_if_none_ready: Some("member"),
    };
    let args = Arc::new(a.clone());
    let run = stepped::run(plan, move |ctx, env, sched, tx| {
        exec(ctx, env, args.clone(), sched, total, tx)
    });
    let Stepped {
        env,
        shared,
        mut report,
        ..
    } = match run {
        Ok(s) => s,
        Err(code) => return code,
    };
    let r = &mut report;
    r.ack_latency = None;
    let expected = r.window.sends * a.members.max(1);
    r.expected_deliveries = Some(expected);
    r.delivery_ratio = (expected > 0).then(|| r.window.deliveries as f64 / expected as f64);
    r.warnings.push(
        "deliveries are presence_diff messages (tracks and untracks); latency is timed on \
         tracks only. The server limits presence per channel (CLIENT_PRESENCE_MAX_CALLS per \
         CLIENT_PRESENCE_WINDOW_MS) and per tenant (TENANT_MAX_PRESENCE_EVENTS_PER_SECOND)"
            .into(),
    );
    finish(report, &env, &shared.reasons)
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
    while let Some(due) = until_due(&ctx, &sched, start, k, &rec).await {
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
