use std::collections::BTreeMap;

use super::*;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

pub(super) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

pub(super) fn diff_json(d: &Diff) -> String {
    let mut out = Vec::new();
    d.to_json(&mut out);
    String::from_utf8(out).unwrap()
}

pub(super) fn state(p: &TopicPresence) -> String {
    let mut out = Vec::new();
    p.state_json(&mut out);
    String::from_utf8(out).unwrap()
}

/// The refs a fresh `StdRng::seed_from_u64(seed)` produces, in order.
fn refs(seed: u64, n: usize) -> Vec<String> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n).map(|_| new_phx_ref(&mut r)).collect()
}

#[test]
fn join_update_leave_diffs_byte_exact() {
    let mut rng = StdRng::seed_from_u64(7);
    let r = refs(7, 2);
    let mut p = TopicPresence::default();

    let d = p
        .track_with(1, "k", obj(json!({"user": "a", "at": 1})), &mut rng)
        .unwrap();
    assert_eq!(
        diff_json(&d),
        format!(
            r#"{{"joins":{{"k":{{"metas":[{{"phx_ref":"{}","at":1,"user":"a"}}]}}}},"leaves":{{}}}}"#,
            r[0]
        )
    );

    let d = p
        .track_with(1, "k", obj(json!({"user": "b"})), &mut rng)
        .unwrap();
    assert_eq!(
        diff_json(&d),
        format!(
            r#"{{"joins":{{"k":{{"metas":[{{"phx_ref":"{1}","phx_ref_prev":"{0}","user":"b"}}]}}}},"leaves":{{"k":{{"metas":[{{"phx_ref":"{0}","at":1,"user":"a"}}]}}}}}}"#,
            r[0], r[1]
        )
    );
    assert_eq!(
        state(&p),
        format!(
            r#"{{"k":{{"metas":[{{"phx_ref":"{1}","phx_ref_prev":"{0}","user":"b"}}]}}}}"#,
            r[0], r[1]
        )
    );

    let d = p.leave(1).unwrap();
    assert_eq!(
        diff_json(&d),
        format!(
            r#"{{"joins":{{}},"leaves":{{"k":{{"metas":[{{"phx_ref":"{1}","phx_ref_prev":"{0}","user":"b"}}]}}}}}}"#,
            r[0], r[1]
        )
    );
    assert!(p.is_empty());
    assert_eq!(state(&p), "{}");
}

#[test]
fn second_update_leaves_the_meta_with_its_prev() {
    let mut rng = StdRng::seed_from_u64(1);
    let r = refs(1, 3);
    let mut p = TopicPresence::default();
    p.track_with(1, "k", obj(json!({"v": 1})), &mut rng);
    p.track_with(1, "k", obj(json!({"v": 2})), &mut rng);
    let d = p
        .track_with(1, "k", obj(json!({"v": 3})), &mut rng)
        .unwrap();
    let (_, left) = d.leaves().next().unwrap();
    assert_eq!(
        (left.phx_ref(), left.phx_ref_prev()),
        (r[1].as_str(), Some(r[0].as_str()))
    );
    let (_, joined) = d.joins().next().unwrap();
    assert_eq!(
        (joined.phx_ref(), joined.phx_ref_prev()),
        (r[2].as_str(), Some(r[1].as_str()))
    );
}

#[test]
fn retrack_same_meta_is_noop() {
    let mut p = TopicPresence::default();
    assert!(p.track(1, "k", obj(json!({"a": 1, "b": [1, 2]}))).is_some());
    // Same content in another key order: still the same map.
    let mut m = Map::new();
    m.insert("b".into(), json!([1, 2]));
    m.insert("a".into(), json!(1));
    assert!(p.track(1, "k", m).is_none());
    // 1 and 1.0 are different terms in Elixir.
    assert!(p
        .track(1, "k", obj(json!({"a": 1.0, "b": [1, 2]})))
        .is_some());
    assert_eq!(p.len(), 1);
}

#[test]
fn untrack_unknown_owner() {
    let mut p = TopicPresence::default();
    assert!(p.untrack(9).is_none());
    assert!(p.leave(9).is_none());
    p.track(1, "k", Map::new());
    assert!(p.untrack(2).is_none());
    assert!(p.untrack(1).is_some());
    assert!(p.untrack(1).is_none());
    // After untrack the same meta tracks again (a join).
    let d = p.track(1, "k", Map::new()).unwrap();
    assert_eq!(d.leaves().count(), 0);
}

#[test]
fn multiple_owners_under_one_key_in_owner_order() {
    let mut rng = StdRng::seed_from_u64(3);
    let r = refs(3, 4);
    let mut p = TopicPresence::default();
    p.track_with(2, "k", obj(json!({"n": 2})), &mut rng);
    p.track_with(1, "k", obj(json!({"n": 1})), &mut rng);
    p.track_with(3, "a", obj(json!({})), &mut rng);
    assert_eq!(p.len(), 3);
    assert_eq!(p.nr_keys(), 2);
    assert_eq!(
        state(&p),
        format!(
            r#"{{"a":{{"metas":[{{"phx_ref":"{2}"}}]}},"k":{{"metas":[{{"phx_ref":"{1}","n":1}},{{"phx_ref":"{0}","n":2}}]}}}}"#,
            r[0], r[1], r[2]
        )
    );
    // An update keeps the owner's place.
    p.track_with(2, "k", obj(json!({"n": 22})), &mut rng);
    assert_eq!(
        state(&p),
        format!(
            r#"{{"a":{{"metas":[{{"phx_ref":"{2}"}}]}},"k":{{"metas":[{{"phx_ref":"{1}","n":1}},{{"phx_ref":"{3}","phx_ref_prev":"{0}","n":22}}]}}}}"#,
            r[0], r[1], r[2], r[3]
        )
    );
    p.untrack(1);
    p.untrack(2);
    assert_eq!(
        state(&p),
        format!(r#"{{"a":{{"metas":[{{"phx_ref":"{}"}}]}}}}"#, r[2])
    );
    assert_eq!(p.get(3).map(|(k, _)| k), Some("a"));
}

#[test]
fn owner_moving_keys_leaves_and_joins() {
    let mut p = TopicPresence::default();
    p.track(1, "a", Map::new());
    let d = p.track(1, "b", Map::new()).unwrap();
    assert_eq!(d.leaves().map(|(k, _)| k).collect::<Vec<_>>(), ["a"]);
    assert_eq!(d.joins().map(|(k, _)| k).collect::<Vec<_>>(), ["b"]);
    assert_eq!(p.nr_keys(), 1);
}

#[test]
fn meta_encoding_matches_jason() {
    let mut p = TopicPresence::default();
    p.track(
        1,
        "k\"q",
        obj(json!({"z": {"b": 1, "a": [true, null, -5, 1.5, 1000.0]}, "phx_ref": "user", "s": "a\u{1}\n/é"})),
    );
    let (_, m) = p.get(1).unwrap();
    assert_eq!(
        m.members_json(),
        r#""s":"a\u0001\n/é","z":{"a":[true,null,-5,1.5,1.0e3],"b":1}"#,
        "a client's phx_ref is dropped (Jason would write it after the server's)"
    );
    let s = state(&p);
    assert!(s.starts_with(r#"{"k\"q":{"metas":[{"phx_ref":""#), "{s}");
}

#[test]
fn diff_groups_by_key() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut a = TopicPresence::default();
    let mut d = a.track_with(1, "b", Map::new(), &mut rng).unwrap();
    let d2 = a.track_with(2, "a", Map::new(), &mut rng).unwrap();
    let d3 = a.track_with(3, "b", Map::new(), &mut rng).unwrap();
    d.joins.extend(d2.joins);
    d.joins.extend(d3.joins);
    let r = refs(5, 3);
    assert_eq!(
        diff_json(&d),
        format!(
            r#"{{"joins":{{"a":{{"metas":[{{"phx_ref":"{1}"}}]}},"b":{{"metas":[{{"phx_ref":"{0}"}},{{"phx_ref":"{2}"}}]}}}},"leaves":{{}}}}"#,
            r[0], r[1], r[2]
        )
    );
    assert!(Diff::default().is_empty());
    assert_eq!(diff_json(&Diff::default()), r#"{"joins":{},"leaves":{}}"#);
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        // Any finite float: serde_json is built with float_roundtrip.
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{0,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn long_mantissa_floats_survive_a_retrack() {
    // Found by the property below before float_roundtrip was enabled:
    // a re-encoded meta differed by one ULP and a no-op track became an update.
    let meta: Map<String, Value> =
        serde_json::from_str(r#"{"":{"":1.0171072165766497e+182}}"#).unwrap();
    let mut p = TopicPresence::default();
    p.track(1, "k", meta.clone());
    assert!(p.track(1, "k", meta).is_none());
}

proptest! {
    #[test]
    fn meta_json_is_valid_and_equal(meta in proptest::collection::btree_map("[a-z]{0,4}", arb_json(), 0..5)) {
        let meta: Map<String, Value> = meta.into_iter().collect();
        let mut p = TopicPresence::default();
        p.track(1, "k", meta.clone());
        let s = state(&p);
        let v: Value = serde_json::from_str(&s).unwrap();
        let got = v["k"]["metas"][0].as_object().unwrap().clone();
        for (k, val) in &meta {
            if k != "phx_ref" {
                let g = &got[k];
                prop_assert_eq!(g, val);
            }
        }
        prop_assert!(p.track(1, "k", meta).is_none());
    }

    #[test]
    fn random_ops_keep_index_consistent(ops in proptest::collection::vec((0u64..6, 0u8..3, 0u8..3, any::<bool>()), 0..60)) {
        let mut p = TopicPresence::default();
        let mut model: BTreeMap<u64, (String, u8)> = BTreeMap::new();
        for (owner, key, val, untrack) in ops {
            let key = format!("k{key}");
            if untrack {
                let d = p.untrack(owner);
                prop_assert_eq!(d.is_some(), model.remove(&owner).is_some());
            } else {
                let d = p.track(owner, &key, obj(json!({"v": val})));
                let same = model.get(&owner) == Some(&(key.clone(), val));
                prop_assert_eq!(d.is_none(), same);
                model.insert(owner, (key, val));
            }
            prop_assert_eq!(p.len(), model.len());
            let v: Value = serde_json::from_str(&state(&p)).unwrap();
            let n: usize = v.as_object().unwrap().values().map(|k| k["metas"].as_array().unwrap().len()).sum();
            prop_assert_eq!(n, model.len());
        }
    }
}

#[test]
fn client_phx_refs_never_reach_the_wire() {
    let mut rng = StdRng::seed_from_u64(7);
    let r = refs(7, 1);
    let mut p = TopicPresence::default();
    let meta = obj(json!({"phx_ref": "forged", "phx_ref_prev": "x", "u": 1}));
    let d = p.track_with(1, "k", meta, &mut rng).unwrap();
    assert_eq!(
        diff_json(&d),
        format!(
            r#"{{"joins":{{"k":{{"metas":[{{"phx_ref":"{}","u":1}}]}}}},"leaves":{{}}}}"#,
            r[0]
        )
    );
}
