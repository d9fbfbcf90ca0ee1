//! Private messages sent over REST (PROTOCOL 4.4, 4.5): each goes out only
//! when the caller's JWT passes the write policy of its topic on the
//! tenant database. The batch endpoint skips a refused topic and still
//! answers 202; the single endpoint answers 403 or the Elixir server's
//! mapped error. Client values reach SQL only as bound parameters.

mod support;
use serde_json::{json, Value};
use support::rls::{assert_ok, assert_quiet, authed, join_private, TenantDb, FAIL_FUNCTION};
use support::*;

/// Who may read and write what.
const POLICIES_SQL: &str = "
  create policy read_rooms on realtime.messages for select to authenticated
    using (realtime.topic() in ('room:allowed', 'room:readonly', 'room:team'));
  create policy write_allowed on realtime.messages for insert to authenticated
    with check (realtime.topic() = 'room:allowed' and extension = 'broadcast');
  create policy write_by_sub on realtime.messages for insert to authenticated
    with check (realtime.topic() = 'room:alice'
                and current_setting('request.jwt.claim.sub', true) = 'alice');
  -- Every request header is `request.headers`, not only the `x-*` ones.
  create policy write_by_header on realtime.messages for insert to authenticated
    with check (realtime.topic() = 'room:team'
                and current_setting('request.headers', true)::jsonb ->> 'team' = 'blue');
  create policy failing_write on realtime.messages for insert to authenticated
    with check (case when realtime.topic() = 'room:boom' then realtime.fail('boom')
                     when realtime.topic() = 'room:cancel' then realtime.fail('cancel')
                     else false end);";

/// [`FAIL_FUNCTION`], then this file's policies.
fn policies() -> String {
    format!("{FAIL_FUNCTION}{POLICIES_SQL}")
}

fn bearer(sub: &str) -> String {
    let t = token_with(json!({"role": "authenticated", "sub": sub}), 3600);
    format!("Bearer {t}")
}

/// `POST /api/broadcast` with `messages` as `sub`; the status.
fn post_batch(db: &TenantDb, sub: &str, messages: Value, extra: &[(&str, &str)]) -> u16 {
    let auth = bearer(sub);
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    let body = json!({ "messages": messages }).to_string();
    db.srv
        .http("POST", "/api/broadcast", &headers, body.as_bytes())
        .0
}

/// `POST /api/broadcast/<topic>/events/<event>?private=true` as `sub`;
/// status and body.
fn post_single(db: &TenantDb, sub: &str, topic: &str, event: &str) -> (u16, String) {
    let auth = bearer(sub);
    let (s, _, b) = db.srv.http(
        "POST",
        &format!("/api/broadcast/{topic}/events/{event}?private=true"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        br#"{"n":1}"#,
    );
    (s, String::from_utf8(b).unwrap())
}

fn msg(topic: &str, event: &str, private: bool) -> Value {
    json!({"topic": topic, "event": event, "payload": {"e": event}, "private": private})
}

/// The events of the text broadcasts `ws` gets until it is quiet for 400 ms.
fn events(ws: &mut Ws) -> Vec<String> {
    let mut out = Vec::new();
    while let Recv::Frame(Frame::Text(t)) = ws.recv_for(400) {
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v[3], "broadcast", "{v}");
        out.push(v[4]["event"].as_str().unwrap().to_owned());
    }
    out
}

#[test]
fn batch_private_messages_go_out_only_on_topics_the_caller_may_write() {
    let db = TenantDb::start("rest_batch", &policies());
    let port = db.srv.port;
    let mut allowed = authed(port, "r");
    let mut readonly = authed(port, "r");
    let mut public = authed(port, "p");
    assert_ok(&join_private(&mut allowed, "1", "room:allowed", json!({})));
    assert_ok(&join_private(
        &mut readonly,
        "1",
        "room:readonly",
        json!({}),
    ));
    assert_ok(&public.join_v2("1", "realtime:room:readonly", json!({})));

    let status = post_batch(
        &db,
        "w",
        json!([
            msg("room:readonly", "denied-1", true),
            msg("room:allowed", "yes-1", true),
            msg("room:readonly", "public", false),
            msg("room:readonly", "denied-2", true),
            msg("room:allowed", "yes-2", true),
        ]),
        &[],
    );
    assert_eq!(status, 202, "a refused topic is skipped, not an error");
    assert_eq!(events(&mut allowed), ["yes-1", "yes-2"]);
    assert!(events(&mut readonly).is_empty());
    // The public message reaches the public topic only.
    assert_eq!(events(&mut public), ["public"]);

    // The sub claim and the request headers (any name) reach the policy.
    let mut team = authed(port, "r");
    assert_ok(&join_private(&mut team, "1", "room:team", json!({})));
    assert_eq!(
        post_batch(&db, "w", json!([msg("room:team", "no-header", true)]), &[]),
        202
    );
    assert_eq!(
        post_batch(
            &db,
            "w",
            json!([msg("room:team", "blue", true)]),
            &[("team", "blue")]
        ),
        202
    );
    assert_eq!(events(&mut team), ["blue"]);

    // A failing policy skips its topic's messages, not the others'.
    assert_eq!(
        post_batch(
            &db,
            "w",
            json!([
                msg("room:boom", "x", true),
                msg("room:allowed", "after-boom", true)
            ]),
            &[]
        ),
        202
    );
    assert_eq!(events(&mut allowed), ["after-boom"]);
    db.assert_messages_untouched();
}

#[test]
fn single_private_messages_need_write_and_map_policy_errors() {
    let db = TenantDb::start("rest_single", &policies());
    let port = db.srv.port;
    let mut reader = authed(port, "r");
    assert_ok(&join_private(&mut reader, "1", "room:allowed", json!({})));

    assert_eq!(
        post_single(&db, "w", "room:allowed", "hi"),
        (202, String::new())
    );
    let mut want = vec![4u8, 21, 2, 0, 1];
    want.extend_from_slice(br#"realtime:room:allowedhi{"n":1}"#);
    assert_eq!(reader.expect_frame(), Frame::Binary(want));

    let unauthorized = (403, r#"{"message":"Unauthorized"}"#.to_owned());
    assert_eq!(post_single(&db, "w", "room:readonly", "e"), unauthorized);
    assert_eq!(post_single(&db, "bob", "room:alice", "e"), unauthorized);
    assert_eq!(post_single(&db, "alice", "room:alice", "e").0, 202);
    // Without `private=true` it is a public message, checked by nobody.
    let (s, _, _) = db.srv.http(
        "POST",
        "/api/broadcast/room:readonly/events/e",
        &[("authorization", &bearer("w"))],
        b"{}",
    );
    assert_eq!(s, 202);

    assert_eq!(
        post_single(&db, "w", "room:boom", "e"),
        (422, r#"{"message":"RLS policy error"}"#.to_owned())
    );
    assert_eq!(
        post_single(&db, "w", "room:cancel", "e"),
        (422, r#"{"message":"Query canceled"}"#.to_owned())
    );
    db.detach_today();
    assert_eq!(
        post_single(&db, "w", "room:allowed", "e"),
        (
            422,
            r#"{"message":"Missing messages partition"}"#.to_owned()
        )
    );
    db.attach_today();
    assert_eq!(post_single(&db, "w", "room:allowed", "again").0, 202);
    assert!(matches!(reader.expect_frame(), Frame::Binary(_)));
    assert_quiet(&mut reader, 300);
}

#[test]
fn rest_topic_names_reach_the_write_check_only_as_bound_parameters() {
    let db = TenantDb::start("rest_hostile", &policies());
    let hostile = [
        "a'; drop table realtime.messages; --",
        "room:allowed' or '1'='1",
        "x', 'broadcast', now(), now()); commit; drop table realtime.messages cascade; --",
        "x', true); commit; drop table realtime.messages cascade; select ('",
    ];
    let messages: Vec<Value> = hostile.iter().map(|t| msg(t, "e", true)).collect();
    assert_eq!(post_batch(&db, "w", Value::Array(messages), &[]), 202);
    for t in hostile {
        let path_topic: String = t
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        assert_eq!(post_single(&db, "w", &path_topic, "e").0, 403, "{t}");
    }
    db.assert_messages_untouched();
    assert_eq!(post_single(&db, "w", "room:allowed", "e").0, 202);
}

/// Two requests on one keep-alive connection: the first, with Host
/// `first_host`, decides the shard that serves the connection; the second
/// is the private single send as `sub` to the default tenant. Its status.
fn single_after(db: &TenantDb, first_host: &str, sub: &str, topic: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", db.srv.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let req = format!(
        "GET /healthcheck HTTP/1.1\r\nhost: {first_host}\r\ncontent-length: 0\r\n\r\n\
         POST /api/broadcast/{topic}/events/e?private=true HTTP/1.1\r\nhost: localhost\r\n\
         authorization: {}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\
         connection: close\r\n\r\n{{}}",
        bearer(sub)
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let second = text
        .rmatch_indices("HTTP/1.1 ")
        .next()
        .expect("two responses")
        .0;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text[second + 9..second + 12].parse().unwrap()
}

#[test]
fn a_rest_request_on_another_shard_asks_the_tenants_home_shard() {
    let db = TenantDb::start_with("rest_shards", &policies(), &[("SHARDS", "2")]);
    // The default tenant's home, and a Host whose tenant lives on the
    // other shard: the connection is served there.
    let home = realtime_shards::home_shard("realtime-dev", 2);
    let other = (0..100)
        .map(|i| format!("t{i}"))
        .find(|t| realtime_shards::home_shard(t, 2) != home)
        .unwrap();
    let host = format!("{other}.localhost");
    assert_eq!(single_after(&db, &host, "w", "room:allowed"), 202);
    assert_eq!(single_after(&db, &host, "w", "room:readonly"), 403);
    assert_eq!(single_after(&db, &host, "w", "room:boom"), 422);
    assert!(db.srv.metric("realtime_rls_checks_total") >= 3);
}
