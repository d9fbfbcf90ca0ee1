//! A batch whose row checks fail for one claims group, while other groups'
//! checks (on another of the `DB_CHECK_CONNECTIONS` connections) succeed,
//! is delivered to nobody and not confirmed: the stream stops, tells the
//! subscribers, and retries until the check passes; then every subscriber
//! gets its row exactly once.

mod support;

use serde_json::Value;
use support::pg::{dev_db_url, drop_slot, psql, server_env, subscribed_as};
use support::*;

/// Users, one subscriber each: enough claims groups for the batch to be
/// split over two connections.
const USERS: usize = 6;
/// The user whose group's check raises while the gate is closed.
const FAILING: usize = 3;

fn user_id(u: usize) -> String {
    format!("00000000-0000-4000-8000-{u:012}")
}

/// The next `postgres_changes` row id, passing over system messages.
fn next_row(ws: &mut Ws) -> i64 {
    loop {
        let m: Value = ws.recv_json();
        if m[3] == "postgres_changes" {
            return m[4]["data"]["record"]["id"].as_i64().unwrap();
        }
        assert_eq!(m[3], "system", "{m}");
    }
}

#[test]
fn a_failing_check_on_one_connection_delivers_nothing_until_it_passes() {
    let url = dev_db_url();
    let suffix = format!("_rlsfail{}", std::process::id());
    let mut env = server_env(&url, &suffix);
    env.push(("DB_CHECK_CONNECTIONS".into(), "2".into()));
    let mut srv = Server::start_env(&env);
    let t = format!("rls_gate_{}", std::process::id());
    let failing = user_id(FAILING);
    psql(
        &url,
        &format!(
            "drop table if exists public.{t}, public.{t}_gate; \
             create table public.{t}_gate (open boolean not null); \
             insert into public.{t}_gate values (false); \
             grant select on public.{t}_gate to authenticated; \
             create or replace function public.{t}_pass(sub text) returns boolean \
               language plpgsql stable as $$ begin \
                 if sub = '{failing}' and not (select open from public.{t}_gate) then \
                   raise exception 'gate closed for %', sub; \
                 end if; \
                 return true; \
               end $$; \
             create table public.{t} (id int primary key, owner uuid not null); \
             alter table public.{t} enable row level security; \
             grant select on public.{t} to authenticated; \
             create policy own on public.{t} for select to authenticated using ( \
               public.{t}_pass(current_setting('request.jwt.claims', true)::jsonb ->> 'sub') \
               and owner = (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')::uuid); \
             alter publication supabase_realtime add table public.{t};"
        ),
    );
    let mut subs: Vec<Ws> = (0..USERS)
        .map(|u| subscribed_as(srv.port, &user_id(u), &t, "realtime:gate"))
        .collect();

    // Row u belongs to user u; one commit.
    let values: Vec<String> = (0..USERS)
        .map(|u| format!("({u}, '{}')", user_id(u)))
        .collect();
    psql(
        &url,
        &format!("insert into public.{t} values {}", values.join(", ")),
    );
    // The failing check stops the stream: every subscriber hears it
    // before anything of the batch, including those whose own group's
    // check succeeded on the other connection.
    for (u, ws) in subs.iter_mut().enumerate() {
        let m = ws.recv_json();
        assert_eq!(m[3], "system", "user {u}: nothing before the stop: {m}");
        assert_eq!(
            m[4]["message"], "Realtime was unable to connect to the project database",
            "user {u}: {m}"
        );
    }
    psql(&url, &format!("update public.{t}_gate set open = true"));
    // Then each gets its own row once: the next row committed arrives
    // right after it, with no repeat in between.
    let later: Vec<String> = (0..USERS)
        .map(|u| format!("({}, '{}')", USERS + u, user_id(u)))
        .collect();
    psql(
        &url,
        &format!("insert into public.{t} values {}", later.join(", ")),
    );
    for (u, ws) in subs.iter_mut().enumerate() {
        assert_eq!(next_row(ws), u as i64, "user {u}");
        assert_eq!(next_row(ws), (USERS + u) as i64, "user {u}");
    }

    srv.stop();
    drop_slot(&url, &suffix);
    psql(
        &url,
        &format!(
            "alter publication supabase_realtime drop table public.{t}; \
             drop table public.{t}, public.{t}_gate; drop function public.{t}_pass(text);"
        ),
    );
}
