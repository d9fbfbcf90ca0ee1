//! Postgres Changes for a spread tenant: subscribers on every shard
//! register with the tenant's home shard, which streams and checks row
//! level security for all of them in one batch, and each gets exactly the
//! rows its policy allows, in commit order, with `Subscribed to
//! PostgreSQL` first. A subscription that leaves on another shard stops
//! at home too, and one that comes back is checked again. A shard that
//! is slow to take what home relays to it makes the stream wait instead
//! of losing rows.

mod support;
use serde_json::json;
use support::pg::{dev_db_url, drop_slot, psql, server_env, subscribed_as};
use support::*;

fn user_id(u: usize) -> String {
    format!("00000000-0000-4000-8000-{u:012}")
}

/// The ids of the next `n` changes of `table` on `ws`.
fn ids(ws: &mut Ws, table: &str, n: usize) -> Vec<i64> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = ws.recv_json();
        if m[3] == "postgres_changes" && m[4]["data"]["table"] == table {
            got.push(m[4]["data"]["record"]["id"].as_i64().unwrap());
        }
    }
    got
}

#[test]
fn subscribers_on_every_shard_get_their_rows_from_the_home_stream() {
    let url = dev_db_url();
    let suffix = format!("_spreadpc{}", std::process::id());
    let mut env = server_env(&url, &suffix);
    env.push(("SHARDS".into(), "3".into()));
    env.push(("SELF_HOST_TENANT_PLACEMENT".into(), "spread".into()));
    let mut srv = Server::start_env(&env);
    let table = format!("spread_pc_{}", std::process::id());
    psql(
        &url,
        &format!(
            "drop table if exists public.{table}; \
             create table public.{table} (id int primary key, owner uuid not null); \
             alter table public.{table} enable row level security; \
             create policy own on public.{table} for select to authenticated \
               using (owner = (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')::uuid); \
             grant select on public.{table} to authenticated; \
             alter publication supabase_realtime add table public.{table};"
        ),
    );
    // One user per shard: each joined before the next connects, so the
    // least loaded shard is another one each time.
    let mut subs: Vec<Ws> = (0..3)
        .map(|u| subscribed_as(srv.port, &user_id(u), &table, "realtime:spread"))
        .collect();
    assert_eq!(srv.metric_by_shard("realtime_connections"), [1, 1, 1]);
    // Row i belongs to user i % 3.
    let rows = 60;
    psql(
        &url,
        &format!(
            "insert into public.{table} (id, owner) \
             select g, (array['{}','{}','{}']::uuid[])[g % 3 + 1] from generate_series(0, {}) g",
            user_id(0),
            user_id(1),
            user_id(2),
            rows - 1
        ),
    );
    for (u, ws) in subs.iter_mut().enumerate() {
        let want: Vec<i64> = (0..rows).filter(|i| i % 3 == u as i64).collect();
        assert_eq!(
            ids(ws, &table, want.len()),
            want,
            "user {u}: its rows, in order"
        );
    }
    // Every subscriber leaves but one; the ones that left get nothing more,
    // and the one left still gets its rows (the registrations at home
    // followed the leaves, wherever they were).
    for ws in &mut subs[1..] {
        ws.text(&json!(["1", "9", "realtime:spread", "phx_leave", {}]).to_string());
        loop {
            let m = ws.recv_json();
            if m[3] == "phx_close" {
                break;
            }
        }
    }
    psql(
        &url,
        &format!(
            "insert into public.{table} (id, owner) values (1000, '{}'), (1001, '{}'), (1002, '{}')",
            user_id(1),
            user_id(2),
            user_id(0)
        ),
    );
    assert_eq!(ids(&mut subs[0], &table, 1), [1002]);
    for ws in &mut subs[1..] {
        assert_quiet(ws, 300);
    }
    srv.stop();
    drop_slot(&url, &suffix);
    psql(&url, &format!("drop table if exists public.{table}"));
}

#[test]
fn a_shard_busy_for_a_moment_paces_the_stream_and_loses_no_row() {
    let url = dev_db_url();
    let suffix = format!("_spreadpace{}", std::process::id());
    let mut env = server_env(&url, &suffix);
    for (k, v) in [
        ("SHARDS", "2"),
        ("SELF_HOST_TENANT_PLACEMENT", "spread"),
        ("TENANT_MAX_PAYLOAD_SIZE_IN_KB", "1"),
        // Congested past 50 kB: a few parts of a batch (`DELIVER_PART`).
        ("SHARD_QUEUE_BYTES", "100000"),
    ] {
        env.push((k.into(), v.into()));
    }
    let mut srv = Server::start_env(&env);
    let table = format!("spread_pace_{}", std::process::id());
    psql(
        &url,
        &format!(
            "drop table if exists public.{table}; \
             create table public.{table} (id int primary key, note text not null); \
             grant select on public.{table} to authenticated; \
             alter publication supabase_realtime add table public.{table};"
        ),
    );
    // One subscriber on each shard: one of them is the tenant's home, the
    // other gets its rows relayed.
    let mut subs: Vec<Ws> = (0..2)
        .map(|u| subscribed_as(srv.port, &user_id(u), &table, "realtime:pace"))
        .collect();
    assert_eq!(srv.metric_by_shard("realtime_connections"), [1, 1]);
    // Row 0 keeps the far shard's thread busy for 300 ms as it arrives
    // there; the 2,999 rows behind it are about 1 MB of frames, ten times
    // the bound of the queue between the shards.
    let rows = 3000;
    psql(
        &url,
        &format!(
            "insert into public.{table} (id, note) \
             select g, case when g = 0 then '__pause_shard__' else repeat('x', 200) end \
             from generate_series(0, {}) g",
            rows - 1
        ),
    );
    let want: Vec<i64> = (0..rows).collect();
    for (u, ws) in subs.iter_mut().enumerate() {
        assert_eq!(ids(ws, &table, rows as usize), want, "subscriber {u}");
    }
    assert_eq!(srv.metric("realtime_forward_drops_total"), 0);
    assert_eq!(srv.metric("realtime_forward_gap_closes_total"), 0);
    srv.stop();
    drop_slot(&url, &suffix);
    psql(&url, &format!("drop table if exists public.{table}"));
}
