//! Nothing of a removed tenant lingers: 1,000 tenants are created, each
//! gets a socket with a joined channel, then each is deleted (its socket
//! told `Server requested disconnect` and closed with 1012). The server's
//! live tenant states and their database tasks go back to zero, and its
//! open descriptors and resident memory to where they were before.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::control::*;
use support::*;

const N: usize = 1000;
const SECRET_T: &str = "churn-tenant-secret-of-32-bytes!";

fn join(ws: &mut Ws) {
    let r = ws.join_v2("1", "realtime:room", json!({}));
    assert_eq!(r[4]["status"], "ok", "{r}");
}

/// Creates tenants `prefix0..n`, connects a socket to each, deletes them
/// and checks each socket is told and closed.
fn churn(srv: &Server, prefix: &str, n: usize) {
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{prefix}{i}");
        let (status, _, body) = admin(
            srv,
            "POST",
            "/api/tenants",
            Some(tenant_body(&id, SECRET_T)),
        );
        assert_eq!(status, 201, "{body}");
        let mut ws = connect(srv, &id, SECRET_T).expect("tenant serves");
        join(&mut ws);
        sockets.push(ws);
    }
    assert!(srv.metric("realtime_tenants_active") >= n as i64);
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let id = format!("{prefix}{i}");
        assert_eq!(
            admin(srv, "DELETE", &format!("/api/tenants/{id}"), None).0,
            204
        );
        let m = ws.recv_json();
        assert_eq!(m[4]["message"], "Server requested disconnect", "{m}");
        assert_eq!(ws.expect_frame(), Frame::Close(Some(1012)));
    }
}

/// Waits until `probe` is at most `limit`; the last value seen.
fn settles(limit: u64, mut probe: impl FnMut() -> u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = probe();
        if v <= limit || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_thousand_tenants_created_and_deleted_leave_nothing_behind() {
    let db = ControlDb::create("churn");
    let srv = Server::start_env(&db.env());
    // A first round of the same size brings the pools, the allocator's
    // arenas and the shards' maps to their working size for N tenants: a
    // second round may not need more unless something of the first stayed.
    churn(&srv, "warm", N);
    let fds = srv.open_fds() as u64;
    let rss = srv.rss_kib();

    churn(&srv, "t", N);

    assert_eq!(srv.metric("realtime_tenants_active"), 0);
    assert_eq!(srv.metric("realtime_tenant_database_tasks"), 0);
    // Closed sockets are released once their last frames are flushed.
    let now_fds = settles(fds, || srv.open_fds() as u64);
    assert!(now_fds <= fds, "descriptors: {fds} before, {now_fds} after");
    // Freed memory goes back to the system with the allocator's decay;
    // 1,000 live tenants with a socket each hold several MiB, so a margin
    // of 1 MiB tells a leak from the allocator's slack.
    let now_rss = settles(rss + 1024, || srv.rss_kib());
    assert!(
        now_rss <= rss + 1024,
        "resident memory: {rss} KiB before, {now_rss} KiB after {N} tenants came and went"
    );
    let (_, _, body) = admin(&srv, "GET", "/api/tenants", None);
    assert_eq!(body, json!({"data": []}));
}
