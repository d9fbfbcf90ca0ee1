//! Two shards serving one tenant: each has its own `Tenant` over one
//! `SharedTenant`, and the tenant's limits hold for both together, through
//! the same handlers and error texts as on one shard.

use std::rc::Rc;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::proto::phoenix::{decode_text, Vsn};
use crate::realtime::auth::{sign_hs256, ClaimValidators, JwtKeys};
use crate::realtime::hub::test_sink::{payload, Sink};
use crate::realtime::state::{Env, Flow, Session, Settings, Tally};
use crate::realtime::tenant::{Limits, Placement, Tenant, TenantConfig};

const SECRET: &str = "limits-shared-secret-of-32-bytes";
const NOW_UNIX: i64 = 1_700_000_000;

fn config(limits: Limits) -> Arc<TenantConfig> {
    Arc::new(TenantConfig {
        external_id: "limits-spread".into(),
        jwt: JwtKeys {
            secret: Some(SECRET.into()),
            jwks: None,
        },
        validators: ClaimValidators::default(),
        limits,
        suspended: false,
        private_only: false,
        presence_enabled: false,
        has_database: false,
        db: None,
        placement: Placement::Spread,
    })
}

fn limits() -> Limits {
    Limits {
        max_concurrent_users: 1_000,
        max_events_per_second: 1_000,
        max_presence_events_per_second: 1_000,
        max_payload_size_in_kb: 100,
        max_channels_per_client: 100,
        max_joins_per_second: 1_000,
        client_presence_max_calls: 1_000,
        client_presence_window_ms: 1_000,
        max_topic_bytes: 1_000,
        max_presence_meta_bytes: 1_000,
        max_presence_bytes_per_client: 100_000,
    }
}

/// One shard's side of the tenant: its `Tenant` and what handlers need.
struct Shard {
    tenant: Tenant,
    next_channel_id: u64,
    tally: Tally,
    settings: Settings,
}

/// A socket on a shard, with everything pushed to it.
struct Socket {
    session: Session,
    sink: Rc<Sink>,
}

impl Shard {
    fn new(cfg: &Arc<TenantConfig>, shared: &Arc<SharedTenant>, id: usize, now_ms: u64) -> Self {
        Self {
            tenant: Tenant::on_shard(cfg.clone(), shared.clone(), id, now_ms),
            next_channel_id: (id as u64) << 48,
            tally: Tally::default(),
            settings: Settings {
                channel_error_backoff_ms: 0,
                replication_ready_timeout_ms: 1,
            },
        }
    }

    fn socket(&self, id: u64) -> Socket {
        let sink = Rc::new(Sink::default());
        let token = sign_hs256(SECRET, &json!({"role": "anon", "exp": NOW_UNIX + 3600}));
        Socket {
            session: Session::new(id, Vsn::V1, sink.clone(), token.into()),
            sink,
        }
    }

    /// What a handler on this shard is given at `now_ms`.
    fn env(&mut self, now_ms: u64) -> Env<'_> {
        Env {
            tenant: &mut self.tenant,
            now_ms,
            now_unix: NOW_UNIX,
            settings: &self.settings,
            next_channel_id: &mut self.next_channel_id,
            shutting_down: false,
            tally: &mut self.tally,
        }
    }

    /// Hands one text frame to the socket's session at `now_ms`.
    fn send(&mut self, s: &mut Socket, frame: serde_json::Value, now_ms: u64) -> Flow {
        let text = frame.to_string();
        let msg = decode_text(Vsn::V1, text.as_bytes()).expect("valid frame");
        let mut env = self.env(now_ms);
        s.session.handle(&mut env, msg)
    }

    /// Joins `topic`: `Ok` or the refusal's reason text.
    fn join(&mut self, s: &mut Socket, topic: &str, now_ms: u64) -> Result<(), String> {
        let frame = json!({
            "topic": format!("realtime:{topic}"), "event": "phx_join", "ref": "1",
            "payload": {"config": {"presence": {"enabled": true}}},
        });
        match self.send(s, frame, now_ms) {
            Flow::Continue => Ok(()),
            Flow::Delay { frames, .. } => {
                let reply: serde_json::Value =
                    serde_json::from_slice(payload(&frames[0])).expect("json reply");
                Err(reply["payload"]["response"]["reason"]
                    .as_str()
                    .expect("a reason")
                    .to_owned())
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn broadcast(&mut self, s: &mut Socket, topic: &str, now_ms: u64) {
        let frame = json!({
            "topic": format!("realtime:{topic}"), "event": "broadcast", "ref": "2",
            "payload": {"type": "broadcast", "event": "e", "payload": {}},
        });
        self.send(s, frame, now_ms);
    }

    fn track(&mut self, s: &mut Socket, topic: &str, now_ms: u64) {
        let frame = json!({
            "topic": format!("realtime:{topic}"), "event": "presence", "ref": "3",
            "payload": {"type": "presence", "event": "track", "payload": {"at": now_ms}},
        });
        self.send(s, frame, now_ms);
    }

    fn close(&mut self, s: &mut Socket, now_ms: u64) {
        let mut env = self.env(now_ms);
        s.session.close(&mut env);
    }
}

impl Socket {
    /// Whether anything pushed to the socket contains `text`.
    fn was_told(&self, text: &str) -> bool {
        self.sink
            .0
            .borrow()
            .iter()
            .any(|f| String::from_utf8_lossy(payload(f)).contains(text))
    }
}

/// Two shards of one tenant whose limits are `limits`, made at `0`.
fn two_shards(limits: Limits) -> (Arc<SharedTenant>, Shard, Shard) {
    let cfg = config(limits);
    let registry = SharedTenants::new(2);
    let shared = registry.attach("limits-spread", 0);
    assert!(Arc::ptr_eq(&shared, &registry.attach("limits-spread", 0)));
    let a = Shard::new(&cfg, &shared, 0, 0);
    let b = Shard::new(&cfg, &shared, 1, 0);
    (shared, a, b)
}

#[test]
fn users_limit_holds_across_shards_with_the_exact_error() {
    let (shared, mut a, mut b) = two_shards(Limits {
        max_concurrent_users: 2,
        ..limits()
    });
    let (mut a1, mut b1, mut a2) = (a.socket(1), b.socket(2), a.socket(3));
    assert_eq!(a.join(&mut a1, "room", 10), Ok(()));
    assert_eq!(b.join(&mut b1, "room", 20), Ok(()));
    // A second channel of a counted socket is no new user.
    assert_eq!(b.join(&mut b1, "other", 25), Ok(()));
    assert_eq!((a.tenant.nr_users(), b.tenant.nr_users()), (2, 2));
    assert_eq!((a.tenant.users.here(), b.tenant.users.here()), (1, 1));
    // Shard A alone has one user, under the limit; the tenant has two.
    assert_eq!(
        a.join(&mut a2, "room", 30),
        Err("ConnectionRateLimitReached: Too many connected users".into())
    );
    b.close(&mut b1, 40);
    assert_eq!(shared.nr_users(), 1);
    assert_eq!(a.join(&mut a2, "room", 50), Ok(()));
    // A shard's state dropped with users still counted gives them back.
    drop(a);
    assert_eq!(shared.nr_users(), 0);
}

/// Two shards of a tenant with `limits`, a socket on each (joined to
/// `room` if `joined`); then `n_a` calls of `op` on A and `n_b` on B, 1 ms
/// apart, all in the first tick.
fn burst(
    limits: Limits,
    joined: bool,
    (n_a, n_b): (u64, u64),
    op: impl Fn(&mut Shard, &mut Socket, u64, u64),
) -> (Shard, Socket, Shard, Socket) {
    let (_shared, mut a, mut b) = two_shards(limits);
    let (mut sa, mut sb) = (a.socket(1), b.socket(2));
    if joined {
        a.join(&mut sa, "room", 0).unwrap();
        b.join(&mut sb, "room", 0).unwrap();
    }
    for i in 0..n_a {
        op(&mut a, &mut sa, i, 100 + i);
    }
    for i in 0..n_b {
        op(&mut b, &mut sb, i, 200 + i);
    }
    (a, sa, b, sb)
}

#[test]
fn events_on_two_shards_trigger_the_limit_together() {
    // 10/s over the first 5 s tick: 50 events trigger it.
    let refused = |n| {
        let limits = Limits {
            max_events_per_second: 10,
            ..limits()
        };
        let (mut a, mut sa, ..) = burst(limits, true, n, |sh, s, _, t| sh.broadcast(s, "room", t));
        let told = |s: &Socket| s.was_told("Too many messages per second");
        assert!(!told(&sa), "no finished tick yet");
        a.broadcast(&mut sa, "room", 5_000);
        told(&sa)
    };
    assert!(!refused((30, 0)), "30 on A alone: 6/s");
    assert!(!refused((0, 30)), "30 on B alone: 6/s");
    assert!(refused((30, 30)), "60 on A and B: 12/s");
}

#[test]
fn joins_on_two_shards_trigger_the_limit_together() {
    let refused = |n| {
        let limits = Limits {
            max_joins_per_second: 2,
            ..limits()
        };
        let (.., mut b, mut sb) = burst(limits, false, n, |sh, s, i, t| {
            sh.join(s, &format!("r{i}"), t).unwrap()
        });
        b.join(&mut sb, "late", 5_000)
    };
    assert_eq!(
        refused((6, 0)),
        Ok(()),
        "6 joins alone in the first tick: 1.2/s"
    );
    assert_eq!(
        refused((6, 6)),
        Err("ClientJoinRateLimitReached: Too many joins per second".into()),
        "12 joins on two shards: 2.4/s"
    );
}

#[test]
fn presence_on_two_shards_triggers_the_limit_together() {
    let refused = |n| {
        let limits = Limits {
            max_presence_events_per_second: 2,
            ..limits()
        };
        let (.., mut b, mut sb) = burst(limits, true, n, |sh, s, _, t| sh.track(s, "room", t));
        b.track(&mut sb, "room", 5_000);
        sb.was_told("Too many presence messages per second")
    };
    assert!(!refused((0, 8)), "8 tracks alone: 1.6/s");
    assert!(refused((8, 8)), "16 tracks on two shards: 3.2/s");
}

#[test]
fn a_shard_that_stops_counting_ages_out_of_the_window() {
    let (shared, mut a, b) = two_shards(limits());
    let mut b = b;
    b.tenant.events.add(600, 1_000);
    // Shard B goes (its tenant state dropped, or it stalls): nothing more.
    drop(b);
    let tick = |k: u64| k * 5_000;
    assert_eq!(a.tenant.events.avg(tick(1)), 120.0, "600 in one tick");
    assert_eq!(a.tenant.events.avg(tick(2)), 60.0);
    // Counted as an idle shard's would be, for the whole window...
    assert_eq!(a.tenant.events.avg(tick(12)), 10.0, "600 over 12 ticks");
    // ...and not after: B's tick 0 has left the window.
    assert_eq!(a.tenant.events.avg(tick(13)), 0.0);
    // Its ring entry is never read as a later tick's.
    assert_eq!(shared.events.count(1, 0), 600);
    assert_eq!(shared.events.count(1, 16), 0);
    assert_eq!(a.tenant.events.avg(tick(17)), 0.0);
}

#[test]
fn a_shard_activated_later_sees_the_tenant_window() {
    let cfg = config(limits());
    let shared = Arc::new(SharedTenant::new(2, 0));
    let mut a = Shard::new(&cfg, &shared, 0, 0);
    a.tenant.events.add(100, 7_000);
    // B becomes active mid-tick 1; its ticks line up with A's.
    let mut b = Shard::new(&cfg, &shared, 1, 8_000);
    b.tenant.events.add(50, 9_999);
    assert_eq!(b.tenant.events.avg(9_999), 0.0, "tick 1 not finished");
    // Ticks 0 and 1 are the tenant's window: (100 + 50) / 2 / 5 s.
    assert_eq!(b.tenant.events.avg(10_000), 15.0);
    assert_eq!(a.tenant.events.avg(10_001), 15.0);
}

#[test]
fn registry_forgets_a_deleted_tenant() {
    let registry = SharedTenants::new(3);
    let first = registry.attach("limits-gone", 0);
    assert_eq!(first.nr_shards(), 3);
    assert!(registry.get("limits-gone").is_some());
    assert!(registry.remove("limits-gone").is_some());
    assert!(registry.get("limits-gone").is_none());
    let second = registry.attach("limits-gone", 10);
    assert!(!Arc::ptr_eq(&first, &second), "starts afresh");
}

#[test]
fn other_nodes_count_in_the_limits_but_not_in_what_this_node_reports() {
    let cfg = config(limits());
    let shared = Arc::new(SharedTenant::new(2, 0));
    let mut a = Shard::new(&cfg, &shared, 0, 0);
    a.tenant.events.add(100, 1_000);
    // Another node's report of 150 events arrives in tick 0.
    shared.events.add_remote(0, 150);
    assert_eq!(shared.events.local_sum(0..1), 100, "only this node's");
    assert_eq!(shared.events.sum(0..1), 250);
    assert_eq!(a.tenant.events.avg(5_000), 50.0, "(100 + 150) / 5 s");
    // Users: the other nodes' as reported, beside this node's own.
    a.tenant.users.add();
    shared.set_remote_users(4);
    assert_eq!((shared.local_users(), shared.nr_users()), (1, 5));
    shared.set_remote_users(0);
    assert_eq!(a.tenant.nr_users(), 1);
}
