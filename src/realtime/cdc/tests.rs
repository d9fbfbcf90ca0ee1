//! Unit tests of the registry's check states and of the batch fan-out.

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::json;

use super::access::{Answers, OpenAccess, TableAccess};
use super::fanout::{filter_expr, splice};
use super::*;
use crate::proto::pg::types::BuiltinsOnly;
use crate::proto::pg::Oid;
use crate::realtime::postgres_changes::binding::parse_binding;
use crate::realtime::postgres_changes::change::Change;
use crate::realtime::postgres_changes::test_support as ts;

use crate::realtime::hub::test_sink::{payload, Sink};

impl Sink {
    fn texts(&self) -> Vec<String> {
        self.0
            .borrow()
            .iter()
            .map(|f| String::from_utf8_lossy(payload(f)).into_owned())
            .collect()
    }
}

fn sub(channel: u64, role: &str, bindings: serde_json::Value, out: &Rc<Sink>) -> CdcSub {
    let bindings = bindings
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, b)| parse_binding(b.as_object().unwrap(), 100 + i as u64).unwrap())
        .collect();
    CdcSub {
        channel,
        topic: format!("realtime:t{channel}").into(),
        vsn: Vsn::V2,
        out: out.clone(),
        join_ref: None,
        bindings,
        legacy: false,
        claims: Rc::new(SubClaims {
            role: role.into(),
            json: format!("{{\"role\":\"{role}\"}}"),
        }),
        ready: false,
        generation: 0,
        told_ready: false,
    }
}

fn ready_all(reg: &mut CdcRegistry) {
    while let Some(job) = reg.next_check() {
        reg.finish_check(&job, Ok(()));
    }
}

#[test]
fn only_checked_subscriptions_are_told_ready_and_refusals_drop_them() {
    let out = Rc::new(Sink::default());
    let mut reg = CdcRegistry::default();
    reg.set_streaming(true, "");
    reg.add(sub(
        1,
        "anon",
        json!([{"event": "*", "schema": "public"}]),
        &out,
    ));
    reg.add(sub(
        2,
        "anon",
        json!([{"event": "*", "schema": "nope"}]),
        &out,
    ));
    assert!(out.texts().is_empty(), "nothing before the check");
    let a = reg.next_check().unwrap();
    reg.finish_check(&a, Ok(()));
    let b = reg.next_check().unwrap();
    reg.finish_check(&b, Err("Unable to subscribe".into()));
    let t = out.texts();
    assert_eq!(t.len(), 2);
    assert!(t[0].contains("Subscribed to PostgreSQL") && t[0].contains("realtime:t1"));
    assert!(t[1].contains("\"status\":\"error\"") && t[1].contains("Unable to subscribe"));
    assert_eq!(reg.subs.len(), 1);
}

#[test]
fn new_claims_are_checked_again_and_a_stale_verdict_is_ignored() {
    let out = Rc::new(Sink::default());
    let mut reg = CdcRegistry::default();
    reg.set_streaming(true, "");
    reg.add(sub(
        1,
        "anon",
        json!([{"event": "*", "schema": "public"}]),
        &out,
    ));
    let old = reg.next_check().unwrap();
    let claims = Rc::new(SubClaims {
        role: "authenticated".into(),
        json: "{}".into(),
    });
    assert!(reg.update_claims(1, claims));
    reg.finish_check(&old, Ok(()));
    assert!(!reg.subs[0].ready, "the verdict on the old claims is void");
    let new = reg.next_check().unwrap();
    assert_eq!(new.claims.role, "authenticated");
    reg.finish_check(&new, Ok(()));
    assert!(reg.subs[0].ready);
    assert_eq!(out.texts().len(), 1);
}

#[test]
fn rls_tables_deliver_only_rows_the_claims_group_may_see() {
    let rel = ts::relation("notes", b'd', &[("id", 23, true), ("body", 25, false)]);
    let msg = ts::insert(&["1", "hi"]);
    let pk: Vec<usize> = vec![0];
    let change = Change::from_message(&msg, &rel, &pk, Default::default()).unwrap();
    let (alice_out, bob_out) = (Rc::new(Sink::default()), Rc::new(Sink::default()));
    let mut reg = CdcRegistry::default();
    reg.add(sub(
        1,
        "authenticated",
        json!([{"event": "*", "schema": "public", "table": "notes"}]),
        &alice_out,
    ));
    let mut bob = sub(
        2,
        "authenticated",
        json!([{"event": "INSERT", "schema": "public", "table": "notes"}]),
        &bob_out,
    );
    bob.claims = Rc::new(SubClaims {
        role: "authenticated".into(),
        json: "{\"sub\":\"bob\"}".into(),
    });
    reg.add(bob);
    ready_all(&mut reg);
    let access = rls_table(rel.oid);
    let changes = [change];
    let q = reg.plan(&changes, &access, &BuiltinsOnly);
    assert_eq!(q.rows.len(), 2, "one row check per claims group");
    assert!(q.exprs.is_empty());
    let mut answers = Answers::default();
    // Alice's group may see the row, Bob's may not.
    let alice = q
        .rows
        .iter()
        .position(|(_, c)| !c.json.contains("bob"))
        .unwrap();
    answers.set_row(&q, alice, true);
    answers.set_row(&q, 1 - alice, false);
    assert_eq!(
        reg.deliver(&changes[..1], &access, &BuiltinsOnly, &answers),
        1
    );
    assert_eq!(alice_out.texts().len(), 1);
    assert!(bob_out.texts().is_empty());
    assert!(alice_out.texts()[0].contains("\"record\":{\"id\":1,\"body\":\"hi\"}"));
}

#[test]
fn column_privileges_limit_columns_and_a_hidden_key_is_a_401() {
    let rel = ts::relation("p", b'd', &[("id", 23, true), ("secret", 25, false)]);
    let msg = ts::insert(&["1", "s"]);
    let pk: Vec<usize> = vec![0];
    let change = Change::from_message(&msg, &rel, &pk, Default::default()).unwrap();
    let (a_out, b_out) = (Rc::new(Sink::default()), Rc::new(Sink::default()));
    let mut reg = CdcRegistry::default();
    reg.add(sub(
        1,
        "anon",
        json!([{"event": "*", "schema": "public", "table": "p", "filter": "id=eq.5"}]),
        &a_out,
    ));
    reg.add(sub(
        2,
        "authenticated",
        json!([{"event": "*", "schema": "public", "table": "p"}]),
        &b_out,
    ));
    ready_all(&mut reg);
    let mut t = TableAccess::default();
    t.selectable
        .insert("anon".into(), Rc::from(vec![false, true]));
    t.selectable
        .insert("authenticated".into(), Rc::from(vec![true, false]));
    let access: HashMap<Oid, TableAccess> = [(rel.oid, t)].into();
    let answers = Answers::default();
    reg.on_change(&change, &access, &BuiltinsOnly, &answers);
    let a = a_out.texts();
    assert_eq!(a.len(), 1, "an error row ignores filters");
    assert!(a[0].contains("Error 401: Unauthorized"), "{}", a[0]);
    let b = b_out.texts();
    assert!(
        b[0].contains("\"columns\":[{\"name\":\"id\",\"type\":\"int4\"}]"),
        "{}",
        b[0]
    );
    assert!(b[0].contains("\"record\":{\"id\":1}"), "{}", b[0]);
}

#[test]
fn database_filters_are_asked_once_and_their_answers_decide() {
    let rel = ts::relation("n", b'd', &[("id", 23, true), ("name", 25, false)]);
    let msg = ts::insert(&["1", "O'Brien"]);
    let pk: Vec<usize> = vec![0];
    let change = Change::from_message(&msg, &rel, &pk, Default::default()).unwrap();
    let out = Rc::new(Sink::default());
    let mut reg = CdcRegistry::default();
    reg.add(sub(
        1,
        "anon",
        json!([{"event": "*", "schema": "public", "table": "n", "filter": "name=like.O%"}]),
        &out,
    ));
    reg.add(sub(
        2,
        "anon",
        json!([{"event": "*", "schema": "public", "table": "n", "filter": "name=like.O%"}]),
        &out,
    ));
    ready_all(&mut reg);
    let access = OpenAccess::default();
    let changes = [change];
    let q = reg.plan(&changes, &access, &BuiltinsOnly);
    assert_eq!(
        q.exprs,
        vec!["E'O''Brien'::text LIKE (E'O%'::text)".to_owned()]
    );
    assert!(q.rows.is_empty(), "open tables need no row checks");
    assert_eq!(
        reg.deliver(&changes[..1], &access, &BuiltinsOnly, &Answers::default()),
        0
    );
    let mut answers = Answers::default();
    answers.set_expr(&q, 0, true);
    assert_eq!(
        reg.deliver(&changes[..1], &access, &BuiltinsOnly, &answers),
        2
    );
}

#[test]
fn splice_never_rescans_spliced_values() {
    assert_eq!(splice("$1 = $2", "'$2'", "'$1'"), "'$2' = '$1'");
}

#[test]
fn filter_values_are_one_constant_under_either_string_setting() {
    use crate::proto::pg::sql::read_literal;
    use crate::realtime::postgres_changes::filter::parse_filters;
    let hostile = r"a\') OR (true)) IS TRUE; --";
    let f = &parse_filters(&format!("name=like.{hostile}")).unwrap()[0];
    let sql = filter_expr(f, "text", Some(br"row\'s")).unwrap();
    assert_eq!(
        sql,
        r"E'row\\''s'::text LIKE (E'a\\'') OR (true)) IS TRUE; --'::text)"
    );
    let rhs = sql.find("(E'").unwrap() + 1;
    for conforming in [true, false] {
        let (v, n) = read_literal(&sql[rhs..], conforming).unwrap();
        assert_eq!(v, hostile);
        assert_eq!(&sql[rhs + n..], "::text)");
    }
    // A NUL cannot be quoted: the filter fails rather than reach SQL.
    let f = &parse_filters("name=eq.a\0b").unwrap()[0];
    assert_eq!(filter_expr(f, "text", Some(b"x")), None);
    let f = &parse_filters("name=like.x").unwrap()[0];
    assert_eq!(filter_expr(f, "text", Some(b"x\0")), None);
}

#[test]
fn the_relation_index_matches_each_table_once_per_batch() {
    // Same OID, two names (as after a rename inside the batch): keyed by name.
    let todos = ts::relation("todos", b'd', &[("id", 23, true)]);
    let lg = ts::relation("lg_changes", b'd', &[("id", 23, true)]);
    let msg = ts::insert(&["1"]);
    let pk: Vec<usize> = vec![0];
    let changes: Vec<Change<'_>> = (0..100)
        .map(|i| {
            let rel = if i % 10 == 9 { &todos } else { &lg };
            Change::from_message(&msg, rel, &pk, Default::default()).unwrap()
        })
        .collect();
    let out = Rc::new(Sink::default());
    let mut reg = CdcRegistry::default();
    reg.add(sub(
        1,
        "anon",
        json!([
            {"schema": "public", "table": "todos"},
            {"schema": "public", "table": "lg_changes"},
            {"event": "INSERT", "schema": "pub%", "table": "lg%"},
            {"schema": "other", "table": "lg_changes"}
        ]),
        &out,
    ));
    reg.add(sub(2, "anon", json!([{"schema": "*"}]), &out));
    ready_all(&mut reg);
    // Not checked yet: not indexed.
    reg.add(sub(3, "anon", json!([{"schema": "public"}]), &out));
    let index = super::index::RelationIndex::build(&reg.subs, &changes);
    assert_eq!(index.nr_relations(), 2);
    assert_eq!(index.entries(0), &[(0, 1), (0, 2), (1, 0)]);
    assert_eq!(index.entries(9), &[(0, 0), (1, 0)]);
    assert_eq!(index.entries(19), index.entries(9));
    assert!(index.entries(100).is_empty());
    let runs: Vec<(usize, usize)> = index.subs_on(0).map(|(s, e)| (s, e.len())).collect();
    assert_eq!(runs, [(0, 2), (1, 1)]);
    let none = super::index::RelationIndex::build(&reg.subs[..0], &changes);
    assert_eq!(none.subs_on(0).count(), 0);
}

#[test]
fn a_batch_delivers_what_its_changes_deliver_one_by_one() {
    let rel = ts::relation("todos", b'd', &[("id", 23, true), ("title", 25, false)]);
    let other = ts::relation("other", b'd', &[("id", 23, true)]);
    let msgs: Vec<_> = (0..6).map(|i| ts::insert(&[&i.to_string(), "t"])).collect();
    let pk: Vec<usize> = vec![0];
    let changes: Vec<Change<'_>> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let r = if i == 3 { &other } else { &rel };
            let t = crate::proto::pg::PgTimestamp(i as i64 / 2 * 1_000_000);
            Change::from_message(m, r, &pk, t).unwrap()
        })
        .collect();
    let build = |out: &Rc<Sink>| {
        let mut reg = CdcRegistry::default();
        reg.add(sub(
            1,
            "anon",
            json!([
                {"schema": "public", "table": "todos"},
                {"schema": "public", "table": "todos", "select": ["title"]},
                {"event": "INSERT", "schema": "public", "table": "todos"}
            ]),
            out,
        ));
        reg.add(sub(2, "anon", json!([{"schema": "public"}]), out));
        ready_all(&mut reg);
        reg
    };
    let (batch_out, single_out) = (Rc::new(Sink::default()), Rc::new(Sink::default()));
    let access = OpenAccess::default();
    let answers = Answers::default();
    let n = build(&batch_out).deliver(&changes, &access, &BuiltinsOnly, &answers);
    let single = build(&single_out);
    let m: u64 = changes
        .iter()
        .map(|c| single.on_change(c, &access, &BuiltinsOnly, &answers))
        .sum();
    assert_eq!(n, m);
    assert_eq!(n, 5 * 3 + 1);
    assert_eq!(batch_out.texts(), single_out.texts());
    let t = batch_out.texts();
    assert!(t[0].contains("\"ids\":[102,100]"), "{}", t[0]);
    assert!(t[0].contains("\"commit_timestamp\":\"2000-01-01T00:00:00.000Z\""));
    assert!(t[1].contains("\"ids\":[101]"), "{}", t[1]);
    assert!(
        t[9].contains("\"commit_timestamp\":\"2000-01-01T00:00:01.000Z\""),
        "{}",
        t[9]
    );
}

#[test]
fn equal_claims_share_one_value_and_are_forgotten_when_unused() {
    let out = Rc::new(Sink::default());
    let mut reg = CdcRegistry::default();
    let binding = json!([{"event": "*", "schema": "public", "table": "notes"}]);
    reg.add(sub(1, "authenticated", binding.clone(), &out));
    reg.add(sub(2, "authenticated", binding.clone(), &out));
    reg.add(sub(3, "anon", binding, &out));
    assert!(Rc::ptr_eq(&reg.subs[0].claims, &reg.subs[1].claims));
    assert!(!Rc::ptr_eq(&reg.subs[0].claims, &reg.subs[2].claims));
    assert_eq!(reg.claims.len(), 2);
    reg.remove(3);
    assert_eq!(reg.claims.len(), 1);
    reg.remove(1);
    reg.remove(2);
    assert!(reg.claims.is_empty());
}

/// A table with row level security whose two columns `authenticated` may
/// select.
fn rls_table(oid: Oid) -> HashMap<Oid, TableAccess> {
    let mut t = TableAccess {
        rls: true,
        ..TableAccess::default()
    };
    t.selectable
        .insert("authenticated".into(), Rc::from(vec![true, true]));
    HashMap::from([(oid, t)])
}

/// `s` with claims of user `who` (role `authenticated`).
fn as_user(mut s: CdcSub, who: &str) -> CdcSub {
    s.claims = Rc::new(SubClaims {
        role: "authenticated".into(),
        json: format!("{{\"sub\":\"{who}\"}}"),
    });
    s
}

#[test]
fn claims_groups_are_decided_once_and_members_keep_their_filters_and_events() {
    let rel = ts::relation("notes", b'd', &[("id", 23, true), ("body", 25, false)]);
    let msgs = [
        ts::insert(&["1", "a"]),
        ts::insert(&["2", "b"]),
        ts::delete(b'K', &["3", "c"]),
    ];
    let pk: Vec<usize> = vec![0];
    let changes: Vec<Change<'_>> = msgs
        .iter()
        .map(|m| Change::from_message(m, &rel, &pk, Default::default()).unwrap())
        .collect();
    let outs: Vec<Rc<Sink>> = (0..4).map(|_| Rc::new(Sink::default())).collect();
    let on = |event: &str, filter: Option<&str>| {
        let mut b = json!({"event": event, "schema": "public", "table": "notes"});
        if let Some(f) = filter {
            b["filter"] = json!(f);
        }
        json!([b])
    };
    let mut reg = CdcRegistry::default();
    // Alice: one plain subscriber, one filtered, one for DELETEs only;
    // Bob: one plain subscriber.
    reg.add(as_user(
        sub(1, "authenticated", on("*", None), &outs[0]),
        "alice",
    ));
    reg.add(as_user(
        sub(2, "authenticated", on("*", Some("id=eq.1")), &outs[1]),
        "alice",
    ));
    reg.add(as_user(
        sub(3, "authenticated", on("*", None), &outs[2]),
        "bob",
    ));
    reg.add(as_user(
        sub(4, "authenticated", on("DELETE", None), &outs[3]),
        "alice",
    ));
    ready_all(&mut reg);
    let index = super::index::RelationIndex::build(&reg.subs, &changes);
    let groups = index.groups_on(0);
    assert_eq!(groups.len(), 2, "two claims values");
    assert!(groups[0].filtered && !groups[1].filtered);
    assert_eq!(index.members(&groups[0]).count(), 3);
    let access = rls_table(rel.oid);
    let q = reg.plan(&changes, &access, &BuiltinsOnly);
    // Each insert asked once per group; the delete is never checked.
    let mut asked: Vec<(usize, bool)> = q
        .rows
        .iter()
        .map(|(c, claims)| (*c, claims.json.contains("alice")))
        .collect();
    asked.sort();
    assert_eq!(asked, [(0, false), (0, true), (1, false), (1, true)]);
    // Alice may see row 1 and 2, Bob only row 2.
    let mut answers = Answers::default();
    for (i, (c, claims)) in q.rows.iter().enumerate() {
        answers.set_row(&q, i, claims.json.contains("alice") || *c == 1);
    }
    assert_eq!(reg.deliver(&changes, &access, &BuiltinsOnly, &answers), 7);
    let ids = |o: &Sink| -> Vec<String> {
        o.texts()
            .iter()
            .map(|t| {
                let v: serde_json::Value = serde_json::from_str(t).unwrap();
                let d = &v[4]["data"];
                format!(
                    "{}{}",
                    d["type"].as_str().unwrap(),
                    d["record"]["id"]
                        .as_i64()
                        .or(d["old_record"]["id"].as_i64())
                        .unwrap()
                )
            })
            .collect()
    };
    assert_eq!(ids(&outs[0]), ["INSERT1", "INSERT2", "DELETE3"]);
    assert_eq!(ids(&outs[1]), ["INSERT1"]);
    assert_eq!(ids(&outs[2]), ["INSERT2", "DELETE3"]);
    assert_eq!(ids(&outs[3]), ["DELETE3"]);
}
