//! Private channels against a real tenant database: joins, broadcasts,
//! presence and token refreshes decided by RLS policies on
//! `realtime.messages` (PROTOCOL 4.3), with the Elixir server's exact
//! errors, public and private topics of one name kept apart, and client
//! values that only ever reach SQL as bound parameters.

mod support;
use serde_json::{json, Value};
use support::control::{admin, connect, ControlDb};
use support::pg::{dev_db_url, parts};
use support::rls::{todays_partition, SchemaDb, TenantDb};
use support::*;

/// Policies of the cases below.
const POLICIES: &str = "
  create policy auth_read_allowed on realtime.messages for select to authenticated
    using (realtime.topic() in ('room:allowed', 'room:readonly') and extension = 'broadcast');
  create policy auth_write_allowed on realtime.messages for insert to authenticated
    with check (realtime.topic() = 'room:allowed' and extension = 'broadcast');
  create policy anon_read on realtime.messages for select to anon
    using (realtime.topic() = 'room:anon');
  create policy sub_read on realtime.messages for select to authenticated
    using (realtime.topic() = 'room:alice' and current_setting('request.jwt.claim.sub', true) = 'alice');
  create policy header_read on realtime.messages for select to authenticated
    using (realtime.topic() = 'room:header'
           and current_setting('request.headers', true)::jsonb ->> 'x-room-key' = 'open');
  create policy presence_read on realtime.messages for select to authenticated
    using (realtime.topic() = 'room:presence');
  create policy presence_write on realtime.messages for insert to authenticated
    with check (realtime.topic() = 'room:presence' and extension = 'presence');
  create policy mixed_read on realtime.messages for select to authenticated
    using (realtime.topic() = 'room:mixed'
           and (extension = 'presence' or current_setting('request.jwt.claim.sub', true) = 'alice'));
  create function realtime.fail(kind text) returns boolean language plpgsql volatile as $$
  begin
    if kind = 'cancel' then
      raise exception 'canceling statement due to statement timeout' using errcode = 'query_canceled';
    end if;
    raise exception 'policy exploded';
  end $$;
  create policy failing on realtime.messages for select to authenticated
    using (case when realtime.topic() = 'room:boom' then realtime.fail('boom')
                when realtime.topic() = 'room:cancel' then realtime.fail('cancel')
                else false end);";

fn authed(port: u16, sub: &str) -> Ws {
    let claims = json!({"role": "authenticated", "sub": sub});
    Ws::connect(port, "2.0.0", &token_with(claims, 3600))
}

/// Joins `realtime:<name>` privately with `config` merged in; the reply.
fn join_private(ws: &mut Ws, jr: &str, name: &str, mut config: Value) -> Value {
    config["private"] = json!(true);
    ws.join_v2(jr, &format!("realtime:{name}"), config)
}

fn assert_ok(reply: &Value) {
    assert_eq!(reply[3], "phx_reply", "{reply}");
    assert_eq!(reply[4]["status"], "ok", "{reply}");
}

fn assert_refused(reply: &Value, reason: &str) {
    assert_eq!(reply[3], "phx_reply", "{reply}");
    assert_eq!(reply[4]["status"], "error", "{reply}");
    assert_eq!(reply[4]["response"]["reason"], reason, "{reply}");
}

fn unauthorized(name: &str) -> String {
    format!("Unauthorized: You do not have permissions to read from this Channel topic: {name}")
}

#[test]
fn private_joins_follow_the_read_policies_by_role_topic_sub_and_headers() {
    let db = TenantDb::start("join", POLICIES);
    let port = db.srv.port;

    let mut ws = authed(port, "alice");
    assert_ok(&join_private(&mut ws, "1", "room:allowed", json!({})));
    assert_refused(
        &join_private(&mut ws, "2", "room:denied", json!({})),
        &unauthorized("room:denied"),
    );
    // The sub claim reaches the policy (`request.jwt.claim.sub`).
    assert_ok(&join_private(&mut ws, "3", "room:alice", json!({})));
    let mut bob = authed(port, "bob");
    assert_refused(
        &join_private(&mut bob, "1", "room:alice", json!({})),
        &unauthorized("room:alice"),
    );
    // The same name joined publicly needs no policy.
    assert_ok(&bob.join_v2("2", "realtime:room:alice", json!({})));

    let mut anon = Ws::connect(port, "2.0.0", &token("anon", 3600));
    assert_refused(
        &join_private(&mut anon, "1", "room:allowed", json!({})),
        &unauthorized("room:allowed"),
    );
    assert_ok(&join_private(&mut anon, "2", "room:anon", json!({})));

    // The upgrade's `x-*` headers are `request.headers`.
    assert_refused(
        &join_private(&mut ws, "4", "room:header", json!({})),
        &unauthorized("room:header"),
    );
    let path = format!(
        "/socket/websocket?apikey={}&vsn=2.0.0",
        token_with(json!({"role": "authenticated", "sub": "carol"}), 3600)
    );
    let mut keyed = Ws::try_connect(port, &path, "localhost", &[("x-room-key", "open")])
        .unwrap_or_else(|e| panic!("upgrade refused: {e:?}"));
    assert_ok(&join_private(&mut keyed, "1", "room:header", json!({})));
}

#[test]
fn private_broadcasts_need_write_and_never_cross_to_public_subscribers() {
    let db = TenantDb::start("bcast", POLICIES);
    let port = db.srv.port;
    let mut sender = authed(port, "s");
    let mut reader = authed(port, "r");
    let mut public = authed(port, "p");
    // The join and a broadcast behind it in one write: the broadcast waits
    // for the join's check and is then handled (and acknowledged) in order.
    let join = json!(["1", "1", "realtime:room:allowed", "phx_join",
        {"config": {"private": true, "broadcast": {"ack": true}}}]);
    let push = json!(["1", "2", "realtime:room:allowed", "broadcast",
        {"type": "broadcast", "event": "early", "payload": {"n": 0}}]);
    assert_ok(&join_private(&mut reader, "1", "room:allowed", json!({})));
    assert_ok(&public.join_v2("1", "realtime:room:allowed", json!({})));
    sender.text(&join.to_string());
    sender.text(&push.to_string());
    assert_ok(&sender.recv_json());
    let ack = sender.recv_json();
    assert_eq!(
        (ack[1].as_str(), &ack[4]["status"]),
        (Some("2"), &json!("ok")),
        "{ack}"
    );
    let got = reader.recv_json();
    assert_eq!(got[3], "broadcast", "{got}");
    assert_eq!(got[4]["event"], "early", "{got}");
    assert_quiet(&mut public, 300);

    // The cached write answer serves the next one too.
    sender.text(
        &json!(["1", "3", "realtime:room:allowed", "broadcast",
        {"type": "broadcast", "event": "second", "payload": {}}])
        .to_string(),
    );
    assert_eq!(sender.recv_json()[4]["status"], "ok");
    assert_eq!(reader.recv_json()[4]["event"], "second");

    // Public pushes on the same name stay public.
    public.text(
        &json!(["1", "2", "realtime:room:allowed", "broadcast",
        {"type": "broadcast", "event": "pub", "payload": {}}])
        .to_string(),
    );
    assert_quiet(&mut reader, 300);

    // Read but no write: dropped, and no ack even when one is asked for.
    let mut ro_sender = authed(port, "x");
    let mut ro_reader = authed(port, "y");
    assert_ok(&join_private(
        &mut ro_reader,
        "1",
        "room:readonly",
        json!({}),
    ));
    assert_ok(&join_private(
        &mut ro_sender,
        "1",
        "room:readonly",
        json!({"broadcast": {"ack": true, "self": true}}),
    ));
    for n in 2..4 {
        ro_sender.text(
            &json!(["1", n.to_string(), "realtime:room:readonly", "broadcast",
            {"type": "broadcast", "event": "nope", "payload": {}}])
            .to_string(),
        );
    }
    assert_quiet(&mut ro_sender, 500);
    assert_quiet(&mut ro_reader, 200);
    // The socket goes on serving.
    ro_sender.text(r#"[null,"9","phoenix","heartbeat",{}]"#);
    assert_eq!(ro_sender.recv_json()[1], "9");
}

#[test]
fn private_presence_needs_write_to_track_and_read_to_receive() {
    let db = TenantDb::start("pres", POLICIES);
    let port = db.srv.port;
    let presence = json!({"presence": {"enabled": true, "key": "k"}});
    let mut a = authed(port, "a");
    assert_ok(&join_private(
        &mut a,
        "1",
        "room:presence",
        presence.clone(),
    ));
    let state = a.recv_json();
    assert_eq!(
        (state[3].as_str(), &state[4]),
        (Some("presence_state"), &json!({}))
    );
    a.text(
        &json!(["1", "2", "realtime:room:presence", "presence",
        {"type": "presence", "event": "track", "payload": {"online": true}}])
        .to_string(),
    );
    let reply = a.recv_json();
    assert_eq!(
        (reply[1].as_str(), &reply[4]["status"]),
        (Some("2"), &json!("ok")),
        "{reply}"
    );
    let diff = a.recv_json();
    assert_eq!(diff[3], "presence_diff", "{diff}");
    assert_eq!(diff[4]["joins"]["k"]["metas"][0]["online"], true, "{diff}");

    // Broadcast read only: joined, but no presence state, no diffs, and a
    // refused track.
    let mut b = authed(port, "b");
    assert_ok(&join_private(&mut b, "1", "room:allowed", presence.clone()));
    assert_quiet(&mut b, 300);
    b.text(
        &json!(["1", "2", "realtime:room:allowed", "presence",
        {"type": "presence", "event": "track", "payload": {"x": 1}}])
        .to_string(),
    );
    let refused = b.recv_json();
    assert_eq!(refused[1], "2", "{refused}");
    assert_eq!(
        refused[4],
        json!({"status": "error", "response": {}}),
        "{refused}"
    );
    // Someone who may track there (service_role bypasses RLS) does; the
    // channel without presence read is not shown it.
    let mut s = Ws::connect(port, "2.0.0", &token("service_role", 3600));
    assert_ok(&join_private(
        &mut s,
        "1",
        "room:allowed",
        json!({"presence": {"enabled": true, "key": "svc"}}),
    ));
    assert_eq!(s.recv_json()[3], "presence_state");
    s.text(
        &json!(["1", "2", "realtime:room:allowed", "presence",
        {"type": "presence", "event": "track", "payload": {"svc": true}}])
        .to_string(),
    );
    assert_eq!(s.recv_json()[4]["status"], "ok");
    assert_eq!(s.recv_json()[3], "presence_diff");
    assert_quiet(&mut b, 300);

    // A public channel of the same name sees none of the private presence.
    let mut p = authed(port, "p");
    assert_ok(&p.join_v2("1", "realtime:room:presence", presence));
    let state = p.recv_json();
    assert_eq!(
        (state[3].as_str(), &state[4]),
        (Some("presence_state"), &json!({}))
    );
}

#[test]
fn access_token_refresh_rechecks_read_and_shuts_the_channel_that_lost_it() {
    let db = TenantDb::start("token", POLICIES);
    let port = db.srv.port;
    let alice = token_with(json!({"role": "authenticated", "sub": "alice"}), 3600);
    let bob = token_with(json!({"role": "authenticated", "sub": "bob"}), 3600);
    let carol = token_with(json!({"role": "authenticated", "sub": "carol"}), 3600);

    // No read left: the join's own refusal text, as a shutdown.
    let mut ws = Ws::connect(port, "2.0.0", &alice);
    assert_ok(&join_private(&mut ws, "1", "room:alice", json!({})));
    ws.text(
        &json!(["1", "2", "realtime:room:alice", "access_token", {"access_token": bob}])
            .to_string(),
    );
    let sys = ws.recv_json();
    assert_eq!(sys[3], "system", "{sys}");
    assert_eq!(
        sys[4],
        json!({"extension": "system", "status": "error", "channel": "room:alice",
               "message": "You do not have permissions to read from this Channel topic: room:alice"})
    );
    let close = ws.recv_json();
    assert_eq!(
        (close[0].as_str(), close[3].as_str()),
        (Some("1"), Some("phx_close"))
    );

    // Broadcast read lost, presence read kept: `no longer`.
    let presence = json!({"presence": {"enabled": true}});
    let mut ws = Ws::connect(port, "2.0.0", &alice);
    assert_ok(&join_private(&mut ws, "1", "room:mixed", presence.clone()));
    assert_eq!(ws.recv_json()[3], "presence_state");
    ws.text(
        &json!(["1", "2", "realtime:room:mixed", "access_token", {"access_token": bob}])
            .to_string(),
    );
    let sys = ws.recv_json();
    assert_eq!(
        sys[4]["message"],
        "You no longer have permission to read from this Channel topic: room:mixed",
        "{sys}"
    );
    assert_eq!(ws.recv_json()[3], "phx_close");

    // A refresh that keeps the reads keeps the channel, silently.
    let mut ws = Ws::connect(port, "2.0.0", &bob);
    assert_ok(&join_private(&mut ws, "1", "room:mixed", presence));
    assert_eq!(ws.recv_json()[3], "presence_state");
    ws.text(
        &json!(["1", "2", "realtime:room:mixed", "access_token", {"access_token": carol}])
            .to_string(),
    );
    ws.text(r#"[null,"3","phoenix","heartbeat",{}]"#);
    let hb = ws.recv_json();
    assert_eq!(
        (hb[1].as_str(), hb[2].as_str()),
        (Some("3"), Some("phoenix")),
        "{hb}"
    );
}

#[test]
fn failing_policies_and_a_missing_partition_give_exact_errors_and_the_server_keeps_serving() {
    let db = TenantDb::start("errs", POLICIES);
    let port = db.srv.port;
    let mut ws = authed(port, "a");
    // A policy raising is an RLS policy error: refused as unauthorised.
    assert_refused(
        &join_private(&mut ws, "1", "room:boom", json!({})),
        &unauthorized("room:boom"),
    );
    assert_refused(
        &join_private(&mut ws, "2", "room:cancel", json!({})),
        "QueryCanceled: canceling statement due to statement timeout",
    );
    let today = todays_partition();
    db.sql(&format!(
        "alter table realtime.messages detach partition {today}"
    ));
    assert_refused(
        &join_private(&mut ws, "3", "room:allowed", json!({})),
        "MissingPartition: Realtime was unable to find the expected messages partition",
    );
    assert_ok(&ws.join_v2("4", "realtime:public", json!({})));
    db.sql(&format!(
        "alter table realtime.messages attach partition {today} \
         for values from ((now() at time zone 'utc')::date) to ((now() at time zone 'utc')::date + 1)"
    ));
    assert_ok(&join_private(&mut ws, "5", "room:allowed", json!({})));
    // Its pooled connections are ended under it (a restart, an operator):
    // the next check opens a new one rather than failing.
    let ended = db.sql(&format!(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity \
         where application_name = 'realtime_rls' and datname = '{}'",
        db.db.name
    ));
    assert_ne!(ended.trim(), "0", "a pooled connection was there to end");
    assert_ok(&join_private(&mut ws, "6", "room:readonly", json!({})));
}

#[test]
fn hostile_topic_names_are_only_bound_parameters() {
    let db = TenantDb::start("hostile", POLICIES);
    let mut ws = authed(db.srv.port, "a");
    for (jr, name) in [
        ("1", "a'; drop table realtime.messages; --"),
        ("2", "room:allowed' or '1'='1"),
        ("3", "$1) or true; --"),
        ("4", "nul\u{0}byte"),
        // Each would drop the table if spliced into the probe INSERT or
        // the set_config call of a simple query.
        (
            "5",
            "x', 'broadcast', now(), now()); commit; drop table realtime.messages cascade; --",
        ),
        (
            "6",
            "x', true); commit; drop table realtime.messages cascade; select ('",
        ),
    ] {
        assert_refused(
            &join_private(&mut ws, jr, name, json!({})),
            &unauthorized(name),
        );
    }
    assert_eq!(
        db.sql("select to_regclass('realtime.messages') is not null"),
        "t\n",
        "the table is still there"
    );
    assert_eq!(
        db.sql("select count(*) from realtime.messages"),
        "0\n",
        "the probes were rolled back"
    );
    assert_ok(&join_private(&mut ws, "5", "room:allowed", json!({})));
}

#[test]
fn an_unreachable_tenant_database_refuses_private_joins_only() {
    let env = [
        ("DB_HOST", "127.0.0.1".to_owned()),
        ("DB_PORT", free_port().to_string()),
        ("DB_PASSWORD", "x".to_owned()),
        ("DB_QUERY_TIMEOUT_MS", "2000".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let srv = Server::start(&env);
    let mut ws = authed(srv.port, "a");
    assert_refused(
        &join_private(&mut ws, "1", "room:allowed", json!({})),
        "UnableToConnectToProject: Realtime was unable to connect to the project database",
    );
    assert_ok(&ws.join_v2("2", "realtime:room:allowed", json!({})));
}

#[test]
fn a_tenant_whose_database_moves_is_checked_on_the_new_one() {
    let anon_read = "create policy anon_read on realtime.messages for select to anon \
                     using (realtime.topic() = 'room:anon');";
    let first = SchemaDb::create("move_a", true, anon_read);
    let second = SchemaDb::create("move_b", true, "");
    let ctl = ControlDb::create("privmove");
    let srv = Server::start_env(&ctl.env());
    let (host, port, pw) = parts(&dev_db_url());
    let extensions = |db: &str| {
        json!([{"type": "postgres_cdc_rls", "settings": {
            "db_host": host, "db_port": port, "db_name": db, "db_user": "postgres",
            "db_password": pw, "region": "local", "slot_name": format!("slot_{db}"),
            "ssl_enforced": false,
        }}])
    };
    let secret = "private-tenant-secret-of-32-byte";
    let body = json!({"tenant": {"external_id": "tpriv", "name": "tpriv", "jwt_secret": secret,
        "extensions": extensions(&first.name)}});
    let (status, _, created) = admin(&srv, "POST", "/api/tenants", Some(body));
    assert_eq!(status, 201, "{created}");
    let mut ws = connect(&srv, "tpriv", secret).unwrap();
    assert_ok(&join_private(&mut ws, "1", "room:anon", json!({})));

    // The database moves to one where nothing is allowed: the next check
    // runs there, not on a connection kept from before.
    let patch = json!({"tenant": {"extensions": extensions(&second.name)}});
    let (status, _, patched) = admin(&srv, "PATCH", "/api/tenants/tpriv", Some(patch));
    assert_eq!(status, 200, "{patched}");
    let mut ws = connect(&srv, "tpriv", secret).unwrap();
    assert_refused(
        &join_private(&mut ws, "1", "room:anon", json!({})),
        &unauthorized("room:anon"),
    );
}
