//! The admin API's input rules. The oracle is the upstream controller test
//! (`test/realtime_web/controllers/tenant_controller_test.exs`) and the
//! Ecto changeset rules it relies on; the refusals beyond them are this
//! server's (see the module docs).

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

const NOW: &str = "2026-12-07 07:25:00";
const LATER: &str = "2026-12-07 08:00:00";

fn defaults() -> TenantDefaults {
    TenantDefaults::from_config(&crate::config::Config::default())
}

/// Upstream's `default_tenant_attrs`.
fn attrs() -> Value {
    json!({
        "extensions": [{
            "type": "postgres_cdc_rls",
            "settings": {
                "db_host": "127.0.0.1", "db_name": "postgres", "db_user": "supabase_admin",
                "db_password": "postgres", "db_port": "6432", "poll_interval": 100,
                "poll_max_changes": 100, "poll_max_record_bytes": 1_048_576,
                "region": "us-east-1", "ssl_enforced": false
            }
        }],
        "postgres_cdc_default": "postgres_cdc_rls",
        "jwt_secret": "new secret"
    })
}

fn ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("uuid-{n}")
    }
}

fn body(tenant: Value) -> Vec<u8> {
    json!({ "tenant": tenant }).to_string().into_bytes()
}

fn post(tenant: Value) -> Result<TenantRecord, Invalid> {
    apply_params(None, None, &body(tenant), &defaults(), ids(), NOW)
}

fn put(existing: Option<&TenantRecord>, id: &str, tenant: Value) -> Result<TenantRecord, Invalid> {
    apply_params(existing, Some(id), &body(tenant), &defaults(), ids(), LATER)
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

/// The 422 body as JSON.
fn errors(r: Result<TenantRecord, Invalid>) -> Value {
    let inv = r.expect_err("refused");
    assert_eq!(inv.status, 422, "{inv}");
    serde_json::from_slice(&inv.body).unwrap()
}

fn created() -> TenantRecord {
    post(with(attrs(), "external_id", json!("tenant-a"))).unwrap()
}

#[test]
fn upstream_attrs_create_a_tenant_with_env_defaults_and_merged_settings() {
    let rec = post(with(
        with(attrs(), "external_id", json!("tenant-a")),
        "name",
        json!("ignored on create"),
    ))
    .unwrap();
    assert_eq!(
        (rec.id.as_str(), rec.external_id.as_str()),
        ("uuid-1", "tenant-a")
    );
    assert_eq!(
        rec.name.as_deref(),
        Some("tenant-a"),
        "a new tenant is named by its id"
    );
    assert_eq!(rec.jwt_secret.as_deref(), Some("new secret"));
    assert_eq!(rec.max_concurrent_users, Some(200));
    assert_eq!(rec.max_channels_per_client, Some(100));
    assert_eq!(rec.max_events_per_second, Some(100));
    assert_eq!(rec.max_joins_per_second, Some(100));
    assert_eq!(rec.max_bytes_per_second, Some(100_000));
    assert_eq!(rec.max_presence_events_per_second, Some(1000));
    assert_eq!(rec.max_payload_size_in_kb, Some(3000));
    assert_eq!(rec.max_client_presence_events_per_window, None);
    assert_eq!(rec.broadcast_adapter.as_deref(), Some("gen_rpc"));
    assert_eq!(
        (rec.inserted_at.as_str(), rec.updated_at.as_str()),
        (NOW, NOW)
    );
    let ext = &rec.extensions[0];
    assert_eq!(
        (ext.id.as_str(), ext.kind.as_str()),
        ("uuid-2", "postgres_cdc_rls")
    );
    assert_eq!(ext.settings["publication"], "supabase_realtime");
    assert_eq!(
        ext.settings["slot_name"],
        "supabase_realtime_replication_slot"
    );
    assert_eq!(ext.settings["poll_interval_ms"], 100);
    assert_eq!(ext.settings["db_port"], "6432");
    // The stored tenant builds a runtime config.
    let c = super::super::record::to_config(&rec, &defaults(), Default::default()).unwrap();
    assert_eq!(c.db.unwrap().port, 6432);
}

#[test]
fn upstream_invalid_attrs_say_external_id_cant_be_blank() {
    let invalid = json!({"external_id": null, "jwt_secret": null, "extensions": [], "name": null});
    assert_eq!(
        errors(post(invalid)),
        json!({"errors": {"external_id": ["can't be blank"]}})
    );
    assert_eq!(
        errors(post(json!({"external_id": "", "jwt_secret": "s"}))),
        json!({"errors": {"external_id": ["can't be blank"]}})
    );
}

#[test]
fn the_jwt_constraint_speaks_only_when_all_else_is_valid() {
    let no_jwt = json!({"external_id": "tenant-a", "extensions": []});
    assert_eq!(
        errors(post(no_jwt.clone())),
        json!({"errors": {"jwt_secret": ["either jwt_secret or jwt_jwks must be provided"]}})
    );
    let both_wrong = with(no_jwt.clone(), "max_concurrent_users", json!("many"));
    assert_eq!(
        errors(post(both_wrong)),
        json!({"errors": {"max_concurrent_users": ["is invalid"]}})
    );
    let jwks = json!({"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0"}]});
    let rec = post(with(no_jwt, "jwt_jwks", jwks.clone())).unwrap();
    assert_eq!((rec.jwt_secret, rec.jwt_jwks), (None, Some(jwks)));
    // Removing the secret of a stored tenant that has no JWKS.
    let stored = created();
    assert_eq!(
        errors(put(Some(&stored), "tenant-a", json!({"jwt_secret": null}))),
        json!({"errors": {"jwt_secret": ["either jwt_secret or jwt_jwks must be provided"]}})
    );
}

#[test]
fn required_settings_are_checked_and_reported_as_the_elixir_server_orders_them() {
    let t = json!({"external_id": "tenant-a", "jwt_secret": "s",
        "extensions": [{"type": "postgres", "settings": {"db_port": 5432}}]});
    assert_eq!(
        errors(post(t)),
        json!({"errors": {"extensions": [{"settings": [
            "db_password can't be blank", "db_user can't be blank", "db_name can't be blank",
            "db_port is invalid", "db_host can't be blank", "region can't be blank"
        ]}]}})
    );
    // A valid extension next to an invalid one renders as `{}`.
    let mut t = with(attrs(), "external_id", json!("tenant-a"));
    let list = t["extensions"].as_array_mut().unwrap();
    list.push(json!({"settings": {}}));
    list.push(json!({"type": "postgres_cdc_rls"}));
    assert_eq!(
        errors(post(t)),
        json!({"errors": {"extensions": [
            {}, {"type": ["can't be blank"]}, {"settings": ["can't be blank"]}
        ]}})
    );
}

#[test]
fn legacy_type_pool_alias_and_duplicate_types() {
    let mut t = with(attrs(), "external_id", json!("tenant-a"));
    t["extensions"][0]["type"] = json!("postgres");
    t["extensions"][0]["settings"]["subcriber_pool_size"] = json!(3);
    t["extensions"][0]["settings"]["postgres_changes_pool"] = json!(10);
    let rec = post(t.clone()).unwrap();
    let s = &rec.extensions[0].settings;
    assert_eq!(rec.extensions[0].kind, "postgres_cdc_rls");
    assert_eq!(s["subcriber_pool_size"], 10);
    assert!(!s.contains_key("postgres_changes_pool"));
    let first = t["extensions"][0].clone();
    t["extensions"].as_array_mut().unwrap().push(first);
    assert_eq!(
        errors(post(t)),
        json!({"errors": {"extensions": [{}, {"tenant_external_id": ["has already been taken"]}]}})
    );
}

#[test]
fn every_field_of_the_wrong_type_is_invalid_and_changes_nothing() {
    let stored = created();
    let cases: &[(&str, Value)] = &[
        ("name", json!(5)),
        ("external_id", json!(["a"])),
        ("jwt_secret", json!(true)),
        ("jwt_jwks", json!("keys")),
        ("jwt_jwks", json!({"keys": "k"})),
        ("jwt_jwks", json!({"keys": [{"kid": "no kty"}]})),
        ("jwt_jwks", json!({"keys": [{"kty": 1}]})),
        ("jwt_jwks", json!({"nokeys": []})),
        ("postgres_cdc_default", json!({})),
        ("max_concurrent_users", json!(1.5)),
        ("max_concurrent_users", json!(100.0)),
        ("max_events_per_second", json!("4 2")),
        ("max_events_per_second", json!(" 42")),
        ("max_presence_events_per_second", json!(2_147_483_648i64)),
        ("max_payload_size_in_kb", json!(-2_147_483_649i64)),
        ("max_bytes_per_second", json!(u64::MAX)),
        ("max_bytes_per_second", json!("99999999999999999999999")),
        ("max_channels_per_client", json!(true)),
        ("max_joins_per_second", json!([1])),
        ("max_client_presence_events_per_window", json!({"n": 1})),
        ("client_presence_window_ms", json!("1e3")),
        ("suspend", json!("yes")),
        ("private_only", json!(2)),
        ("presence_enabled", json!([])),
        ("migrations_ran", json!("x")),
        ("broadcast_adapter", json!("pubsub")),
        ("feature_flags", json!([1])),
        ("placement", json!("everywhere")),
        ("placement", json!("Spread")),
        ("placement", json!(1)),
        ("extensions", json!({"type": "postgres_cdc_rls"})),
        ("extensions", json!(["postgres_cdc_rls"])),
        ("extensions", json!(null)),
    ];
    for (field, bad) in cases {
        let want = json!({"errors": {*field: ["is invalid"]}});
        let t = with(with(attrs(), "external_id", json!("t")), field, bad.clone());
        assert_eq!(errors(post(t.clone())), want, "{field}: {bad}");
        if *field != "external_id" {
            assert_eq!(
                errors(put(Some(&stored), "tenant-a", t)),
                want,
                "{field}: {bad}"
            );
        }
    }
    // A huge number in the body text itself (beyond every JSON integer).
    let text = br#"{"tenant":{"external_id":"t","jwt_secret":"s","max_concurrent_users":123456789012345678901234567890}}"#;
    let inv = apply_params(None, None, text, &defaults(), ids(), NOW).unwrap_err();
    assert_eq!(
        inv.body,
        br#"{"errors":{"max_concurrent_users":["is invalid"]}}"#
    );
}

#[test]
fn casts_follow_ecto() {
    let t = with(attrs(), "external_id", json!("tenant-a"));
    let t = with(t, "max_concurrent_users", json!("42"));
    let t = with(t, "max_events_per_second", json!("+7"));
    let t = with(t, "max_joins_per_second", json!(-1));
    let t = with(t, "max_client_presence_events_per_window", json!(""));
    let t = with(t, "suspend", json!("1"));
    let t = with(t, "private_only", json!("true"));
    let t = with(t, "presence_enabled", json!(true));
    let t = with(t, "broadcast_adapter", json!("phoenix"));
    let rec = post(t).unwrap();
    assert_eq!(rec.max_concurrent_users, Some(42));
    assert_eq!(rec.max_events_per_second, Some(7));
    assert_eq!(
        rec.max_joins_per_second,
        Some(-1),
        "Elixir accepts negative limits"
    );
    assert_eq!(rec.max_client_presence_events_per_window, None);
    assert!(rec.suspend && rec.private_only && rec.presence_enabled);
    assert_eq!(rec.broadcast_adapter.as_deref(), Some("phoenix"));
    // Null on a new tenant takes the env default.
    let rec = post(with(created_attrs(), "max_concurrent_users", Value::Null)).unwrap();
    assert_eq!(rec.max_concurrent_users, Some(200));
}

fn created_attrs() -> Value {
    with(attrs(), "external_id", json!("tenant-a"))
}

#[test]
fn null_for_a_column_that_cannot_be_null_is_blank() {
    let stored = created();
    for field in [
        "max_concurrent_users",
        "max_events_per_second",
        "max_bytes_per_second",
        "max_channels_per_client",
        "max_joins_per_second",
        "suspend",
        "private_only",
        "presence_enabled",
        "migrations_ran",
        "feature_flags",
        "placement",
    ] {
        assert_eq!(
            errors(put(Some(&stored), "tenant-a", json!({ field: null }))),
            json!({"errors": {field: ["can't be blank"]}}),
            "{field}"
        );
    }
}

#[test]
fn unknown_keys_nul_characters_and_unreachable_ids_are_refused() {
    assert_eq!(
        errors(post(with(created_attrs(), "max_tenants", json!(1)))),
        json!({"errors": {"max_tenants": ["is unknown"]}})
    );
    let mut t = created_attrs();
    t["extensions"][0]["color"] = json!("red");
    assert_eq!(
        errors(post(t)),
        json!({"errors": {"extensions": [{"color": ["is unknown"]}]}})
    );
    for (field, val) in [
        ("name", json!("a\u{0}b")),
        ("jwt_secret", json!("s\u{0}")),
        ("jwt_jwks", json!({"keys": [{"kty": "oct", "k": "\u{0}"}]})),
        ("feature_flags", json!({"\u{0}": true})),
    ] {
        assert_eq!(
            errors(post(with(created_attrs(), field, val))),
            json!({"errors": {field: ["is invalid"]}}),
            "{field}"
        );
    }
    let mut t = created_attrs();
    t["extensions"][0]["settings"]["db_password"] = json!("p\u{0}");
    assert_eq!(
        errors(post(t)),
        json!({"errors": {"extensions": [{"settings": ["is invalid"]}]}})
    );
    for id in ["Tenant", "a.b", "a b", "a:1", "ü", &"a".repeat(64)] {
        assert_eq!(
            errors(post(with(created_attrs(), "external_id", json!(id)))),
            json!({"errors": {"external_id": [NOT_A_HOST_LABEL]}}),
            "{id}"
        );
        assert_eq!(
            errors(put(None, id, attrs())),
            json!({"errors": {"external_id": [NOT_A_HOST_LABEL]}}),
            "{id}"
        );
    }
    assert!(post(with(created_attrs(), "external_id", json!("dev_tenant-1"))).is_ok());
}

#[test]
fn a_body_without_a_tenant_object_is_bad_request() {
    for b in [
        &b"not json"[..],
        b"[]",
        b"{}",
        b"{\"tenant\": \"x\"}",
        b"{\"tenant\": []}",
        b"{\"tenant\": null}",
        b"\xff",
    ] {
        let inv = apply_params(None, None, b, &defaults(), ids(), NOW).unwrap_err();
        assert_eq!(
            (inv.status, inv.body.as_slice()),
            (400, &b"\"Bad Request\""[..])
        );
    }
}

#[test]
fn put_creates_under_the_path_id_and_updates_only_what_it_names() {
    let rec = put(
        None,
        "tenant-b",
        with(attrs(), "external_id", json!("other")),
    )
    .unwrap();
    assert_eq!(rec.external_id, "tenant-b");
    assert_eq!(rec.name.as_deref(), Some("tenant-b"));
    let stored = created();
    // Same values: nothing changes, not even updated_at.
    let same = put(
        Some(&stored),
        "tenant-a",
        json!({"max_concurrent_users": 200}),
    )
    .unwrap();
    assert_eq!(same, stored);
    let rec = put(
        Some(&stored),
        "tenant-a",
        json!({"max_concurrent_users": 5, "name": "A", "external_id": "renamed"}),
    )
    .unwrap();
    assert_eq!(rec.max_concurrent_users, Some(5));
    assert_eq!(rec.name.as_deref(), Some("A"));
    assert_eq!(rec.external_id, "tenant-a", "the path names the tenant");
    assert_eq!(
        rec.extensions, stored.extensions,
        "absent extensions are kept"
    );
    assert_eq!((rec.id.as_str(), rec.inserted_at.as_str()), ("uuid-1", NOW));
    assert_eq!(rec.updated_at, LATER);
    // Extensions given replace the stored ones.
    let rec = put(Some(&stored), "tenant-a", json!({"extensions": []})).unwrap();
    assert!(rec.extensions.is_empty());
}

#[test]
fn post_looks_up_by_the_body_id_and_updates_say_what_to_restart() {
    let b = body(created_attrs());
    assert_eq!(requested_external_id(&b).as_deref(), Some("tenant-a"));
    assert_eq!(
        requested_external_id(&body(json!({"external_id": 5}))),
        None
    );
    assert_eq!(requested_external_id(b"{"), None);
    let stored = created();
    let limits = put(
        Some(&stored),
        "tenant-a",
        json!({"max_joins_per_second": 1}),
    )
    .unwrap();
    assert!(!needs_disconnect(&stored, &limits) && !needs_db_restart(&stored, &limits));
    // Repeating the same secret and extensions changes nothing at run time.
    let same = put(Some(&stored), "tenant-a", attrs()).unwrap();
    assert!(!needs_disconnect(&stored, &same) && !needs_db_restart(&stored, &same));
    for change in [
        json!({"jwt_secret": "other"}),
        json!({"jwt_jwks": {"keys": []}}),
        json!({"private_only": true}),
        json!({"suspend": true}),
    ] {
        let new = put(Some(&stored), "tenant-a", change.clone()).unwrap();
        assert!(needs_disconnect(&stored, &new), "{change}");
    }
    let only_private = put(Some(&stored), "tenant-a", json!({"private_only": true})).unwrap();
    assert!(!needs_db_restart(&stored, &only_private));
    let mut moved = attrs();
    moved["extensions"][0]["settings"]["db_port"] = json!("7000");
    let new = put(Some(&stored), "tenant-a", moved).unwrap();
    assert!(needs_db_restart(&stored, &new) && !needs_disconnect(&stored, &new));
}

#[test]
fn placement_is_home_unless_given_and_changing_it_keeps_sockets() {
    let stored = created();
    assert_eq!(stored.placement, Placement::Home);
    let spread = post(with(created_attrs(), "placement", json!("spread"))).unwrap();
    assert_eq!(spread.placement, Placement::Spread);
    // An update that names only the placement changes only it.
    let new = put(Some(&stored), "tenant-a", json!({"placement": "spread"})).unwrap();
    assert_eq!(
        new,
        TenantRecord {
            placement: Placement::Spread,
            updated_at: LATER.into(),
            ..stored.clone()
        }
    );
    assert!(!needs_disconnect(&stored, &new) && !needs_db_restart(&stored, &new));
    let back = put(Some(&new), "tenant-a", json!({"placement": "home"})).unwrap();
    assert_eq!(back.placement, Placement::Home);
    // The refused value keeps the API's shape and changes nothing.
    assert_eq!(
        errors(put(Some(&stored), "tenant-a", json!({"placement": "all"}))),
        json!({"errors": {"placement": ["is invalid"]}})
    );
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Hostile values anywhere: never a panic, and either a tenant or an
    /// exact 422/400 whose body is JSON with an `errors` object.
    #[test]
    fn hostile_values_never_panic(
        field in prop::sample::select(FIELDS.iter().copied().chain(["extensions", "x"]).collect::<Vec<_>>()),
        val in any_json(),
        update in any::<bool>(),
    ) {
        let stored = created();
        let t = with(created_attrs(), field, val);
        let r = if update { put(Some(&stored), "tenant-a", t) } else { post(t) };
        if let Err(inv) = r {
            prop_assert_eq!(inv.status, 422);
            let v: Value = serde_json::from_slice(&inv.body).unwrap();
            prop_assert!(v["errors"].is_object());
        }
    }
}

proptest! {
    /// Arbitrary bytes, and bodies cut short anywhere: a tenant, 400 or
    /// 422, never a panic.
    #[test]
    fn arbitrary_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), cut in 0usize..400) {
        let whole = body(created_attrs());
        for b in [&bytes[..], &whole[..cut.min(whole.len())]] {
            if let Err(inv) = apply_params(None, None, b, &defaults(), ids(), NOW) {
                prop_assert!(inv.status == 400 || inv.status == 422, "{}", inv);
            }
        }
    }
}
