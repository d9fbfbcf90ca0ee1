//! The frame shared by the stepped scenarios whose subscribers are read by
//! the epoll receivers (`presence`, `rest-broadcast`): resolve the options,
//! start the receivers and one executor per core, wait for the connections,
//! run the rate steps, join everything and fill the report's common parts.
//! The scenario supplies the executor body and its own report lines.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use super::{fill_stepped, merge, run_steps, Env, ExecOut, EXIT_ERROR};
use crate::cli::Common;
use crate::report::{self, Report};
use crate::runner::{self, ExecCtx, Monitor, Shared};
use crate::rx::{Handoff, Receivers};
use crate::sched::{parse_rates, Schedule};
use crate::stats::LatencySummary;

/// What a stepped run is.
pub struct Plan<'a> {
    /// The scenario's name (report and progress line).
    pub scenario: &'a str,
    /// The common options.
    pub common: &'a Common,
    /// The scenario's options as JSON, for the report.
    pub params: serde_json::Value,
    /// `--rate`, a comma list.
    pub rates: &'a str,
    /// Seconds per rate step.
    pub duration: f64,
    /// Seconds to keep receiving after the last step.
    pub drain: f64,
    /// Connections opened (descriptors, readiness target).
    pub nr_conns: u64,
    /// `Some(what)`: refuse to run when no connection became ready
    /// ("no {what} could join").
    pub refuse_if_none_ready: Option<&'a str>,
}

/// A finished stepped run: the report with its common parts filled, and
/// what the scenario needs for the rest.
pub struct Stepped {
    /// The resolved options.
    pub env: Arc<Env>,
    /// The run's state (error reasons).
    pub shared: Arc<Shared>,
    /// Every executor's and receiver's histograms and counters, merged.
    pub all: ExecOut,
    /// The report: window, steps, RSS, latency, send lag, timeline.
    pub report: Report,
}

/// Runs `plan`; `exec(ctx, env, schedule, receiver)` is one executor's
/// body. `Err` is the exit code when the run could not happen (the reason
/// already printed).
pub fn run<F, Fut>(plan: Plan<'_>, exec: F) -> Result<Stepped, i32>
where
    F: Fn(ExecCtx, Arc<Env>, Schedule, Sender<Handoff>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ExecOut> + 'static,
{
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("realtime-loadgen: {what}{e}");
        EXIT_ERROR
    };
    let rates = parse_rates(plan.rates).map_err(|e| fail("", &e))?;
    let sched = Schedule::stepped(&rates, (plan.duration * 1e9) as u64);
    let env = Arc::new(Env::resolve(plan.common, plan.nr_conns).map_err(|e| fail("", &e))?);
    let shared = Shared::new(env.cores.len());
    let mon = Monitor::new(
        shared.clone(),
        &env.server_pids,
        env.nats_pid,
        !env.common.quiet,
    );
    let before = mon.sample();
    let receivers = Receivers::start(&env.cores, &shared, Some(sched.clone()))
        .map_err(|e| fail("starting receivers: ", &e))?;
    let txs = receivers.senders();
    let handles = {
        let (env, sched) = (env.clone(), sched.clone());
        runner::spawn(&env.cores.clone(), &shared, move |ctx| {
            let tx = txs[ctx.id % txs.len()].clone();
            exec(ctx, env.clone(), sched.clone(), tx)
        })
        .map_err(|e| fail("starting executors: ", &e))?
    };
    mon.wait_ready(plan.nr_conns, Duration::from_secs(env.common.setup_timeout));
    let ready = shared.ready.load(Ordering::Acquire);
    if let (0, Some(what)) = (ready, plan.refuse_if_none_ready) {
        shared.stop();
        let _ = runner::join(handles);
        let _ = receivers.join();
        mon.finish();
        eprintln!(
            "realtime-loadgen: no {what} could join: {:?}",
            shared.reasons.take()
        );
        return Err(EXIT_ERROR);
    }
    let loaded = mon.sample();
    let (start, samples, at_marks) = run_steps(&mon, &shared, &sched, plan.drain, plan.scenario);
    let outs = runner::join(handles)
        .and_then(|mut o| {
            o.extend(receivers.join()?);
            Ok(o)
        })
        .map_err(|e| fail("", &e))?;
    mon.finish();
    let all = merge(&outs);
    let mut r = env.report(plan.scenario, plan.params);
    fill_stepped(
        &mut r,
        &sched,
        &samples,
        at_marks,
        &all,
        env.cores.len(),
        (before.server_rss, loaded.server_rss),
        ready,
    );
    r.send_lag = Some(LatencySummary::of(&all.lag));
    r.timeline = report::timeline(&samples, start);
    Ok(Stepped {
        env,
        shared,
        all,
        report: r,
    })
}
