//! `join-storm`: W workers each loop connect, join, leave, repeat
//! (reconnecting every `joins_per_conn` joins), at an open-loop target
//! rate or as fast as the server answers. Reports joins/s sustained, join
//! latency from the intended time, and errors by reason.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::spawn_local;
use realtime::proto::ws::OpCode;

use super::{fill_window, finish, note_control, Conn, Env, ExecOut, Recorder, EXIT_ERROR};
use crate::cli::JoinStormArgs;
use crate::conn::{self, Frame, Reader};
use crate::phx::{self, Control};
use crate::report;
use crate::runner::{self, ExecCtx, Monitor, Shared, RUN, STOP};
use crate::stats::{self, bump, now_ns, LatencySummary};
use crate::wire;

/// Runs the scenario; returns the exit code.
pub fn run(a: &JoinStormArgs) -> i32 {
    let env = match Env::resolve(&a.common, a.workers) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    let shared = Shared::new(env.cores.len());
    let mon = Monitor::new(shared.clone(), env.server_pid, !env.common.quiet);
    let handles = {
        let (env, a) = (env.clone(), Arc::new(a.clone()));
        match runner::spawn(&env.cores.clone(), &shared, move |ctx| {
            exec(ctx, env.clone(), a.clone())
        }) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("realtime-loadgen: starting executors: {e}");
                return EXIT_ERROR;
            }
        }
    };
    let start = now_ns() + 100_000_000;
    shared.start(start);
    let run_ns = (a.duration * 1e9) as u64;
    let (samples, _) = mon.record(start, run_ns + 500_000_000, &[], "join-storm");
    shared.stop();
    let outs = match runner::join(handles) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    mon.finish();
    let all = super::merge(&outs);
    let mut r = env.report("join-storm", serde_json::to_value(a).unwrap_or_default());
    let (first, last) = (samples[0], *samples.last().unwrap_or(&samples[0]));
    fill_window(&mut r, &first, &last, env.cores.len(), Some(run_ns));
    r.connections = a.workers;
    r.joins_per_sec = Some(r.window.joins_ok as f64 / (run_ns as f64 / 1e9).max(1e-9));
    r.latency = LatencySummary::of(&all.lat);
    r.latency_curve = stats::percentile_curve(&all.lat);
    r.send_lag = (a.rate > 0.0).then(|| LatencySummary::of(&all.lag));
    r.timeline = report::timeline(&samples, start);
    if r.window.joins_ok == 0 {
        r.warnings
            .push("no join succeeded: is TENANT_MAX_JOINS_PER_SECOND raised on the server?".into());
    }
    finish(r, &env, &shared.reasons)
}

/// One executor's workers, sharing one schedule counter.
async fn exec(ctx: ExecCtx, env: Arc<Env>, a: Arc<JoinStormArgs>) -> ExecOut {
    let rec = Recorder::new(None);
    if ctx.wait_phase(RUN).await != RUN {
        return rec.borrow_mut().take();
    }
    let start = ctx.start_ns();
    rec.borrow_mut().start_ns = start;
    let end = start + (a.duration * 1e9) as u64;
    let next = Rc::new(Cell::new(0u64));
    let rate = a.rate / ctx.nr as f64;
    let nr = ctx.nr as u64;
    let mut tasks = Vec::new();
    for w in (0..a.workers).filter(|w| w % nr == ctx.id as u64) {
        let (ctx, env, a, rec, next) = (
            ctx.clone(),
            env.clone(),
            a.clone(),
            rec.clone(),
            next.clone(),
        );
        tasks.push(spawn_local(async move {
            let mut conn: Option<Conn> = None;
            let mut on_conn = 0u64;
            let mut seq = 0u64;
            let mut idx = w;
            let c = ctx.counters();
            while !ctx.stopping() {
                // The next slot of the executor's schedule (or right now).
                let intended = if rate > 0.0 {
                    let k = next.get();
                    next.set(k + 1);
                    let due = start + (k as f64 / rate * 1e9) as u64;
                    if due >= end {
                        break;
                    }
                    let now = now_ns();
                    if due > now {
                        glommio::timer::sleep(Duration::from_nanos(due - now)).await;
                    } else {
                        stats::record(&mut rec.borrow_mut().out.lag, now - due);
                    }
                    due
                } else {
                    let now = now_ns();
                    if now >= end {
                        break;
                    }
                    now
                };
                if on_conn >= a.joins_per_conn.max(1) {
                    if let Some(old) = conn.take() {
                        old.sock.set_linger_zero();
                        bump(&c.closes, 1);
                    }
                }
                if conn.is_none() {
                    let mut rd = Reader::default();
                    idx += a.workers;
                    match conn::ws_connect(&env.ep, a.vsn, idx, &mut rd, env.connect_timeout).await
                    {
                        Ok(sock) => {
                            bump(&c.connects, 1);
                            conn = Some(Conn { sock, rd });
                            on_conn = 0;
                        }
                        Err(e) => {
                            bump(&c.connect_failed, 1);
                            ctx.shared.reasons.note(e.to_string());
                            glommio::timer::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(cn) = conn.as_mut() else { continue };
                seq += 1;
                on_conn += 1;
                let t = super::topic((w * 7919 + seq) % a.topics.max(1));
                let jr = seq.to_string();
                let join = phx::join(a.vsn, &t, &jr, &env.join_config());
                match request(&ctx, cn, &join, &jr, env.connect_timeout).await {
                    Ok((true, _)) => {
                        bump(&c.joins_ok, 1);
                        rec.borrow_mut().delivery(intended, now_ns());
                    }
                    Ok((false, resp)) => {
                        bump(&c.join_failed, 1);
                        ctx.shared.reasons.note(format!("join refused: {resp}"));
                        conn = None;
                        continue;
                    }
                    Err(e) => {
                        super::note_disconnect(&ctx, e);
                        conn = None;
                        continue;
                    }
                }
                let lr = format!("l{seq}");
                let leave = phx::leave(a.vsn, &t, &jr, &lr);
                match request(&ctx, cn, &leave, &lr, env.connect_timeout).await {
                    Ok((true, _)) => bump(&c.leaves_ok, 1),
                    Ok((false, resp)) => {
                        bump(&c.push_errors, 1);
                        ctx.shared.reasons.note(format!("leave refused: {resp}"));
                    }
                    Err(e) => {
                        super::note_disconnect(&ctx, e);
                        conn = None;
                    }
                }
            }
            if let Some(old) = conn.take() {
                old.sock.set_linger_zero();
                bump(&c.closes, 1);
            }
        }));
    }
    ctx.wait_phase(STOP).await;
    drop(tasks);
    let out = rec.borrow_mut().take();
    out
}

/// Sends `msg` and waits for the reply to `want_ref`: `(ok, response)`.
async fn request(
    ctx: &ExecCtx,
    cn: &mut Conn,
    msg: &[u8],
    want_ref: &str,
    limit: Duration,
) -> Result<(bool, String), String> {
    let mut out = Vec::with_capacity(msg.len() + 14);
    wire::put_frame(&mut out, OpCode::Text, msg, cn.sock.mask);
    cn.sock.write_all(&out).await.map_err(|e| e.to_string())?;
    let vsn = cn.sock.vsn;
    let wait = async {
        loop {
            let mut got = None;
            let mut on = |f: Frame<'_>| {
                let Frame::Text(t) = f else { return };
                match phx::control(vsn, t) {
                    Control::Reply {
                        msg_ref: Some(r),
                        ok,
                        response,
                        ..
                    } if r == want_ref => got = Some((ok, response)),
                    // Closes after our own leave are expected.
                    Control::Close { .. } => {}
                    other => note_control(ctx, &other),
                }
            };
            conn::read_batch(&cn.sock, &mut cn.rd, &mut on)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(g) = got {
                return Ok(g);
            }
        }
    };
    conn::timeout(limit, wait)
        .await
        .unwrap_or_else(|| Err("reply timed out".into()))
}
