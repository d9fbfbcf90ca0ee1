//! Broadcast from Database against a real tenant database: rows that
//! `realtime.send()`, `send_binary()` and `broadcast_changes()` insert into
//! `realtime.messages` reach the subscribers of their public or private
//! topic as user broadcasts with `meta.id` (PROTOCOL 2.5, 4.6), through the
//! messages publication the server creates and repairs, within the
//! tenant's limits, and nothing committed while the server is down is lost,
//! nor when a spread tenant's other shard is slow to take its share.

mod support;
use serde_json::{json, Value};
use support::rls::{SchemaDb, TenantDb};
use support::*;

/// Who may read what: authenticated users read `room:priv*` and
/// `changes:*`; nobody reads `room:denied`.
const POLICIES: &str = "
  create policy bfd_read on realtime.messages for select to authenticated
    using (realtime.topic() like 'room:priv%' or realtime.topic() like 'changes:%');";

fn authed(port: u16, vsn: &str) -> Ws {
    Ws::connect(
        port,
        vsn,
        &token_with(json!({"role": "authenticated", "sub": "u1"}), 3600),
    )
}

/// Joins `realtime:<name>` with vsn 1.0.0 framing; panics unless ok.
fn join_v1(ws: &mut Ws, name: &str, private: bool) {
    let msg = json!({"topic": format!("realtime:{name}"), "event": "phx_join",
        "payload": {"config": {"private": private}}, "ref": "1", "join_ref": "1"});
    ws.text(&msg.to_string());
    let reply = ws.recv_json();
    assert_eq!(reply["payload"]["status"], "ok", "{reply}");
}

/// Joins `realtime:<name>` with vsn 2.0.0 framing; the reply.
fn join_v2(ws: &mut Ws, name: &str, private: bool) -> Value {
    ws.join_v2(
        "1",
        &format!("realtime:{name}"),
        json!({"private": private}),
    )
}

fn assert_ok(reply: &Value) {
    assert_eq!(reply[4]["status"], "ok", "{reply}");
}

/// A kind 4 frame: (topic, event, metadata, encoding, payload).
fn kind4(ws: &mut Ws) -> (String, String, Value, u8, Vec<u8>) {
    let f = match ws.expect_frame() {
        Frame::Binary(f) => f,
        other => panic!("expected a kind 4 frame, got {other:?}"),
    };
    assert_eq!(f[0], 4, "{f:?}");
    let (tl, el, ml, enc) = (f[1] as usize, f[2] as usize, f[3] as usize, f[4]);
    let mut at = 5;
    let mut take = |n: usize| {
        let s = f[at..at + n].to_vec();
        at += n;
        s
    };
    let topic = String::from_utf8(take(tl)).unwrap();
    let event = String::from_utf8(take(el)).unwrap();
    let meta = serde_json::from_slice(&take(ml)).unwrap();
    let payload = f[5 + tl + el + ml..].to_vec();
    (topic, event, meta, enc, payload)
}

/// Waits until the server streams from its messages slot: its walsender
/// is past `START_REPLICATION`. A slot is already `active` while it is
/// being created, before its consistent point, and a row committed then
/// is not decoded.
fn wait_streaming(db: &SchemaDb) {
    let q = format!(
        "select count(*) from pg_replication_slots s join pg_stat_replication r on r.pid = s.active_pid \
         where s.slot_name = 'realtime_messages_slot_{}' and r.state = 'streaming'",
        db.name
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while db.sql(&q).trim() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the messages stream never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The id of the one row of `topic`.
fn row_id(db: &SchemaDb, topic: &str) -> String {
    db.sql(&format!(
        "select id from realtime.messages where topic = '{topic}' and extension = 'broadcast' \
         order by inserted_at desc limit 1"
    ))
    .trim()
    .to_owned()
}

#[test]
fn send_reaches_public_and_private_subscribers_with_the_row_id_in_both_framings() {
    let t = TenantDb::start("bfd_send", POLICIES);
    let port = t.srv.port;
    let mut pub2 = authed(port, "2.0.0");
    let mut pub1 = authed(port, "1.0.0");
    let mut priv2 = authed(port, "2.0.0");
    let mut priv1 = authed(port, "1.0.0");
    let mut denied = authed(port, "2.0.0");
    assert_ok(&join_v2(&mut pub2, "room:pub", false));
    join_v1(&mut pub1, "room:pub", false);
    assert_ok(&join_v2(&mut priv2, "room:priv", true));
    join_v1(&mut priv1, "room:priv", true);
    // Refused on read: never joined, so nothing of the topic reaches it.
    let refused = join_v2(&mut denied, "room:denied", true);
    assert_eq!(refused[4]["status"], "error", "{refused}");
    wait_streaming(&t.db);

    t.sql("select realtime.send('{\"a\": 1}', 'ev_pub', 'room:pub', false)");
    t.sql("select realtime.send('{\"b\": 2}', 'ev_priv', 'room:priv')");
    t.sql("select realtime.send('{\"c\": 3}', 'ev_denied', 'room:denied')");
    let pub_id = row_id(&t.db, "room:pub");
    let priv_id = row_id(&t.db, "room:priv");

    let (topic, event, meta, enc, payload) = kind4(&mut pub2);
    assert_eq!(
        (topic.as_str(), event.as_str(), enc),
        ("realtime:room:pub", "ev_pub", 1)
    );
    assert_eq!(meta, json!({"id": pub_id}));
    let p: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(p["a"], 1, "{p}");
    // send() adds the id to the payload too.
    assert_eq!(p["id"], json!(pub_id), "{p}");

    let got = pub1.recv_json();
    assert_eq!(got["event"], "broadcast", "{got}");
    assert_eq!(got["topic"], "realtime:room:pub", "{got}");
    assert_eq!(got["payload"]["event"], "ev_pub", "{got}");
    assert_eq!(got["payload"]["type"], "broadcast", "{got}");
    assert_eq!(got["payload"]["meta"], json!({"id": pub_id}), "{got}");
    assert_eq!(got["payload"]["payload"]["a"], 1, "{got}");

    let (topic, event, meta, _, _) = kind4(&mut priv2);
    assert_eq!(
        (topic.as_str(), event.as_str()),
        ("realtime:room:priv", "ev_priv")
    );
    assert_eq!(meta, json!({"id": priv_id}));
    let got = priv1.recv_json();
    assert_eq!(got["payload"]["meta"], json!({"id": priv_id}), "{got}");
    assert_eq!(got["payload"]["payload"]["b"], 2, "{got}");

    // Public and private stay apart; the refused socket hears nothing.
    assert_quiet(&mut pub2, 300);
    assert_quiet(&mut priv2, 100);
    assert_quiet(&mut denied, 100);
}

#[test]
fn send_binary_goes_out_as_bytes_to_v2_and_not_to_v1() {
    let t = TenantDb::start("bfd_bin", POLICIES);
    let port = t.srv.port;
    let mut v2 = authed(port, "2.0.0");
    let mut v1 = authed(port, "1.0.0");
    assert_ok(&join_v2(&mut v2, "room:bin", false));
    join_v1(&mut v1, "room:bin", false);
    wait_streaming(&t.db);
    t.sql("select realtime.send_binary('\\x00ff7f'::bytea, 'blob', 'room:bin', false)");
    let bin_id = row_id(&t.db, "room:bin");
    t.sql("select realtime.send('{\"after\": true}', 'json', 'room:bin', false)");

    let (_, event, meta, enc, payload) = kind4(&mut v2);
    assert_eq!((event.as_str(), enc), ("blob", 0));
    assert_eq!(payload, vec![0x00, 0xff, 0x7f]);
    assert_eq!(meta, json!({"id": bin_id}));
    let (_, event, _, enc, _) = kind4(&mut v2);
    assert_eq!((event.as_str(), enc), ("json", 1));
    // The v1 subscriber's first message is the JSON one.
    let got = v1.recv_json();
    assert_eq!(got["payload"]["event"], "json", "{got}");
}

#[test]
fn broadcast_changes_from_a_trigger_carries_old_and_new_records() {
    let t = TenantDb::start(
        "bfd_trig",
        &format!(
            "{POLICIES}
            create table public.bfd_items (id int primary key, name text);
            create function public.bfd_items_changed() returns trigger language plpgsql
              security definer as $$
            begin
              perform realtime.broadcast_changes('changes:' || coalesce(NEW.id, OLD.id)::text,
                TG_OP, TG_OP, TG_TABLE_NAME, TG_TABLE_SCHEMA, NEW, OLD);
              return null;
            end $$;
            create trigger bfd_items_changed after insert or update or delete on public.bfd_items
              for each row execute function public.bfd_items_changed();"
        ),
    );
    let mut ws = authed(t.srv.port, "2.0.0");
    assert_ok(&join_v2(&mut ws, "changes:7", true));
    wait_streaming(&t.db);
    t.sql("insert into public.bfd_items values (7, 'a')");
    t.sql("update public.bfd_items set name = 'b' where id = 7");
    t.sql("delete from public.bfd_items where id = 7");
    let expect = [
        ("INSERT", json!(null), json!({"id": 7, "name": "a"})),
        (
            "UPDATE",
            json!({"id": 7, "name": "a"}),
            json!({"id": 7, "name": "b"}),
        ),
        ("DELETE", json!({"id": 7, "name": "b"}), json!(null)),
    ];
    for (op, old, new) in expect {
        let (topic, event, meta, enc, payload) = kind4(&mut ws);
        assert_eq!(
            (topic.as_str(), event.as_str(), enc),
            ("realtime:changes:7", op, 1)
        );
        assert!(meta["id"].is_string(), "{meta}");
        let p: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(p["operation"], op, "{p}");
        assert_eq!(p["table"], "bfd_items", "{p}");
        assert_eq!(p["schema"], "public", "{p}");
        assert_eq!(p["old_record"], old, "{p}");
        assert_eq!(p["record"], new, "{p}");
    }
}

/// The publication's tables, sorted.
fn published(db: &SchemaDb) -> String {
    db.sql(
        "select string_agg(schemaname || '.' || tablename, ',' order by tablename) \
         from pg_publication_tables where pubname = 'supabase_realtime_messages_publication'",
    )
    .trim()
    .to_owned()
}

#[test]
fn the_publication_is_created_when_missing_and_repaired_when_it_holds_another_table() {
    // Missing: created.
    let t = TenantDb::start("bfd_pub", "");
    let mut ws = authed(t.srv.port, "2.0.0");
    assert_ok(&join_v2(&mut ws, "room:p", false));
    wait_streaming(&t.db);
    let tables = published(&t.db);
    assert!(
        !tables.is_empty()
            && tables
                .split(',')
                .all(|t| t.starts_with("realtime.messages")),
        "{tables}"
    );

    // Holding another table: dropped and recreated.
    let db = SchemaDb::create(
        "bfd_pubfix",
        true,
        "create table public.bfd_other (id int primary key);
         create publication supabase_realtime_messages_publication for table public.bfd_other;",
    );
    assert_eq!(published(&db), "public.bfd_other");
    let srv = Server::start_env(&db.server_env());
    let mut ws = authed(srv.port, "2.0.0");
    assert_ok(&join_v2(&mut ws, "room:p", false));
    wait_streaming(&db);
    let tables = published(&db);
    assert!(
        !tables.contains("bfd_other") && tables.contains("realtime.messages"),
        "{tables}"
    );
    db.sql("insert into public.bfd_other values (1)");
    db.sql("select realtime.send('{}', 'after_repair', 'room:p', false)");
    let (_, event, _, _, _) = kind4(&mut ws);
    assert_eq!(event, "after_repair");
    drop(srv);
}

#[test]
fn a_payload_over_the_tenant_limit_is_dropped_and_logged_and_the_next_arrives() {
    let db = SchemaDb::create("bfd_big", true, "");
    let mut env = db.server_env();
    env.push(("TENANT_MAX_PAYLOAD_SIZE_IN_KB".into(), "1".into()));
    let (srv, log) = Server::start_logged(&env);
    let mut ws = authed(srv.port, "2.0.0");
    assert_ok(&join_v2(&mut ws, "room:big", false));
    wait_streaming(&db);
    db.sql(&format!(
        "select realtime.send(jsonb_build_object('x', '{}'), 'huge', 'room:big', false)",
        "a".repeat(3000)
    ));
    db.sql("select realtime.send('{\"ok\": 1}', 'small', 'room:big', false)");
    let (_, event, _, _, _) = kind4(&mut ws);
    assert_eq!(event, "small");
    assert!(
        log.wait_for(
            &["UnableToBroadcastChanges", "payload_size_exceeded"],
            1,
            std::time::Instant::now() + std::time::Duration::from_secs(5)
        ),
        "the drop is logged"
    );
    assert_eq!(srv.metric("realtime_db_broadcast_drops_total"), 1);
    drop(srv);
}

#[test]
fn a_shard_busy_for_a_moment_paces_the_stream_and_loses_no_message() {
    let db = SchemaDb::create("bfd_pace", true, "");
    let mut env = db.server_env();
    for (k, v) in [
        ("SHARDS", "2"),
        ("SELF_HOST_TENANT_PLACEMENT", "spread"),
        ("TENANT_MAX_PAYLOAD_SIZE_IN_KB", "1"),
        ("TENANT_MAX_EVENTS_PER_SECOND", "10000000"),
        ("SHARD_QUEUE_BYTES", "100000"),
    ] {
        env.push((k.into(), v.into()));
    }
    let srv = Server::start_env(&env);
    // One subscriber on each shard; the stream runs on one of them.
    let mut subs: Vec<Ws> = (0..2)
        .map(|_| {
            let mut ws = authed(srv.port, "2.0.0");
            assert_ok(&join_v2(&mut ws, "room:pace", false));
            ws
        })
        .collect();
    assert_eq!(srv.metric_by_shard("realtime_connections"), [1, 1]);
    wait_streaming(&db);
    // Message 0 keeps the other shard's thread busy for 300 ms as it
    // arrives there; about 1 MB of messages follows it, ten times the bound
    // of the queue between the shards.
    let n = 3000;
    db.sql(&format!(
        "select realtime.send(jsonb_build_object('n', g, 'pad', \
           case when g = 0 then '__pause_shard__' else repeat('x', 200) end), \
           'e', 'room:pace', false) from generate_series(0, {}) g",
        n - 1
    ));
    for (s, ws) in subs.iter_mut().enumerate() {
        for i in 0..n {
            let (_, _, _, _, payload) = kind4(ws);
            let p: Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(p["n"], i, "subscriber {s}: in order and without a hole");
        }
    }
    assert_eq!(srv.metric("realtime_forward_drops_total"), 0);
    assert_eq!(srv.metric("realtime_forward_gap_closes_total"), 0);
    drop(srv);
}

#[test]
fn nothing_sent_while_the_server_is_down_is_lost_after_it_restarts() {
    let db = SchemaDb::create("bfd_down", true, "");
    let mut srv = Server::start_env(&db.server_env());
    let mut ws = authed(srv.port, "2.0.0");
    assert_ok(&join_v2(&mut ws, "room:down", false));
    wait_streaming(&db);
    db.sql("select realtime.send('{\"n\": 0}', 'live', 'room:down', false)");
    assert_eq!(kind4(&mut ws).1, "live");

    srv.kill();
    const N: usize = 50;
    db.sql(&format!(
        "select realtime.send(jsonb_build_object('n', g), 'while_down', 'room:down', false) \
         from generate_series(1, {N}) g"
    ));
    let srv = Server::start_env(&db.server_env());
    let mut ws = authed(srv.port, "2.0.0");
    assert_ok(&join_v2(&mut ws, "room:down", false));
    // The killed server's walsender may hold the slot a moment longer.
    ws.s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < N {
        let (_, event, _, _, payload) = kind4(&mut ws);
        // At least once: what was fanned out but not yet confirmed when
        // the process died comes again.
        if event == "live" {
            continue;
        }
        assert_eq!(event, "while_down");
        let p: Value = serde_json::from_slice(&payload).unwrap();
        seen.insert(p["n"].as_u64().unwrap());
    }
    assert_eq!(seen, (1..=N as u64).collect());
    drop(srv);
}

#[test]
fn sql_in_topic_names_stays_data() {
    let t = TenantDb::start(
        "bfd_sqli",
        "create table public.bfd_x (id int); insert into public.bfd_x values (1);",
    );
    let name = "a'; drop table public.bfd_x; --";
    let mut ws = authed(t.srv.port, "2.0.0");
    assert_ok(&join_v2(&mut ws, name, false));
    wait_streaming(&t.db);
    t.sql("select realtime.send('{}', 'inj', $$a'; drop table public.bfd_x; --$$, false)");
    let (topic, event, _, _, _) = kind4(&mut ws);
    assert_eq!(topic, format!("realtime:{name}"));
    assert_eq!(event, "inj");
    assert_eq!(t.sql("select count(*) from public.bfd_x").trim(), "1");
}
