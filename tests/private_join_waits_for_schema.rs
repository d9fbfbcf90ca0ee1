//! A private join that arrives while the server is still preparing its
//! tenant's schema (the migration run and the first partition pass after
//! a start) waits for it and gets the policies' answer, not the error of a
//! half-made schema.

mod support;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::json;
use support::pg::psql_bin;
use support::rls::{todays_partition, SchemaDb};
use support::*;

/// The schema without its daily partitions (the server makes them when
/// the tenant becomes active), and a policy that lets everyone read.
const SETUP: &str = "
  do $d$
  declare p text;
  begin
    for p in select c.relname from pg_inherits i
             join pg_class c on c.oid = i.inhrelid
             where i.inhparent = 'realtime.messages'::regclass loop
      execute format('drop table realtime.%I', p);
    end loop;
  end
  $d$;
  create policy all_read on realtime.messages for select to authenticated using (true);";

#[test]
fn a_private_join_during_the_first_schema_pass_waits_for_it() {
    let db = SchemaDb::create("waitschema", true, SETUP);
    // Hold the migrations' advisory lock: the server's run (and the
    // partition pass after it) waits behind it until released.
    let key = realtime::server::tenant_db::migrations::LOCK_KEY;
    let mut holder = Command::new(psql_bin())
        .args([&db.url, "-qAt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("psql");
    let mut stdin = holder.stdin.take().unwrap();
    let mut out = BufReader::new(holder.stdout.take().unwrap());
    writeln!(stdin, "select pg_advisory_lock({key}), 'held';").unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("held"), "{line}");

    let srv = Server::start_env(&db.server_env());
    let claims = json!({"role": "authenticated", "sub": "early"});
    let mut ws = Ws::connect(srv.port, "2.0.0", &token_with(claims, 3600));
    ws.text(
        &json!(["1", "1", "realtime:room:early", "phx_join", {"config": {"private": true}}])
            .to_string(),
    );
    // Let the migrations go: the join's answer comes after them.
    writeln!(stdin, "select pg_advisory_unlock({key});").unwrap();
    drop(stdin);
    let reply = ws.recv_json();
    assert_eq!(reply[3], "phx_reply", "{reply}");
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    let n = db.sql(&format!(
        "select count(*) from pg_class where oid = to_regclass('{}')",
        todays_partition()
    ));
    assert_eq!(n.trim(), "1", "today's partition");
    let _ = holder.wait();
    drop(srv);
}
