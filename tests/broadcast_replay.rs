//! Replay on private channels (PROTOCOL 4.7) against a real tenant
//! database: stored messages written with `realtime.send()` and
//! `realtime.send_binary()` arrive right after the join reply, oldest
//! first, with meta `{"id","replayed":true}`; binary ones as bytes to vsn
//! 2.0.0 and not at all to vsn 1.0.0; `since` and the clamped `limit` bound
//! them; bad params, public channels, denied reads and failing queries get
//! the Elixir server's exact refusals; topics stay bound parameters; and the
//! live copy of a replayed message is not delivered to that channel again.

mod support;
use serde_json::{json, Value};
use support::rls::{assert_ok, assert_refused, TenantDb};
use support::*;

/// Who may read what. Nobody but `authenticated` reads; on `lobby:presence`
/// only presence.
const POLICIES: &str = "
  create policy replay_read on realtime.messages for select to authenticated
    using (realtime.topic() like 'room:%' or realtime.topic() = 'a''; drop table x; --');
  create policy replay_write on realtime.messages for insert to authenticated
    with check (realtime.topic() like 'room:%');
  create policy presence_only on realtime.messages for select to authenticated
    using (realtime.topic() = 'lobby:presence' and extension = 'presence');
  create table x (n int);";

fn authed(port: u16, vsn: &str) -> Ws {
    let claims = json!({"role": "authenticated", "sub": "u"});
    Ws::connect(port, vsn, &token_with(claims, 3600))
}

/// `realtime.send(payload, event, topic)` in a transaction of its own.
fn send(db: &TenantDb, topic: &str, event: &str, payload: &str) {
    db.sql(&format!(
        "select realtime.send('{payload}'::jsonb, '{event}', '{topic}', true)"
    ));
}

/// Waits until the tenant's messages stream (up since its first join)
/// has delivered everything written before now: a marker written now
/// reaches a channel of its own (the stream keeps commit order). After
/// it, no live copy of an earlier `send` can reach a channel joined later.
fn stream_caught_up(db: &TenantDb, name: &str) {
    let mut ws = authed(db.srv.port, "2.0.0");
    let ready = json!({"broadcast": {"replication_ready": true}});
    assert_ok(&join_private(&mut ws, "1", name, ready));
    let told = ws.recv_json();
    assert_eq!(told[4]["message"], "Replication connection established");
    send(db, name, "fence", "{}");
    // Database broadcasts reach vsn 2.0.0 sockets as kind 4 frames.
    loop {
        let f = ws.expect_frame();
        if matches!(f, Frame::Binary(_)) && kind4_parts(&f).1 == "fence" {
            return;
        }
    }
}

/// Ids of the topic's private broadcasts, oldest first.
fn stored_ids(db: &TenantDb, topic: &str) -> Vec<String> {
    db.sql(&format!(
        "select id from realtime.messages where topic = '{topic}' and private \
         and extension = 'broadcast' order by inserted_at"
    ))
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Joins `realtime:<name>` privately (v2) with `config` merged in; the
/// reply. A join that replaces a joined channel first closes that one:
/// its `phx_close` is skipped.
fn join_private(ws: &mut Ws, jr: &str, name: &str, mut config: Value) -> Value {
    config["private"] = json!(true);
    let topic = format!("realtime:{name}");
    let first = ws.join_v2(jr, &topic, config);
    if first[3] == "phx_close" && first[2] == topic.as_str() {
        return ws.recv_json();
    }
    first
}

fn replay(since: Value, limit: Option<Value>) -> Value {
    let mut r = json!({"since": since});
    if let Some(l) = limit {
        r["limit"] = l;
    }
    json!({"broadcast": {"replay": r}})
}

/// Every frame the server sends before the reply to a heartbeat sent now:
/// what a join queued behind its reply, with no waiting on a clock.
fn until_heartbeat(ws: &mut Ws) -> Vec<Frame> {
    fence(ws, r#"[null,"hb","phoenix","heartbeat",{}]"#)
}

/// [`until_heartbeat`] on a vsn 1.0.0 socket.
fn until_heartbeat_v1(ws: &mut Ws) -> Vec<Frame> {
    fence(
        ws,
        r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"hb"}"#,
    )
}

fn fence(ws: &mut Ws, heartbeat: &str) -> Vec<Frame> {
    ws.text(heartbeat);
    let mut got = Vec::new();
    loop {
        let f = ws.expect_frame();
        if let Frame::Text(t) = &f {
            let v: Value = serde_json::from_str(t).unwrap();
            if v[1] == "hb" || v["ref"] == "hb" {
                return got;
            }
        }
        got.push(f);
    }
}

/// A kind 4 frame's (topic, event, metadata, encoding, payload).
fn kind4_parts(f: &Frame) -> (String, String, Value, u8, Vec<u8>) {
    let Frame::Binary(b) = f else {
        panic!("expected a binary frame, got {f:?}")
    };
    assert_eq!(b[0], 4, "kind 4");
    let (tl, el, ml) = (b[1] as usize, b[2] as usize, b[3] as usize);
    let r = &b[5..];
    (
        String::from_utf8(r[..tl].to_vec()).unwrap(),
        String::from_utf8(r[tl..tl + el].to_vec()).unwrap(),
        serde_json::from_slice(&r[tl + el..tl + el + ml]).unwrap(),
        b[4],
        r[tl + el + ml..].to_vec(),
    )
}

/// A kind 4 frame of binary bytes: (topic, event, metadata, payload).
fn kind4(f: &Frame) -> (String, String, Value, Vec<u8>) {
    let (topic, event, meta, encoding, payload) = kind4_parts(f);
    assert_eq!(encoding, 0, "binary encoding");
    (topic, event, meta, payload)
}

/// A kind 4 frame of a JSON user broadcast: (event, metadata).
fn kind4_json(f: &Frame) -> (String, Value) {
    let (_, event, meta, encoding, _) = kind4_parts(f);
    assert_eq!(encoding, 1, "JSON encoding");
    (event, meta)
}

fn text(f: &Frame) -> Value {
    match f {
        Frame::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The user events of replayed broadcasts among `frames`, in order.
fn events(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f {
            Frame::Binary(_) => kind4(f).1,
            _ => {
                let v = text(f);
                assert_eq!(v[3], "broadcast", "{v}");
                assert_eq!(v[4]["meta"]["replayed"], true, "{v}");
                v[4]["event"].as_str().unwrap().to_owned()
            }
        })
        .collect()
}

#[test]
fn replay_delivers_the_stored_messages_oldest_first_right_after_the_reply() {
    let db = TenantDb::start("replay_order", POLICIES);
    let port = db.srv.port;
    send(&db, "room:order", "first", r#"{"n": 1}"#);
    db.sql("select realtime.send_binary('\\xdeadbeef00ff'::bytea, 'bin', 'room:order', true)");
    send(&db, "room:order", "third", r#"{"n": 3, "s": "a b"}"#);
    // Not replayed: public, another topic, another extension.
    db.sql("select realtime.send('{}'::jsonb, 'public', 'room:order', false)");
    send(&db, "room:other", "elsewhere", "{}");
    db.sql(
        "insert into realtime.messages (topic, extension, payload, event, private) \
         values ('room:order', 'presence', '{}', 'presence', true)",
    );
    let ids = stored_ids(&db, "room:order");
    assert_eq!(ids.len(), 3);

    let mut ws = authed(port, "2.0.0");
    let mut config = replay(json!(0), None);
    config["presence"] = json!({"enabled": true, "key": "k"});
    assert_ok(&join_private(&mut ws, "1", "room:order", config));
    // The JSON one, exactly as the Elixir server writes it: a channel push
    // with the join ref, the payload as `realtime.send` stored it (with
    // its id), keys in order.
    assert_eq!(
        ws.expect_frame(),
        Frame::Text(format!(
            r#"["1",null,"realtime:room:order","broadcast",{{"event":"first","meta":{{"id":"{0}","replayed":true}},"payload":{{"id":"{0}","n":1}},"type":"broadcast"}}]"#,
            ids[0]
        ))
    );
    let (topic, event, meta, bytes) = kind4(&ws.expect_frame());
    assert_eq!(
        (topic.as_str(), event.as_str()),
        ("realtime:room:order", "bin")
    );
    assert_eq!(meta, json!({"id": ids[1], "replayed": true}));
    assert_eq!(bytes, [0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]);
    let third = text(&ws.expect_frame());
    assert_eq!(
        third[4],
        json!({"event": "third", "meta": {"id": ids[2], "replayed": true},
               "payload": {"id": ids[2], "n": 3, "s": "a b"}, "type": "broadcast"})
    );
    // Then the presence state, and nothing else.
    assert_eq!(text(&ws.expect_frame())[3], "presence_state");
    assert_eq!(until_heartbeat(&mut ws), []);

    // vsn 1.0.0: the JSON ones in object form, the binary one skipped.
    let mut v1 = authed(port, "1.0.0");
    v1.text(
        &json!({"topic": "realtime:room:order", "event": "phx_join", "ref": "1", "join_ref": "1",
                "payload": {"config": {"private": true, "broadcast": {"replay": {"since": 0}}}}})
        .to_string(),
    );
    assert_eq!(v1.recv_json()["payload"]["status"], "ok");
    let got = until_heartbeat_v1(&mut v1);
    assert_eq!(got.len(), 2, "{got:?}");
    let first = text(&got[0]);
    assert_eq!(
        first,
        json!({"topic": "realtime:room:order", "event": "broadcast", "ref": null,
               "payload": {"event": "first", "meta": {"id": ids[0], "replayed": true},
                           "payload": {"id": ids[0], "n": 1}, "type": "broadcast"}})
    );
    assert_eq!(text(&got[1])["payload"]["event"], "third");
}

#[test]
fn replay_is_bounded_by_since_and_by_a_limit_clamped_to_1_through_25() {
    let db = TenantDb::start("replay_bounds", POLICIES);
    let port = db.srv.port;
    for e in ["old", "edge", "new", "future"] {
        send(&db, "room:since", e, "{}");
    }
    // Exact places around a moment T (whole milliseconds, UTC): one just
    // before it, one at it, one after it, one more than a minute ahead.
    let t = db.sql(
        "with t as (select date_trunc('milliseconds', (now() at time zone 'utc') - interval '30 seconds') t)
         update realtime.messages m set inserted_at = case m.event
             when 'old' then t.t - interval '1 millisecond'
             when 'edge' then t.t
             when 'new' then t.t + interval '10 seconds'
             else t.t + interval '2 minutes' end
         from t where m.topic = 'room:since'
         returning (extract(epoch from t.t) * 1000)::bigint",
    );
    let t: i64 = t.lines().next().unwrap().parse().unwrap();
    let mut ws = authed(port, "2.0.0");
    assert_ok(&join_private(
        &mut ws,
        "1",
        "room:since",
        replay(json!(t), None),
    ));
    assert_eq!(events(&until_heartbeat(&mut ws)), ["edge", "new"]);
    // Nothing since after the last one.
    assert_ok(&join_private(
        &mut ws,
        "2",
        "room:since",
        replay(json!(t + 10_001), None),
    ));
    assert_eq!(until_heartbeat(&mut ws), []);

    // 30 messages, one millisecond apart.
    db.sql(
        "select realtime.send(jsonb_build_object('n', g), 'e' || g, 'room:limit', true)
           from generate_series(1, 30) g;
         update realtime.messages set inserted_at = inserted_at + (payload->>'n')::int * interval '1 millisecond'
          where topic = 'room:limit'",
    );
    // The stream is up since the first join above: the live copies of
    // these 30 must have gone by before the joins below, which only
    // replays may reach (else a live copy of an unreplayed one arrives
    // when the stream lags, as seen once under load).
    stream_caught_up(&db, "room:fence");
    let newest = |n: usize| -> Vec<String> { (31 - n..=30).map(|i| format!("e{i}")).collect() };
    for (jr, limit, want) in [
        ("3", Some(json!(0)), 1),
        ("4", Some(json!(-5)), 1),
        ("5", Some(json!(3)), 3),
        ("6", Some(json!(100)), 25),
        ("7", Some(Value::Null), 25),
        ("8", None, 25),
    ] {
        assert_ok(&join_private(
            &mut ws,
            jr,
            "room:limit",
            replay(json!(0), limit.clone()),
        ));
        assert_eq!(
            events(&until_heartbeat(&mut ws)),
            newest(want),
            "limit {limit:?}"
        );
    }
}

#[test]
fn bad_params_public_channels_denied_reads_and_failing_queries_are_refused_exactly() {
    let db = TenantDb::start("replay_refusals", POLICIES);
    let port = db.srv.port;
    send(&db, "room:r", "stored", r#"{"secret": 1}"#);
    let invalid = "UnableToReplayMessages: Replay params are not valid";
    let mut ws = authed(port, "2.0.0");
    for (jr, config) in [
        ("1", replay(json!("1700000000000"), None)),
        ("2", replay(json!(1.5), None)),
        ("3", replay(json!(1.0), None)),
        ("4", json!({"broadcast": {"replay": {"limit": 10}}})),
        ("5", json!({"broadcast": {"replay": {}}})),
        ("6", replay(json!(0), Some(json!("10")))),
        ("7", replay(json!(253_402_300_800_000_i64), None)),
    ] {
        let reply = join_private(&mut ws, jr, "room:r", config.clone());
        assert_refused(&reply, invalid);
    }
    // Public channels never replay.
    assert_refused(
        &ws.join_v2("8", "realtime:room:r", replay(json!(0), None)),
        "UnableToReplayMessages: Replay is not allowed for public channels",
    );
    // A replay that is not an object replays nothing.
    assert_ok(&join_private(
        &mut ws,
        "9",
        "room:r",
        json!({"broadcast": {"replay": 5}}),
    ));
    assert_eq!(until_heartbeat(&mut ws), []);

    // No read: refused, and not one stored row leaks.
    let unauthorized = |name: &str| {
        format!("Unauthorized: You do not have permissions to read from this Channel topic: {name}")
    };
    let mut anon = Ws::connect(port, "2.0.0", &token("anon", 3600));
    assert_refused(
        &join_private(&mut anon, "1", "room:r", replay(json!(0), None)),
        &unauthorized("room:r"),
    );
    assert_eq!(until_heartbeat(&mut anon), []);
    // Presence read alone admits a join, but not a replay.
    send(&db, "lobby:presence", "stored", "{}");
    let presence = json!({"enabled": true});
    assert_ok(&join_private(
        &mut ws,
        "10",
        "lobby:presence",
        json!({"presence": presence}),
    ));
    until_heartbeat(&mut ws);
    let mut config = replay(json!(0), None);
    config["presence"] = presence;
    assert_refused(
        &join_private(&mut ws, "11", "lobby:presence", config),
        &unauthorized("lobby:presence"),
    );
    assert_eq!(until_heartbeat(&mut ws), []);

    // A query the database refuses (year -9999 is before its timestamps).
    assert_refused(
        &join_private(
            &mut ws,
            "12",
            "room:r",
            replay(json!(-377_705_116_800_000_i64), None),
        ),
        "Unknown Error on Channel",
    );
    // The server goes on, and so does the pool (replacing the channel
    // joined with "9").
    assert_ok(&join_private(
        &mut ws,
        "13",
        "room:r",
        replay(json!(0), None),
    ));
    assert_eq!(events(&until_heartbeat(&mut ws)), ["stored"]);
}

#[test]
fn a_hostile_topic_is_only_ever_a_bound_parameter() {
    let db = TenantDb::start("replay_hostile", POLICIES);
    let name = "a'; drop table x; --";
    db.sql("select realtime.send('{\"n\": 1}'::jsonb, 'hostile', 'a''; drop table x; --', true)");
    let mut ws = authed(db.srv.port, "2.0.0");
    assert_ok(&join_private(
        &mut ws,
        "1",
        name,
        replay(json!(0), Some(json!(5))),
    ));
    let got = until_heartbeat(&mut ws);
    assert_eq!(events(&got), ["hostile"]);
    assert_eq!(text(&got[0])[2], format!("realtime:{name}"));
    assert_eq!(
        db.sql("select to_regclass('public.x') is not null, count(*) from realtime.messages"),
        "t|1\n",
        "the table is still there and nothing was written"
    );
}

/// One stored message on `topic` (its id), a channel it was replayed to,
/// and one joined without a replay.
fn replayed_and_not(db: &TenantDb, topic: &str) -> (String, Ws, Ws) {
    send(db, topic, "stored", "{}");
    let id = stored_ids(db, topic).remove(0);
    let mut replayer = authed(db.srv.port, "2.0.0");
    let reply = join_private(&mut replayer, "1", topic, replay(json!(0), None));
    assert_ok(&reply);
    assert_eq!(events(&until_heartbeat(&mut replayer)), ["stored"]);
    let mut other = authed(db.srv.port, "2.0.0");
    // Joined once the messages stream is up (its slot is made at the
    // tenant's first join): rows inserted after this reach it.
    let ready = json!({"broadcast": {"replication_ready": true}});
    assert_ok(&join_private(&mut other, "1", topic, ready));
    let told = other.recv_json();
    assert_eq!(
        told[4]["message"], "Replication connection established",
        "{told}"
    );
    (id, replayer, other)
}

#[test]
fn a_live_broadcast_carrying_a_replayed_id_skips_the_channel_it_was_replayed_to() {
    let db = TenantDb::start("replay_dupe", POLICIES);
    let (id, mut replayer, mut other) = replayed_and_not(&db, "room:dupe");
    let mut writer = authed(db.srv.port, "2.0.0");
    assert_ok(&join_private(&mut writer, "1", "room:dupe", json!({})));
    // A broadcast whose payload carries `meta.id` (as a REST batch message
    // with an id does) is that message as far as the dispatcher knows.
    for (n, event, meta) in [
        ("2", "copy", json!({"id": id})),
        ("3", "fresh", json!({"id": "x"})),
    ] {
        writer.text(
            &json!(["1", n, "realtime:room:dupe", "broadcast",
                {"type": "broadcast", "event": event, "payload": {}, "meta": meta}])
            .to_string(),
        );
    }
    assert_eq!(text(&other.expect_frame())[4]["event"], "copy");
    assert_eq!(text(&other.expect_frame())[4]["event"], "fresh");
    // The replayer's next frame is the fresh one: the copy never came.
    assert_eq!(text(&replayer.expect_frame())[4]["event"], "fresh");
}

#[test]
fn the_live_database_copy_of_a_replayed_message_is_not_delivered_again() {
    let db = TenantDb::start("replay_live", POLICIES);
    let (id, mut replayer, mut other) = replayed_and_not(&db, "room:live");
    // The stream delivers a row with the replayed message's id (the key is
    // (id, inserted_at), so the id may come again), then a fresh one.
    db.sql(&format!(
        "insert into realtime.messages (id, topic, extension, payload, event, private) \
         values ('{id}', 'room:live', 'broadcast', '{{}}', 'copy', true)"
    ));
    send(&db, "room:live", "fresh", "{}");
    let (e, meta) = kind4_json(&other.expect_frame());
    assert_eq!((e.as_str(), &meta), ("copy", &json!({"id": id})));
    assert_eq!(kind4_json(&other.expect_frame()).0, "fresh");
    assert_eq!(kind4_json(&replayer.expect_frame()).0, "fresh");
}
