//! The tenant store against the dev cluster, each test in a database of its
//! own migrated by the server: hostile text in every field round-trips as
//! data, upserts create then update (keeping inserted_at), extensions are
//! replaced by type, deletes cascade, the placement column takes home or
//! spread only, and a row the Elixir server stored is read back field for
//! field.

mod control_support;
mod support;

use control_support::{run, TestDb};
use realtime::realtime::tenant::row::{ExtensionRow, TenantRow};
use realtime::server::control::{self, migrate::migrate, store};
use realtime::server::pgconn::{PgConfig, PgConn};
use serde_json::{json, Value};

/// A connection to a migrated database, opened as the server opens it. The
/// after-connect query points search_path nowhere: every name must carry
/// its schema.
async fn open(cfg: &PgConfig) -> PgConn {
    let mut c = control::connect(cfg, Some("set search_path to no_such_schema"))
        .await
        .unwrap();
    migrate(&mut c).await.unwrap();
    c
}

const EVIL: &str = "'); drop table _realtime.tenants; -- \\ \" $1 $$ \u{e9}\u{1f600}";

fn json_eq(a: &str, b: &str) {
    let (a, b): (Value, Value) = (
        serde_json::from_str(a).unwrap(),
        serde_json::from_str(b).unwrap(),
    );
    assert_eq!(a, b);
}

fn hostile_row() -> TenantRow {
    TenantRow {
        name: Some(format!("name {EVIL}")),
        external_id: format!("ext {EVIL}"),
        jwt_secret: Some(format!("secret {EVIL}")),
        jwt_jwks: Some(json!({"keys": [{"kty": "oct", "k": EVIL}]}).to_string()),
        postgres_cdc_default: Some(format!("cdc {EVIL}")),
        max_concurrent_users: Some(7),
        max_events_per_second: Some(8),
        max_presence_events_per_second: Some(9),
        max_payload_size_in_kb: Some(10),
        max_bytes_per_second: Some(11),
        max_channels_per_client: Some(12),
        max_joins_per_second: Some(13),
        max_client_presence_events_per_window: Some(14),
        client_presence_window_ms: Some(15),
        suspend: true,
        private_only: true,
        presence_enabled: true,
        placement: Some("spread".into()),
        migrations_ran: 68,
        broadcast_adapter: Some(format!("adapter {EVIL}")),
        feature_flags: json!({ EVIL: true, "b": {"c": EVIL} }).to_string(),
        gcm_migrated_at: Some("2026-03-04 05:06:07".into()),
        extensions: vec![ExtensionRow {
            kind: format!("kind {EVIL}"),
            settings: json!({"db_host": EVIL, "n": 1}).to_string(),
            ..ExtensionRow::default()
        }],
        ..TenantRow::default()
    }
}

#[test]
fn hostile_text_in_every_field_round_trips() {
    let db = TestDb::new();
    let cfg = db.config();
    let (input, stored, got, listed) = run(move || async move {
        let mut c = open(&cfg).await;
        let input = hostile_row();
        let (stored, created) = store::upsert(&mut c, &input).await.unwrap();
        assert!(created);
        let got = store::get(&mut c, &input.external_id).await.unwrap();
        let listed = store::list(&mut c).await.unwrap();
        c.terminate().await;
        (input, stored, got, listed)
    });
    assert_eq!(got.as_ref(), Some(&stored));
    assert_eq!(listed, vec![stored.clone()]);
    // The server filled id and timestamps; everything else is as given.
    assert_eq!(stored.id.len(), 36, "{}", stored.id);
    assert_eq!(stored.inserted_at.len(), 19, "{}", stored.inserted_at);
    assert_eq!(stored.inserted_at, stored.updated_at);
    json_eq(
        stored.jwt_jwks.as_deref().unwrap(),
        input.jwt_jwks.as_deref().unwrap(),
    );
    json_eq(&stored.feature_flags, &input.feature_flags);
    let ext = &stored.extensions[0];
    json_eq(&ext.settings, &input.extensions[0].settings);
    assert_eq!(ext.kind, input.extensions[0].kind);
    assert_eq!(ext.id.len(), 36);
    let expected = TenantRow {
        id: stored.id.clone(),
        jwt_jwks: stored.jwt_jwks.clone(),
        feature_flags: stored.feature_flags.clone(),
        inserted_at: stored.inserted_at.clone(),
        updated_at: stored.updated_at.clone(),
        extensions: stored.extensions.clone(),
        ..input
    };
    assert_eq!(stored, expected);
    // The table a value names is still there, with the one row.
    assert_eq!(db.psql("select count(*) from _realtime.tenants"), "1");
}

#[test]
fn the_after_connect_query_runs_before_anything_else() {
    let db = TestDb::new();
    let cfg = db.config();
    let (name, path) = run(move || async move {
        let mut c = control::connect(&cfg, Some("set application_name = 'after; connect'"))
            .await
            .unwrap();
        let name = c.query("show application_name", &[]).await.unwrap();
        c.terminate().await;
        let mut c = open(&cfg).await;
        let path = c.query("show search_path", &[]).await.unwrap();
        c.terminate().await;
        (name.rows[0][0].clone(), path.rows[0][0].clone())
    });
    assert_eq!(name.as_deref(), Some("after; connect"));
    assert_eq!(path.as_deref(), Some("no_such_schema"));
}

#[test]
fn upsert_creates_then_updates_keeping_inserted_at() {
    let db = TestDb::new();
    let cfg = db.config();
    let first = run(move || async move {
        let mut c = open(&cfg).await;
        let mut row = hostile_row();
        row.external_id = "t1".into();
        let (stored, created) = store::upsert(&mut c, &row).await.unwrap();
        assert!(created);
        c.terminate().await;
        stored
    });
    // Back-date the row so an update is visible at one-second resolution.
    db.psql("update _realtime.tenants set inserted_at = '2020-01-01 00:00:00', updated_at = '2020-01-01 00:00:00'");
    let cfg = db.config();
    let (second, created) = run(move || async move {
        let mut c = open(&cfg).await;
        let mut row = hostile_row();
        row.external_id = "t1".into();
        row.id = String::new();
        row.name = Some("renamed".into());
        row.jwt_secret = None;
        row.max_concurrent_users = None;
        row.max_events_per_second = Some(99);
        row.placement = None;
        let r = store::upsert(&mut c, &row).await.unwrap();
        c.terminate().await;
        r
    });
    assert!(!created);
    assert_eq!(second.id, first.id);
    assert_eq!(second.inserted_at, "2020-01-01 00:00:00");
    assert!(second.updated_at >= first.updated_at);
    assert_ne!(second.updated_at, "2020-01-01 00:00:00");
    assert_eq!(second.name.as_deref(), Some("renamed"));
    // A nullable column given as None is cleared; a NOT NULL one is kept.
    assert_eq!(second.jwt_secret, None);
    assert_eq!(second.max_concurrent_users, Some(7));
    assert_eq!(second.max_events_per_second, Some(99));
    assert_eq!(second.placement.as_deref(), Some("spread"));
    assert_eq!(db.psql("select count(*) from _realtime.tenants"), "1");
}

#[test]
fn absent_limits_take_the_column_defaults() {
    let db = TestDb::new();
    let cfg = db.config();
    let stored = run(move || async move {
        let mut c = open(&cfg).await;
        let row = TenantRow {
            external_id: "plain".into(),
            jwt_secret: Some("s".into()),
            ..TenantRow::default()
        };
        let (stored, _) = store::upsert(&mut c, &row).await.unwrap();
        c.terminate().await;
        stored
    });
    assert_eq!(stored.max_concurrent_users, Some(200));
    assert_eq!(stored.max_events_per_second, Some(100));
    assert_eq!(stored.max_bytes_per_second, Some(100000));
    assert_eq!(stored.max_channels_per_client, Some(100));
    assert_eq!(stored.max_joins_per_second, Some(500));
    assert_eq!(stored.feature_flags, "{}");
    assert_eq!(stored.placement.as_deref(), Some("home"));
    assert!(stored.extensions.is_empty());
}

#[test]
fn placement_changes_alone_and_the_column_refuses_other_names() {
    let mut row = TenantRow {
        external_id: "placed".into(),
        jwt_secret: Some("s".into()),
        placement: Some("home".into()),
        ..TenantRow::default()
    };
    let db = TestDb::new();
    let cfg = db.config();
    let (home, spread, err, after) = run(move || async move {
        let mut c = open(&cfg).await;
        let (home, _) = store::upsert(&mut c, &row).await.unwrap();
        row.placement = Some("spread".into());
        let (spread, _) = store::upsert(&mut c, &row).await.unwrap();
        row.placement = Some(format!("spread {EVIL}"));
        let err = store::upsert(&mut c, &row).await.unwrap_err().to_string();
        let after = store::get(&mut c, "placed").await.unwrap();
        c.terminate().await;
        (home, spread, err, after)
    });
    assert_eq!(home.placement.as_deref(), Some("home"));
    assert_eq!(
        spread,
        TenantRow {
            placement: Some("spread".into()),
            updated_at: spread.updated_at.clone(),
            ..home
        }
    );
    // The check constraint: a name nobody reads is never stored.
    assert!(
        err.contains("23514") && err.contains("placement_must_be_home_or_spread"),
        "{err}"
    );
    assert_eq!(after, Some(spread));
}

#[test]
fn a_tenant_without_any_key_is_refused_and_nothing_is_kept() {
    let db = TestDb::new();
    let cfg = db.config();
    let (err, after) = run(move || async move {
        let mut c = open(&cfg).await;
        let mut row = hostile_row();
        row.jwt_secret = None;
        row.jwt_jwks = None;
        let err = store::upsert(&mut c, &row).await.unwrap_err().to_string();
        // The connection is usable and the transaction was rolled back.
        let after = store::list(&mut c).await.unwrap();
        c.terminate().await;
        (err, after)
    });
    assert!(err.contains("23514"), "{err}");
    assert!(after.is_empty());
}

fn ext(kind: &str, settings: Value) -> ExtensionRow {
    ExtensionRow {
        kind: kind.into(),
        settings: settings.to_string(),
        ..ExtensionRow::default()
    }
}

#[test]
fn extensions_are_replaced_by_type() {
    let db = TestDb::new();
    let cfg = db.config();
    let (first, second) = run(move || async move {
        let mut c = open(&cfg).await;
        let mut row = hostile_row();
        row.external_id = "t".into();
        row.extensions = vec![ext("a", json!({"v": 1})), ext("b", json!({"v": 2}))];
        let (first, _) = store::upsert(&mut c, &row).await.unwrap();
        row.extensions = vec![ext("b", json!({"v": 3})), ext("c", json!({"v": 4}))];
        let (second, _) = store::upsert(&mut c, &row).await.unwrap();
        c.terminate().await;
        (first, second)
    });
    let kinds = |t: &TenantRow| {
        t.extensions
            .iter()
            .map(|e| e.kind.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&first), ["a", "b"]);
    assert_eq!(kinds(&second), ["b", "c"]);
    // The kept type is updated in place.
    assert_eq!(second.extensions[0].id, first.extensions[1].id);
    assert_eq!(
        second.extensions[0].inserted_at,
        first.extensions[1].inserted_at
    );
    json_eq(&second.extensions[0].settings, r#"{"v": 3}"#);
    json_eq(&second.extensions[1].settings, r#"{"v": 4}"#);
    assert_eq!(db.psql("select count(*) from _realtime.extensions"), "2");
}

#[test]
fn delete_takes_the_extensions_and_says_whether_it_existed() {
    let db = TestDb::new();
    let cfg = db.config();
    let (first, second, left) = run(move || async move {
        let mut c = open(&cfg).await;
        let mut keep = hostile_row();
        keep.external_id = "keep".into();
        store::upsert(&mut c, &keep).await.unwrap();
        store::upsert(&mut c, &hostile_row()).await.unwrap();
        let id = hostile_row().external_id;
        let first = store::delete(&mut c, &id).await.unwrap();
        let second = store::delete(&mut c, &id).await.unwrap();
        let left = store::list(&mut c).await.unwrap();
        c.terminate().await;
        (first, second, left)
    });
    assert!(first);
    assert!(!second);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].external_id, "keep");
    assert_eq!(left[0].extensions.len(), 1);
    assert_eq!(db.psql("select count(*) from _realtime.extensions"), "1");
}

#[test]
fn list_is_ordered_by_inserted_at_then_external_id() {
    let db = TestDb::new();
    let cfg = db.config();
    run(move || async move {
        let mut c = open(&cfg).await;
        for id in ["c", "a", "b"] {
            let row = TenantRow {
                external_id: id.into(),
                jwt_secret: Some("s".into()),
                extensions: vec![ext(&format!("x{id}"), json!({}))],
                ..TenantRow::default()
            };
            store::upsert(&mut c, &row).await.unwrap();
        }
        c.terminate().await;
    });
    db.psql("update _realtime.tenants set inserted_at = '2021-01-01' where external_id = 'c'");
    db.psql(
        "update _realtime.tenants set inserted_at = '2022-01-01' where external_id in ('a', 'b')",
    );
    let cfg = db.config();
    let listed = run(move || async move {
        let mut c = open(&cfg).await;
        let l = store::list(&mut c).await.unwrap();
        c.terminate().await;
        l
    });
    let got: Vec<(String, String)> = listed
        .iter()
        .map(|t| (t.external_id.clone(), t.extensions[0].kind.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("c".into(), "xc".into()),
            ("a".into(), "xa".into()),
            ("b".into(), "xb".into())
        ]
    );
}

#[test]
fn a_row_the_elixir_server_stored_reads_back_field_for_field() {
    let db = TestDb::new();
    db.load("control_elixir_full.sql");
    let cfg = db.config();
    let (got, missing) = run(move || async move {
        let mut c = open(&cfg).await;
        let got = store::get(&mut c, "realtime-dev").await.unwrap();
        let missing = store::get(&mut c, "nobody").await.unwrap();
        c.terminate().await;
        (got, missing)
    });
    assert_eq!(missing, None);
    let expected = TenantRow {
        id: "9d6f1f43-6c38-4c8a-a8b7-1d5b0c2f7e11".into(),
        name: Some("realtime-dev".into()),
        external_id: "realtime-dev".into(),
        jwt_secret: Some(
            "iNjicxc4+llvc9wovDvqymwfnj9teWMlyOIbJ8Fh6j2WNU8CIJ2ZgjR6MUIKqSmeDmvpsKLsZ9jgXJmQPpwL8w=="
                .into(),
        ),
        jwt_jwks: Some(r#"{"keys": [{"k": "c2VjcmV0", "kty": "oct"}]}"#.into()),
        postgres_cdc_default: Some("postgres_cdc_rls".into()),
        max_concurrent_users: Some(250),
        max_events_per_second: Some(150),
        max_presence_events_per_second: Some(1000),
        max_payload_size_in_kb: Some(3000),
        max_bytes_per_second: Some(100000),
        max_channels_per_client: Some(100),
        max_joins_per_second: Some(500),
        max_client_presence_events_per_window: None,
        client_presence_window_ms: None,
        suspend: false,
        private_only: false,
        presence_enabled: false,
        migrations_ran: 71,
        broadcast_adapter: Some("gen_rpc".into()),
        feature_flags: r#"{"some_flag": true}"#.into(),
        gcm_migrated_at: None,
        // The column this server adds reads as its default.
        placement: Some("home".into()),
        inserted_at: "2026-01-02 03:04:05".into(),
        updated_at: "2026-02-03 04:05:06".into(),
        extensions: vec![ExtensionRow {
            id: "b3a7c1e2-0f4d-4e5a-9b6c-7d8e9f0a1b2c".into(),
            kind: "postgres_cdc_rls".into(),
            settings: String::new(),
            inserted_at: "2026-01-02 03:04:05".into(),
            updated_at: "2026-01-02 03:04:05".into(),
        }],
    };
    let mut got = got.expect("the fixture's tenant");
    let settings = std::mem::take(&mut got.extensions[0].settings);
    assert_eq!(got, expected);
    let s: Value = serde_json::from_str(&settings).unwrap();
    assert_eq!(s["db_host"], "85SV1A1YzBaR9cvy/TYvwg==");
    assert_eq!(s["ip_version"], 4);
    assert_eq!(s["ssl_enforced"], false);
    assert_eq!(s.as_object().unwrap().len(), 13);
}
