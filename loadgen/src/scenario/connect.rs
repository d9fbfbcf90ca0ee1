//! `connect`: N connections, each joined to K channels, opened at a ramp
//! rate and held. Reports the joins/s the ramp achieved, connect-to-joined
//! latency, and the server's RSS per connection (VmRSS once everything is
//! up and settled, minus VmRSS before the first connection).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use glommio::spawn_local;

use super::{
    fill_rss, fill_window, finish, hand_off, open_and_join, pace, topic, Env, ExecOut, Held,
    Recorder, EXIT_ERROR,
};
use crate::cli::ConnectArgs;
use crate::conn::Heartbeats;
use crate::report;
use crate::runner::{self, ExecCtx, Monitor, Shared};
use crate::rx::{Handoff, Receivers, Role};
use crate::stats::{self, now_ns, LatencySummary};

/// Seconds to let the server settle before reading its RSS.
const SETTLE: Duration = Duration::from_secs(2);

/// Runs the scenario; returns the exit code.
pub fn run(a: &ConnectArgs) -> i32 {
    let env = match Env::resolve_any(&a.common, a.conns) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    let params = serde_json::to_value(a).unwrap_or_default();
    match measure(&env, a) {
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

/// Ramps up, holds, and builds the report (also used by `smoke`).
pub fn measure(env: &Arc<Env>, a: &ConnectArgs) -> Result<(report::Report, Arc<Shared>), String> {
    let shared = Shared::new(env.cores.len());
    let mon = Monitor::new(shared.clone(), env.server_pid, !env.common.quiet);
    let before = mon.sample();
    let rate = a.ramp_rate.unwrap_or(env.common.connect_rate);
    let receivers = Receivers::start(&env.cores, &shared, None)
        .map_err(|e| format!("starting receivers: {e}"))?;
    let txs = receivers.senders();
    let t0 = now_ns();
    let handles = {
        let (env, a) = (env.clone(), Arc::new(a.clone()));
        runner::spawn(&env.cores.clone(), &shared, move |ctx| {
            let tx = txs[ctx.id % txs.len()].clone();
            exec(ctx, env.clone(), a.clone(), t0, rate, tx)
        })
        .map_err(|e| format!("starting executors: {e}"))?
    };
    mon.wait_ready(a.conns, Duration::from_secs(env.common.setup_timeout));
    let ready = shared.ready.load(Ordering::Acquire);
    let ramp_end = now_ns();
    let ramp = mon.sample();
    let mut last = ramp;
    mon.sleep_until(now_ns() + SETTLE.as_nanos() as u64, "settle", &mut last);
    let loaded = mon.sample();
    let start = now_ns();
    shared.start(start);
    let (samples, _) = mon.record(start, a.hold * 1_000_000_000, &[], "hold");
    shared.stop();
    let mut outs = runner::join(handles)?;
    outs.extend(receivers.join()?);
    mon.finish();
    let all = super::merge(&outs);
    let last_join = all.last_ns;

    let mut r = env.report("connect", serde_json::Value::Null);
    r.connections = ready;
    let (first, end) = (samples[0], *samples.last().unwrap_or(&samples[0]));
    fill_window(&mut r, &first, &end, env.cores.len(), None);
    fill_rss(&mut r, before.server_rss, loaded.server_rss, ready);
    // Joins/s over the ramp: first slot to the last join reply.
    let ramp_ns = if last_join > t0 {
        last_join - t0
    } else {
        ramp_end - t0
    };
    let joins = ramp.tally.joins_ok;
    r.joins_per_sec = Some(joins as f64 / (ramp_ns as f64 / 1e9).max(1e-9));
    r.latency = LatencySummary::of(&all.lat);
    r.latency_curve = stats::percentile_curve(&all.lat);
    r.timeline = report::timeline(&samples, start);
    if ready < a.conns {
        r.warnings.push(format!(
            "only {ready} of {} connections were set up",
            a.conns
        ));
    }
    r.warnings.push(format!(
        "offered ramp {rate:.0} connections/s ({:.0} joins/s); latency is connect+join time \
         from each connection's scheduled start",
        rate * a.channels as f64
    ));
    Ok((r, shared))
}

/// One executor's share of the connections; `last_ns` of the result is
/// the clock time of its last join reply.
async fn exec(
    ctx: ExecCtx,
    env: Arc<Env>,
    a: Arc<ConnectArgs>,
    t0: u64,
    rate: f64,
    tx: Sender<Handoff>,
) -> ExecOut {
    let rec = Recorder::new(None);
    let hb = Rc::new(Heartbeats::default());
    let held = Held::default();
    let last_join = Rc::new(Cell::new(0u64));
    let mut tasks = vec![spawn_local(hb.clone().run(env.heartbeat))];
    let nr = ctx.nr as u64;
    let k = a.channels.max(1);
    let nr_topics = a.topics.max(k);
    let per_exec = rate / ctx.nr as f64;
    for (local, i) in (0..a.conns).filter(|i| i % nr == ctx.id as u64).enumerate() {
        let (ctx, env, rec, hb, last_join, tx, held) = (
            ctx.clone(),
            env.clone(),
            rec.clone(),
            hb.clone(),
            last_join.clone(),
            tx.clone(),
            held.clone(),
        );
        let vsn = a.vsn;
        tasks.push(spawn_local(async move {
            let slot = t0 + (local as f64 / per_exec * 1e9) as u64;
            pace(t0, local as u64, per_exec).await;
            let topics: Vec<String> = (0..k).map(|c| topic((i * k + c) % nr_topics)).collect();
            let cfg = env.join_config();
            let Ok(conn) = open_and_join(&ctx, &env, vsn, i, &topics, &cfg).await else {
                ctx.shared.setup_failed.fetch_add(1, Ordering::AcqRel);
                return;
            };
            let now = now_ns();
            rec.borrow_mut().delivery(slot, now);
            last_join.set(last_join.get().max(now));
            ctx.shared.ready.fetch_add(1, Ordering::AcqRel);
            hb.add(&conn.sock);
            hand_off(&tx, conn, env.rx_role(Role::Hold), &held);
        }));
    }
    ctx.wait_stop().await;
    drop(tasks);
    let mut out = rec.borrow_mut().take();
    out.last_ns = last_join.get();
    out
}
