//! Postgres Changes end to end: a server with a tenant database streams the
//! `supabase_realtime` publication through its permanent slot, and a
//! subscriber joined with a binding gets `Subscribed to PostgreSQL`, then
//! every INSERT, UPDATE and DELETE with the join reply's id in `ids`.

mod support;
use serde_json::json;
use support::pg::{dev_db_url, parts, psql};
use support::*;

/// Next postgres_changes or system message, skipping nothing else.
fn next_event(ws: &mut Ws) -> serde_json::Value {
    loop {
        let m = ws.recv_json();
        if m[3] == "postgres_changes" || m[3] == "system" {
            return m;
        }
    }
}

/// Next message about `table` (other tests share the publication, and a
/// wildcard binding rightly sees their tables too).
fn next_change_of(ws: &mut Ws, table: &str) -> serde_json::Value {
    loop {
        let m = next_event(ws);
        if m[3] != "postgres_changes" || m[4]["data"]["table"] == table {
            return m;
        }
    }
}

#[test]
fn insert_update_delete_reach_the_subscriber() {
    let url = dev_db_url();
    let table = format!("pc_e2e_{}", std::process::id());
    let suffix = format!("_t{}", std::process::id());
    psql(&url, &format!(
        "create table public.{table} (id int primary key, title text, done bool default false, tags text[], meta jsonb);
         alter publication supabase_realtime add table public.{table};"
    ));
    let (host, port, pw) = parts(&url);
    let mut srv = Server::start(&[
        ("DB_HOST", host.as_str()),
        ("DB_PORT", port.as_str()),
        ("DB_NAME", "postgres"),
        ("DB_USER", "postgres"),
        ("DB_PASSWORD", pw.as_str()),
        ("SLOT_NAME_SUFFIX", suffix.as_str()),
    ]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let binding = json!({"event": "*", "schema": "public", "table": table});
    let reply = ws.join_v2("1", "realtime:db", json!({"postgres_changes": [binding]}));
    let id = reply[4]["response"]["postgres_changes"][0]["id"].clone();
    assert!(id.is_u64(), "{reply}");
    let sys = next_event(&mut ws);
    assert_eq!(
        sys,
        json!(["1", null, "realtime:db", "system", {"extension": "postgres_changes", "status": "ok", "message": "Subscribed to PostgreSQL", "channel": "db"}])
    );

    psql(&url, &format!("insert into public.{table} (id, title, tags, meta) values (1, 'milk', '{{a,b}}', '{{\"n\": 1}}')"));
    let m = next_event(&mut ws);
    assert_eq!(m[0], serde_json::Value::Null);
    assert_eq!(m[3], "postgres_changes");
    assert_eq!(m[4]["ids"], json!([id]));
    let d = &m[4]["data"];
    assert_eq!(
        (
            d["schema"].as_str(),
            d["table"].as_str(),
            d["type"].as_str()
        ),
        (Some("public"), Some(table.as_str()), Some("INSERT"))
    );
    assert_eq!(
        d["record"],
        json!({"id": 1, "title": "milk", "done": false, "tags": ["a", "b"], "meta": {"n": 1}})
    );
    assert!(
        d.get("old_record").is_none(),
        "INSERT has no old_record: {d}"
    );
    assert_eq!(d["errors"], serde_json::Value::Null);
    assert_eq!(d["columns"][0], json!({"name": "id", "type": "int4"}));
    assert_eq!(d["columns"][3], json!({"name": "tags", "type": "_text"}));
    let ts = d["commit_timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );

    psql(
        &url,
        &format!("update public.{table} set done = true where id = 1"),
    );
    let d = next_event(&mut ws)[4]["data"].clone();
    assert_eq!(d["type"], "UPDATE");
    assert_eq!(d["record"]["done"], true);
    assert_eq!(
        d["old_record"],
        json!({"id": 1}),
        "DEFAULT replica identity: PK only"
    );

    psql(&url, &format!("delete from public.{table} where id = 1"));
    let d = next_event(&mut ws)[4]["data"].clone();
    assert_eq!(d["type"], "DELETE");
    assert_eq!(d["old_record"], json!({"id": 1}));
    assert!(d.get("record").is_none(), "DELETE has no record: {d}");

    srv.stop();
    psql(
        &url,
        &format!(
        "alter publication supabase_realtime drop table public.{table}; drop table public.{table};
         select pg_drop_replication_slot('supabase_realtime_replication_slot{suffix}');
         select pg_drop_replication_slot(slot_name) from pg_replication_slots
         where slot_name = 'realtime_messages_slot{suffix}' and not active;"
    ),
    );
}

#[test]
fn filters_wildcards_and_select_pick_the_right_ids() {
    let url = dev_db_url();
    let table = format!("pc_filters_{}", std::process::id());
    let suffix = format!("_f{}", std::process::id());
    psql(
        &url,
        &format!(
            "create table public.{table} (id int primary key, owner text, secret text);
         alter publication supabase_realtime add table public.{table};"
        ),
    );
    let (host, port, pw) = parts(&url);
    let mut srv = Server::start(&[
        ("DB_HOST", host.as_str()),
        ("DB_PORT", port.as_str()),
        ("DB_USER", "postgres"),
        ("DB_PASSWORD", pw.as_str()),
        ("SLOT_NAME_SUFFIX", suffix.as_str()),
    ]);
    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let only_bob =
        json!({"event": "INSERT", "schema": "public", "table": table, "filter": "owner=eq.bob"});
    let any_table = json!({"event": "*", "schema": "public", "table": "*"});
    let selected =
        json!({"event": "INSERT", "schema": "public", "table": table, "select": ["owner"]});
    let reply = ws.join_v2(
        "1",
        "realtime:f",
        json!({"postgres_changes": [only_bob, any_table]}),
    );
    let ids: Vec<u64> = reply[4]["response"]["postgres_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        next_event(&mut ws)[4]["message"],
        "Subscribed to PostgreSQL"
    );
    let mut ws2 = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let r2 = ws2.join_v2("1", "realtime:s", json!({"postgres_changes": [selected]}));
    let sel_id = r2[4]["response"]["postgres_changes"][0]["id"].clone();
    assert_eq!(
        next_event(&mut ws2)[4]["message"],
        "Subscribed to PostgreSQL"
    );

    psql(
        &url,
        &format!("insert into public.{table} values (1, 'alice', 's1')"),
    );
    let m = next_change_of(&mut ws, &table);
    assert_eq!(
        m[4]["ids"],
        json!([ids[1]]),
        "only the wildcard binding matches alice"
    );
    psql(
        &url,
        &format!("insert into public.{table} values (2, 'bob', 's2')"),
    );
    let m = next_change_of(&mut ws, &table);
    let mut got: Vec<u64> = m[4]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "both bindings match bob (join order: {ids:?})");

    // select: the selected column plus the primary key, nothing else.
    let s1 = next_change_of(&mut ws2, &table);
    assert_eq!(s1[4]["ids"], json!([sel_id]));
    assert_eq!(s1[4]["data"]["record"], json!({"id": 1, "owner": "alice"}));
    let names: Vec<&str> = s1[4]["data"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["id", "owner"]);
    next_change_of(&mut ws2, &table);

    // A bad filter is a postgres_changes system error; the join succeeded.
    let mut ws3 = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let r3 = ws3.join_v2("1", "realtime:bad", json!({"postgres_changes": [{"event": "*", "schema": "public", "table": table, "filter": "id=in.1,2"}]}));
    assert_eq!(r3[4]["status"], "ok");
    let e = next_event(&mut ws3);
    assert_eq!(e[4]["status"], "error");
    assert_eq!(e[4]["extension"], "postgres_changes");

    srv.stop();
    psql(
        &url,
        &format!(
        "alter publication supabase_realtime drop table public.{table}; drop table public.{table};
         select pg_drop_replication_slot('supabase_realtime_replication_slot{suffix}');
         select pg_drop_replication_slot(slot_name) from pg_replication_slots
         where slot_name = 'realtime_messages_slot{suffix}' and not active;"
    ),
    );
}
