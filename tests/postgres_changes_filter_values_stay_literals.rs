//! A filter value is data, never SQL, whatever the database's
//! `standard_conforming_strings` default is. On a private cluster where it
//! is off (so a backslash escapes the quote after it in a plain literal),
//! a subscriber whose `like` filter tries to close the literal and add
//! `OR true` must still only get rows matching the pattern as text.
//!
//! The negative (row 1 not delivered) is bounded by row 2, committed
//! after it and delivered to the same subscriber through a second binding.

mod support;
use std::time::{Duration, Instant};
use support::pg::*;
use support::*;

#[test]
fn a_hostile_filter_value_cannot_break_out_of_its_literal() {
    let db = DevDb::private("scsoff");
    db.psql("alter database postgres set standard_conforming_strings = off");
    let table = format!("scs_{}", std::process::id());
    let suffix = format!("_scs{}", std::process::id());
    db.psql(&format!(
        "create table public.{table} (id bigint primary key, name text);
         alter publication supabase_realtime add table public.{table};"
    ));
    let mut srv = Server::start_env(&db.server_env(&suffix));

    let hostile = r"a\') OR (true)) IS TRUE; --";
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let bindings = serde_json::json!([
        {"event": "INSERT", "schema": "public", "table": table,
         "filter": format!("name=like.{hostile}")},
        {"event": "INSERT", "schema": "public", "table": table, "filter": "id=eq.2"},
    ]);
    let reply = ws.join_v2(
        "1",
        "realtime:scs",
        serde_json::json!({"postgres_changes": bindings}),
    );
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    let mut seen = Seen::default();
    assert!(
        seen.read(
            &mut ws,
            &table,
            Instant::now() + Duration::from_secs(30),
            |s| s
                .system
                .last()
                .is_some_and(|(_, m)| m == "Subscribed to PostgreSQL"),
        ),
        "not subscribed: {:?}",
        seen.system
    );

    db.psql(&format!(
        "insert into public.{table} values (1, 'zzz'); insert into public.{table} values (2, 'zzz')"
    ));
    let got = seen.read(
        &mut ws,
        &table,
        Instant::now() + Duration::from_secs(20),
        |s| s.inserts.contains(&2),
    );
    assert!(got, "row 2 not delivered: {:?}", seen.system);
    assert_eq!(
        seen.inserts,
        vec![2],
        "row 1 matched the hostile filter as SQL"
    );

    srv.stop();
    db.drop_slot(&format!("supabase_realtime_replication_slot{suffix}"));
    db.psql(&format!(
        "alter publication supabase_realtime drop table public.{table}; drop table public.{table};
         alter database postgres reset standard_conforming_strings"
    ));
}
