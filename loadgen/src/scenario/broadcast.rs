//! `broadcast`: P publishers at an open-loop rate, S subscribers on each of
//! T topics. Each message carries its intended send time; subscribers
//! record delivery latency from it into per-step HDR histograms.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use glommio::spawn_local;
use realtime::proto::ws::OpCode;

use super::{
    fill_stepped, finish, hand_off, merge, note_control, note_disconnect, open_and_join, pace,
    run_steps, run_then_take, topic, Conn, Env, ExecOut, Held, Rec, Recorder, EXIT_ERROR,
};
use crate::cli::{BroadcastArgs, RxMode, Target};
use crate::conn::{self, Frame, Heartbeats};
use crate::peers;
use crate::phx::{self, Control, TS_DIGITS};
use crate::report;
use crate::runner::{self, ExecCtx, Monitor, Shared, RUN, STOP};
use crate::rx::{Handoff, Receivers, Role};
use crate::sched::{parse_rates, Schedule};
use crate::stats::{self, bump, now_ns, LatencySummary};
use crate::wire;

/// The message ref every broadcast push carries (acks echo it).
const BROADCAST_REF: &str = "b";
/// Largest batch a publisher writes at once.
const WRITE_BATCH: usize = 64 * 1024;

/// Runs the scenario; returns the exit code.
pub fn run(a: &BroadcastArgs) -> i32 {
    let rates = match parse_rates(&a.rate) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    let sched = Schedule::stepped(&rates, (a.duration * 1e9) as u64);
    let nr_subs = a.subscribers * a.topics.max(1);
    let total = nr_subs + a.publishers;
    if a.common.target != Target::Realtime && (a.rx == RxMode::Uring || a.ack) {
        eprintln!(
            "realtime-loadgen: --target {}: peers have no acks and are read with --rx epoll only",
            a.common.target.name()
        );
        return EXIT_ERROR;
    }
    let env = match Env::resolve_any(&a.common, total) {
        Ok(mut e) => {
            // Publishers stay on the first server, subscribers spread.
            e.ep.spread_from = a.publishers;
            Arc::new(e)
        }
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    let params = serde_json::to_value(a).unwrap_or_default();
    match measure(&env, a, &sched) {
        Ok((mut r, shared)) => {
            r.params = params;
            finish(r, &env, &shared.reasons)
        }
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            EXIT_ERROR
        }
    }
}

/// Sets up, runs the schedule, and builds the report (also used by `smoke`).
pub fn measure(
    env: &Arc<Env>,
    a: &BroadcastArgs,
    sched: &Schedule,
) -> Result<(report::Report, Arc<Shared>), String> {
    let nr_subs = a.subscribers * a.topics.max(1);
    let total = nr_subs + a.publishers;
    // Subscribers get one executor per loadgen core; publishers get their
    // own executor (a thread on the first loadgen core), so their timers
    // fire on time instead of waiting behind thousands of subscriber reads.
    let mut placements = env.cores.clone();
    placements.push(env.cores[0]);
    let shared = Shared::new(placements.len());
    let mon = Monitor::new(
        shared.clone(),
        &env.server_pids,
        env.nats_pid,
        !env.common.quiet,
    );
    let before = mon.sample();
    let receivers = match a.rx {
        RxMode::Epoll => Some(
            Receivers::start(&env.cores, &shared, Some(sched.clone()))
                .map_err(|e| format!("starting receivers: {e}"))?,
        ),
        RxMode::Uring => None,
    };
    let txs = receivers.as_ref().map(Receivers::senders);
    let handles = {
        let (env, a, sched) = (env.clone(), Arc::new(a.clone()), sched.clone());
        runner::spawn(&placements, &shared, move |ctx| {
            let tx = txs.as_ref().map(|t| t[ctx.id % t.len()].clone());
            exec(ctx, env.clone(), a.clone(), sched.clone(), tx)
        })
        .map_err(|e| format!("starting executors: {e}"))?
    };
    mon.wait_ready(total, Duration::from_secs(env.common.setup_timeout));
    let ready = shared.ready.load(Ordering::Acquire);
    if ready < a.publishers.min(1) + nr_subs.min(1) {
        shared.stop();
        let _ = runner::join(handles);
        if let Some(r) = receivers {
            let _ = r.join();
        }
        mon.finish();
        return Err(format!(
            "setup failed ({ready}/{total} connections ready): {:?} \
             (is the server up, are TENANT_MAX_* limits raised?)",
            shared.reasons.take()
        ));
    }
    let loaded = mon.sample();
    let (start, samples, at_marks) = run_steps(&mon, &shared, sched, a.drain, "broadcast");
    let mut outs = runner::join(handles)?;
    if let Some(r) = receivers {
        outs.extend(r.join()?);
    }
    mon.finish();
    let all = merge(&outs);

    let mut r = env.report("broadcast", serde_json::Value::Null);
    fill_stepped(
        &mut r,
        sched,
        &samples,
        at_marks,
        &all,
        env.cores.len(),
        (before.server_rss, loaded.server_rss),
        ready,
    );
    r.ack_latency = a.ack.then(|| LatencySummary::of(&all.ack));
    r.send_lag = Some(LatencySummary::of(&all.lag));
    let receivers = a.subscribers + u64::from(a.self_);
    let expected = r.window.sends * receivers;
    r.expected_deliveries = Some(expected);
    r.delivery_ratio = (expected > 0).then(|| r.window.deliveries as f64 / expected as f64);
    let scheduled = sched.total_events();
    if r.window.sends < scheduled {
        r.warnings.push(format!(
            "publishers sent {} of the {scheduled} scheduled messages",
            r.window.sends
        ));
    }
    if ready < total {
        r.warnings.push(format!(
            "only {ready} of {total} connections were set up; expected deliveries assume all"
        ));
    }
    r.timeline = report::timeline(&samples, start);
    Ok((r, shared))
}

/// One executor: its share of publishers and subscribers.
async fn exec(
    ctx: ExecCtx,
    env: Arc<Env>,
    a: Arc<BroadcastArgs>,
    sched: Schedule,
    tx: Option<Sender<Handoff>>,
) -> ExecOut {
    let rec = Recorder::new(Some(sched.clone()));
    let hb = Rc::new(Heartbeats::default());
    let held = Held::default();
    let mut tasks = vec![spawn_local(hb.clone().run(env.heartbeat))];
    let t0 = now_ns();
    // The last executor runs the publishers, the others the subscribers.
    let nr_sub = (ctx.nr - 1).max(1) as u64;
    let is_pub = ctx.id == ctx.nr - 1;
    let rate = env.common.connect_rate / nr_sub as f64;
    let topics = a.topics.max(1);
    let mut local = 0;
    for j in (0..a.publishers).filter(|_| is_pub) {
        let p = Publisher {
            ctx: ctx.clone(),
            env: env.clone(),
            a: a.clone(),
            sched: sched.clone(),
            rec: rec.clone(),
            hb: hb.clone(),
            j,
        };
        tasks.push(spawn_local(p.run(t0, local, rate)));
        local += 1;
    }
    for i in (0..a.subscribers * topics).filter(|i| !is_pub && i % nr_sub == ctx.id as u64) {
        let (ctx, env, a, rec, hb) = (ctx.clone(), env.clone(), a.clone(), rec.clone(), hb.clone());
        let (tx, held) = (tx.clone(), held.clone());
        let l = local;
        tasks.push(spawn_local(async move {
            pace(t0, l, rate).await;
            let mut cfg = env.join_config();
            cfg.self_ = a.self_;
            let idx = a.publishers + i;
            let Ok(conn) =
                open_and_join(&ctx, &env, a.sub_vsn, idx, &[topic(i % topics)], &cfg).await
            else {
                ctx.shared.setup_failed.fetch_add(1, Ordering::AcqRel);
                return;
            };
            ctx.shared.ready.fetch_add(1, Ordering::AcqRel);
            hb.add(&conn.sock);
            match &tx {
                Some(tx) => {
                    hand_off(tx, conn, env.rx_role(Role::Broadcast), &held);
                }
                None => receive(&ctx, Target::Realtime, conn, &rec, None).await,
            }
        }));
        local += 1;
    }
    run_then_take(&ctx, &rec, tasks).await
}

/// Reads deliveries (and acks, with `acks` holding intended times of
/// unacknowledged sends) until the connection ends.
pub async fn receive(
    ctx: &ExecCtx,
    target: Target,
    mut conn: Conn,
    rec: &Rec,
    acks: Option<Rc<RefCell<VecDeque<u64>>>>,
) {
    let vsn = conn.sock.vsn;
    let c = ctx.counters();
    let mut inbound = peers::Inbound::default();
    loop {
        let (mut n, mut now, mut pong) = (0u64, 0u64, false);
        let mut on = |f: Frame<'_>| {
            if target != Target::Realtime {
                let r = inbound.feed(target, f, &mut |e| match e {
                    peers::Event::Delivery(p) => {
                        n += 1;
                        if let Some(ts) = phx::find_ts(p) {
                            if now == 0 {
                                now = now_ns();
                            }
                            rec.borrow_mut().delivery(ts, now);
                        }
                    }
                    peers::Event::Ping => pong = true,
                    peers::Event::Error(why) => ctx
                        .shared
                        .reasons
                        .note(format!("peer error: {}", String::from_utf8_lossy(why))),
                    peers::Event::Confirmed => {}
                });
                if let Err(e) = r {
                    ctx.shared.reasons.note(e);
                }
                return;
            }
            let ts = match f {
                Frame::Binary(b) => match phx::kind4_ts(b) {
                    Some(ts) => ts,
                    None => return,
                },
                Frame::Text(t) => match phx::find_ts(t) {
                    Some(ts) => Some(ts),
                    None => {
                        control(ctx, vsn, t, rec, acks.as_deref());
                        return;
                    }
                },
            };
            n += 1;
            if let Some(ts) = ts {
                if now == 0 {
                    now = now_ns();
                }
                rec.borrow_mut().delivery(ts, now);
            }
        };
        let r = conn::read_batch(&conn.sock, &mut conn.rd, &mut on).await;
        bump(&c.deliveries, n);
        if pong && conn.sock.send(peers::NATS_PONG, true).await.is_err() {
            note_disconnect(ctx, "writing a NATS PONG");
            return;
        }
        match r {
            Ok(bytes) => bump(&c.bytes_in, bytes as u64),
            Err(e) => {
                note_disconnect(ctx, e);
                return;
            }
        }
    }
}

/// Handles a non-delivery text frame.
fn control(
    ctx: &ExecCtx,
    vsn: realtime::proto::phoenix::Vsn,
    t: &[u8],
    rec: &Rec,
    acks: Option<&RefCell<VecDeque<u64>>>,
) {
    let ctl = phx::control(vsn, t);
    if let Control::Reply {
        topic, msg_ref, ok, ..
    } = &ctl
    {
        if topic == "phoenix" {
            return; // heartbeat reply
        }
        if msg_ref.as_deref() == Some(BROADCAST_REF) {
            if let Some(intended) = acks.and_then(|q| q.borrow_mut().pop_front()) {
                stats::record(
                    &mut rec.borrow_mut().out.ack,
                    now_ns().saturating_sub(intended),
                );
            }
            if *ok {
                bump(&ctx.counters().acks, 1);
                return;
            }
        }
    }
    note_control(ctx, &ctl);
}

/// One publisher connection.
struct Publisher {
    ctx: ExecCtx,
    env: Arc<Env>,
    a: Arc<BroadcastArgs>,
    sched: Schedule,
    rec: Rec,
    hb: Rc<Heartbeats>,
    /// Publisher number: sends events j, j+P, j+2P, ... of the schedule.
    j: u64,
}

impl Publisher {
    async fn run(self, t0: u64, local: u64, rate: f64) {
        let Publisher {
            ctx,
            env,
            a,
            sched,
            rec,
            hb,
            j,
        } = self;
        pace(t0, local, rate).await;
        let mut cfg = env.join_config();
        cfg.ack = a.ack;
        cfg.self_ = a.self_;
        let topic = topic(j % a.topics.max(1));
        let vsn = a.proto.vsn();
        // A Realtime publisher must join to send; a peer publisher
        // subscribes only to receive its own messages.
        let joins = if env.target == Target::Realtime || a.self_ {
            std::slice::from_ref(&topic)
        } else {
            &[]
        };
        let Ok(conn) = open_and_join(&ctx, &env, vsn, j, joins, &cfg).await else {
            ctx.shared.setup_failed.fetch_add(1, Ordering::AcqRel);
            return;
        };
        ctx.shared.ready.fetch_add(1, Ordering::AcqRel);
        hb.add(&conn.sock);
        let sock = conn.sock.clone();
        let acks = a.ack.then(|| Rc::new(RefCell::new(VecDeque::new())));
        let reader = {
            let (ctx, rec, acks, target) = (ctx.clone(), rec.clone(), acks.clone(), env.target);
            spawn_local(async move { receive(&ctx, target, conn, &rec, acks).await })
        };
        if ctx.wait_phase(RUN).await != RUN {
            return;
        }
        let start = ctx.start_ns();
        let (payload, ts_in_payload) = phx::ts_payload(a.payload_size);
        let t = match env.target {
            Target::Realtime => phx::broadcast(
                a.proto,
                &topic,
                "1",
                BROADCAST_REF,
                &a.event,
                &payload,
                ts_in_payload,
            ),
            peer => peers::publish(peer, &topic, &payload, ts_in_payload),
        };
        let op = if t.binary {
            OpCode::Binary
        } else {
            OpCode::Text
        };
        let mut frame = Vec::new();
        let ts_in_frame = wire::put_frame(&mut frame, op, &t.bytes, sock.mask) + t.ts_at;
        let mut buf = Vec::with_capacity(WRITE_BATCH + frame.len());
        let step = a.publishers.max(1);
        let tick = (a.tick_ms * 1e6) as u64;
        let mut k = j;
        let c = ctx.counters();
        'run: while !ctx.stopping() {
            let Some(off) = sched.offset_of(k) else { break };
            let now = now_ns();
            if start + off > now {
                // Wake at the due time, or at the next tick at or after it.
                let wake = if tick > 0 {
                    off.div_ceil(tick) * tick
                } else {
                    off
                };
                glommio::timer::sleep(Duration::from_nanos((start + wake).saturating_sub(now)))
                    .await;
                continue;
            }
            buf.clear();
            let mut n = 0;
            {
                let mut r = rec.borrow_mut();
                let mut q = acks.as_ref().map(|q| q.borrow_mut());
                while let Some(off) = sched.offset_of(k) {
                    let due = start + off;
                    if due > now || buf.len() >= WRITE_BATCH {
                        break;
                    }
                    let at = buf.len();
                    buf.extend_from_slice(&frame);
                    let mut digits = [0u8; TS_DIGITS];
                    phx::write_ts(&mut digits, due);
                    let field = &mut buf[at + ts_in_frame..at + ts_in_frame + TS_DIGITS];
                    sock.mask.patch(field, t.ts_at, &digits);
                    stats::record(&mut r.out.lag, now - due);
                    if let Some(q) = q.as_mut() {
                        q.push_back(due);
                    }
                    k += step;
                    n += 1;
                }
            }
            if let Err(e) = sock.write_all(&buf).await {
                note_disconnect(&ctx, format!("publisher write: {e}"));
                break 'run;
            }
            bump(&c.sends, n);
        }
        // Keep reading acks and self-deliveries until the run ends.
        ctx.wait_phase(STOP).await;
        drop(reader);
    }
}
