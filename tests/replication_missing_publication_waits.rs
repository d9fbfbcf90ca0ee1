//! A database without the configured publication is not a failure to
//! retry: the driver says why once (warn), looks again when a subscriber
//! joins (or every 30 s), and streams as soon as the publication exists.

mod support;
use std::time::{Duration, Instant};
use support::pg::*;
use support::*;

#[test]
fn a_missing_publication_is_reported_once_and_streams_once_created() {
    // Private: a change by another test decoded while the publication is
    // missing would fail the walsender (pgoutput looks it up by name).
    let db = DevDb::private("nopub");
    let pid = std::process::id();
    let table = format!("nopub_{pid}");
    let publication = format!("nopub_pub_{pid}");
    let suffix = format!("_nopub{pid}");
    let slot = format!("supabase_realtime_replication_slot{suffix}");
    db.psql(&format!(
        "create table public.{table} (id bigint primary key);
         create publication {publication} for table public.{table};"
    ));
    let mut env = db.server_env(&suffix);
    env.push(("DB_PUBLICATION".into(), publication.clone()));
    env.push(("LOG_LEVEL".into(), "info".into()));
    env.push(("NO_COLOR".into(), "1".into()));
    let (mut srv, log) = Server::start_logged(&env);
    let soon = || Instant::now() + Duration::from_secs(20);
    let mut seen_a = Seen::default();
    let mut a = subscribe(srv.port, "a", &table, &mut seen_a);

    // The publication goes away and the stream with it.
    db.psql(&format!(
        "drop publication {publication};
         select pg_terminate_backend(pid) from pg_stat_activity
          where application_name = 'realtime_replication';"
    ));
    let missing = format!("replication not configured: publication `{publication}` does not exist");
    assert!(
        log.wait_for(&[&missing], 1, soon()),
        "no `{missing}` in the log"
    );
    // The subscriber is told the stream is down.
    let down = "Realtime was unable to connect to the project database";
    assert!(
        seen_a.read(&mut a, &table, soon(), |s| s
            .system
            .iter()
            .any(|(st, m)| st == "error" && m == down)),
        "{:?}",
        seen_a.system
    );

    // Once the publication is back, a join prompts a look at once (well
    // before the 30 s re-check) and the stream starts again.
    let check = ["replication step done", "CheckPublication"];
    let checks = log.count(&check);
    db.psql(&format!(
        "create publication {publication} for table public.{table}"
    ));
    let started = Instant::now();
    let mut seen = Seen::default();
    let mut ws = subscribe(srv.port, "b", &table, &mut seen);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the stream started only after {:?}",
        started.elapsed()
    );
    // The server wrote the check's line before the stream started; the
    // log is read by another thread, so wait for it to arrive here.
    assert!(log.wait_for(&check, checks + 1, soon()), "no look at all");
    assert_eq!(
        log.count(&check),
        checks + 1,
        "one look, prompted by the join"
    );
    db.psql(&format!("insert into public.{table} (id) values (1)"));
    assert!(seen.read(&mut ws, &table, soon(), |s| s.inserts == [1]));

    // Said once, at warn; only the ended stream counted as a failure.
    assert_eq!(log.count(&[&missing]), 1);
    assert_eq!(log.count(&["WARN", "replication not configured"]), 1);
    assert_eq!(log.count(&["replication stopped"]), 1);

    srv.stop();
    db.drop_slot(&slot);
    db.psql(&format!(
        "drop publication {publication}; drop table public.{table}"
    ));
}
