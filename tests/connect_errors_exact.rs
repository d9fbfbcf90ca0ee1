//! Connect failures answer the Elixir server's HTTP status and
//! `{"error": ...}` body (PROTOCOL 1.5); an unsupported `vsn` is a bare 403.

mod support;
use support::*;

fn refused(srv: &Server, path: &str, host: &str, headers: &[(&str, &str)]) -> (u16, String) {
    match Ws::try_connect(srv.port, path, host, headers) {
        Ok(_) => panic!("{path} was upgraded"),
        Err(e) => e,
    }
}

#[test]
fn every_connect_error_is_exact() {
    let srv = Server::start(&[]);
    let good = token("anon", 3600);
    assert_eq!(
        refused(&srv, "/socket/websocket?vsn=2.0.0", "localhost", &[]),
        (401, r#"{"error":"API key is missing"}"#.into())
    );
    assert_eq!(
        refused(
            &srv,
            &format!("/socket/websocket?apikey={good}&vsn=3.0.0"),
            "localhost",
            &[]
        ),
        (403, String::new())
    );
    assert_eq!(
        refused(
            &srv,
            &format!("/socket/websocket?apikey={good}&vsn=1.1.0"),
            "localhost",
            &[]
        ),
        (403, String::new())
    );
    assert_eq!(
        refused(
            &srv,
            &format!("/socket/websocket?apikey={good}"),
            "nobody.example.com",
            &[]
        ),
        (404, r#"{"error":"Tenant not found"}"#.into())
    );
    assert_eq!(
        refused(&srv, "/socket/websocket?apikey=abc", "localhost", &[]),
        (
            401,
            r#"{"error":"The token provided is not a valid JWT"}"#.into()
        )
    );
    assert_eq!(
        refused(
            &srv,
            &format!("/socket/websocket?apikey={}", token("anon", -10)),
            "localhost",
            &[]
        ),
        (401, r#"{"error":"Token has expired"}"#.into())
    );
    let bad_sig = sign_hs256(
        "another-secret-another-secret-another",
        &serde_json::json!({"role":"anon","exp": 9999999999i64}),
    );
    assert_eq!(
        refused(
            &srv,
            &format!("/socket/websocket?apikey={bad_sig}"),
            "localhost",
            &[]
        ),
        (
            401,
            r#"{"error":"Failed to validate JWT signature"}"#.into()
        )
    );
    let no_role = sign_hs256(SECRET, &serde_json::json!({"exp": 9999999999i64}));
    assert_eq!(
        refused(
            &srv,
            &format!("/socket/websocket?apikey={no_role}"),
            "localhost",
            &[]
        ),
        (
            401,
            r#"{"error":"Fields `role` and `exp` are required in JWT"}"#.into()
        )
    );
    // The x-api-key header wins over the query parameter.
    assert_eq!(
        refused(
            &srv,
            &format!("/socket/websocket?apikey={good}"),
            "localhost",
            &[("x-api-key", "junk")]
        ),
        (
            401,
            r#"{"error":"The token provided is not a valid JWT"}"#.into()
        )
    );
}

#[test]
fn both_paths_and_the_default_tenant_host_forms_upgrade() {
    let srv = Server::start(&[("SELF_HOST_TENANT_NAME", "realtime-dev")]);
    let t = token("anon", 3600);
    for (path, host) in [
        ("/socket/websocket", "localhost"),
        ("/realtime/v1/websocket", "127.0.0.1:4000"),
        ("/socket/websocket", "realtime-dev.supabase-realtime"),
    ] {
        let r = Ws::try_connect(srv.port, &format!("{path}?apikey={t}&vsn=2.0.0"), host, &[]);
        assert!(r.is_ok(), "{path} {host}: {:?}", r.err());
    }
}

#[test]
fn health_ping_and_unknown_routes() {
    let srv = Server::start(&[]);
    let (s, _, b) = srv.http("GET", "/healthcheck", &[], b"");
    assert_eq!((s, b.as_slice()), (200, b"ok".as_slice()));
    let (s, _, b) = srv.http("GET", "/api/ping", &[], b"");
    assert_eq!(
        (s, String::from_utf8(b).unwrap()),
        (200, r#"{"message":"Success"}"#.into())
    );
    let (s, _, _) = srv.http("GET", "/nope", &[], b"");
    assert_eq!(s, 404);
    let (s, _, b) = srv.http("GET", "/metrics", &[], b"");
    assert_eq!(s, 200);
    assert!(String::from_utf8(b)
        .unwrap()
        .contains("realtime_connections{shard=\"0\"}"));
}
