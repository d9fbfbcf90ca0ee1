//! `db-broadcast`: Broadcast from Database. A writer calls
//! `realtime.send()` (public, topic `lg-db`) at a target rate (or `--rows N`
//! back to back); S subscribers joined to `realtime:lg-db` time every
//! delivery from the intended commit time the payload carries (`lg_t`, as
//! in `postgres-changes`). Reports deliveries/s, commit-to-delivery
//! latency and, with `--rows N --compare-recvlogical`, pg_recvlogical's
//! rows/s on the same `realtime.send()` workload through the messages
//! publication. A missing delivery fails the run.
//!
//! The tenant database must hold the tenant schema (`realtime.send`): the
//! server installs it when its tenant becomes active.

use super::pg_changes::{measure, setup, Phase, Shape};
use super::recvlogical;
use super::{finish, EXIT_ERROR};
use crate::cli::PgArgs;
use crate::report::Check;

/// The sub-topic the writer sends to and the subscribers join.
const TOPIC: &str = "lg-db";

/// Runs the scenario; returns the exit code.
pub fn run(a: &PgArgs) -> i32 {
    let (sched, env, db) = match setup(a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    };
    match db.scalar("select to_regproc('realtime.send') is not null and exists (select 1 from pg_publication where pubname = 'supabase_realtime_messages_publication')") {
        Ok(Some(v)) if v == "t" => {}
        Ok(_) => {
            eprintln!(
                "realtime-loadgen: the database has no realtime.send() or messages publication yet \
                 (start the server with DB_* pointing at it first)"
            );
            return EXIT_ERROR;
        }
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            return EXIT_ERROR;
        }
    }
    let ceiling = match (a.compare_recvlogical, a.rows) {
        (true, Some(n)) => Some(recvlogical::measure(&db, a, n, Some("lg-db-ceil"))),
        _ => None,
    };
    let mut shape = Shape::plain(&a.table);
    shape.send_topic = Some(TOPIC.into());
    match measure(&env, &db, a, sched.as_ref(), ceiling, &shape) {
        Ok(Phase {
            report: mut r,
            shared,
            ..
        }) => {
            r.params = serde_json::to_value(a).unwrap_or_default();
            // Every row sent is owed to every subscriber.
            let ratio = r.delivery_ratio;
            r.checks.push(Check {
                name: "every delivery arrived (deliveries / due)".into(),
                limit: 1.0,
                value: ratio,
                pass: ratio.is_some_and(|x| x >= 1.0),
            });
            finish(r, &env, &shared.reasons)
        }
        Err(e) => {
            eprintln!("realtime-loadgen: {e}");
            EXIT_ERROR
        }
    }
}
