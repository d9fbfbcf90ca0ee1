//! Postgres Changes against a real database, where the database decides:
//! row level security per user, column privileges per role, filters whose
//! semantics are the database's (checked against the database's own
//! evaluation of the same predicates), the subscribe-time catalog checks
//! with the Elixir server's texts, the legacy topic form and re-checks on
//! token refresh.

mod support;
use serde_json::{json, Value};
use support::pg::{dev_db_url, drop_slot, psql, server_env};
use support::*;

/// A server streaming the dev database through its own slot.
struct Db {
    url: String,
    suffix: String,
    srv: Server,
}

impl Db {
    fn start(tag: &str) -> Db {
        let url = dev_db_url();
        let suffix = format!("_{tag}{}", std::process::id());
        let env = server_env(&url, &suffix);
        let srv = Server::start_env(&env);
        Db { url, suffix, srv }
    }

    fn sql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.srv.stop();
        drop_slot(&self.url, &self.suffix);
    }
}

/// Creates `public.<name>` with `cols` and publishes it.
fn published_table(db: &Db, name: &str, cols: &str) {
    db.sql(&format!(
        "drop table if exists public.{name}; create table public.{name} ({cols}); \
         alter publication supabase_realtime add table public.{name};"
    ));
}

fn user(db: &Db, claims: Value) -> Ws {
    Ws::connect(db.srv.port, "2.0.0", &token_with(claims, 3600))
}

/// Next system message or change of `table` on `topic` (other tests share
/// the publication, and the socket may carry other channels).
fn next_on(ws: &mut Ws, topic: &str, table: &str) -> Value {
    loop {
        let m = ws.recv_json();
        if m[2] != topic {
            continue;
        }
        if m[3] == "system" {
            return m;
        }
        if m[3] == "postgres_changes" && m[4]["data"]["table"] == table {
            return m;
        }
        if m[3] != "postgres_changes" && m[4]["table"] == table {
            return m;
        }
    }
}

/// Joins `topic` with `bindings`; returns their ids and asserts the
/// subscription became ready.
fn subscribe(ws: &mut Ws, jr: &str, topic: &str, bindings: Value) -> Vec<u64> {
    let reply = ws.join_v2(jr, topic, json!({ "postgres_changes": bindings }));
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    let ids = reply[4]["response"]["postgres_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    let sys = next_on(ws, topic, "");
    assert_eq!(sys[4]["message"], "Subscribed to PostgreSQL", "{sys}");
    ids
}

fn record_id(m: &Value) -> i64 {
    let d = &m[4]["data"];
    d["record"]["id"]
        .as_i64()
        .or_else(|| d["old_record"]["id"].as_i64())
        .unwrap_or(-1)
}

#[test]
fn row_level_security_delivers_each_user_only_their_rows() {
    let db = Db::start("rls");
    let t = format!("rls_notes_{}", std::process::id());
    published_table(
        &db,
        &t,
        "id int primary key, owner text not null, body text",
    );
    db.sql(&format!(
        "alter table public.{t} replica identity full; \
         alter table public.{t} enable row level security; \
         create policy own on public.{t} for select to authenticated \
         using (owner = current_setting('request.jwt.claims', true)::jsonb ->> 'sub');"
    ));
    let binding = json!([{"event": "*", "schema": "public", "table": t}]);
    let mut alice = user(&db, json!({"role": "authenticated", "sub": "alice"}));
    let mut bob = user(&db, json!({"role": "authenticated", "sub": "bob"}));
    subscribe(&mut alice, "1", "realtime:a", binding.clone());
    subscribe(&mut bob, "1", "realtime:b", binding);

    // Row checks read the table as it is when the batch is authorised (as
    // the Elixir server's `apply_rls` does), so a row deleted before the
    // server saw its INSERT is rightly not delivered: let the inserts
    // arrive before touching those rows again.
    db.sql(&format!("insert into public.{t} values (1, 'alice', 'a1')"));
    db.sql(&format!("insert into public.{t} values (2, 'bob', 'b1')"));
    db.sql(&format!(
        "insert into public.{t} values (3, 'alice', 'a2'), (4, 'bob', 'b2'), (5, 'alice', 'a3')"
    ));
    let seen = |ws: &mut Ws, topic: &str, last: (&str, i64)| {
        let mut got = Vec::new();
        loop {
            let m = next_on(ws, topic, &t);
            let d = &m[4]["data"];
            let kind = d["type"].as_str().unwrap().to_owned();
            if kind == "DELETE" {
                // Deletes cannot be checked against policies: everyone gets
                // them, with only the primary key.
                assert_eq!(d["old_record"], json!({"id": 1}), "{m}");
            }
            let done = kind == last.0 && record_id(&m) == last.1;
            got.push((kind, record_id(&m)));
            if done {
                return got;
            }
        }
    };
    let ins = |id| ("INSERT".to_owned(), id);
    assert_eq!(
        seen(&mut alice, "realtime:a", ("INSERT", 5)),
        vec![ins(1), ins(3), ins(5)]
    );
    assert_eq!(
        seen(&mut bob, "realtime:b", ("INSERT", 4)),
        vec![ins(2), ins(4)]
    );

    db.sql(&format!("update public.{t} set body = 'b1!' where id = 2"));
    db.sql(&format!("delete from public.{t} where id = 1"));
    db.sql(&format!(
        "insert into public.{t} values (6, 'alice', 'end'), (7, 'bob', 'end')"
    ));
    assert_eq!(
        seen(&mut alice, "realtime:a", ("INSERT", 6)),
        vec![("DELETE".into(), 1), ins(6)]
    );
    assert_eq!(
        seen(&mut bob, "realtime:b", ("INSERT", 7)),
        vec![("UPDATE".into(), 2), ("DELETE".into(), 1), ins(7)]
    );
}

#[test]
fn column_privileges_limit_what_a_role_receives() {
    let db = Db::start("cols");
    let t = format!("cp_items_{}", std::process::id());
    let k = format!("cp_hidden_{}", std::process::id());
    published_table(&db, &t, "id int primary key, name text, secret text");
    published_table(&db, &k, "id int primary key, name text");
    db.sql(&format!(
        "revoke all on public.{t} from anon; grant select (id, name) on public.{t} to anon; \
         revoke all on public.{k} from anon; grant select (name) on public.{k} to anon;"
    ));
    let mut ws = user(&db, json!({"role": "anon"}));
    subscribe(
        &mut ws,
        "1",
        "realtime:items",
        json!([{"event": "*", "schema": "public", "table": t}]),
    );
    subscribe(
        &mut ws,
        "2",
        "realtime:hidden",
        json!([{"event": "*", "schema": "public", "table": k}]),
    );
    // A filter on a column the role cannot select is refused at subscribe.
    let reply = ws.join_v2(
        "3",
        "realtime:secret",
        json!({"postgres_changes": [{"event": "*", "schema": "public", "table": t, "filter": "secret=eq.x"}]}),
    );
    assert_eq!(reply[4]["status"], "ok");
    let err = next_on(&mut ws, "realtime:secret", "");
    assert_eq!(err[4]["status"], "error");
    assert!(
        err[4]["message"]
            .as_str()
            .unwrap()
            .ends_with("Exception: ERROR P0001 (raise_exception) invalid column for filter secret"),
        "{err}"
    );

    db.sql(&format!("insert into public.{t} values (1, 'n', 's')"));
    db.sql(&format!("insert into public.{k} values (1, 'n')"));
    let m = next_on(&mut ws, "realtime:items", &t);
    let d = &m[4]["data"];
    assert_eq!(
        d["columns"],
        json!([{"name": "id", "type": "int4"}, {"name": "name", "type": "text"}])
    );
    assert_eq!(d["record"], json!({"id": 1, "name": "n"}));
    let m = next_on(&mut ws, "realtime:hidden", &k);
    let d = &m[4]["data"];
    assert_eq!(d["errors"], json!(["Error 401: Unauthorized"]), "{m}");
    assert_eq!(d["record"], json!({}));
    assert_eq!(d["columns"], json!([]));
    assert_eq!(d["commit_timestamp"], Value::Null);
}

/// (filter, the same predicate in SQL).
const FILTERS: &[(&str, &str)] = &[
    ("name=eq.apple", "name = 'apple'"),
    ("name=neq.apple", "name <> 'apple'"),
    ("name=lt.banana", "name < 'banana'"),
    ("name=lte.banana", "name <= 'banana'"),
    ("name=gt.Apple", "name > 'Apple'"),
    ("name=gte.apple", "name >= 'apple'"),
    ("name=in.(apple,Zeta)", "name = ANY('{apple,Zeta}')"),
    ("name=like.a%", "name LIKE 'a%'"),
    ("name=ilike.A%", "name ILIKE 'A%'"),
    ("name=like.a\\_b", "name LIKE 'a\\_b'"),
    ("name=match.^a", "name ~ '^a'"),
    ("name=imatch.^a.*e$", "name ~* '^a.*e$'"),
    ("name=is.null", "name IS NULL"),
    ("name=isdistinct.apple", "name IS DISTINCT FROM 'apple'"),
    ("name=not.eq.apple", "NOT (name = 'apple')"),
    ("name=not.like.a%", "NOT (name LIKE 'a%')"),
    ("name=not.match.^A", "NOT (name ~ '^A')"),
    ("n=eq.5", "n = 5"),
    ("n=lt.5", "n < 5"),
    ("n=gte.5", "n >= 5"),
    ("n=neq.5", "n <> 5"),
    ("n=in.(1,5)", "n = ANY('{1,5}')"),
    ("n=is.null", "n IS NULL"),
    ("n=not.is.null", "n IS NOT NULL"),
    ("flag=is.true", "flag IS TRUE"),
    ("flag=isdistinct.true", "flag IS DISTINCT FROM true"),
    ("flag=not.is.false", "flag IS NOT FALSE"),
];

#[test]
fn filters_agree_with_the_databases_own_evaluation() {
    let db = Db::start("filt");
    let t = format!("filters_{}", std::process::id());
    published_table(&db, &t, "id int primary key, name text, n int, flag bool");
    let mut bindings = vec![json!({"event": "INSERT", "schema": "public", "table": t})];
    for (f, _) in FILTERS {
        bindings.push(json!({"event": "INSERT", "schema": "public", "table": t, "filter": f}));
    }
    let mut ws = user(&db, json!({"role": "anon"}));
    let ids = subscribe(&mut ws, "1", "realtime:f", Value::Array(bindings));
    let rows = [
        "(1, 'apple', 5, true)",
        "(2, 'Apple', 1, false)",
        "(3, 'banana', null, null)",
        "(4, null, 7, true)",
        "(5, 'a_b', 3, false)",
        "(6, 'Zeta', 5, null)",
        "(7, 'ärger', 10, true)",
        "(8, 'éclair', 4, false)",
        "(9, 'APPLE', 0, true)",
        "(10, 'azure', -1, false)",
    ];
    for r in rows {
        db.sql(&format!("insert into public.{t} values {r}"));
    }
    let preds: Vec<String> = FILTERS
        .iter()
        .map(|(_, p)| format!("coalesce(({p}), false)"))
        .collect();
    let truth = db.sql(&format!(
        "select id, {} from public.{t} order by id",
        preds.join(", ")
    ));
    for line in truth.lines() {
        let cols: Vec<&str> = line.split('|').collect();
        let id: i64 = cols[0].parse().unwrap();
        let m = next_on(&mut ws, "realtime:f", &t);
        assert_eq!(record_id(&m), id, "rows arrive in commit order: {m}");
        let mut got: Vec<u64> = m[4]["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        got.sort();
        let mut want = vec![ids[0]];
        for (i, c) in cols[1..].iter().enumerate() {
            if *c == "t" {
                want.push(ids[i + 1]);
            }
        }
        want.sort();
        let name = |list: &[u64]| -> Vec<&str> {
            list.iter()
                .filter_map(|x| ids.iter().position(|y| y == x))
                .map(|p| if p == 0 { "all" } else { FILTERS[p - 1].0 })
                .collect()
        };
        assert_eq!(name(&got), name(&want), "row {id}");
    }
}

#[test]
fn subscriptions_the_catalog_refuses_get_the_exact_errors() {
    let db = Db::start("chk");
    let t = format!("checks_{}", std::process::id());
    let u = format!("unpublished_{}", std::process::id());
    published_table(&db, &t, "id int primary key, n int, name text");
    db.sql(&format!(
        "drop table if exists public.{u}; create table public.{u} (id int primary key)"
    ));
    let mut ws = user(&db, json!({"role": "anon"}));
    let refused = |ws: &mut Ws, jr: &str, binding: Value| -> String {
        let topic = format!("realtime:c{jr}");
        let reply = ws.join_v2(jr, &topic, json!({"postgres_changes": [binding]}));
        assert_eq!(
            reply[4]["status"], "ok",
            "the join itself succeeds: {reply}"
        );
        let m = next_on(ws, &topic, "");
        assert_eq!(m[4]["status"], "error", "{m}");
        assert_eq!(m[4]["extension"], "postgres_changes");
        m[4]["message"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        refused(&mut ws, "1", json!({"event": "*", "schema": "public", "table": u})),
        format!("Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [event: *, schema: public, table: {u}, filters: [], select: nil]")
    );
    let exception = |m: &str| {
        m.split_once(". Exception: ")
            .map(|(head, e)| {
                assert!(
                    head.starts_with("Unable to subscribe to changes with given parameters. An exception happened so please check your connect parameters: [event: *, schema: public, table: "),
                    "{m}"
                );
                e.to_owned()
            })
            .unwrap_or_else(|| panic!("not an exception text: {m}"))
    };
    let b = |f: &str| json!({"event": "*", "schema": "public", "table": t, "filter": f});
    assert_eq!(
        exception(&refused(&mut ws, "2", b("nope=eq.1"))),
        "ERROR P0001 (raise_exception) invalid column for filter nope"
    );
    assert_eq!(
        exception(&refused(&mut ws, "3", b("n=eq.abc"))),
        "ERROR 22P02 (invalid_text_representation) invalid input syntax for type integer: \"abc\""
    );
    assert_eq!(
        exception(&refused(&mut ws, "4", b("n=like.1%"))),
        "ERROR P0001 (raise_exception) operator like requires a text-compatible column type, got integer"
    );
    assert_eq!(
        exception(&refused(&mut ws, "5", b("name=match.("))),
        "ERROR P0001 (raise_exception) invalid regular expression for match filter: invalid regular expression: parentheses () not balanced"
    );
    assert_eq!(
        exception(&refused(&mut ws, "6", b("n=is.true"))),
        "ERROR P0001 (raise_exception) is true filter requires a boolean column, got integer"
    );
    assert_eq!(
        exception(&refused(
            &mut ws,
            "7",
            json!({"event": "*", "schema": "public", "table": t, "select": ["id", "nope"]})
        )),
        "ERROR P0001 (raise_exception) invalid column for select nope"
    );
    // A role the database does not know.
    let mut ghost = user(&db, json!({"role": "ghost_role"}));
    assert_eq!(
        exception(&refused(
            &mut ghost,
            "8",
            json!({"event": "*", "schema": "public", "table": t})
        )),
        "ERROR 42704 (undefined_object) role \"ghost_role\" does not exist"
    );
}

#[test]
fn legacy_topics_subscribe_and_token_refresh_confirms_again() {
    let db = Db::start("leg");
    let t = format!("legacy_{}", std::process::id());
    published_table(&db, &t, "id int primary key, v text");
    let mut ws = user(&db, json!({"role": "anon"}));
    // No `config`: the sub-topic is the subscription, events are named by
    // the change type and carry the bare data.
    for (jr, topic) in [
        ("1", format!("realtime:public:{t}")),
        ("2", format!("realtime:public:{t}:id=eq.2")),
    ] {
        let msg = json!([jr, jr, topic, "phx_join", {}]);
        ws.text(&msg.to_string());
        let reply = ws.recv_json();
        assert_eq!(reply[4]["status"], "ok", "{reply}");
        let sys = next_on(&mut ws, &topic, "");
        assert_eq!(sys[4]["message"], "Subscribed to PostgreSQL", "{sys}");
    }
    db.sql(&format!("insert into public.{t} values (1, 'a'), (2, 'b')"));
    let all = format!("realtime:public:{t}");
    let one = format!("realtime:public:{t}:id=eq.2");
    let mut seen_all = Vec::new();
    let mut seen_one = Vec::new();
    while seen_all.len() < 2 || seen_one.is_empty() {
        let m = ws.recv_json();
        if m[3] != "INSERT" {
            continue;
        }
        assert_eq!(m[4]["table"], t.as_str(), "{m}");
        assert_eq!(m[4]["type"], "INSERT");
        assert!(m[4].get("ids").is_none(), "bare data: {m}");
        let id = m[4]["record"]["id"].as_i64().unwrap();
        if m[2] == all.as_str() {
            seen_all.push(id);
        } else if m[2] == one.as_str() {
            seen_one.push(id);
        }
    }
    assert_eq!(seen_all, vec![1, 2]);
    assert_eq!(seen_one, vec![2]);

    // A refreshed token re-checks the subscription: a new confirmation.
    subscribe(
        &mut ws,
        "3",
        "realtime:fresh",
        json!([{"event": "*", "schema": "public", "table": t}]),
    );
    let fresh = token_with(json!({"role": "anon", "sub": "again"}), 7200);
    let msg = json!(["3", "9", "realtime:fresh", "access_token", {"access_token": fresh}]);
    ws.text(&msg.to_string());
    let sys = next_on(&mut ws, "realtime:fresh", "");
    assert_eq!(sys[4]["message"], "Subscribed to PostgreSQL", "{sys}");
}
