//! `postgres-changes`: a writer commits rows into a table of the tenant
//! database (created here, added to `supabase_realtime`, dropped at the
//! end); S subscribers joined with a `postgres_changes` INSERT binding on it
//! time every delivered record from the intended commit time the row
//! carries (see [`super::pg_db`]).
//!
//! Two modes:
//! - open loop (`--rate`, stepped like `broadcast`): commit-to-delivery
//!   latency per step, rows/s, deliveries/s, server CPU;
//! - max rate (`--rows N`): N rows back to back; the end-to-end rate is N
//!   over the time from the first commit to the moment the subscribers had
//!   every row. With `--compare-recvlogical` the same burst is first
//!   drained by pg_recvlogical ([`super::recvlogical`]) and both rates and
//!   their ratio are reported. `--backlog` writes the rows while the
//!   consumer is held back (the server, then pg_recvlogical, stopped with
//!   SIGSTOP) and times the drain from SIGCONT, so the writer's speed does
//!   not bound either figure.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use glommio::spawn_local;
use serde_json::json;

use super::pg_cost::PgMeter;
use super::pg_db::{create_table_sql, spawn_writer, Db, Pace, WriteJob, WriteOut};
use super::recvlogical::{self, Ceiling};
use super::{
    fill_steps, fill_window, finish, hand_off, merge, open_and_join, pace, Conn, Env, ExecOut,
    Held, EXIT_ERROR,
};
use crate::cli::PgArgs;
use crate::conn::{self, Frame, Heartbeats};
use crate::phx::{self, Control};
use crate::report::{self, Report};
use crate::runner::{self, ExecCtx, Monitor, Sample, Shared};
use crate::rx::{Handoff, Receivers, Role};
use crate::sched::{parse_rates, Schedule};
use crate::stats::{self, now_ns, LatencySummary};

/// The topic every subscriber joins.
const TOPIC: &str = "realtime:lg-pg";

/// Runs the scenario; returns the exit code.
pub fn run(a: &PgArgs) -> i32 {
    if a.table.is_empty()
        || !a
            .table
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        eprintln!("realtime-loadgen: --table must be a lower-case identifier ([a-z0-9_]+)");
        return EXIT_ERROR;
    }
    let (sched, env, db) = match setup(a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    if a.rls {
        return super::pg_rls::run(a, &env, &db, sched.as_ref());
    }
    let t = &a.table;
    if let Err(e) = db.exec(&format!(
        "{} alter publication supabase_realtime add table public.{t};",
        create_table_sql(t, false)
    )) {
        eprintln!("realtime-loadgen: setting up the table: {e}");
        return EXIT_ERROR;
    }
    let ceiling = match (a.compare_recvlogical, a.rows) {
        (true, Some(n)) => Some(recvlogical::measure(&db, a, n, None)),
        _ => None,
    };
    let shape = Shape::plain(t);
    let r = measure(&env, &db, a, sched.as_ref(), ceiling, &shape);
    if let Err(e) = db.exec(&format!(
        "alter publication supabase_realtime drop table public.{t}; drop table public.{t};"
    )) {
        eprintln!("realtime-loadgen: dropping the table: {e}");
    }
    match r {
        Ok(Phase {
            report: mut r,
            shared,
            ..
        }) => {
            r.params = serde_json::to_value(a).unwrap_or_default();
            finish(r, &env, &shared.reasons)
        }
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            EXIT_ERROR
        }
    }
}

/// The schedule (`None` with --rows), the resolved options and the
/// database of a Postgres scenario.
pub fn setup(a: &PgArgs) -> Result<(Option<Schedule>, Arc<Env>, Db), String> {
    let sched = match a.rows {
        Some(_) => None,
        None => Some(Schedule::stepped(
            &parse_rates(&a.rate)?,
            (a.duration * 1e9) as u64,
        )),
    };
    let env = Arc::new(Env::resolve(&a.common, a.subscribers)?);
    let db = Db::new(a, env.cores[0]);
    Ok((sched, env, db))
}

/// What one measured run subscribes to and writes.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Table in `public` (created and published by the caller).
    pub table: String,
    /// `Some(U)`: row `k` belongs to user `k % U` and subscriber `i` joins
    /// as user `i % U` with an `authenticated` token (`tokens[u]`).
    pub users: Option<u64>,
    /// Whether only a row's owner may see it (RLS on the table).
    pub rls: bool,
    /// The users' tokens.
    pub tokens: Vec<String>,
    /// Whether to read the database's CPU and transactions.
    pub meter: bool,
    /// `db-broadcast`: the writer calls `realtime.send()` to this public
    /// sub-topic and the subscribers join `realtime:<it>` with no binding.
    pub send_topic: Option<String>,
}

impl Shape {
    /// The plain scenario: one token for all, no owners, no meter.
    pub fn plain(table: &str) -> Shape {
        Shape {
            table: table.into(),
            users: None,
            rls: false,
            tokens: Vec::new(),
            meter: false,
            send_topic: None,
        }
    }

    /// The scenario's name in reports and status lines.
    pub fn scenario(&self) -> &'static str {
        match self.send_topic {
            Some(_) => "db-broadcast",
            None => "postgres-changes",
        }
    }

    /// Deliveries owed for the first `rows` rows to `subs` subscribers: all
    /// of them get every row, unless RLS limits a row to its owner's
    /// subscribers (user `u` has `S / U` of them, one more when `u < S % U`).
    pub fn due(&self, rows: u64, subs: u64) -> u64 {
        match (self.rls, self.users) {
            (true, Some(u)) if u > 0 => {
                let (cycles, rest) = (rows / u, rows % u);
                cycles * subs + rest * (subs / u) + rest.min(subs % u)
            }
            _ => rows * subs,
        }
    }
}

/// One measured run and what the database paid for it.
pub struct Phase {
    /// The run's report (scenario part in `extra`).
    pub report: Report,
    /// Its shared state (error reasons).
    pub shared: Arc<Shared>,
    /// Rows the writer committed.
    pub rows: u64,
    /// Transactions the writer committed.
    pub commits: u64,
    /// Postgres CPU seconds over the window (the whole cluster).
    pub pg_cpu_s: Option<f64>,
    /// Transactions others (the server) committed over the window.
    pub round_trips: Option<i64>,
    /// Commits per counter-reading connection (the meter's calibration).
    pub probe: Option<u64>,
}

/// Sets up the subscribers, runs the writer, and builds the report.
pub fn measure(
    env: &Arc<Env>,
    db: &Db,
    a: &PgArgs,
    sched: Option<&Schedule>,
    ceiling: Option<Result<Ceiling, String>>,
    shape: &Shape,
) -> Result<Phase, String> {
    let nr_exec = env.cores.len();
    // One counter set per executor (shared with its receiver), plus the writer's.
    let shared = Shared::new(nr_exec + 1);
    let mon = Monitor::new(
        shared.clone(),
        &env.server_pids,
        env.nats_pid,
        !env.common.quiet,
    );
    let receivers = Receivers::start(&env.cores, &shared, sched.cloned())
        .map_err(|e| format!("starting receivers: {e}"))?;
    let nr_steps = sched.map_or(1, |s| s.steps().len());
    let handles = {
        let (env, a, txs) = (env.clone(), Arc::new(a.clone()), receivers.senders());
        let shape = Arc::new(shape.clone());
        runner::spawn(&env.cores.clone(), &shared, move |ctx| {
            let tx = txs[ctx.id % txs.len()].clone();
            exec(ctx, env.clone(), a.clone(), shape.clone(), tx, nr_steps)
        })
        .map_err(|e| format!("starting executors: {e}"))?
    };
    mon.wait_ready(a.subscribers, Duration::from_secs(env.common.setup_timeout));
    let ready = shared.ready.load(Ordering::Acquire);
    let stop_all = |handles, receivers: Receivers| -> Result<Vec<ExecOut>, String> {
        shared.stop();
        let mut outs = runner::join(handles)?;
        outs.extend(receivers.join()?);
        mon.finish();
        Ok(outs)
    };
    if ready < a.subscribers {
        let _ = stop_all(handles, receivers);
        return Err(format!(
            "setup failed ({ready}/{} subscribers ready): {:?} (is the server up with \
             DB_* pointing at this database?)",
            a.subscribers,
            shared.reasons.take()
        ));
    }
    if a.backlog && (a.rows.is_none() || env.server_pid.is_none()) {
        let _ = stop_all(handles, receivers);
        return Err("--backlog needs --rows and the server's pid (--server-pid)".into());
    }
    let mut meter = match shape.meter {
        true => match PgMeter::start(db) {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = stop_all(handles, receivers);
                return Err(format!("reading pg_stat_database: {e}"));
            }
        },
        false => None,
    };
    let job = WriteJob {
        table: shape.table.clone(),
        rows_per_commit: a.rows_per_commit,
        pad: a.pad,
        pace: match (a.rows, sched) {
            (Some(n), _) => Pace::Burst(n),
            (None, Some(s)) => Pace::Schedule(s.clone()),
            (None, None) => Pace::Burst(0),
        },
        end_marker: None,
        slot: nr_exec,
        owners: shape.users,
        send_topic: shape.send_topic.clone(),
    };
    let writer = spawn_writer(db, job, shared.clone())?;
    let mut r = env.report(shape.scenario(), serde_json::Value::Null);
    r.connections = ready;
    let total_rows = a
        .rows
        .unwrap_or_else(|| sched.map_or(0, Schedule::total_events));
    let pg_cpu0 = meter.as_ref().and_then(PgMeter::cpu_s);
    // The database's figures end with the deliveries: CPU at once, the
    // commit counter once the writer is gone and the counts settled, both
    // before the subscribers leave.
    let pg_end = |meter: &mut Option<PgMeter>| -> Result<(Option<f64>, Option<u64>), String> {
        let Some(m) = meter.as_mut() else {
            return Ok((None, None));
        };
        let cpu = m.cpu_s();
        let deadline = now_ns() + 10_000_000_000;
        while shared.tally().sends < total_rows && shared.tally().push_errors == 0 {
            if now_ns() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok((cpu, Some(m.settle(db)?)))
    };
    let (w, drained_at, pg) = match (a.rows, sched) {
        (None, Some(sched)) => {
            let start = now_ns() + 300_000_000;
            shared.start(start);
            let marks: Vec<u64> = (1..=sched.steps().len())
                .map(|i| sched.step_start_ns(i))
                .collect();
            let window_ns = sched.total_ns() + (a.drain * 1e9) as u64;
            let (samples, at_marks) = mon.record(start, window_ns, &marks, shape.scenario());
            let pg = pg_end(&mut meter);
            shared.stop();
            let w = writer.join().map_err(|e| format!("writer thread: {e}"))??;
            let outs = stop_all(handles, receivers)?;
            let all = merge(&outs);
            let (first, last) = (samples[0], *samples.last().unwrap_or(&samples[0]));
            fill_window(&mut r, &first, &last, nr_exec, Some(sched.total_ns()));
            let mut step_marks = vec![first];
            step_marks.extend(at_marks);
            fill_steps(&mut r, sched, &step_marks, &all, nr_exec);
            r.latency = LatencySummary::of(&all.lat);
            r.latency_curve = stats::percentile_curve(&all.lat);
            r.timeline = report::timeline(&samples, start);
            if r.window.sends < sched.total_events() {
                r.warnings.push(format!(
                    "the writer committed {} of the {} scheduled rows (commit round trip \
                     p99 {:.2} ms: the database or the writer could not keep up)",
                    r.window.sends,
                    sched.total_events(),
                    LatencySummary::of(&w.commit_rtt).p99_ms
                ));
            }
            (w, None, pg)
        }
        _ => {
            let n = a.rows.unwrap_or(0);
            let start = now_ns();
            // With --backlog the server sleeps while the rows are written.
            let held = a.backlog.then_some(env.server_pid).flatten();
            if let Some(pid) = held {
                signal(pid, libc::SIGSTOP);
            }
            shared.start(start);
            let resumed = held.map(|pid| {
                // A failing writer stops short of n: give up after a while.
                let deadline = now_ns() + 120_000_000_000;
                while shared.tally().sends < n && shared.tally().push_errors == 0 {
                    if now_ns() > deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                let t = now_ns();
                signal(pid, libc::SIGCONT);
                t
            });
            let (samples, done) = wait_drained(&mon, shape.due(n, a.subscribers), n, a.drain);
            let pg = pg_end(&mut meter);
            shared.stop();
            let w = writer.join().map_err(|e| format!("writer thread: {e}"))??;
            let outs = stop_all(handles, receivers)?;
            let all = merge(&outs);
            let (first, last) = (samples[0], *samples.last().unwrap_or(&samples[0]));
            let active = done
                .unwrap_or(last.t_ns)
                .saturating_sub(resumed.unwrap_or(w.first_ns.max(start)));
            fill_window(&mut r, &first, &last, nr_exec, Some(active));
            r.latency = LatencySummary::of(&all.lat);
            r.latency_curve = stats::percentile_curve(&all.lat);
            r.timeline = report::timeline(&samples, start);
            if done.is_none() {
                r.warnings.push(format!(
                    "the subscribers did not receive every row within {:.0} s of the last commit",
                    a.drain.max(30.0)
                ));
            }
            let t0 = resumed.unwrap_or(w.first_ns);
            let drained = done.map(|d| (d.saturating_sub(t0)) as f64 / 1e9);
            (w, drained, pg)
        }
    };
    let (pg_cpu1, settled) = pg?;
    r.send_lag = sched.map(|_| LatencySummary::of(&w.lag));
    // Max rate: every row written is owed (with --backlog they were all
    // written before the window opened).
    let expected = shape.due(a.rows.map_or(r.window.sends, |_| w.rows), a.subscribers);
    r.expected_deliveries = Some(expected);
    r.delivery_ratio = (expected > 0).then(|| r.window.deliveries as f64 / expected as f64);
    summarize(&mut r, a, &w, drained_at, ceiling);
    Ok(Phase {
        report: r,
        shared,
        rows: w.rows,
        commits: w.commits,
        pg_cpu_s: pg_cpu0.zip(pg_cpu1).map(|(a, b)| b - a),
        round_trips: meter
            .as_ref()
            .zip(settled)
            .map(|(m, s)| m.others(s, w.commits)),
        probe: meter.as_ref().map(PgMeter::probe),
    })
}

/// Max-rate mode: samples once a second until `deliveries` arrived, or
/// the writer is done (`rows` committed) and `drain` (at least 30 s) more
/// passed. Returns the timeline and when the last delivery was seen.
fn wait_drained(
    mon: &Monitor,
    deliveries: u64,
    rows: u64,
    drain: f64,
) -> (Vec<Sample>, Option<u64>) {
    let mut samples = vec![mon.sample()];
    let mut written_at = None;
    let mut next = now_ns() + 1_000_000_000;
    loop {
        let t = mon.shared.tally();
        let now = now_ns();
        if t.deliveries >= deliveries {
            samples.push(mon.sample());
            return (samples, Some(now));
        }
        if t.sends >= rows && written_at.is_none() {
            written_at = Some(now);
        }
        if written_at.is_some_and(|w| now > w + (drain.max(30.0) * 1e9) as u64) {
            samples.push(mon.sample());
            return (samples, None);
        }
        if now >= next {
            let s = mon.sample();
            mon.status(format!(
                "postgres-changes: {} rows committed, {} delivered",
                s.tally.sends, s.tally.deliveries
            ));
            samples.push(s);
            next += 1_000_000_000;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Fills the scenario-specific part of the report.
fn summarize(
    r: &mut Report,
    a: &PgArgs,
    w: &WriteOut,
    drained_s: Option<f64>,
    ceiling: Option<Result<Ceiling, String>>,
) {
    let write_s = (w.last_ns.saturating_sub(w.first_ns)) as f64 / 1e9;
    let write_rps = w.rows as f64 / write_s.max(1e-9);
    let e2e = drained_s.map(|d| w.rows as f64 / d.max(1e-9));
    let rtt = LatencySummary::of(&w.commit_rtt);
    let (ceil, ceil_err) = match ceiling {
        Some(Ok(c)) => (Some(c), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    if let Some(e) = &ceil_err {
        r.warnings
            .push(format!("pg_recvlogical comparison failed: {e}"));
    }
    let ratio = match (e2e, &ceil) {
        (Some(ours), Some(c)) => Some(ours / c.rows_per_sec.max(1e-9)),
        _ => None,
    };
    r.extra = Some(json!({
        "mode": match (a.rows.is_some(), a.backlog) {
            (true, true) => "max-rate-backlog",
            (true, false) => "max-rate",
            _ => "open-loop",
        },
        "rows": w.rows,
        "commits": w.commits,
        "rows_per_commit": a.rows_per_commit,
        "subscribers": a.subscribers,
        "writer_rows_per_sec": write_rps,
        "commit_rtt": rtt,
        "end_lsn": w.end_lsn,
        "drain_s": drained_s,
        "end_to_end_rows_per_sec": e2e,
        "recvlogical": ceil,
        "recvlogical_error": ceil_err,
        "ratio_to_recvlogical": ratio,
    }));
    let mut md = format!("| {} | value |\n|---|---|\n", r.scenario);
    let mut row = |k: &str, v: String| md.push_str(&format!("| {k} | {v} |\n"));
    row(
        "rows committed (commits)",
        format!("{} ({})", w.rows, w.commits),
    );
    row("writer rows/s", format!("{write_rps:.0}"));
    row(
        "commit round trip p50 / p99",
        format!("{:.3} / {:.3} ms", rtt.p50_ms, rtt.p99_ms),
    );
    if let Some(v) = e2e {
        let from = if a.backlog { "resume" } else { "first commit" };
        row(
            &format!("end-to-end rows/s ({from} to last delivery)"),
            format!("{v:.0}"),
        );
    }
    if let Some(c) = &ceil {
        row(
            if a.backlog {
                "pg_recvlogical rows/s (resume to last row received)"
            } else {
                "pg_recvlogical rows/s (first commit to last row received)"
            },
            format!(
                "{:.0} (writer alone {:.0})",
                c.rows_per_sec, c.write_rows_per_sec
            ),
        );
    }
    if let Some(x) = ratio {
        row("ours / pg_recvlogical", format!("{:.3}", x));
    }
    r.extra_md = Some(md);
}

/// Sends `sig` to the server.
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid we were told is the server.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// One executor: its share of the subscribers.
async fn exec(
    ctx: ExecCtx,
    env: Arc<Env>,
    a: Arc<PgArgs>,
    shape: Arc<Shape>,
    tx: Sender<Handoff>,
    nr_steps: usize,
) -> ExecOut {
    let hb = Rc::new(Heartbeats::default());
    let held = Held::default();
    let mut tasks = vec![spawn_local(hb.clone().run(env.heartbeat))];
    let t0 = now_ns();
    let nr = ctx.nr as u64;
    let rate = env.common.connect_rate / nr as f64;
    for (local, i) in (0..a.subscribers)
        .filter(|i| i % nr == ctx.id as u64)
        .enumerate()
    {
        let (ctx, env, a, hb) = (ctx.clone(), env.clone(), a.clone(), hb.clone());
        let shape = shape.clone();
        let (tx, held) = (tx.clone(), held.clone());
        tasks.push(spawn_local(async move {
            pace(t0, local as u64, rate).await;
            let mut cfg = env.join_config();
            if let Some(u) = shape.users.filter(|&u| u > 0) {
                cfg.access_token = shape.tokens.get((i % u) as usize).cloned();
            }
            let topics = match &shape.send_topic {
                Some(t) => [format!("realtime:{t}")],
                None => {
                    cfg.postgres_changes =
                        vec![json!({"event": "INSERT", "schema": "public", "table": shape.table})];
                    [TOPIC.to_string()]
                }
            };
            let ready = match open_and_join(&ctx, &env, a.sub_vsn, i, &topics, &cfg).await {
                Ok(conn) if shape.send_topic.is_some() => Ok(conn),
                Ok(mut conn) => subscribed(&ctx, &mut conn, env.connect_timeout)
                    .await
                    .map(|_| conn),
                Err(e) => Err(e),
            };
            let Ok(conn) = ready else {
                ctx.shared.setup_failed.fetch_add(1, Ordering::AcqRel);
                return;
            };
            ctx.shared.ready.fetch_add(1, Ordering::AcqRel);
            hb.add(&conn.sock);
            hand_off(&tx, conn, Role::Broadcast, &held);
        }));
    }
    ctx.wait_stop().await;
    drop(tasks);
    ExecOut::new(nr_steps)
}

/// Waits for the `system` message that confirms the binding ("Subscribed
/// to PostgreSQL"); an error status fails the subscriber.
async fn subscribed(ctx: &ExecCtx, conn: &mut Conn, limit: Duration) -> Result<(), String> {
    let vsn = conn.sock.vsn;
    let early = conn.early_system.take().map(|(ok, message)| {
        if ok {
            Ok(())
        } else {
            Err(format!("postgres_changes refused: {message}"))
        }
    });
    let wait = async {
        if let Some(r) = early {
            return r;
        }
        loop {
            let mut got = None;
            let mut on = |f: Frame<'_>| {
                let Frame::Text(t) = f else { return };
                if let Control::System { ok, message } = phx::control(vsn, t) {
                    got.get_or_insert(if ok {
                        Ok(())
                    } else {
                        Err(format!("postgres_changes refused: {message}"))
                    });
                }
            };
            conn::read_batch(&conn.sock, &mut conn.rd, &mut on)
                .await
                .map_err(|e| format!("waiting for the subscription: {e}"))?;
            if let Some(r) = got {
                return r;
            }
        }
    };
    let r = conn::timeout(limit, wait)
        .await
        .unwrap_or_else(|| Err("no `Subscribed to PostgreSQL` in time".into()));
    if let Err(e) = &r {
        ctx.shared.reasons.note(e.clone());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rls_rows_are_due_to_their_owners_subscribers_only() {
        let mut shape = Shape::plain("t");
        assert_eq!(shape.due(7, 100), 700);
        shape.users = Some(10);
        // Without RLS every subscriber is owed every row, users or not.
        assert_eq!(shape.due(7, 100), 700);
        shape.rls = true;
        assert_eq!(shape.due(2000, 100), 2000 * 10);
        assert_eq!(shape.due(8000, 400), 8000 * 40);
        shape.users = Some(100);
        assert_eq!(shape.due(8000, 400), 8000 * 4);
        // Uneven: 7 subscribers over 3 users own 3, 2, 2 of them.
        shape.users = Some(3);
        let by_user = [3, 2, 2];
        for rows in 0..20 {
            let want: u64 = (0..rows).map(|k| by_user[(k % 3) as usize]).sum();
            assert_eq!(shape.due(rows, 7), want, "{rows} rows");
        }
        // More users than subscribers: some rows are owed to nobody.
        shape.users = Some(5);
        assert_eq!(shape.due(5, 2), 2);
    }
}
