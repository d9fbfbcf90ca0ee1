//! A database that accepts the TCP connection and then never answers must
//! not hold the tenant for good: every operation has a deadline
//! (`DB_QUERY_TIMEOUT_MS`), after which the connection is dropped and
//! reopened with backoff. The server talks to Postgres through a proxy
//! that first accepts and holds every connection without a byte of
//! answer, then forwards new ones to the real database: subscribers must
//! end up subscribed and receive rows.

mod support;
use std::time::{Duration, Instant};
use support::pg::*;
use support::proxy::Proxy;
use support::*;

#[test]
fn a_database_that_never_answers_is_retried_after_the_deadline() {
    let db = DevDb::shared();
    let table = format!("hung_{}", std::process::id());
    let suffix = format!("_hung{}", std::process::id());
    create_numbered_table(&db, &table);
    let proxy = Proxy::start(&db.host, &db.port, true);
    let env = proxy.server_env(&db, &suffix, 1000);
    let mut srv = Server::start_env(&env);

    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let binding = serde_json::json!({"event": "INSERT", "schema": "public", "table": table});
    let reply = ws.join_v2(
        "1",
        "realtime:hung",
        serde_json::json!({"postgres_changes": [binding]}),
    );
    assert_eq!(reply[4]["status"], "ok", "{reply}");

    // The stream driver and the subscription checker have both reached
    // the database and are being held without an answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.accepted() < 2 {
        assert!(Instant::now() < deadline, "the server never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The database "recovers": connections opened from now on are answered.
    proxy.heal();

    let mut seen = Seen::default();
    let subscribed = seen.read(
        &mut ws,
        &table,
        Instant::now() + Duration::from_secs(30),
        |s| {
            s.system
                .last()
                .is_some_and(|(_, m)| m == "Subscribed to PostgreSQL")
        },
    );
    assert!(
        subscribed,
        "still not subscribed 30 s after the database recovered ({} connections tried): {:?}",
        proxy.accepted(),
        seen.system
    );
    db.psql(&format!("insert into public.{table} (id) values (1)"));
    let got = seen.read(
        &mut ws,
        &table,
        Instant::now() + Duration::from_secs(20),
        |s| s.inserts.contains(&1),
    );
    assert!(got, "row not delivered: {:?}", seen.system);

    srv.stop();
    db.drop_slot(&format!("supabase_realtime_replication_slot{suffix}"));
    drop_numbered_table(&db, &table);
}
