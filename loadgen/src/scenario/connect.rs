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

use serde_json::json;

use super::{
    fill_rss, fill_window, finish, hand_off, open_and_join, pace, tenants, topic, Env, ExecOut,
    Held, Recorder, EXIT_ERROR, EXIT_FAIL,
};
use crate::cli::{ConnectArgs, TenantArgs};
use crate::conn::Heartbeats;
use crate::procfs;
use crate::report;
use crate::runner::{self, ExecCtx, Monitor, Shared};
use crate::rx::{Handoff, Receivers, Role};
use crate::stats::{self, now_ns, LatencySummary};

/// Seconds to let the server settle before reading its RSS.
const SETTLE: Duration = Duration::from_secs(2);

/// Runs the scenario; returns the exit code.
pub fn run(a: &ConnectArgs) -> i32 {
    let t = &a.tenants;
    if let Err(e) = t.validate() {
        eprintln!("realtime-loadgen: {e}");
        return EXIT_ERROR;
    }
    let mut common = a.common.clone();
    if let (true, Some(s)) = (t.tenants > 0, &t.tenant_secret) {
        common.secret = s.clone();
    }
    let mut env = match Env::resolve_any(&common, a.conns) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    env.ep.tenants = t.tenants;
    env.ep.tenant_prefix = t.tenant_prefix.clone();
    let env = Arc::new(env);
    let params = serde_json::to_value(a).unwrap_or_default();
    let rss = || {
        env.server_pid
            .and_then(|p| procfs::rss_bytes(&p.to_string()))
    };
    let mut figs = TenantFigures {
        rss_before_create: rss(),
        ..TenantFigures::default()
    };
    if t.create_tenants {
        let b = tenants::create_all(
            common.first_addr(),
            &t.admin_secret,
            &t.tenant_prefix,
            t.tenants,
            t.admin_concurrency,
            &common.secret,
        );
        figs.rss_after_create = rss();
        let failed = b.failed > 0;
        figs.create = Some(b);
        if failed {
            // Connections to tenants that do not exist measure nothing.
            eprint!("{}", figs.markdown(t, None, 0));
            return EXIT_FAIL;
        }
    }
    match measure(&env, a) {
        Ok((mut r, shared)) => {
            r.params = params;
            for &k in &t.patch_sockets {
                let id = format!("{}patch{k}", t.tenant_prefix);
                match tenants::patch_to_disconnect(
                    common.first_addr(),
                    &t.admin_secret,
                    &id,
                    &common.secret,
                    k,
                ) {
                    Ok(p) => figs.patch.push(p),
                    Err(e) => figs.errors.push(e),
                }
            }
            if t.delete_tenants {
                figs.delete = Some(tenants::delete_all(
                    common.first_addr(),
                    &t.admin_secret,
                    &t.tenant_prefix,
                    t.tenants,
                    t.admin_concurrency,
                ));
                figs.rss_after_delete = rss();
            }
            if t.tenants > 0 || t.uses_admin() {
                r.extra_md = Some(figs.markdown(t, r.server.rss_loaded_bytes, r.connections));
                r.extra = Some(figs.json(t, r.server.rss_loaded_bytes, r.connections));
            }
            // With tenants, a connection that was not set up is a tenant the
            // server did not serve: that fails the run (CI's smoke relies on it).
            let short = t.tenants > 0 && r.connections < a.conns;
            let code = finish(r, &env, &shared.reasons);
            if short || !figs.ok() {
                for e in &figs.errors {
                    eprintln!("FAIL: {e}");
                }
                if short {
                    eprintln!("FAIL: not every connection was set up");
                }
                return EXIT_FAIL;
            }
            code
        }
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            EXIT_ERROR
        }
    }
}

/// The admin API and memory figures of a run with tenants.
#[derive(Debug, Default)]
struct TenantFigures {
    rss_before_create: Option<u64>,
    rss_after_create: Option<u64>,
    rss_after_delete: Option<u64>,
    create: Option<tenants::Batch>,
    delete: Option<tenants::Batch>,
    patch: Vec<tenants::PatchTiming>,
    errors: Vec<String>,
}

impl TenantFigures {
    fn ok(&self) -> bool {
        self.errors.is_empty()
            && self.create.as_ref().is_none_or(|b| b.failed == 0)
            && self.delete.as_ref().is_none_or(|b| b.failed == 0)
    }

    /// Server memory per tenant: everything the run added since before
    /// the tenants were created, less what the connections cost on one
    /// tenant (--baseline-rss-per-conn), over the tenants.
    fn per_tenant(&self, t: &TenantArgs, loaded: Option<u64>, conns: u64) -> Option<f64> {
        let (b, l, base) = (self.rss_before_create?, loaded?, t.baseline_rss_per_conn?);
        (t.tenants > 0).then(|| (l as f64 - b as f64 - base * conns as f64) / t.tenants as f64)
    }

    fn json(&self, t: &TenantArgs, loaded: Option<u64>, conns: u64) -> serde_json::Value {
        let batch = |b: &Option<tenants::Batch>| {
            b.as_ref().map(|b| {
                json!({"ok": b.ok, "failed": b.failed, "secs": b.secs, "per_sec": b.rate(),
                       "errors": b.errors})
            })
        };
        json!({
            "tenants": t.tenants,
            "rss_before_create_bytes": self.rss_before_create,
            "rss_after_create_bytes": self.rss_after_create,
            "rss_after_delete_bytes": self.rss_after_delete,
            "rss_per_tenant_bytes": self.per_tenant(t, loaded, conns),
            "create": batch(&self.create),
            "delete": batch(&self.delete),
            "patch_to_disconnect": self.patch.iter().map(|p| json!({
                "sockets": p.sockets, "reply_ms": p.reply_ms,
                "p50_ms": p.pct(50.0), "max_ms": p.pct(100.0),
            })).collect::<Vec<_>>(),
            "errors": self.errors,
        })
    }

    fn markdown(&self, t: &TenantArgs, loaded: Option<u64>, conns: u64) -> String {
        let mib =
            |v: Option<u64>| v.map_or("n/a".into(), |v| format!("{:.1} MiB", v as f64 / 1048576.0));
        let mut o = String::from("| tenants | value |\n|---|---|\n");
        let mut row = |k: &str, v: String| o.push_str(&format!("| {k} | {v} |\n"));
        row("tenants", t.tenants.to_string());
        row(
            "server RSS before creating tenants",
            mib(self.rss_before_create),
        );
        if t.create_tenants {
            row("server RSS after creating them", mib(self.rss_after_create));
        }
        if let Some(b) = &self.create {
            row("admin creates/s", batch_text(b, t.admin_concurrency));
        }
        match self.per_tenant(t, loaded, conns) {
            Some(v) => row(
                "server RSS per tenant beyond its connections",
                format!("{v:.0} B"),
            ),
            None if t.tenants > 0 => row(
                "server RSS per tenant beyond its connections",
                "n/a (needs --baseline-rss-per-conn)".into(),
            ),
            None => {}
        }
        for p in &self.patch {
            row(
                &format!("PATCH to close 1012, {} socket(s)", p.sockets),
                format!(
                    "p50 {:.1} ms, max {:.1} ms (PATCH answered in {:.1} ms)",
                    p.pct(50.0),
                    p.pct(100.0),
                    p.reply_ms
                ),
            );
        }
        if let Some(b) = &self.delete {
            row("admin deletes/s", batch_text(b, t.admin_concurrency));
            row("server RSS after deleting them", mib(self.rss_after_delete));
        }
        for e in &self.errors {
            row("error", e.clone());
        }
        o
    }
}

fn batch_text(b: &tenants::Batch, concurrency: u64) -> String {
    let mut s = format!(
        "{:.0} ({} in {:.2} s, {concurrency} in flight)",
        b.rate(),
        b.ok,
        b.secs
    );
    if b.failed > 0 {
        s.push_str(&format!(
            "; {} FAILED, e.g. {}",
            b.failed,
            b.errors.join("; ")
        ));
    }
    s
}

/// Ramps up, holds, and builds the report (also used by `smoke`).
pub fn measure(env: &Arc<Env>, a: &ConnectArgs) -> Result<(report::Report, Arc<Shared>), String> {
    let shared = Shared::new(env.cores.len());
    let mon = Monitor::new(
        shared.clone(),
        &env.server_pids,
        env.nats_pid,
        !env.common.quiet,
    );
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
