//! No loss across a Postgres crash: while a writer commits numbered rows,
//! the database is stopped in immediate mode (a crash: no shutdown
//! checkpoint) and started again. The server reconnects with backoff,
//! resumes its permanent slot from the confirmed LSN, and a subscriber that
//! stayed connected receives every row the database holds afterwards.
//!
//! Delivery is at-least-once: the slot's confirmed position survives a
//! crash only as of the last checkpoint, so rows delivered shortly before
//! the crash may come again. Duplicates are allowed and reported; a missing
//! row fails the test. Runs against a private cluster so stopping it does
//! not disturb tests sharing the default one.

mod support;
use std::time::{Duration, Instant};
use support::pg::*;
use support::*;

#[test]
fn every_committed_row_arrives_across_an_immediate_postgres_restart() {
    let db = DevDb::private("pgrestart");
    let table = format!("nl_pg_{}", std::process::id());
    let suffix = format!("_pgr{}", std::process::id());
    create_numbered_table(&db, &table);
    let env = db.server_env(&suffix);
    let mut srv = Server::start_env(&env);
    let mut seen = Seen::default();
    let mut ws = subscribe(srv.port, "nl", &table, &mut seen);

    let total = 900;
    let (writer, written) = spawn_writer(&db, &table, total);
    let far = Instant::now() + Duration::from_secs(60);
    assert!(
        seen.read(&mut ws, &table, far, |s| s.distinct().len() >= 250),
        "rows before the crash: {}",
        seen.distinct().len()
    );
    db.stop("immediate");
    let during = seen.distinct().len();
    // Down until the server has seen it (its stream failed and subscribers
    // were told), so the restart is one the server must recover from.
    let noticed = seen.read(
        &mut ws,
        &table,
        Instant::now() + Duration::from_secs(30),
        |s| {
            s.system
                .iter()
                .any(|(_, m)| m == "Realtime was unable to connect to the project database")
        },
    );
    assert!(noticed, "the outage went unnoticed: {:?}", seen.system);
    db.start();

    writer.join().unwrap();
    assert!(written.load(std::sync::atomic::Ordering::SeqCst));
    let committed = db.ids(&table);
    assert_eq!(committed, (1..=total).collect(), "the writer's rows");
    let complete = seen.read(
        &mut ws,
        &table,
        Instant::now() + Duration::from_secs(60),
        |s| s.distinct().len() >= committed.len(),
    );
    let missing: Vec<i64> = committed.difference(&seen.distinct()).copied().collect();
    assert!(
        complete && missing.is_empty(),
        "{} rows missing (first {:?}); system messages {:?}",
        missing.len(),
        &missing[..missing.len().min(10)],
        seen.system
    );
    eprintln!(
        "pg restart: {} rows, {} seen before the crash, {} duplicates",
        total,
        during,
        seen.duplicates()
    );
    // The subscriber was told the stream went down and came back.
    let msgs: Vec<&str> = seen.system.iter().map(|(_, m)| m.as_str()).collect();
    let down = msgs
        .iter()
        .position(|m| *m == "Realtime was unable to connect to the project database");
    assert!(down.is_some(), "{msgs:?}");
    assert!(
        msgs[down.unwrap()..].contains(&"Subscribed to PostgreSQL"),
        "{msgs:?}"
    );

    srv.stop();
    db.drop_slot(&format!("supabase_realtime_replication_slot{suffix}"));
    drop_numbered_table(&db, &table);
}
