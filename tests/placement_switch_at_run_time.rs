//! A tenant whose placement changes at run time through the admin API
//! loses no subscriber and no message: sockets stay on the shard they
//! are on, new ones follow the new placement, and one topic's
//! subscribers on every shard keep receiving every broadcast in order.

mod support;

use serde_json::json;
use support::control::*;
use support::*;

const TOPIC: &str = "realtime:switch";
const SECRET: &str = "secret-of-the-switching-tenant-xx";

/// A socket of the tenant joined to [`TOPIC`] (not receiving its own).
fn subscriber(srv: &Server) -> Ws {
    let mut ws = connect(srv, "switch-a", SECRET).unwrap();
    let reply = ws.join_v2("1", TOPIC, json!({"broadcast": {"self": false}}));
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    ws
}

/// `n` broadcasts from `from`, tagged `tag`; every socket in `to` gets
/// them all, in order.
fn everyone_hears(from: &mut Ws, to: &mut [Ws], tag: &str, n: u64) {
    for i in 0..n {
        from.text(
            &json!(["1", null, TOPIC, "broadcast",
            {"type": "broadcast", "event": tag, "payload": {"i": i}}])
            .to_string(),
        );
    }
    for (k, ws) in to.iter_mut().enumerate() {
        for i in 0..n {
            let m = ws.recv_json();
            assert_eq!(
                (m[4]["event"].as_str(), m[4]["payload"]["i"].as_u64()),
                (Some(tag), Some(i)),
                "socket {k}: {m}"
            );
        }
    }
}

fn set_placement(srv: &Server, placement: &str) {
    let (status, _, body) = admin(
        srv,
        "PATCH",
        "/api/tenants/switch-a",
        Some(json!({"tenant": {"placement": placement}})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["placement"], placement, "{body}");
}

/// Shards with at least one of the server's sockets.
fn shards_used(srv: &Server) -> usize {
    srv.metric_by_shard("realtime_connections")
        .iter()
        .filter(|&&n| n > 0)
        .count()
}

#[test]
fn switching_placement_there_and_back_loses_no_subscriber() {
    let db = ControlDb::create("switch");
    let mut env = db.env();
    env.push(("SHARDS".into(), "3".into()));
    env.push(("TENANT_MAX_EVENTS_PER_SECOND".into(), "100000".into()));
    let srv = Server::start_env(&env);
    let (status, _, body) = admin(
        &srv,
        "POST",
        "/api/tenants",
        Some(tenant_body("switch-a", SECRET)),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["placement"], "home", "{body}");

    // Home: every socket on one shard.
    let mut subs: Vec<Ws> = (0..3).map(|_| subscriber(&srv)).collect();
    assert_eq!(shards_used(&srv), 1);
    let mut publisher = subscriber(&srv);
    everyone_hears(&mut publisher, &mut subs, "home", 20);

    // Spread: the sockets already open stay, new ones go to the other
    // shards, and the topic spans them.
    set_placement(&srv, "spread");
    subs.extend((0..3).map(|_| subscriber(&srv)));
    assert_eq!(shards_used(&srv), 3);
    everyone_hears(&mut publisher, &mut subs, "spread", 20);
    let mut far = subs.pop().unwrap();
    everyone_hears(&mut far, &mut subs, "from-afar", 20);

    // Home again: new sockets go home, those elsewhere stay and hear.
    set_placement(&srv, "home");
    subs.extend((0..2).map(|_| subscriber(&srv)));
    everyone_hears(&mut far, &mut subs, "home-again", 20);
    subs.push(far);
    everyone_hears(&mut publisher, &mut subs, "last", 20);
    assert_eq!(srv.metric("realtime_forward_drops_total"), 0);
}
