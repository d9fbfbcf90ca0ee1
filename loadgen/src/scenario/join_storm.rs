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

use super::{fill_window, finish, note_control, Conn, Env, ExecOut, Rec, Recorder, EXIT_ERROR};
use crate::cli::JoinStormArgs;
use crate::conn::{self, Frame, Reader, Socket};
use crate::phx::{self, Control};
use crate::procfs;
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
    let mon = Monitor::new(
        shared.clone(),
        &env.server_pids,
        env.nats_pid,
        !env.common.quiet,
    );
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
    let db = a.db_port.and_then(procfs::find_listener_pid);
    let db_cpu0 = db.and_then(procfs::family_cpu_seconds);
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
    let db_cpu1 = db.and_then(procfs::family_cpu_seconds);
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
    let db_cpu_s = db_cpu0.zip(db_cpu1).map(|(a, b)| b - a);
    if a.db_port.is_some() && db_cpu_s.is_none() {
        r.warnings.push(
            "no database CPU figure: no local process listens on --db-port (or /proc is not readable)"
                .into(),
        );
    }
    let (extra, md) = cost(
        r.joins_per_sec.unwrap_or(0.0),
        run_ns,
        r.server.cpu_s,
        db_cpu_s,
    );
    r.extra = Some(extra);
    r.extra_md = Some(md);
    if r.window.joins_ok == 0 {
        r.warnings
            .push("no join succeeded: is TENANT_MAX_JOINS_PER_SECOND raised on the server?".into());
    }
    finish(r, &env, &shared.reasons)
}

/// What the joins cost: CPU seconds of the server and of the database
/// per second of run, and joins/s per core-second of each.
fn cost(
    joins_per_sec: f64,
    run_ns: u64,
    server_cpu_s: Option<f64>,
    db_cpu_s: Option<f64>,
) -> (serde_json::Value, String) {
    let secs = (run_ns as f64 / 1e9).max(1e-9);
    let per_core = |cpu: Option<f64>| cpu.map(|c| joins_per_sec / (c / secs).max(1e-9));
    let v = serde_json::json!({
        "joins_per_sec": joins_per_sec,
        "server_cpu_s": server_cpu_s,
        "db_cpu_s": db_cpu_s,
        "joins_per_server_core_s": per_core(server_cpu_s),
        "joins_per_db_core_s": per_core(db_cpu_s),
    });
    let f = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.1}"));
    let md = format!(
        "| join-storm cost | server | database |\n|---|---|---|\n\
         | CPU seconds | {} | {} |\n| joins/s per core busy | {} | {} |\n",
        f(server_cpu_s),
        f(db_cpu_s),
        f(per_core(server_cpu_s)),
        f(per_core(db_cpu_s)),
    );
    (v, md)
}

/// A join config for `cfg`'s run: private joins carry the token of user
/// `lg<u>` (signed with the run's secret).
fn private_payload(env: &Env, u: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let token = realtime::realtime::auth::sign_hs256(
        &env.common.secret,
        &serde_json::json!({"role": "authenticated", "sub": format!("lg{u}"),
            "iss": "realtime-loadgen", "iat": now, "exp": now + 86_400}),
    );
    let mut cfg = env.join_config();
    cfg.private = true;
    cfg.access_token = Some(token);
    phx::join_payload(&cfg)
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
    // Every join of the run carries the same payload: render it once.
    let payload: Rc<str> = phx::join_payload(&env.join_config()).into();
    let mut tasks = Vec::new();
    let users = if a.users == 0 { a.workers } else { a.users }.max(1);
    // One token per user, made once.
    let mut private: std::collections::HashMap<u64, Rc<str>> = Default::default();
    for w in (0..a.workers).filter(|w| w % nr == ctx.id as u64) {
        let (prefix, payload) = if a.private {
            let u = w % users;
            let p = private
                .entry(u)
                .or_insert_with(|| private_payload(&env, u).into())
                .clone();
            (format!("realtime:lg{u}:"), p)
        } else {
            ("realtime:lg-".to_owned(), payload.clone())
        };
        let (ctx, env, a, rec, next) = (
            ctx.clone(),
            env.clone(),
            a.clone(),
            rec.clone(),
            next.clone(),
        );
        tasks.push(spawn_local(async move {
            let t = Topics {
                prefix: &prefix,
                payload: &payload,
            };
            worker(&ctx, &env, &a, &rec, &next, t, w, rate, start, end).await;
        }));
    }
    ctx.wait_phase(STOP).await;
    drop(tasks);
    let out = rec.borrow_mut().take();
    out
}

/// What a worker joins: topics `<prefix><k>`, with this join payload.
#[derive(Clone, Copy)]
struct Topics<'a> {
    prefix: &'a str,
    payload: &'a str,
}

/// One worker: batches of `--pipeline` joins, then their leaves, on a
/// connection replaced every `--joins-per-conn` joins.
#[allow(clippy::too_many_arguments)]
async fn worker(
    ctx: &ExecCtx,
    env: &Env,
    a: &JoinStormArgs,
    rec: &Rec,
    next: &Cell<u64>,
    topics_of: Topics<'_>,
    w: u64,
    rate: f64,
    start: u64,
    end: u64,
) {
    let depth = a.pipeline.max(1);
    let mut conn: Option<Conn> = None;
    let mut on_conn = 0u64;
    let mut seq = 0u64;
    let mut idx = w;
    let c = ctx.counters();
    // Reused across batches: the framed messages, the batch's topics and
    // the intended time of each join.
    let mut out = Vec::new();
    let mut topics: Vec<String> = Vec::with_capacity(depth as usize);
    let mut intended: Vec<u64> = Vec::with_capacity(depth as usize);
    let mut text = Vec::new();
    while !ctx.stopping() {
        // The next `depth` slots of the executor's schedule (or right
        // now); a batch goes out when its last join is due.
        intended.clear();
        if rate > 0.0 {
            let k = next.get();
            next.set(k + depth);
            let due = |k: u64| start + (k as f64 / rate * 1e9) as u64;
            if due(k) >= end {
                break;
            }
            intended.extend((k..k + depth).map(due));
            let last = due(k + depth - 1);
            let now = now_ns();
            if last > now {
                glommio::timer::sleep(Duration::from_nanos(last - now)).await;
            } else {
                stats::record(&mut rec.borrow_mut().out.lag, now - last);
            }
        } else {
            let now = now_ns();
            if now >= end {
                break;
            }
            intended.resize(depth as usize, now);
        }
        if on_conn >= a.joins_per_conn.max(1) {
            if let Some(old) = conn.take() {
                close_churned(ctx, &old.sock);
                bump(&c.closes, 1);
            }
        }
        if conn.is_none() {
            let mut rd = Reader::default();
            idx += a.workers;
            match conn::ws_connect(&env.ep, a.vsn, idx, &mut rd, env.connect_timeout).await {
                Ok(sock) => {
                    bump(&c.connects, 1);
                    conn = Some(Conn {
                        sock,
                        rd,
                        early_system: None,
                    });
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
        // Consecutive refs on consecutive topics: distinct while
        // `depth <= --topics`.
        let first = seq + 1;
        topics.clear();
        out.clear();
        for _ in 0..depth {
            seq += 1;
            let t = format!("{}{}", topics_of.prefix, (w * 7919 + seq) % a.topics.max(1));
            let jr = seq.to_string();
            text.clear();
            text.extend_from_slice(&phx::envelope(
                a.vsn,
                Some(&jr),
                Some(&jr),
                &t,
                "phx_join",
                topics_of.payload.as_bytes(),
            ));
            wire::put_frame(&mut out, OpCode::Text, &text, cn.sock.mask);
            topics.push(t);
        }
        on_conn += depth;
        let mut refused = false;
        let res = request(
            ctx,
            cn,
            &out,
            "",
            first,
            depth,
            env.connect_timeout,
            |i, ok, resp| {
                if ok {
                    bump(&c.joins_ok, 1);
                    rec.borrow_mut().delivery(intended[i as usize], now_ns());
                } else {
                    bump(&c.join_failed, 1);
                    ctx.shared.reasons.note(format!("join refused: {resp}"));
                    refused = true;
                }
            },
        )
        .await;
        if let Err(e) = res {
            super::note_disconnect(ctx, e);
            conn = None;
            continue;
        }
        if refused {
            conn = None;
            continue;
        }
        out.clear();
        for (i, t) in topics.iter().enumerate() {
            let s = first + i as u64;
            let leave = phx::leave(a.vsn, t, &s.to_string(), &format!("l{s}"));
            wire::put_frame(&mut out, OpCode::Text, &leave, cn.sock.mask);
        }
        let res = request(
            ctx,
            cn,
            &out,
            "l",
            first,
            depth,
            env.connect_timeout,
            |_, ok, resp| {
                if ok {
                    bump(&c.leaves_ok, 1);
                } else {
                    bump(&c.push_errors, 1);
                    ctx.shared.reasons.note(format!("leave refused: {resp}"));
                }
            },
        )
        .await;
        if let Err(e) = res {
            super::note_disconnect(ctx, e);
            conn = None;
        }
    }
    if let Some(old) = conn.take() {
        close_churned(ctx, &old.sock);
        bump(&c.closes, 1);
    }
}

/// Readies a churned connection's close to send RST. A socket that cannot
/// would leave a TIME_WAIT per cycle, which in the end runs the source
/// ports out and skews the run: say so in the report.
fn close_churned(ctx: &ExecCtx, sock: &Socket) {
    if let Err(e) = sock.set_linger_zero() {
        ctx.shared.reasons.note(format!("SO_LINGER: {e}"));
    }
}

/// Writes the framed messages `out` and waits for the replies to refs
/// `{prefix}{first}` .. `{prefix}{first + n - 1}`, calling
/// `on_reply(i, ok, response)` for the `i`-th as it arrives.
#[allow(clippy::too_many_arguments)]
async fn request(
    ctx: &ExecCtx,
    cn: &mut Conn,
    out: &[u8],
    prefix: &str,
    first: u64,
    n: u64,
    limit: Duration,
    mut on_reply: impl FnMut(u64, bool, &str),
) -> Result<(), String> {
    cn.sock.write_all(out).await.map_err(|e| e.to_string())?;
    let vsn = cn.sock.vsn;
    let wait = async {
        let mut left = n;
        while left > 0 {
            let mut on = |f: Frame<'_>| {
                let Frame::Text(t) = f else { return };
                let ctl = phx::control(vsn, t);
                if let Control::Reply {
                    msg_ref: Some(r),
                    ok,
                    response,
                    ..
                } = &ctl
                {
                    let k = r.strip_prefix(prefix).and_then(|d| d.parse::<u64>().ok());
                    if let Some(k) = k.filter(|k| (first..first + n).contains(k)) {
                        left -= 1;
                        on_reply(k - first, *ok, response);
                        return;
                    }
                }
                match ctl {
                    // Closes after our own leaves are expected.
                    Control::Close { .. } => {}
                    other => note_control(ctx, &other),
                }
            };
            conn::read_batch(&cn.sock, &mut cn.rd, &mut on)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    conn::timeout(limit, wait)
        .await
        .unwrap_or_else(|| Err("reply timed out".into()))
}
