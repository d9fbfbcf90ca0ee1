//! Tenants kept in a control database and managed at run time with the
//! admin API: every status code, Host routing, two tenants that never
//! hear each other, and the sockets of a changed or removed tenant (and
//! only those) told `Server requested disconnect` and closed with 1012.
//!
//! Each test has a control database of its own on the dev cluster.

mod support;

use serde_json::json;
use support::control::*;
use support::pg::psql;
use support::*;

fn join(ws: &mut Ws, topic: &str) {
    let reply = ws.join_v2(
        "1",
        topic,
        json!({"broadcast": {"self": false}, "presence": {"enabled": false}}),
    );
    assert_eq!(reply[4]["status"], "ok", "{reply}");
}

/// A heartbeat is answered: the socket is open and served.
fn alive(ws: &mut Ws) {
    ws.text(r#"[null,"hb","phoenix","heartbeat",{}]"#);
    let m = ws.recv_json();
    assert_eq!(m[3], "phx_reply", "{m}");
    assert_eq!(m[1], "hb", "{m}");
}

#[test]
fn the_admin_api_answers_every_route_with_its_status_and_shape() {
    let db = ControlDb::create("api");
    let srv = Server::start_env(&db.env());

    // Auth first: no token, a token signed otherwise, a blocklisted one.
    assert_eq!(srv.http("GET", "/api/tenants", &[], b"").0, 403);
    let forged = format!("Bearer {}", sign_hs256("not-the-secret", &json!({})));
    let (status, _, body) = srv.http("GET", "/api/tenants", &[("authorization", &forged)], b"");
    assert_eq!((status, body.len()), (403, 0));

    let (status, _, body) = admin(&srv, "GET", "/api/tenants", None);
    assert_eq!((status, body), (200, json!({"data": []})));

    let (status, head, body) = admin(
        &srv,
        "POST",
        "/api/tenants",
        Some(tenant_body("acme", "s1-secret-of-thirty-two-bytes-xx")),
    );
    assert_eq!(status, 201, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("location: /api/tenants/acme"),
        "{head}"
    );
    assert_eq!(body["data"]["external_id"], "acme");
    assert!(body["data"].get("jwt_secret").is_none(), "{body}");
    // The same body again updates.
    let (status, _, _) = admin(
        &srv,
        "POST",
        "/api/tenants",
        Some(tenant_body("acme", "s1-secret-of-thirty-two-bytes-xx")),
    );
    assert_eq!(status, 200);

    let (status, _, body) = admin(&srv, "GET", "/api/tenants/acme", None);
    assert_eq!(status, 200);
    assert_eq!(body["data"]["external_id"], "acme");
    let (status, _, body) = admin(&srv, "GET", "/api/tenants/nope", None);
    assert_eq!((status, body), (404, json!({"message": "not found"})));

    // Invalid: no external_id.
    let (status, _, body) = admin(
        &srv,
        "POST",
        "/api/tenants",
        Some(json!({"tenant": {"jwt_secret": "x"}})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body["errors"]["external_id"].is_array(), "{body}");

    // PUT creates under the path's name.
    let (status, _, body) = admin(
        &srv,
        "PUT",
        "/api/tenants/beta",
        Some(json!({"tenant": {"jwt_secret": "s-beta-secret-thirty-two-bytes-x"}})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["external_id"], "beta");
    let (_, _, body) = admin(&srv, "GET", "/api/tenants", None);
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "{body}");

    let (status, _, body) = admin(&srv, "GET", "/api/tenants/acme/health", None);
    assert_eq!(status, 200);
    for key in [
        "healthy",
        "db_connected",
        "replication_connected",
        "connected_cluster",
        "region",
        "node",
    ] {
        assert!(body["data"].get(key).is_some(), "{key} missing: {body}");
    }
    assert_eq!(admin(&srv, "GET", "/api/tenants/nope/health", None).0, 404);
    assert_eq!(admin(&srv, "POST", "/api/tenants/acme/reload", None).0, 204);
    assert_eq!(admin(&srv, "POST", "/api/tenants/nope/reload", None).0, 404);
    assert_eq!(
        admin(&srv, "POST", "/api/tenants/acme/shutdown", None).0,
        204
    );
    assert_eq!(
        admin(&srv, "POST", "/api/tenants/nope/shutdown", None).0,
        404
    );

    assert_eq!(admin(&srv, "DELETE", "/api/tenants/acme", None).0, 204);
    assert_eq!(admin(&srv, "DELETE", "/api/tenants/acme", None).0, 204);
    assert_eq!(admin(&srv, "GET", "/api/tenants/acme", None).0, 404);
    // Stored in the control database, as the Elixir server stores it.
    let stored = psql(
        &db.url(),
        "select external_id from _realtime.tenants order by 1",
    );
    assert_eq!(stored.trim(), "beta");
}

#[test]
fn tenants_are_picked_by_host_and_never_hear_each_other() {
    let db = ControlDb::create("iso");
    let srv = Server::start_env(&db.env());
    let (sa, sb) = (
        "secret-a-of-thirty-two-bytes-xxx",
        "secret-b-of-thirty-two-bytes-xxx",
    );
    assert_eq!(
        admin(&srv, "POST", "/api/tenants", Some(tenant_body("ta", sa))).0,
        201
    );
    assert_eq!(
        admin(&srv, "POST", "/api/tenants", Some(tenant_body("tb", sb))).0,
        201
    );

    // Unknown host, and a token of the other tenant.
    let (status, body) = connect(&srv, "tc", sa).err().expect("no such tenant");
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"Tenant not found"}"#)
    );
    let (status, _) = connect(&srv, "ta", sb).err().expect("wrong secret");
    assert_eq!(status, 401);

    let topic = "realtime:room";
    let mut a1 = connect(&srv, "ta", sa).unwrap();
    let mut a2 = connect(&srv, "ta", sa).unwrap();
    let mut b1 = connect(&srv, "tb", sb).unwrap();
    let mut b2 = connect(&srv, "tb", sb).unwrap();
    for ws in [&mut a1, &mut a2, &mut b1, &mut b2] {
        join(ws, topic);
    }
    // ta's message is delivered on ta before tb sends: tb's reader must
    // get tb's message first, and ta's reader ta's next one.
    send_event(&mut a1, topic, "from-a");
    assert_eq!(next_event(&mut a2), "from-a");
    send_event(&mut b1, topic, "from-b");
    assert_eq!(next_event(&mut b2), "from-b");
    send_event(&mut a1, topic, "a-again");
    assert_eq!(next_event(&mut a2), "a-again");
}

#[test]
fn a_changed_or_removed_tenant_disconnects_exactly_its_sockets() {
    let db = ControlDb::create("life");
    let srv = Server::start_env(&db.env());
    let (sa, sb) = (
        "secret-a-of-thirty-two-bytes-xxx",
        "secret-b-of-thirty-two-bytes-xxx",
    );
    admin(&srv, "POST", "/api/tenants", Some(tenant_body("ta", sa)));
    admin(&srv, "POST", "/api/tenants", Some(tenant_body("tb", sb)));
    let topic = "realtime:room";
    let mut a = connect(&srv, "ta", sa).unwrap();
    let mut b = connect(&srv, "tb", sb).unwrap();
    join(&mut a, topic);
    join(&mut b, topic);

    // A limit changes live: nobody is disconnected.
    let (status, _, body) = admin(
        &srv,
        "PATCH",
        "/api/tenants/ta",
        Some(json!({"tenant": {"max_concurrent_users": 7}})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["max_concurrent_users"], 7);
    alive(&mut a);

    // The secret changes: ta's socket goes, tb's stays, the new secret
    // is what connects now.
    let s2 = "secret-a2-of-thirty-two-bytes-xx";
    let (status, _, _) = admin(
        &srv,
        "PATCH",
        "/api/tenants/ta",
        Some(json!({"tenant": {"jwt_secret": s2}})),
    );
    assert_eq!(status, 200);
    expect_disconnect(&mut a, topic);
    alive(&mut b);
    assert_eq!(connect(&srv, "ta", sa).err().expect("old secret").0, 401);
    let mut a = connect(&srv, "ta", s2).unwrap();
    join(&mut a, topic);

    // Suspended: disconnected, then refused with 403.
    admin(
        &srv,
        "PATCH",
        "/api/tenants/ta",
        Some(json!({"tenant": {"suspend": true}})),
    );
    expect_disconnect(&mut a, topic);
    let (status, body) = connect(&srv, "ta", s2).err().expect("suspended");
    assert_eq!(
        (status, body.as_str()),
        (403, r#"{"error":"Realtime was disabled for this tenant"}"#)
    );
    admin(
        &srv,
        "PATCH",
        "/api/tenants/ta",
        Some(json!({"tenant": {"suspend": false}})),
    );

    // Reload disconnects; delete disconnects and the tenant is gone.
    let mut a = connect(&srv, "ta", s2).unwrap();
    join(&mut a, topic);
    assert_eq!(admin(&srv, "POST", "/api/tenants/ta/reload", None).0, 204);
    expect_disconnect(&mut a, topic);
    let mut a = connect(&srv, "ta", s2).unwrap();
    join(&mut a, topic);
    assert_eq!(admin(&srv, "DELETE", "/api/tenants/ta", None).0, 204);
    expect_disconnect(&mut a, topic);
    assert_eq!(connect(&srv, "ta", s2).err().expect("deleted").0, 404);
    alive(&mut b);
    // A tenant created after a lookup found nothing is found at once: the
    // create is announced to every shard, not waited out.
    assert_eq!(
        admin(&srv, "POST", "/api/tenants", Some(tenant_body("ta", sa))).0,
        201
    );
    assert!(connect(&srv, "ta", sa).is_ok());
}

/// `PATCH /api/tenants/:id` with `tenant` as the body's tenant object.
fn patch(srv: &Server, id: &str, tenant: serde_json::Value) -> (u16, serde_json::Value) {
    let path = format!("/api/tenants/{id}");
    let (status, _, body) = admin(srv, "PATCH", &path, Some(json!({ "tenant": tenant })));
    (status, body)
}

#[test]
fn placement_is_set_shown_and_changed_without_a_disconnect() {
    let db = ControlDb::create("placement");
    let srv = Server::start_env(&db.env());
    let sa = "secret-a-of-thirty-two-bytes-xxx";
    let mut spread = tenant_body("placement-a", sa);
    spread["tenant"]["placement"] = json!("spread");
    let (status, _, body) = admin(&srv, "POST", "/api/tenants", Some(spread));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["placement"], "spread", "{body}");
    let (status, _, body) = admin(
        &srv,
        "PUT",
        "/api/tenants/placement-b",
        Some(json!({"tenant": {"jwt_secret": sa}})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["placement"], "home", "left out: home");
    let (_, _, body) = admin(&srv, "GET", "/api/tenants/placement-a", None);
    assert_eq!(body["data"]["placement"], "spread", "{body}");
    let stored = || {
        psql(
            &db.url(),
            "select string_agg(external_id || '=' || placement, ',' order by external_id)
               from _realtime.tenants",
        )
    };
    assert_eq!(stored().trim(), "placement-a=spread,placement-b=home");

    // Changing only the placement keeps the joined socket: no
    // `Server requested disconnect` comes before the heartbeat's reply.
    let topic = "realtime:room";
    let mut a = connect(&srv, "placement-a", sa).unwrap();
    join(&mut a, topic);
    let (status, body) = patch(&srv, "placement-a", json!({"placement": "home"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["placement"], "home", "{body}");
    alive(&mut a);
    assert_eq!(stored().trim(), "placement-a=home,placement-b=home");

    // A name that is not a placement: the API's 422, nothing changed.
    for bad in [json!("everywhere"), json!("Spread"), json!(null), json!(2)] {
        let (status, body) = patch(&srv, "placement-b", json!({ "placement": bad }));
        let msg = if bad.is_null() {
            "can't be blank"
        } else {
            "is invalid"
        };
        assert_eq!(
            (status, body),
            (422, json!({"errors": {"placement": [msg]}})),
            "{bad}"
        );
    }
    assert_eq!(stored().trim(), "placement-a=home,placement-b=home");
    alive(&mut a);
}

/// Drops what a test put on the dev database, even when it fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new(support::pg::psql_bin())
            .args([support::pg::dev_db_url().as_str(), "-qAt", "-c", &self.0])
            .output();
    }
}

#[test]
fn a_tenant_with_a_database_streams_it_and_its_slot_goes_with_it() {
    let db = ControlDb::create("slot");
    let srv = Server::start_env(&db.env());
    let dev = support::pg::dev_db_url();
    let (host, port, pw) = support::pg::parts(&dev);
    let pid = std::process::id();
    let table = format!("tenant_slot_{pid}");
    let slot = format!("supabase_realtime_replication_slot_tenant{pid}");
    let _cleanup = Cleanup(format!(
        "drop table if exists public.{table};
         select pg_drop_replication_slot(slot_name) from pg_replication_slots
         where slot_name = '{slot}' and not active;"
    ));
    psql(
        &dev,
        &format!(
            "create table public.{table} (id int primary key);
             alter publication supabase_realtime add table public.{table};"
        ),
    );
    let secret = "tenant-with-db-secret-of-32-byte";
    let body = json!({"tenant": {
        "external_id": "tpg", "name": "tpg", "jwt_secret": secret,
        "extensions": [{"type": "postgres_cdc_rls", "settings": {
            "db_host": host, "db_port": port, "db_name": "postgres",
            "db_user": "postgres", "db_password": pw, "region": "local",
            "slot_name": slot, "ssl_enforced": false,
        }}],
    }});
    let (status, _, created) = admin(&srv, "POST", "/api/tenants", Some(body));
    assert_eq!(status, 201, "{created}");
    // The view never shows the password.
    let settings = &created["data"]["extensions"][0]["settings"];
    assert!(settings.get("db_password").is_none(), "{created}");

    let topic = "realtime:rows";
    let mut ws = connect(&srv, "tpg", secret).unwrap();
    let binding = json!({"event": "INSERT", "schema": "public", "table": table});
    let reply = ws.join_v2("1", topic, json!({"postgres_changes": [binding]}));
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    let m = ws.recv_json();
    assert_eq!(m[4]["message"], "Subscribed to PostgreSQL", "{m}");
    psql(&dev, &format!("insert into public.{table} values (42)"));
    let m = ws.recv_json();
    assert_eq!(m[3], "postgres_changes", "{m}");
    assert_eq!(m[4]["data"]["record"]["id"], 42, "{m}");
    let slots = |n: &str| {
        psql(
            &dev,
            &format!("select count(*) from pg_replication_slots where slot_name = '{n}'"),
        )
    };
    assert_eq!(slots(&slot).trim(), "1");

    assert_eq!(admin(&srv, "DELETE", "/api/tenants/tpg", None).0, 204);
    expect_disconnect(&mut ws, topic);
    assert_eq!(
        slots(&slot).trim(),
        "0",
        "the deleted tenant's slot is gone"
    );
}

#[test]
fn bad_admin_requests_get_a_4xx_and_change_nothing() {
    let db = ControlDb::create("bad");
    let srv = Server::start_env(&db.env());
    let secret = "s-kept-secret-of-thirty-two-byte";
    assert_eq!(
        admin(
            &srv,
            "POST",
            "/api/tenants",
            Some(tenant_body("kept", secret))
        )
        .0,
        201
    );
    let stored = || {
        psql(
            &db.url(),
            "select external_id, name, jwt_secret, jwt_jwks::text, max_concurrent_users,
                    max_events_per_second, private_only, suspend
               from _realtime.tenants order by 1",
        )
    };
    let before = stored();
    let kept = |attrs: serde_json::Value| {
        let mut t = json!({"external_id": "kept", "jwt_secret": secret});
        for (k, v) in attrs.as_object().unwrap() {
            t[k] = v.clone();
        }
        json!({ "tenant": t })
    };

    // Wrong types, unknown keys, an invalid JWKS: 422 with Ecto's error
    // shape, on an update of the existing tenant and on a new one.
    for (attrs, field) in [
        (
            json!({"max_concurrent_users": "many"}),
            "max_concurrent_users",
        ),
        (json!({"private_only": "yes"}), "private_only"),
        (json!({"suspend": 1}), "suspend"),
        (json!({"max_tenants": 3}), "max_tenants"),
        (json!({"jwt_jwks": {"keys": "k"}}), "jwt_jwks"),
        (
            json!({"jwt_jwks": {"keys": [{"kid": "no kty"}]}}),
            "jwt_jwks",
        ),
        (json!({"extensions": "cdc"}), "extensions"),
        (json!({"placement": "everywhere"}), "placement"),
    ] {
        for path in ["/api/tenants", "/api/tenants/kept"] {
            let method = if path == "/api/tenants" {
                "POST"
            } else {
                "PATCH"
            };
            let (status, _, body) = admin(&srv, method, path, Some(kept(attrs.clone())));
            assert_eq!(status, 422, "{method} {attrs}: {body}");
            assert!(body["errors"][field].is_array(), "{attrs}: {body}");
        }
        let mut fresh = kept(attrs.clone());
        fresh["tenant"]["external_id"] = json!("fresh");
        let (status, _, body) = admin(&srv, "POST", "/api/tenants", Some(fresh));
        assert_eq!(status, 422, "{attrs}: {body}");
    }

    // Not JSON, and JSON without the tenant object: 400.
    let auth = format!("Bearer {}", admin_token());
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    for body in [&b"{\"tenant\": {"[..], b"[1,2]", b"\xff\xfe", b""] {
        let (status, _, _) = srv.http("POST", "/api/tenants", &headers, body);
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
    }

    // A body over the 16 MiB limit is refused from its length alone.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /api/tenants HTTP/1.1\r\nhost: localhost\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        16 * 1024 * 1024 + 1
    );
    use std::io::{Read, Write};
    s.write_all(head.as_bytes()).unwrap();
    let mut reply = [0u8; 12];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[9..12], b"413", "{}", String::from_utf8_lossy(&reply));

    assert_eq!(stored(), before);
    let (_, _, body) = admin(&srv, "GET", "/api/tenants", None);
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
    assert!(connect(&srv, "fresh", secret).is_err());
    let mut ws = connect(&srv, "kept", secret).unwrap();
    alive(&mut ws);
}

/// A tenant whose home is not the shard the admin requests (Host
/// `localhost`) land on.
fn tenant_homed_away_from_the_default(nr_shards: usize) -> String {
    let default_home = realtime_shards::home_shard("realtime-dev", nr_shards);
    (0..)
        .map(|i| format!("away{i}"))
        .find(|id| realtime_shards::home_shard(id, nr_shards) != default_home)
        .unwrap()
}

#[test]
fn a_tenants_health_is_what_its_home_shard_sees() {
    let db = ControlDb::create("health");
    let srv = Server::start_env(&db.env());
    let id = tenant_homed_away_from_the_default(2);
    let secret = "s-away-secret-of-thirty-two-byte";
    assert_eq!(
        admin(&srv, "POST", "/api/tenants", Some(tenant_body(&id, secret))).0,
        201
    );
    let health = || admin(&srv, "GET", &format!("/api/tenants/{id}/health"), None);
    assert_eq!(health().2["data"]["connected_cluster"], 0);
    let mut a = connect(&srv, &id, secret).unwrap();
    let mut b = connect(&srv, &id, secret).unwrap();
    join(&mut a, "realtime:h");
    join(&mut b, "realtime:h");
    let (status, _, body) = health();
    assert_eq!(status, 200);
    assert_eq!(body["data"]["connected_cluster"], 2, "{body}");
    assert_eq!(body["data"]["healthy"], true, "{body}");
}

#[test]
fn concurrent_first_connects_to_a_tenant_read_its_record_once_per_shard() {
    let db = ControlDb::create("coal");
    let srv = Server::start_env(&db.env());
    let secret = "s-coal-secret-of-thirty-two-byte";
    assert_eq!(
        admin(
            &srv,
            "POST",
            "/api/tenants",
            Some(tenant_body("wave", secret))
        )
        .0,
        201
    );
    let before = srv.metric("realtime_tenant_lookups_total");
    // A reconnect wave: every handshake written before any is answered.
    let path = format!(
        "/socket/websocket?apikey={}&vsn=2.0.0",
        client_token(secret)
    );
    let head = format!(
        "GET {path} HTTP/1.1\r\nhost: wave.localhost\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    let mut streams = Vec::new();
    for _ in 0..64 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        std::io::Write::write_all(&mut s, head.as_bytes()).unwrap();
        streams.push(s);
    }
    let mut sockets: Vec<Ws> = streams
        .into_iter()
        .map(|s| Ws::finish_handshake(s).expect("upgraded"))
        .collect();
    let reads = srv.metric("realtime_tenant_lookups_total") - before;
    // At most one read per shard: the accepting shard reads the record
    // (to place the socket) and so does the shard that serves it.
    let shards: i64 = test_shards().parse().unwrap();
    assert!(
        (1..=shards).contains(&reads),
        "{reads} control-database reads for 64 concurrent connects on {shards} shards"
    );
    alive(&mut sockets[63]);
}

/// Two tenant ids homed on the same shard of `nr_shards`, so nothing but
/// their being two tenants keeps their state apart.
fn two_tenants_on_one_shard(nr_shards: usize) -> (String, String) {
    let home = realtime_shards::home_shard("presa", nr_shards);
    let other = (0..)
        .map(|i| format!("presb{i}"))
        .find(|id| realtime_shards::home_shard(id, nr_shards) == home)
        .unwrap();
    ("presa".to_owned(), other)
}

fn track(ws: &mut Ws, topic: &str, at: u64) -> serde_json::Value {
    ws.text(
        &json!(["1", "t", topic, "presence", {"type": "presence", "event": "track", "payload": {"online_at": at}}])
            .to_string(),
    );
    // The sender's own diff comes before the reply.
    let diff = ws.recv_json();
    assert_eq!(diff[3], "presence_diff", "{diff}");
    let reply = ws.recv_json();
    assert_eq!(reply[3], "phx_reply", "{reply}");
    diff[4].clone()
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

#[test]
fn two_tenants_on_one_topic_never_see_each_others_presence() {
    let db = ControlDb::create("pres");
    let srv = Server::start_env(&db.env());
    let (ta, tb) = two_tenants_on_one_shard(2);
    let (sa, sb) = (
        "secret-pa-of-thirty-two-bytes-xx",
        "secret-pb-of-thirty-two-bytes-xx",
    );
    for (id, secret) in [(&ta, sa), (&tb, sb)] {
        assert_eq!(
            admin(&srv, "POST", "/api/tenants", Some(tenant_body(id, secret))).0,
            201
        );
    }
    let topic = "realtime:lobby";
    let join_as = |ws: &mut Ws, key: &str| {
        let reply = ws.join_v2(
            "1",
            topic,
            json!({"presence": {"key": key, "enabled": true}}),
        );
        assert_eq!(reply[4]["status"], "ok", "{reply}");
        let state = ws.recv_json();
        assert_eq!(state[3], "presence_state", "{state}");
        state[4].clone()
    };

    let mut a = connect(&srv, &ta, sa).unwrap();
    assert_eq!(join_as(&mut a, "alice"), json!({}));
    assert_eq!(keys(&track(&mut a, topic, 1)["joins"]), ["alice"]);

    // The other tenant's socket on the same shard and topic: alice is not
    // in its state, and its own track reaches only its own tenant.
    let mut b = connect(&srv, &tb, sb).unwrap();
    assert_eq!(join_as(&mut b, "bob"), json!({}));
    assert_eq!(keys(&track(&mut b, topic, 2)["joins"]), ["bob"]);
    // alice's next message is her own update's diff, not bob's join.
    assert_eq!(keys(&track(&mut a, topic, 3)["joins"]), ["alice"]);
    let mut a2 = connect(&srv, &ta, sa).unwrap();
    assert_eq!(keys(&join_as(&mut a2, "carol")), ["alice"]);
}
