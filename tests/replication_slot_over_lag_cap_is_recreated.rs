//! The slot lag cap: when the permanent slot retains more WAL than
//! `REPLICATION_MAX_SLOT_LAG_MB`, the server drops and recreates it before
//! streaming, tells subscribers with a `postgres_changes` `system` error,
//! and streams again from the new slot. Changes committed in between are
//! lost by design (the cap trades them for the database's disk).
//!
//! Private cluster: a 2 MB cap must not be tripped by WAL other tests write.

mod support;
use std::time::{Duration, Instant};
use support::pg::*;
use support::*;

#[test]
fn a_slot_over_the_lag_cap_is_recreated_and_subscribers_are_told() {
    let db = DevDb::private("lagcap");
    let table = format!("lag_{}", std::process::id());
    let suffix = format!("_lag{}", std::process::id());
    let slot = format!("supabase_realtime_replication_slot{suffix}");
    create_numbered_table(&db, &table);
    db.psql(&format!(
        "create table public.{table}_scratch (id int, filler text)"
    ));
    let mut env = db.server_env(&suffix);
    env.push(("REPLICATION_MAX_SLOT_LAG_MB".into(), "2".into()));

    // A first server creates the slot and streams row 1.
    let mut srv = Server::start_env(&env);
    let mut seen = Seen::default();
    let mut ws = subscribe(srv.port, "lag", &table, &mut seen);
    db.psql(&format!("insert into public.{table} (id) values (1)"));
    let soon = || Instant::now() + Duration::from_secs(20);
    assert!(seen.read(&mut ws, &table, soon(), |s| s.inserts == [1]));
    srv.stop();
    drop(ws);

    // While it is down: row 2, and ~8 MB of WAL the slot must keep.
    db.psql(&format!("insert into public.{table} (id) values (2)"));
    db.psql(&format!(
        "insert into public.{table}_scratch select g, repeat(md5(g::text), 40) from generate_series(1, 6000) g"
    ));
    let retained: i64 = db
        .psql(&format!(
            "select pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint from pg_replication_slots where slot_name = '{slot}'"
        ))
        .parse()
        .unwrap();
    assert!(retained > 3 << 20, "retained {retained} bytes");

    // The next server finds the slot over its cap: recreated, subscriber told.
    let mut srv = Server::start_env(&env);
    let mut seen = Seen::default();
    let mut ws = subscribe(srv.port, "lag", &table, &mut seen);
    let errors: Vec<&String> = seen
        .system
        .iter()
        .filter(|(st, _)| st == "error")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(errors.len(), 1, "{:?}", seen.system);
    assert!(
        errors[0].contains(&slot)
            && errors[0].contains("REPLICATION_MAX_SLOT_LAG_MB")
            && errors[0].contains("2 MB cap")
            && errors[0].contains("not delivered"),
        "{}",
        errors[0]
    );
    let small: i64 = db
        .psql(&format!(
            "select pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint from pg_replication_slots where slot_name = '{slot}'"
        ))
        .parse()
        .unwrap();
    assert!(
        small < 1 << 20,
        "the new slot starts near the WAL end: {small}"
    );

    // The new slot streams; row 2 went with the old one.
    db.psql(&format!("insert into public.{table} (id) values (3)"));
    assert!(seen.read(&mut ws, &table, soon(), |s| !s.inserts.is_empty()));
    assert_eq!(seen.inserts, [3]);

    srv.stop();
    db.drop_slot(&slot);
    db.psql(&format!("drop table public.{table}_scratch"));
    drop_numbered_table(&db, &table);
}

/// While streaming: a transaction left open pins the slot's restart_lsn,
/// WAL piles up behind it, and the periodic check (every 10 s) ends the
/// stream; the slot is recreated and the subscriber is told, then told
/// `Subscribed to PostgreSQL` again once the new slot streams.
#[test]
fn a_streaming_slot_over_the_lag_cap_is_recreated() {
    let db = DevDb::private("lagcap2");
    let table = format!("lag2_{}", std::process::id());
    let suffix = format!("_lag2{}", std::process::id());
    let slot = format!("supabase_realtime_replication_slot{suffix}");
    create_numbered_table(&db, &table);
    db.psql(&format!(
        "create table public.{table}_scratch (id int, filler text)"
    ));
    let mut env = db.server_env(&suffix);
    env.push(("REPLICATION_MAX_SLOT_LAG_MB".into(), "2".into()));
    let mut srv = Server::start_env(&env);
    let mut seen = Seen::default();
    let mut ws = subscribe(srv.port, "lag", &table, &mut seen);
    let started = Instant::now();

    // An open transaction with an xid keeps restart_lsn where it began. It
    // stays open until the subscriber hears of the lag, then is cancelled
    // (its own sleep is only an upper bound).
    let holder = {
        let db = db.clone();
        let table = table.clone();
        std::thread::spawn(move || {
            db.try_psql(&format!(
                "begin; insert into public.{table}_scratch values (0, 'held');
                 select pg_sleep(60); commit;"
            ))
        })
    };
    let holder_pid = format!(
        "select pid from pg_stat_activity where backend_xid is not null \
         and query like '%{table}_scratch values (0, ''held'')%' and pid <> pg_backend_pid()"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.psql(&holder_pid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the holding transaction never began"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    db.psql(&format!(
        "insert into public.{table}_scratch select g, repeat(md5(g::text), 40) from generate_series(1, 6000) g"
    ));

    let lag_error = |s: &Seen| {
        s.system
            .iter()
            .position(|(st, m)| st == "error" && m.contains("REPLICATION_MAX_SLOT_LAG_MB"))
    };
    let ok = seen.read(
        &mut ws,
        &table,
        Instant::now() + Duration::from_secs(40),
        |s| lag_error(s).is_some(),
    );
    assert!(ok, "{:?}", seen.system);
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "found by the periodic check"
    );
    // A new slot cannot be built while the holder's transaction runs.
    db.psql(&format!("select pg_cancel_backend(({holder_pid}))"));
    let cancelled = holder.join().unwrap();
    assert!(
        cancelled
            .as_ref()
            .is_err_and(|e| e.contains("canceling statement")),
        "{cancelled:?}"
    );
    let ok = seen.read(
        &mut ws,
        &table,
        Instant::now() + Duration::from_secs(40),
        |s| {
            lag_error(s).is_some_and(|i| {
                s.system[i..]
                    .iter()
                    .any(|(_, m)| m == "Subscribed to PostgreSQL")
            })
        },
    );
    assert!(ok, "{:?}", seen.system);
    db.psql(&format!("insert into public.{table} (id) values (5)"));
    assert!(seen.read(
        &mut ws,
        &table,
        Instant::now() + Duration::from_secs(20),
        |s| s.inserts.contains(&5)
    ));

    srv.stop();
    db.drop_slot(&slot);
    db.psql(&format!("drop table public.{table}_scratch"));
    drop_numbered_table(&db, &table);
}
