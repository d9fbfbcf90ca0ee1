//! `postgres-changes --rls --users U`: Postgres Changes under row level
//! security, against the same shape without it, in one run.
//!
//! Two tables alike (`<table>_ref` and `<table>_rls`: an `owner uuid`, the
//! timing column, the filler as body), both in `supabase_realtime` and
//! readable by `authenticated`; only `_rls` has a policy letting a user
//! read the rows it owns. Row `k` belongs to user `k % U`; subscriber `i`
//! joins (serializer from `--sub-vsn`) with an `authenticated` token whose
//! `sub` is user `i % U`, with one INSERT binding. The same writer load
//! goes first to the reference table, where every subscriber is owed every
//! row, then to the RLS table, where a row is owed to its owner's
//! subscribers (S / U of them). Each phase reports deliveries against
//! what is due, deliveries/s, commit-to-delivery latency, and per 1,000
//! rows the server's CPU, the cluster's CPU and the server's database
//! round trips ([`super::pg_cost`]); the summary puts both side by side
//! with the ratio RLS / reference.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::pg_changes::{measure, Phase, Shape};
use super::pg_db::{create_table_sql, rls_sql, user_uuid, Db};
use super::{finish, Env, EXIT_ERROR};
use crate::cli::PgArgs;
use crate::report::Check;
use crate::sched::Schedule;

/// One phase's figures, as compared.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Rows committed.
    pub rows: u64,
    /// Transactions the writer committed.
    pub commits: u64,
    /// Deliveries received in the window.
    pub delivered: u64,
    /// Deliveries owed for the rows committed.
    pub due: u64,
    /// Deliveries/s over the load period.
    pub deliveries_per_sec: f64,
    /// Rows/s from the first commit (or resume) to the last delivery
    /// (max-rate mode).
    pub end_to_end_rows_per_sec: Option<f64>,
    /// Commit-to-delivery latency p50, ms.
    pub p50_ms: f64,
    /// Commit-to-delivery latency p99, ms.
    pub p99_ms: f64,
    /// Server CPU seconds per 1,000 rows.
    pub server_cpu_s_per_1k_rows: Option<f64>,
    /// Server CPU seconds per 1,000 deliveries.
    pub server_cpu_s_per_1k_deliveries: Option<f64>,
    /// Postgres (whole cluster) CPU seconds per 1,000 rows.
    pub pg_cpu_s_per_1k_rows: Option<f64>,
    /// Transactions the server committed in the database.
    pub db_round_trips: Option<i64>,
    /// The same per 1,000 rows.
    pub db_round_trips_per_1k_rows: Option<f64>,
}

/// `x` per 1,000 of `n` (None when nothing was counted).
fn per_1k(x: f64, n: u64) -> Option<f64> {
    (n > 0).then(|| x * 1000.0 / n as f64)
}

impl Figures {
    /// Reads a phase.
    pub fn of(p: &Phase) -> Figures {
        let r = &p.report;
        let delivered = r.window.deliveries;
        Figures {
            rows: p.rows,
            commits: p.commits,
            delivered,
            due: r.expected_deliveries.unwrap_or(0),
            deliveries_per_sec: r.deliveries_per_sec,
            end_to_end_rows_per_sec: r
                .extra
                .as_ref()
                .and_then(|x| x["end_to_end_rows_per_sec"].as_f64()),
            p50_ms: r.latency.p50_ms,
            p99_ms: r.latency.p99_ms,
            server_cpu_s_per_1k_rows: r.server.cpu_s.and_then(|c| per_1k(c, p.rows)),
            server_cpu_s_per_1k_deliveries: r.server.cpu_s.and_then(|c| per_1k(c, delivered)),
            pg_cpu_s_per_1k_rows: p.pg_cpu_s.and_then(|c| per_1k(c, p.rows)),
            db_round_trips: p.round_trips,
            db_round_trips_per_1k_rows: p.round_trips.and_then(|n| per_1k(n as f64, p.rows)),
        }
    }
}

/// The side-by-side table: reference, RLS, and RLS / reference.
pub fn comparison_md(users: u64, subs: u64, reference: &Figures, rls: &Figures) -> String {
    let mut md = format!(
        "| postgres-changes, {subs} subscribers over {users} users | reference (no RLS) | \
         RLS (owner = sub) | RLS / reference |\n|---|---|---|---|\n"
    );
    let mut row = |k: &str, a: Option<f64>, b: Option<f64>, prec: usize| {
        let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.prec$}"));
        let ratio = match (a, b) {
            (Some(a), Some(b)) if a != 0.0 => format!("{:.3}", b / a),
            _ => "n/a".into(),
        };
        md.push_str(&format!("| {k} | {} | {} | {ratio} |\n", f(a), f(b)));
    };
    row(
        "rows committed",
        Some(reference.rows as f64),
        Some(rls.rows as f64),
        0,
    );
    row(
        "deliveries due",
        Some(reference.due as f64),
        Some(rls.due as f64),
        0,
    );
    row(
        "deliveries received",
        Some(reference.delivered as f64),
        Some(rls.delivered as f64),
        0,
    );
    row(
        "deliveries/s",
        Some(reference.deliveries_per_sec),
        Some(rls.deliveries_per_sec),
        0,
    );
    row(
        "end-to-end rows/s",
        reference.end_to_end_rows_per_sec,
        rls.end_to_end_rows_per_sec,
        0,
    );
    row(
        "commit-to-delivery p50 ms",
        Some(reference.p50_ms),
        Some(rls.p50_ms),
        3,
    );
    row(
        "commit-to-delivery p99 ms",
        Some(reference.p99_ms),
        Some(rls.p99_ms),
        3,
    );
    row(
        "server CPU-s per 1,000 rows",
        reference.server_cpu_s_per_1k_rows,
        rls.server_cpu_s_per_1k_rows,
        4,
    );
    row(
        "server CPU-s per 1,000 deliveries",
        reference.server_cpu_s_per_1k_deliveries,
        rls.server_cpu_s_per_1k_deliveries,
        4,
    );
    row(
        "Postgres CPU-s per 1,000 rows (whole cluster)",
        reference.pg_cpu_s_per_1k_rows,
        rls.pg_cpu_s_per_1k_rows,
        4,
    );
    row(
        "server's database round trips",
        reference.db_round_trips.map(|n| n as f64),
        rls.db_round_trips.map(|n| n as f64),
        0,
    );
    row(
        "round trips per 1,000 rows",
        reference.db_round_trips_per_1k_rows,
        rls.db_round_trips_per_1k_rows,
        2,
    );
    md
}

/// Runs both phases; returns the exit code.
pub fn run(a: &PgArgs, env: &Arc<Env>, db: &Db, sched: Option<&Schedule>) -> i32 {
    if a.users == 0 {
        eprintln!("realtime-loadgen: --users must be at least 1");
        return EXIT_ERROR;
    }
    if a.compare_recvlogical {
        eprintln!("realtime-loadgen: --compare-recvlogical does not combine with --rls");
        return EXIT_ERROR;
    }
    let t = &a.table;
    let (open, secret) = (format!("{t}_ref"), format!("{t}_rls"));
    let setup = format!(
        "{} {} {} grant select on public.{open}, public.{secret} to authenticated;
         alter publication supabase_realtime add table public.{open}, public.{secret};",
        create_table_sql(&open, true),
        create_table_sql(&secret, true),
        rls_sql(&secret)
    );
    if let Err(e) = db.exec(&setup) {
        eprintln!("realtime-loadgen: setting up the tables: {e}");
        return EXIT_ERROR;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tokens: Vec<String> = (0..a.users)
        .map(|u| {
            realtime::realtime::auth::sign_hs256(
                &env.common.secret,
                &json!({"role": "authenticated", "sub": user_uuid(u), "iss": "realtime-loadgen",
                        "iat": now, "exp": now + 86_400}),
            )
        })
        .collect();
    let mut phases = Vec::new();
    let mut failed = None;
    for (table, rls) in [(&open, false), (&secret, true)] {
        let shape = Shape {
            table: table.clone(),
            users: Some(a.users),
            rls,
            tokens: tokens.clone(),
            meter: true,
            send_topic: None,
        };
        match measure(env, db, a, sched, None, &shape) {
            Ok(p) => phases.push(p),
            Err(e) => {
                failed = Some(format!(
                    "{} phase: {e}",
                    if rls { "RLS" } else { "reference" }
                ));
                break;
            }
        }
    }
    if let Err(e) = db.exec(&format!(
        "alter publication supabase_realtime drop table public.{open}, public.{secret};
         drop table public.{open}; drop table public.{secret};"
    )) {
        eprintln!("realtime-loadgen: dropping the tables: {e}");
    }
    if let Some(e) = failed {
        eprintln!("realtime-loadgen: {e}");
        return EXIT_ERROR;
    }
    let (Some(rls_phase), Some(ref_phase)) = (phases.pop(), phases.pop()) else {
        return EXIT_ERROR;
    };
    let (fr, fs) = (Figures::of(&ref_phase), Figures::of(&rls_phase));
    let mut r = rls_phase.report;
    r.params = serde_json::to_value(a).unwrap_or_default();
    for w in ref_phase.report.warnings.iter().skip(env.warnings.len()) {
        r.warnings.push(format!("reference phase: {w}"));
    }
    for (why, n) in ref_phase.shared.reasons.take() {
        rls_phase
            .shared
            .reasons
            .note(format!("reference phase ({n}x): {why}"));
    }
    for (name, f) in [("reference", &fr), ("RLS", &fs)] {
        if f.delivered != f.due {
            r.warnings.push(format!(
                "{name} phase: {} deliveries received, {} due",
                f.delivered, f.due
            ));
            // A lost (or extra) delivery fails the run, whatever else it
            // measured.
            r.checks.push(Check {
                name: format!("{name} phase: deliveries received = due"),
                limit: f.due as f64,
                value: Some(f.delivered as f64),
                pass: false,
            });
            r.pass = false;
        }
    }
    r.extra = Some(json!({
        "mode": "rls-comparison",
        "users": a.users,
        "subscribers": a.subscribers,
        "rows_per_commit": a.rows_per_commit,
        "tables": {"reference": open, "rls": secret},
        "reference": fr,
        "rls": fs,
        "meter_commits_per_connection": rls_phase.probe,
        "reference_phase": ref_phase.report.extra,
        "rls_phase": r.extra.take(),
    }));
    let mut md = comparison_md(a.users, a.subscribers, &fr, &fs);
    md.push_str(
        "\nThe figures above the comparison are the RLS phase's. Round trips: \
         transactions committed in the database by others than the loadgen \
         (pg_stat_database.xact_commit, the writer's and the meter's own taken away). \
         Postgres CPU: every process of the cluster, the writer's backend and the \
         walsender included.\n",
    );
    r.extra_md = Some(md);
    finish(r, env, &rls_phase.shared.reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_both_phases_and_the_ratio() {
        let reference = Figures {
            rows: 2000,
            due: 200_000,
            delivered: 200_000,
            deliveries_per_sec: 100_000.0,
            p99_ms: 10.0,
            db_round_trips: Some(0),
            db_round_trips_per_1k_rows: Some(0.0),
            pg_cpu_s_per_1k_rows: Some(0.05),
            ..Default::default()
        };
        let rls = Figures {
            rows: 2000,
            due: 20_000,
            delivered: 19_990,
            deliveries_per_sec: 10_000.0,
            p99_ms: 40.0,
            db_round_trips: Some(5),
            db_round_trips_per_1k_rows: Some(2.5),
            pg_cpu_s_per_1k_rows: Some(0.1),
            ..Default::default()
        };
        let md = comparison_md(10, 100, &reference, &rls);
        assert!(md.contains("100 subscribers over 10 users"), "{md}");
        assert!(
            md.contains("| deliveries received | 200000 | 19990 | 0.100 |"),
            "{md}"
        );
        assert!(
            md.contains("| commit-to-delivery p99 ms | 10.000 | 40.000 | 4.000 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| Postgres CPU-s per 1,000 rows (whole cluster) | 0.0500 | 0.1000 | 2.000 |"
            ),
            "{md}"
        );
        // A zero reference has no ratio; an unmeasured value says so.
        assert!(
            md.contains("| server's database round trips | 0 | 5 | n/a |"),
            "{md}"
        );
        assert!(
            md.contains("| server CPU-s per 1,000 rows | n/a | n/a | n/a |"),
            "{md}"
        );
    }

    #[test]
    fn per_thousand_needs_a_count() {
        assert_eq!(per_1k(2.0, 4000), Some(0.5));
        assert_eq!(per_1k(2.0, 0), None);
    }
}
