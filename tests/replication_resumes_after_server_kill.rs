//! No loss across a crash of this server: while a writer commits numbered
//! rows, the server is killed with SIGKILL, left down for a while, and
//! started again on the same slot. The subscriber, cut off by the crash,
//! reconnects and re-subscribes, and receives every row committed after its
//! first subscription, including those committed while the server was down.
//!
//! Why that holds: the slot is permanent and confirmed only for changes
//! already on their way to clients; what was committed during the outage
//! stays in it. After a start the stream waits for the tenant's first
//! Postgres Changes subscriber, so the backlog goes to the clients that come
//! back instead of being confirmed to nobody. At-least-once: rows sent but
//! not yet confirmed before the kill come again (allowed, reported).

mod support;
use std::time::{Duration, Instant};
use support::pg::*;
use support::*;

#[test]
fn every_committed_row_arrives_across_a_server_kill_and_restart() {
    let db = DevDb::shared();
    let table = format!("nl_kill_{}", std::process::id());
    let suffix = format!("_kill{}", std::process::id());
    create_numbered_table(&db, &table);
    let env = db.server_env(&suffix);
    let mut srv = Server::start_env(&env);
    let mut seen = Seen::default();
    let mut ws = subscribe(srv.port, "nl", &table, &mut seen);

    let total = 900;
    let (writer, _) = spawn_writer(&db, &table, total);
    let far = Instant::now() + Duration::from_secs(60);
    assert!(
        seen.read(&mut ws, &table, far, |s| s.distinct().len() >= 250),
        "rows before the kill: {}",
        seen.distinct().len()
    );
    srv.kill();
    let at_kill = db.ids(&table).len();
    // Drain what reached the socket before the crash.
    let eof = !seen.read(
        &mut ws,
        &table,
        Instant::now() + Duration::from_secs(10),
        |_| false,
    );
    assert!(eof, "the socket ends with the server");
    let before = seen.distinct().len();
    // Down until the writer has committed a good number of rows that only
    // the slot holds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.ids(&table).len() < (at_kill + 50).min(total as usize) {
        assert!(Instant::now() < deadline, "the writer stalled");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut srv = Server::start_env(&env);
    let at_restart = db.ids(&table).len();
    assert!(
        at_restart > at_kill,
        "rows were committed while the server was down ({at_kill} -> {at_restart})"
    );
    let mut ws = subscribe(srv.port, "nl", &table, &mut seen);
    writer.join().unwrap();
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
        "{} rows missing (first {:?}); {} seen before the kill",
        missing.len(),
        &missing[..missing.len().min(10)],
        before
    );
    eprintln!(
        "server kill: {total} rows, {before} seen before the kill, {} committed while down, {} duplicates",
        at_restart - at_kill,
        seen.duplicates()
    );

    srv.stop();
    db.drop_slot(&format!("supabase_realtime_replication_slot{suffix}"));
    drop_numbered_table(&db, &table);
}
