//! An admin API change on one node of a cluster reaches every node: the
//! sockets of a tenant whose keys changed, or which was deleted, are told
//! `Server requested disconnect` and closed with 1012 on the other nodes
//! too, and those nodes read the new record (the new secret admits, a
//! deleted tenant is unknown). Two nodes on one control database and a
//! real nats-server.

mod support;

use serde_json::json;
use support::control::*;
use support::nats::{until_connected, Nats};
use support::*;

fn node(ctl: &ControlDb, nats: &Nats, name: &str) -> Server {
    let mut env = ctl.env();
    env.push(("NATS_URL".into(), nats.url()));
    env.push(("NODE_NAME".into(), name.into()));
    let srv = Server::start_env(&env);
    until_connected(&srv, true);
    srv
}

fn joined(srv: &Server, id: &str, secret: &str) -> Ws {
    let mut ws = connect(srv, id, secret).unwrap();
    let reply = ws.join_v2("1", "realtime:room", json!({}));
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    ws
}

#[test]
fn a_tenant_changed_or_deleted_on_one_node_is_changed_on_every_node() {
    let ctl = ControlDb::create("cluster");
    let nats = Nats::start("");
    let a = node(&ctl, &nats, "a");
    let b = node(&ctl, &nats, "b");
    let s1 = "first-secret-of-thirty-two-bytes";
    let (status, _, body) = admin(&a, "POST", "/api/tenants", Some(tenant_body("acme", s1)));
    assert_eq!(status, 201, "{body}");
    let mut on_a = joined(&a, "acme", s1);
    let mut on_b = joined(&b, "acme", s1);
    let (status, _, health) = admin(&b, "GET", "/api/tenants/acme/health", None);
    assert_eq!(status, 200);
    assert_eq!(
        (&health["data"]["nats"], &health["data"]["node"]),
        (&json!("connected"), &json!("b"))
    );

    // New keys, on node a: both nodes' sockets go, and node b admits
    // the new secret (it read the record again), not the old one.
    let s2 = "second-secret-of-thirty-two-byte";
    let (status, _, body) = admin(
        &a,
        "PATCH",
        "/api/tenants/acme",
        Some(json!({"tenant": {"jwt_secret": s2}})),
    );
    assert_eq!(status, 200, "{body}");
    expect_disconnect(&mut on_a, "realtime:room");
    expect_disconnect(&mut on_b, "realtime:room");
    assert!(
        connect(&b, "acme", s1).is_err(),
        "the old secret still admits on node b"
    );
    let mut on_b = joined(&b, "acme", s2);
    let mut on_a = joined(&a, "acme", s2);

    // Deleted on node b: node a's socket goes and the tenant is unknown there.
    let (status, _, _) = admin(&b, "DELETE", "/api/tenants/acme", None);
    assert_eq!(status, 204);
    expect_disconnect(&mut on_b, "realtime:room");
    expect_disconnect(&mut on_a, "realtime:room");
    match connect(&a, "acme", s2) {
        Err((status, _)) => assert_ne!(status, 101),
        Ok(_) => panic!("a deleted tenant still connects on node a"),
    }

    // Without NATS, a node says so in its health and its metrics.
    let (status, _, _) = admin(&a, "POST", "/api/tenants", Some(tenant_body("other", s1)));
    assert_eq!(status, 201);
    drop(nats);
    until_connected(&a, false);
    let (_, _, health) = admin(&a, "GET", "/api/tenants/other/health", None);
    assert_eq!(health["data"]["nats"], "unreachable", "{health}");
}
