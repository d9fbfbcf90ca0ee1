//! `rest-broadcast`: HTTP/1.1 keep-alive POSTs to `/api/broadcast` (or the
//! single-message endpoint) at an open-loop rate, S socket subscribers per
//! topic. Latency runs from a request's intended send time to delivery;
//! the HTTP response time is recorded as the reply latency.

use std::io::Write as _;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use glommio::spawn_local;

use super::{
    finish, hand_off, note_disconnect, open_and_join, pace, run_then_take, topic, until_due, Env,
    ExecOut, Held, Rec, Recorder,
};
use crate::cli::RestArgs;
use crate::conn::{Heartbeats, Socket};
use crate::phx::{self, TS_DIGITS};
use crate::runner::{ExecCtx, RUN, STOP};
use crate::rx::{Handoff, Role};
use crate::sched::Schedule;
use crate::stats::{self, bump, now_ns, LatencySummary};
use crate::wire;

use super::stepped::{self, Stepped};

/// Runs the scenario; returns the exit code.
pub fn run(a: &RestArgs) -> i32 {
    let nr_subs = a.subscribers * a.topics.max(1);
    let plan = stepped::Plan {
        scenario: "rest-broadcast",
        common: &a.common,
        params: serde_json::to_value(a).unwrap_or_default(),
        rates: &a.rate,
        duration: a.duration,
        drain: a.drain,
        nr_conns: nr_subs + a.http_conns.max(1),
        refuse_if_none_ready: None,
    };
    let args = Arc::new(a.clone());
    let run = stepped::run(plan, move |ctx, env, sched, tx| {
        exec(ctx, env, args.clone(), sched, tx)
    });
    let Stepped {
        env,
        shared,
        all,
        mut report,
        ..
    } = match run {
        Ok(s) => s,
        Err(code) => return code,
    };
    let r = &mut report;
    r.ack_latency = Some(LatencySummary::of(&all.ack));
    let expected = r.window.sends * a.subscribers;
    r.expected_deliveries = Some(expected);
    r.delivery_ratio = (expected > 0).then(|| r.window.deliveries as f64 / expected as f64);
    r.warnings.push(format!(
        "sends are broadcast messages ({} per request); every message counts against \
         TENANT_MAX_EVENTS_PER_SECOND, as does every delivery",
        if a.single { 1 } else { a.batch.max(1) }
    ));
    finish(report, &env, &shared.reasons)
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
    run_then_take(&ctx, &rec, tasks).await
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
    while let Some(due) = until_due(&ctx, &sched, start, k, &rec).await {
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
