//! `smoke`: a few seconds of tiny broadcast (2 publishers, 20 subscribers
//! over 2 topics, 200 msg/s) and a tiny connect (50 connections). No
//! thresholds and no timing assertions: it passes when messages flowed and
//! joins succeeded, which is all CI should ask of a shared machine.
//!
//! The load stays under the default limits of the conformance servers
//! (1000 events/s, 1000 joins/s): the server's rate counters average over
//! 5 s ticks and the broadcast part is shorter than one tick.

use std::sync::Arc;

use super::{Env, EXIT_ERROR, EXIT_FAIL, EXIT_PASS};
use crate::cli::{BroadcastArgs, ConnectArgs, SmokeArgs, TenantArgs};
use crate::phx::Proto;
use crate::report::Thresholds;
use crate::sched::Schedule;

/// Runs the smoke test; returns the exit code.
pub fn run(a: &SmokeArgs) -> i32 {
    let mut common = a.common.clone();
    // Thresholds are never applied in smoke; the verdict is "did it flow".
    common.thresholds = Thresholds::default();
    let env = match Env::resolve(&common, 100) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    let b = BroadcastArgs {
        publishers: 2,
        subscribers: 10,
        topics: 2,
        payload_size: 100,
        proto: Proto::Binary,
        sub_vsn: realtime::proto::phoenix::Vsn::V2,
        self_: false,
        ack: true,
        rate: "200".into(),
        duration: a.duration,
        drain: 0.5,
        event: "lg".into(),
        tick_ms: 0.0,
        rx: crate::cli::RxMode::Epoll,
        common: common.clone(),
    };
    let sched = Schedule::stepped(&[200.0], (a.duration * 1e9) as u64);
    let bcast = match super::broadcast::measure(&env, &b, &sched) {
        Ok((mut r, shared)) => {
            r.params = serde_json::to_value(&b).unwrap_or_default();
            r.scenario = "smoke-broadcast".into();
            r.error_reasons = shared.reasons.take();
            r.errors = r.totals.errors();
            r
        }
        Err(e) => {
            eprintln!("realtime-loadgen: smoke broadcast: {e}");
            return EXIT_FAIL;
        }
    };
    print!("{}", bcast.markdown());
    let c = ConnectArgs {
        conns: 50,
        channels: 1,
        topics: 10,
        ramp_rate: Some(200.0),
        hold: 1,
        vsn: realtime::proto::phoenix::Vsn::V1,
        tenants: TenantArgs::none(),
        common,
    };
    let conn = match super::connect::measure(&env, &c) {
        Ok((mut r, shared)) => {
            r.params = serde_json::to_value(&c).unwrap_or_default();
            r.scenario = "smoke-connect".into();
            r.error_reasons = shared.reasons.take();
            r.errors = r.totals.errors();
            r
        }
        Err(e) => {
            eprintln!("realtime-loadgen: smoke connect: {e}");
            return EXIT_FAIL;
        }
    };
    print!("\n{}", conn.markdown());
    if let Some(path) = &env.common.out {
        let doc = serde_json::json!({"broadcast": bcast, "connect": conn});
        if let Err(e) = std::fs::write(path, format!("{doc:#}\n")) {
            eprintln!("realtime-loadgen: writing {}: {e}", path.display());
        }
    }
    if let Some(dir) = &env.common.svg_dir {
        for r in [&bcast, &conn] {
            if let Err(e) = r.write_svgs(dir) {
                eprintln!("realtime-loadgen: writing SVGs: {e}");
            }
        }
    }
    let flowed = bcast.window.deliveries > 0 && bcast.window.sends > 0;
    let joined = conn.totals.joins_ok > 0;
    if flowed && joined {
        println!(
            "\nsmoke: ok ({} deliveries, {} joins)",
            bcast.window.deliveries, conn.totals.joins_ok
        );
        EXIT_PASS
    } else {
        println!(
            "\nsmoke: FAILED (deliveries {}, sends {}, joins {})",
            bcast.window.deliveries, bcast.window.sends, conn.totals.joins_ok
        );
        EXIT_FAIL
    }
}
