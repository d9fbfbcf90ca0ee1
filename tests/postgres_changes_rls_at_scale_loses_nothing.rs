//! Postgres Changes under row level security with many claims groups and
//! large commits: every row is delivered to every subscriber whose claims
//! may see it, counted against the database's own answer (`SET ROLE` +
//! claims, then `SELECT`), and nothing else is delivered.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::pg::{dev_db_url, drop_slot, psql, server_env, subscribed_as};
use support::*;

/// Users (claims groups) and subscribers per user.
const USERS: usize = 100;
const PER_USER: usize = 4;
/// Rows, written as multi-row INSERTs of `PER_COMMIT` rows each (more
/// than one round trip of row checks each).
const ROWS: usize = 8_000;
const PER_COMMIT: usize = 1_600;
/// Longest a subscriber waits without receiving anything once the rows are
/// committed.
const QUIET: Duration = Duration::from_secs(60);

fn user_id(u: usize) -> String {
    format!("00000000-0000-4000-8000-{u:012}")
}

/// One subscriber: joins with an INSERT binding on `table` as `user`,
/// reports ready, then collects the ids it receives until it has
/// `expect.len()` of them or nothing arrives for [`QUIET`].
fn subscriber(
    port: u16,
    table: String,
    user: String,
    ready: mpsc::Sender<()>,
    expect: mpsc::Receiver<BTreeSet<i64>>,
) -> (String, Vec<i64>, BTreeSet<i64>) {
    let mut ws = subscribed_as(port, &user, &table, "realtime:scale");
    ready.send(()).unwrap();
    let expect = expect.recv().unwrap();
    let mut got = Vec::new();
    ws.s.set_read_timeout(Some(QUIET)).unwrap();
    while got.len() < expect.len() {
        let Recv::Frame(Frame::Text(t)) = ws.recv() else {
            break;
        };
        let m: Value = serde_json::from_str(&t).unwrap();
        if m[3] == "postgres_changes" {
            got.push(m[4]["data"]["record"]["id"].as_i64().unwrap());
        }
    }
    (user, got, expect)
}

#[test]
fn every_row_reaches_every_subscriber_its_policy_allows() {
    let url = dev_db_url();
    let suffix = format!("_rlsscale{}", std::process::id());
    let mut env = server_env(&url, &suffix);
    for (k, v) in [
        ("TENANT_MAX_CONCURRENT_USERS", "5000"),
        ("TENANT_MAX_JOINS_PER_SECOND", "100000"),
        ("TENANT_MAX_EVENTS_PER_SECOND", "10000000"),
    ] {
        env.push((k.into(), v.into()));
    }
    let mut srv = Server::start_env(&env);
    let table = format!("rls_scale_{}", std::process::id());
    psql(
        &url,
        &format!(
            "drop table if exists public.{table}; \
             create table public.{table} (id int primary key, owner uuid not null, body text); \
             alter table public.{table} enable row level security; \
             create policy own on public.{table} for select to authenticated \
               using (owner = (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')::uuid); \
             alter publication supabase_realtime add table public.{table};"
        ),
    );

    let (ready_tx, ready_rx) = mpsc::channel();
    let mut expect_tx = Vec::new();
    let mut threads = Vec::new();
    for s in 0..USERS * PER_USER {
        let (tx, rx) = mpsc::channel();
        expect_tx.push((s % USERS, tx));
        let (port, table, user, ready) = (
            srv.port,
            table.clone(),
            user_id(s % USERS),
            ready_tx.clone(),
        );
        threads.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || subscriber(port, table, user, ready, rx))
                .unwrap(),
        );
    }
    for _ in 0..USERS * PER_USER {
        ready_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("every subscriber joins");
    }

    // Row i belongs to user i % USERS.
    let users = (0..USERS)
        .map(|u| format!("'{}'", user_id(u)))
        .collect::<Vec<_>>()
        .join(",");
    let mut inserts = String::new();
    for first in (0..ROWS).step_by(PER_COMMIT) {
        inserts.push_str(&format!(
            "insert into public.{table} (id, owner, body) \
             select g, (array[{users}]::uuid[])[g % {USERS} + 1], 'row ' || g \
             from generate_series({first}, {}) g;\n",
            first + PER_COMMIT - 1
        ));
    }
    let started = Instant::now();
    psql(&url, &inserts);

    // What each user may see, as the database itself answers it.
    let mut visible: HashMap<usize, BTreeSet<i64>> = HashMap::new();
    for u in 0..USERS {
        let claims = json!({"role": "authenticated", "sub": user_id(u)}).to_string();
        let out = psql(
            &url,
            &format!(
                "begin; set local role authenticated; \
                 select set_config('request.jwt.claims', '{claims}', true); \
                 select id from public.{table}; commit;"
            ),
        );
        let ids: BTreeSet<i64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
        assert_eq!(
            ids.len(),
            ROWS / USERS,
            "database's own answer for user {u}"
        );
        visible.insert(u, ids);
    }
    for (u, tx) in expect_tx {
        tx.send(visible[&u].clone()).unwrap();
    }

    let mut due = 0;
    let mut delivered = 0;
    let mut wrong = Vec::new();
    for t in threads {
        let (user, got, expect) = t.join().unwrap();
        due += expect.len();
        delivered += got.len();
        let got_set: BTreeSet<i64> = got.iter().copied().collect();
        if got_set != expect || got.len() != expect.len() {
            let missing = expect.difference(&got_set).count();
            let extra = got_set.difference(&expect).count();
            wrong.push(format!(
                "{user}: {} received, {missing} missing, {extra} not allowed, {} duplicates",
                got.len(),
                got.len() - got_set.len()
            ));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{delivered} of {due} deliveries in {secs:.1} s ({:.0}/s)",
        delivered as f64 / secs
    );
    psql(&url, &format!("drop table public.{table}"));
    srv.stop();
    drop_slot(&url, &suffix);
    assert!(
        wrong.is_empty(),
        "{delivered} of {due} due deliveries; {} subscribers wrong, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// Keys are looked up by value, whatever their text: quotes, backslashes,
/// commas, braces and the word NULL in a composite text + int key.
#[test]
fn composite_keys_with_hostile_text_are_checked_by_value() {
    let url = dev_db_url();
    let suffix = format!("_rlskeys{}", std::process::id());
    let mut srv = Server::start_env(&server_env(&url, &suffix));
    let table = format!("rls_keys_{}", std::process::id());
    psql(
        &url,
        &format!(
            "drop table if exists public.{table}; \
             create table public.{table} (k text, n int, owner text not null, primary key (k, n)); \
             alter table public.{table} enable row level security; \
             create policy own on public.{table} for select to authenticated \
               using (owner = current_setting('request.jwt.claims', true)::jsonb ->> 'sub'); \
             alter publication supabase_realtime add table public.{table};"
        ),
    );
    let mut ws = subscribed_as(srv.port, "alice", &table, "realtime:keys");
    let keys = [r#"a"b"#, r"back\slash", "it's", "x,y", "{}", "NULL", "é ü"];
    // One transaction: each key twice (n = 1 alice's, n = 2 bob's).
    let values: Vec<String> = keys
        .iter()
        .flat_map(|k| {
            let k = k.replace('\'', "''");
            [format!("('{k}', 1, 'alice')"), format!("('{k}', 2, 'bob')")]
        })
        .collect();
    psql(
        &url,
        &format!("insert into public.{table} values {}", values.join(", ")),
    );
    let mut got = BTreeSet::new();
    while got.len() < keys.len() {
        let m = ws.recv_json();
        if m[3] == "postgres_changes" {
            let r = &m[4]["data"]["record"];
            assert_eq!(r["owner"], "alice", "{m}");
            got.insert(r["k"].as_str().unwrap().to_owned());
        }
    }
    let want: BTreeSet<String> = keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(got, want);
    psql(&url, &format!("drop table public.{table}"));
    srv.stop();
    drop_slot(&url, &suffix);
}
