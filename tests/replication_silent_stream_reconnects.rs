//! A replication stream whose path to Postgres dies silently (no reset,
//! no FIN: the proxy between them just stops forwarding) is noticed: after
//! half of `wal_sender_timeout` without a message the server asks for a
//! reply, and when none comes it tells subscribers with the same `system`
//! message as when the database goes down, reconnects, and resumes from
//! the slot's confirmed position. Rows committed during the silence all
//! arrive afterwards, each once.
//!
//! Runs on a private cluster whose `wal_sender_timeout` is 2 s, so the
//! server's default silence timeout (half of it) is 1 s, and the
//! walsender stranded on the dead path lets go of the slot soon.

mod support;
use std::time::{Duration, Instant};
use support::pg::*;
use support::proxy::Proxy;
use support::*;

#[test]
fn a_silently_dropped_stream_is_noticed_and_resumed_without_loss() {
    let db = DevDb::private("silent");
    db.psql("alter system set wal_sender_timeout = '2s'");
    db.psql("select pg_reload_conf()");
    let table = format!("silent_{}", std::process::id());
    let suffix = format!("_sil{}", std::process::id());
    create_numbered_table(&db, &table);
    let proxy = Proxy::start(&db.host, &db.port, false);
    let env = proxy.server_env(&db, &suffix, 2000);
    let mut srv = Server::start_env(&env);
    let mut seen = Seen::default();
    let mut ws = subscribe(srv.port, "silent", &table, &mut seen);

    db.psql(&format!("call public.{table}_write(1, 5)"));
    assert!(
        seen.read(
            &mut ws,
            &table,
            Instant::now() + Duration::from_secs(20),
            |s| s.distinct().len() >= 5
        ),
        "rows before the silence: {:?}",
        seen.inserts
    );

    // The path dies without a reset; rows keep being committed.
    proxy.black_hole();
    db.psql(&format!("call public.{table}_write(6, 10)"));
    let down = "Realtime was unable to connect to the project database";
    let noticed = seen.read(
        &mut ws,
        &table,
        Instant::now() + Duration::from_secs(30),
        |s| s.system.iter().any(|(_, m)| m == down),
    );
    assert!(noticed, "silence not noticed in 30 s: {:?}", seen.system);
    let before = seen.inserts.len();

    proxy.heal();
    let complete = seen.read(
        &mut ws,
        &table,
        Instant::now() + Duration::from_secs(60),
        |s| s.distinct().len() >= 10,
    );
    let msgs: Vec<&str> = seen.system.iter().map(|(_, m)| m.as_str()).collect();
    assert!(
        complete,
        "rows after recovery: {:?}; system {msgs:?}",
        seen.inserts
    );
    assert_eq!(seen.distinct(), (1..=10).collect(), "{:?}", seen.inserts);
    let at = msgs.iter().position(|m| *m == down).unwrap();
    assert!(msgs[at..].contains(&"Subscribed to PostgreSQL"), "{msgs:?}");
    // Rows of the silence were never delivered before: exactly once each.
    // (Rows 1..=5 may come again: delivery is at-least-once.)
    for id in 6..=10 {
        let n = seen.inserts.iter().filter(|&&i| i == id).count();
        assert_eq!(n, 1, "row {id}: {:?}", seen.inserts);
    }
    eprintln!(
        "silent path: {} deliveries before recovery, {} duplicates in all",
        before,
        seen.duplicates()
    );

    srv.stop();
    drop(proxy);
    db.drop_slot(&format!("supabase_realtime_replication_slot{suffix}"));
    drop_numbered_table(&db, &table);
}
