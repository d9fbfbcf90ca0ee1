//! Records against rows. The encrypted vectors were made outside this
//! code (see `secrets_tests.rs` for the keys):
//!
//! ```sh
//! printf '%s' "$TEXT" | openssl enc -aes-128-ecb -nosalt \
//!   -K "$(printf supabaserealtime | xxd -p)" | base64
//! node -e '...createCipheriv("aes-256-gcm", "0123456789abcdef0123456789abcdef", IV)...'
//! ```

use serde_json::{json, Value};

use super::*;
use crate::realtime::auth::ClaimValidators;
use crate::realtime::tenant::params::seed_record;

const ECB_KEY: &str = "supabaserealtime";
const GCM_KEY: &str = "0123456789abcdef0123456789abcdef";

/// openssl, AES-128-ECB under `supabaserealtime`.
const ECB_JWT: &str = "q6726b1TfY5SK3av5XR2mn4hZyee3Q/95D15ANLHMas="; // secret-of-tenant-a
const ECB_HOST: &str = "IO3spwVghAHX+/hAV3L+8BBCVlFiKogFrRqo1dwvF+w="; // db.example.internal
const ECB_PORT: &str = "YCVo8Zt7ktLo/jW6EQVEgg=="; // 6543
const ECB_NAME: &str = "sWBpZNdjggEPTQVlI52Zfw=="; // postgres
const ECB_USER: &str = "vhrqtyTMncn8OpB65lJM0w=="; // authenticator
/// node, AES-256-GCM, nonce 0b0a..00: `pa$$word`.
const GCM_PASSWORD: &str = "g1:CwoJCAcGBQQDAgEA6qdvYBJnokgCQ80/NFVtoLiLvtmE0Rj6";
/// node, AES-256-GCM, nonce 0001..0b: `secret-of-tenant-a`.
const GCM_JWT: &str = "g1:AAECAwQFBgcICQoLaQtlT8rTka3+2VTnxb4eFV6A2A68bP/DzvEF2x+uv3DLaQ==";

fn keys(write_gcm: bool) -> SecretKeys {
    SecretKeys::new(Some(ECB_KEY), Some(GCM_KEY), write_gcm).unwrap()
}

/// A row as an Elixir deployment leaves it: legacy type name, mixed ciphers.
fn elixir_row() -> TenantRow {
    let settings = json!({
        "db_host": ECB_HOST, "db_port": ECB_PORT, "db_name": ECB_NAME,
        "db_user": ECB_USER, "db_password": GCM_PASSWORD,
        "region": "us-east-1", "poll_interval_ms": 100, "publication": "supabase_realtime",
        "slot_name": "supabase_realtime_replication_slot", "ssl_enforced": false,
        "subcriber_pool_size": 3
    });
    TenantRow {
        id: "8f3a2c1e-0000-4000-8000-000000000001".into(),
        name: Some("tenant-a".into()),
        external_id: "tenant-a".into(),
        jwt_secret: Some(ECB_JWT.into()),
        jwt_jwks: Some(r#"{"keys":[{"kty":"oct","kid":"k1","k":"c2VjcmV0"}]}"#.into()),
        postgres_cdc_default: Some("postgres_cdc_rls".into()),
        max_concurrent_users: Some(200),
        max_events_per_second: Some(100),
        max_presence_events_per_second: None,
        max_payload_size_in_kb: Some(3000),
        max_bytes_per_second: Some(100_000),
        max_channels_per_client: Some(100),
        max_joins_per_second: Some(100),
        max_client_presence_events_per_window: None,
        client_presence_window_ms: Some(5000),
        suspend: false,
        private_only: true,
        presence_enabled: false,
        // The column this server adds, as read once it has migrated.
        placement: Some("spread".into()),
        migrations_ran: 81,
        broadcast_adapter: Some("gen_rpc".into()),
        feature_flags: "{}".into(),
        gcm_migrated_at: None,
        inserted_at: "2026-12-07 07:25:00".into(),
        updated_at: "2026-12-07 07:26:00".into(),
        extensions: vec![ExtensionRow {
            id: "8f3a2c1e-0000-4000-8000-000000000002".into(),
            kind: "postgres".into(),
            settings: settings.to_string(),
            inserted_at: "2026-12-07 07:25:00".into(),
            updated_at: "2026-12-07 07:25:00".into(),
        }],
    }
}

fn defaults() -> TenantDefaults {
    TenantDefaults::from_config(&crate::config::Config::default())
}

#[test]
fn a_row_encrypted_by_openssl_and_node_decrypts_with_the_legacy_type_renamed() {
    let rec = TenantRecord::from_row(elixir_row(), &keys(false)).unwrap();
    assert_eq!(rec.jwt_secret.as_deref(), Some("secret-of-tenant-a"));
    let ext = &rec.extensions[0];
    assert_eq!(ext.kind, "postgres_cdc_rls");
    assert_eq!(ext.settings["db_host"], "db.example.internal");
    assert_eq!(ext.settings["db_port"], "6543");
    assert_eq!(ext.settings["db_name"], "postgres");
    assert_eq!(ext.settings["db_user"], "authenticator");
    assert_eq!(ext.settings["db_password"], "pa$$word");
    // Not a secret: stays as stored.
    assert_eq!(ext.settings["region"], "us-east-1");
    assert_eq!(rec.jwt_jwks.as_ref().unwrap()["keys"][0]["kid"], "k1");
    let mut gcm = elixir_row();
    gcm.jwt_secret = Some(GCM_JWT.into());
    let rec = TenantRecord::from_row(gcm, &keys(true)).unwrap();
    assert_eq!(rec.jwt_secret.as_deref(), Some("secret-of-tenant-a"));
}

#[test]
fn round_trips_under_both_ciphers_and_writes_the_cipher_the_keys_choose() {
    let rec = TenantRecord::from_row(elixir_row(), &keys(false)).unwrap();
    // Legacy writes are deterministic: the openssl vectors come back.
    let row = rec.to_row(&keys(false), || [7; 12]).unwrap();
    assert_eq!(row.jwt_secret.as_deref(), Some(ECB_JWT));
    let s: Value = serde_json::from_str(&row.extensions[0].settings).unwrap();
    assert_eq!(s["db_host"], ECB_HOST);
    assert_eq!(s["db_port"], ECB_PORT);
    assert_eq!(s["region"], "us-east-1");
    assert_eq!(row.extensions[0].kind, "postgres_cdc_rls");
    assert_eq!(TenantRecord::from_row(row, &keys(false)).unwrap(), rec);
    // GCM writes: every value sealed with its own nonce, all read back.
    let mut n = 0u8;
    let row = rec
        .to_row(&keys(true), || {
            n += 1;
            [n; 12]
        })
        .unwrap();
    assert_eq!(n, 6, "jwt_secret and the five db_* settings");
    assert!(crate::realtime::secrets::is_gcm(
        row.jwt_secret.as_deref().unwrap()
    ));
    let s: Value = serde_json::from_str(&row.extensions[0].settings).unwrap();
    for k in ENCRYPTED_SETTINGS {
        assert!(s[k].as_str().unwrap().starts_with("g1:"), "{k}: {}", s[k]);
    }
    assert_eq!(TenantRecord::from_row(row, &keys(false)).unwrap(), rec);
}

#[test]
fn a_value_that_fails_to_decrypt_names_the_tenant_and_the_field() {
    let mut row = elixir_row();
    row.jwt_secret = Some("bm90IGEgY2lwaGVydGV4dA==".into());
    let err = TenantRecord::from_row(row, &keys(false)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tenant \"tenant-a\": jwt_secret cannot be decrypted: the stored value is not a valid ciphertext"
    );
    // A GCM value under a server without the GCM key.
    let no_gcm = SecretKeys::new(Some(ECB_KEY), None, false).unwrap();
    let err = TenantRecord::from_row(elixir_row(), &no_gcm).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tenant \"tenant-a\": extension postgres_cdc_rls settings.db_password cannot be decrypted: \
         a value encrypted with AES-256-GCM needs DB_ENC_KEY_GCM"
    );
    let mut row = elixir_row();
    row.jwt_jwks = Some("{".into());
    let err = TenantRecord::from_row(row, &keys(false)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("tenant \"tenant-a\": jwt_jwks is not valid JSON"),
        "{err}"
    );
}

#[test]
fn placement_reads_and_writes_its_name_and_a_bad_one_names_tenant_and_value() {
    let rec = TenantRecord::from_row(elixir_row(), &keys(false)).unwrap();
    assert_eq!(rec.placement, Placement::Spread);
    let home = TenantRecord {
        placement: Placement::Home,
        ..rec
    };
    let row = home.to_row(&keys(false), || [0; 12]).unwrap();
    assert_eq!(row.placement.as_deref(), Some("home"));
    // A row from before the column (nothing read) is home; a name that is
    // not a placement is refused naming the tenant and the value.
    let bad = "tenant \"tenant-a\": placement \"Spread\" is not home or spread";
    for (stored, want) in [
        (None, Ok(Placement::Home)),
        (Some("Spread"), Err(bad.to_owned())),
    ] {
        let row = TenantRow {
            placement: stored.map(Into::into),
            ..elixir_row()
        };
        let got = TenantRecord::from_row(row, &keys(false));
        assert_eq!(got.map(|r| r.placement).map_err(|e| e.to_string()), want);
    }
}

#[test]
fn writing_without_a_key_for_the_write_cipher_is_an_error_not_plaintext() {
    let rec = TenantRecord::from_row(elixir_row(), &keys(false)).unwrap();
    let none = SecretKeys::new(None, None, false).unwrap();
    let err = rec.to_row(&none, || [0; 12]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tenant \"tenant-a\": jwt_secret cannot be encrypted: a value encrypted with AES-128-ECB needs DB_ENC_KEY"
    );
}

#[test]
fn view_renders_the_elixir_keys_never_the_secret_nor_the_password() {
    let row = elixir_row();
    let v = view(&row);
    let settings = json!({
        "db_host": ECB_HOST, "db_port": ECB_PORT, "db_name": ECB_NAME, "db_user": ECB_USER,
        "region": "us-east-1", "poll_interval_ms": 100, "publication": "supabase_realtime",
        "slot_name": "supabase_realtime_replication_slot", "ssl_enforced": false,
        "subcriber_pool_size": 3
    });
    assert_eq!(
        v,
        json!({
            "id": "8f3a2c1e-0000-4000-8000-000000000001",
            "external_id": "tenant-a",
            "name": "tenant-a",
            "max_concurrent_users": 200,
            "max_channels_per_client": 100,
            "max_events_per_second": 100,
            "max_joins_per_second": 100,
            "inserted_at": "2026-12-07T07:25:00",
            "extensions": [{
                "type": "postgres_cdc_rls",
                "settings": settings,
                "inserted_at": "2026-12-07T07:25:00",
                "updated_at": "2026-12-07T07:25:00"
            }],
            "private_only": true,
            "max_client_presence_events_per_window": null,
            "client_presence_window_ms": 5000,
            "presence_enabled": false,
            "placement": "spread"
        })
    );
    let text = v.to_string();
    assert!(
        !text.contains(ECB_JWT) && !text.contains("jwt_secret") && !text.contains(GCM_PASSWORD)
    );
}

#[test]
fn to_config_takes_keys_limits_switches_and_the_database_with_defaults_for_nulls() {
    let mut rec = TenantRecord::from_row(elixir_row(), &keys(false)).unwrap();
    rec.max_concurrent_users = None;
    rec.max_joins_per_second = Some(-5);
    rec.suspend = true;
    let d = defaults();
    let c = to_config(&rec, &d, ClaimValidators::default()).unwrap();
    assert_eq!(c.external_id, "tenant-a");
    assert_eq!(c.jwt.secret.as_deref(), Some("secret-of-tenant-a"));
    assert_eq!(c.jwt.jwks, rec.jwt_jwks);
    assert_eq!(c.limits.max_concurrent_users, d.max_concurrent_users);
    assert_eq!(
        c.limits.max_joins_per_second, 0,
        "a negative limit allows nothing"
    );
    assert_eq!(
        c.limits.max_presence_events_per_second,
        d.max_presence_events_per_second
    );
    assert_eq!(
        c.limits.client_presence_max_calls,
        d.client_presence_max_calls
    );
    assert_eq!(c.limits.client_presence_window_ms, 5000);
    assert_eq!(c.limits.max_topic_bytes, d.max_topic_bytes);
    assert!(c.suspended && c.private_only && !c.presence_enabled && c.has_database);
    assert_eq!(c.placement, Placement::Spread);
    assert_eq!(
        c.db,
        Some(TenantDb {
            host: "db.example.internal".into(),
            port: 6543,
            name: "postgres".into(),
            user: "authenticator".into(),
            password: "pa$$word".into(),
            publication: "supabase_realtime".into(),
            slot_name: "supabase_realtime_replication_slot".into(),
            ssl_enforced: false,
            region: Some("us-east-1".into()),
            db_pool: None,
            subscriber_pool_size: Some(3),
        })
    );
    rec.extensions[0]
        .settings
        .insert("db_port".into(), "65536".into());
    let err = to_config(&rec, &d, ClaimValidators::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tenant \"tenant-a\": db setting db_port \"65536\" is not a TCP port"
    );
    rec.extensions.clear();
    let c = to_config(&rec, &d, ClaimValidators::default()).unwrap();
    assert!(!c.has_database && c.db.is_none());
}

#[test]
fn the_seed_is_the_self_hosted_tenant_of_upstream_seeds() {
    let config = crate::config::Config {
        db_host: Some("db".into()),
        db_password: Some("your-super-secret".into()),
        ..Default::default()
    };
    let d = TenantDefaults::from_config(&config);
    let mut n = 0;
    let rec = seed_record(
        &config,
        &d,
        || {
            n += 1;
            format!("id-{n}")
        },
        "2026-12-07 07:25:00",
    );
    assert_eq!(rec.id, "id-1");
    assert_eq!(rec.external_id, "realtime-dev");
    assert_eq!(rec.name.as_deref(), Some("realtime-dev"));
    assert_eq!(
        rec.jwt_secret.as_deref(),
        Some(config.api_jwt_secret.as_str())
    );
    assert_eq!(rec.max_concurrent_users, Some(200));
    assert_eq!(rec.max_presence_events_per_second, Some(1000));
    assert_eq!(rec.broadcast_adapter.as_deref(), Some("gen_rpc"));
    let ext = &rec.extensions[0];
    assert_eq!(
        (ext.id.as_str(), ext.kind.as_str()),
        ("id-2", "postgres_cdc_rls")
    );
    assert_eq!(
        Value::Object(ext.settings.clone()),
        json!({
            "db_name": "postgres", "db_host": "db", "db_user": "supabase_admin",
            "db_password": "your-super-secret", "db_port": "5432", "region": "us-east-1",
            "poll_interval_ms": 100, "poll_max_changes": 100, "poll_max_record_bytes": 1_048_576,
            "publication": "supabase_realtime", "slot_name": "supabase_realtime_replication_slot",
            "ssl_enforced": false
        })
    );
    let c = to_config(&rec, &d, ClaimValidators::default()).unwrap();
    assert_eq!(c.db.unwrap().host, "db");
    // The self-hosted tenant is spread unless the setting says home.
    assert_eq!(c.placement, Placement::Spread);
    let home = crate::config::Config {
        self_host_tenant_placement: "home".into(),
        ..config
    };
    let rec = seed_record(&home, &d, String::new, "2026-12-07 07:25:00");
    assert_eq!(rec.placement, Placement::Home);
}
