//! Private-channel checks that scale (issue 13, item 3): concurrent joins
//! of one tenant asking the same question (claims, headers, topic) share
//! one check on the tenant database, and checks waiting together go in
//! one round trip, each still getting exactly its own answer.

mod support;
use serde_json::json;
use support::rls::{
    assert_ok, assert_refused, join_private, unauthorized, TenantDb, FAIL_FUNCTION,
};
use support::*;

/// `public.authz_checks` counts the policy's evaluations (a sequence:
/// its count survives the checks' rollbacks); `room:slow` holds a check
/// for half a second.
const POLICIES_SQL: &str = "
  create sequence public.authz_checks;
  create function public.counted() returns boolean language plpgsql volatile security definer as $$
  begin
    perform nextval('public.authz_checks');
    perform pg_sleep(0.3);
    return true;
  end $$;
  grant execute on function public.counted() to authenticated;
  create policy shared_read on realtime.messages for select to authenticated
    using (realtime.topic() = 'room:shared' and public.counted());
  create function public.slow() returns boolean language plpgsql volatile as $$
  begin perform pg_sleep(0.5); return true; end $$;
  create policy slow_read on realtime.messages for select to authenticated
    using (realtime.topic() = 'room:slow' and public.slow());
  create policy alice_read on realtime.messages for select to authenticated
    using (realtime.topic() = 'room:alice' and current_setting('request.jwt.claim.sub', true) = 'alice');
  create policy failing on realtime.messages for select to authenticated
    using (case when realtime.topic() = 'room:boom' then realtime.fail('boom') else false end);";

/// [`FAIL_FUNCTION`], then this file's policies.
fn policies() -> String {
    format!("{FAIL_FUNCTION}{POLICIES_SQL}")
}

fn join_frame(name: &str) -> String {
    json!(["1", "1", format!("realtime:{name}"), "phx_join",
        {"config": {"private": true}}])
    .to_string()
}

fn evaluations(db: &TenantDb) -> i64 {
    db.sql("select case when is_called then last_value else 0 end from public.authz_checks")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn concurrent_joins_with_the_same_claims_and_topic_share_one_check() {
    let db = TenantDb::start("shared", &policies());
    let port = db.srv.port;
    // One token: the same claims, `exp` and `iat` included.
    let token = token_with(json!({"role": "authenticated", "sub": "u"}), 3600);

    // A join alone: how many evaluations one check makes.
    let mut lone = Ws::connect(port, "2.0.0", &token);
    assert_ok(&join_private(&mut lone, "1", "room:shared", json!({})));
    let one_check = evaluations(&db);
    assert!(one_check > 0, "the policy counted");

    let mut sockets: Vec<Ws> = (0..20)
        .map(|_| Ws::connect(port, "2.0.0", &token))
        .collect();
    let queries = db.srv.metric("realtime_rls_queries_total");
    for ws in &mut sockets {
        ws.text(&join_frame("room:shared"));
    }
    for ws in &mut sockets {
        assert_ok(&ws.recv_json());
    }
    assert_eq!(
        evaluations(&db) - one_check,
        one_check,
        "twenty joins asking the same question made one check"
    );
    assert_eq!(db.srv.metric("realtime_rls_queries_total") - queries, 1);
    assert_eq!(db.srv.metric("realtime_rls_checks_total"), 21);

    // Other claims are another question.
    let other = token_with(json!({"role": "authenticated", "sub": "v"}), 3600);
    let mut ws = Ws::connect(port, "2.0.0", &other);
    assert_ok(&join_private(&mut ws, "1", "room:shared", json!({})));
    assert_eq!(evaluations(&db), 3 * one_check);
}

#[test]
fn checks_waiting_together_go_in_one_round_trip_each_with_its_own_answer() {
    let db = TenantDb::start("batched", &policies());
    let port = db.srv.port;
    // One token per user: the same user asks the same question twice.
    let tokens: std::collections::HashMap<&str, String> =
        ["s1", "s2", "alice", "bob", "carol", "dave"]
            .into_iter()
            .map(|s| {
                (
                    s,
                    token_with(json!({"role": "authenticated", "sub": s}), 3600),
                )
            })
            .collect();
    let user = |sub: &str| tokens[sub].clone();

    // Both connections of the pool (two by default) busy with slow checks.
    let mut slow: Vec<Ws> = ["s1", "s2"]
        .iter()
        .map(|s| Ws::connect(port, "2.0.0", &user(s)))
        .collect();
    // The waiting joins: a failing check first, then allowed and refused
    // ones of other claims behind it.
    let waiting = [
        ("carol", "room:boom"),
        ("alice", "room:alice"),
        ("bob", "room:alice"),
        ("alice", "room:shared-not"),
        ("dave", "room:alice"),
        ("alice", "room:alice"),
    ];
    let mut socks: Vec<Ws> = waiting
        .iter()
        .map(|(sub, _)| Ws::connect(port, "2.0.0", &user(sub)))
        .collect();
    let trips = db.srv.metric("realtime_rls_round_trips_total");
    for ws in &mut slow {
        ws.text(&join_frame("room:slow"));
    }
    let sleeping = "select count(*) from pg_stat_activity \
                    where application_name = 'realtime_rls' and wait_event = 'PgSleep'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while db.sql(sleeping).trim() != "2" {
        assert!(
            std::time::Instant::now() < deadline,
            "both slow checks running"
        );
        std::thread::yield_now();
    }
    for (ws, (_, topic)) in socks.iter_mut().zip(waiting) {
        ws.text(&join_frame(topic));
    }
    let replies: Vec<_> = socks.iter_mut().map(|ws| ws.recv_json()).collect();
    assert_refused(&replies[0], &unauthorized("room:boom"));
    assert_ok(&replies[1]);
    assert_refused(&replies[2], &unauthorized("room:alice"));
    assert_refused(&replies[3], &unauthorized("room:shared-not"));
    assert_refused(&replies[4], &unauthorized("room:alice"));
    // The same question as the second: it shared that check.
    assert_ok(&replies[5]);
    for ws in &mut slow {
        assert_ok(&ws.recv_json());
    }
    assert_eq!(
        db.srv.metric("realtime_rls_round_trips_total") - trips,
        3,
        "the two slow checks, then the five waiting ones together"
    );
    assert_eq!(db.srv.metric("realtime_rls_queries_total"), 7);
    assert_eq!(
        db.sql("select count(*) from realtime.messages"),
        "0\n",
        "every check rolled back"
    );
}
