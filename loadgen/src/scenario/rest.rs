//! `rest-broadcast`: HTTP/1.1 keep-alive POSTs to `/api/broadcast` (or the
//! single-message endpoint) at an open-loop rate, S socket subscribers per
//! topic. Latency runs from a request's intended send time to delivery;
//! the HTTP response time is recorded as the reply latency.

use std::io::Write as _;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use glommio::spawn_local;

use super::{
    fill_rss, fill_steps, fill_window, finish, hand_off, merge, note_disconnect, open_and_join,
    pace, topic, Env, ExecOut, Held, Rec, Recorder, EXIT_ERROR,
};
use crate::cli::RestArgs;
use crate::conn::{Heartbeats, Socket};
use crate::phx::{self, TS_DIGITS};
use crate::report;
use crate::runner::{self, ExecCtx, Monitor, Shared, RUN, STOP};
use crate::rx::{Handoff, Receivers, Role};
use crate::sched::{parse_rates, Schedule};
use crate::stats::{self, bump, now_ns, LatencySummary};
use crate::wire;

/// Runs the scenario; returns the exit code.
pub fn run(a: &RestArgs) -> i32 {
    let rates = match parse_rates(&a.rate) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    let sched = Schedule::stepped(&rates, (a.duration * 1e9) as u64);
    let nr_subs = a.subscribers * a.topics.max(1);
    let total = nr_subs + a.http_conns.max(1);
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
            exec(ctx, env.clone(), a.clone(), sched.clone(), tx)
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
    let loaded = mon.sample();
    let start = now_ns() + 300_000_000;
    shared.start(start);
    let n = sched.steps().len();
    let marks: Vec<u64> = (1..=n).map(|i| sched.step_start_ns(i)).collect();
    let window_ns = sched.total_ns() + (a.drain * 1e9) as u64;
    let (samples, at_marks) = mon.record(start, window_ns, &marks, "rest-broadcast");
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
    let mut r = env.report(
        "rest-broadcast",
        serde_json::to_value(a).unwrap_or_default(),
    );
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
    r.ack_latency = Some(LatencySummary::of(&all.ack));
    r.send_lag = Some(LatencySummary::of(&all.lag));
    let expected = r.window.sends * a.subscribers;
    r.expected_deliveries = Some(expected);
    r.delivery_ratio = (expected > 0).then(|| r.window.deliveries as f64 / expected as f64);
    r.timeline = report::timeline(&samples, start);
    r.warnings.push(format!(
        "sends are broadcast messages ({} per request); every message counts against \
         TENANT_MAX_EVENTS_PER_SECOND, as does every delivery",
        if a.single { 1 } else { a.batch.max(1) }
    ));
    finish(r, &env, &shared.reasons)
}

/// One executor: its subscribers and HTTP posters.
async fn exec(
    ctx: ExecCtx,
    env: Arc<Env>,
    a: Arc<RestArgs>,
    sched: Schedule,
    tx: Sender<Handoff>,
) -> ExecOut {
    let rec = Recorder::new(Some(sched.clone()));
    let hb = Rc::new(Heartbeats::default());
    let held = Held::default();
    let mut tasks = vec![spawn_local(hb.clone().run(env.heartbeat))];
    let t0 = now_ns();
    let rate = env.common.connect_rate / ctx.nr as f64;
    let nr = ctx.nr as u64;
    let topics = a.topics.max(1);
    let http = a.http_conns.max(1);
    let mut local = 0u64;
    for h in (0..http).filter(|h| h % nr == ctx.id as u64) {
        let (ctx, env, a, sched, rec) = (
            ctx.clone(),
            env.clone(),
            a.clone(),
            sched.clone(),
            rec.clone(),
        );
        let l = local;
        tasks.push(spawn_local(async move {
            pace(t0, l, rate).await;
            poster(ctx, env, a, sched, rec, h).await
        }));
        local += 1;
    }
    for i in (0..a.subscribers * topics).filter(|i| i % nr == ctx.id as u64) {
        let (ctx, env, a, hb, tx, held) = (
            ctx.clone(),
            env.clone(),
            a.clone(),
            hb.clone(),
            tx.clone(),
            held.clone(),
        );
        let l = local;
        tasks.push(spawn_local(async move {
            pace(t0, l, rate).await;
            let cfg = env.join_config();
            let t = topic(i % topics);
            let Ok(conn) = open_and_join(&ctx, &env, a.sub_vsn, http + i, &[t], &cfg).await else {
                ctx.shared.setup_failed.fetch_add(1, Ordering::AcqRel);
                return;
            };
            ctx.shared.ready.fetch_add(1, Ordering::AcqRel);
            hb.add(&conn.sock);
            hand_off(&tx, conn, Role::Broadcast, &held);
        }));
        local += 1;
    }
    if ctx.wait_phase(RUN).await == RUN {
        rec.borrow_mut().start_ns = ctx.start_ns();
    }
    ctx.wait_stop().await;
    drop(tasks);
    let out = rec.borrow_mut().take();
    out
}

/// One keep-alive HTTP connection posting requests h, h+H, h+2H, ... of
/// the schedule, each after the previous response.
async fn poster(ctx: ExecCtx, env: Arc<Env>, a: Arc<RestArgs>, sched: Schedule, rec: Rec, h: u64) {
    let c = ctx.counters();
    let sock = match Socket::connect_tcp(&env.ep, h, realtime::proto::phoenix::Vsn::V2).await {
        Ok(s) => s,
        Err(e) => {
            bump(&c.connect_failed, 1);
            ctx.shared.reasons.note(format!("REST connect: {e}"));
            ctx.shared.setup_failed.fetch_add(1, Ordering::AcqRel);
            return;
        }
    };
    bump(&c.connects, 1);
    ctx.shared.ready.fetch_add(1, Ordering::AcqRel);
    if ctx.wait_phase(RUN).await != RUN {
        return;
    }
    let start = ctx.start_ns();
    let (payload, ts_at) = phx::ts_payload(a.payload_size);
    let topics = a.topics.max(1);
    let batch = if a.single { 1 } else { a.batch.max(1) };
    let step = a.http_conns.max(1);
    let mut req = Vec::new();
    let mut body = Vec::new();
    let mut resp = Vec::new();
    let mut k = h;
    while !ctx.stopping() {
        let Some(off) = sched.offset_of(k) else { break };
        let due = start + off;
        let now = now_ns();
        if due > now {
            glommio::timer::sleep(Duration::from_nanos(due - now)).await;
            continue;
        }
        stats::record(&mut rec.borrow_mut().out.lag, now - due);
        let mut digits = [0u8; TS_DIGITS];
        phx::write_ts(&mut digits, due);
        let mut p = payload.clone();
        p[ts_at..ts_at + TS_DIGITS].copy_from_slice(&digits);
        body.clear();
        req.clear();
        if a.single {
            body.extend_from_slice(&p);
            let t = format!("lg-{}", k % topics);
            let _ = write!(req, "POST /api/broadcast/{t}/events/lg HTTP/1.1\r\n");
        } else {
            body.extend_from_slice(b"{\"messages\":[");
            for b in 0..batch {
                if b > 0 {
                    body.push(b',');
                }
                let t = (k * batch + b) % topics;
                let _ = write!(body, "{{\"topic\":\"lg-{t}\",\"event\":\"lg\",\"payload\":");
                body.extend_from_slice(&p);
                body.push(b'}');
            }
            body.extend_from_slice(b"]}");
            req.extend_from_slice(b"POST /api/broadcast HTTP/1.1\r\n");
        }
        let _ = write!(
            req,
            "Host: {}\r\nAuthorization: Bearer {}\r\napikey: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            env.ep.host,
            env.token,
            env.token,
            body.len()
        );
        req.extend_from_slice(&body);
        k += step;
        if let Err(e) = sock.write_all(&req).await {
            note_disconnect(&ctx, format!("REST write: {e}"));
            return;
        }
        bump(&c.sends, batch);
        match read_response(&sock, &mut resp).await {
            Ok((status, text)) => {
                stats::record(&mut rec.borrow_mut().out.ack, now_ns().saturating_sub(due));
                if (200..300).contains(&status) {
                    bump(&c.acks, 1);
                } else {
                    bump(&c.push_errors, 1);
                    ctx.shared.reasons.note(format!("HTTP {status}: {text}"));
                }
            }
            Err(e) => {
                note_disconnect(&ctx, format!("REST response: {e}"));
                return;
            }
        }
    }
    ctx.wait_phase(STOP).await;
}

/// Reads one response (head + Content-Length body) using `buf` for
/// leftovers; returns the status and body text.
async fn read_response(sock: &Socket, buf: &mut Vec<u8>) -> Result<(u16, String), String> {
    loop {
        if let Some(h) = wire::parse_response_head(buf)? {
            let len = h.content_length.unwrap_or(0);
            if buf.len() >= h.head_len + len {
                let body = String::from_utf8_lossy(&buf[h.head_len..h.head_len + len]).into_owned();
                buf.drain(..h.head_len + len);
                return Ok((h.status, body));
            }
        }
        let n = sock
            .read_some(|b| buf.extend_from_slice(b))
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
    }
}
