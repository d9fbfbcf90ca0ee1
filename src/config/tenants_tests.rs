//! The config file's `[[tenants]]`: what a table becomes, each way it is
//! refused (naming the file, the table and the key), and how the other
//! layers reach its tenants.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::tenants::file_tenants;
use super::*;
use crate::realtime::auth::ClaimValidators;
use crate::realtime::tenant::record::{self, TenantDefaults, TenantRecord};
use crate::realtime::tenant::{Placement, TenantConfig};

const SECRET_A: &str = "tenant-a-secret-of-at-least-32-characters";

/// A TOML file removed when dropped.
struct File(PathBuf);

impl File {
    fn new(text: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "realtime-tenants-test-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Loads `toml` as the config file, with `env` and then `flags`.
fn load_with(toml: &str, env: &[(&str, &str)], flags: &[&str]) -> Result<Config, ConfigError> {
    let file = File::new(toml);
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let path = file.0.display().to_string();
    let args = ["realtime", "--config", path.as_str()]
        .into_iter()
        .chain(flags.iter().copied());
    load_from(args, &|name| env.get(name).cloned()).map(|l| l.config)
}

fn load(toml: &str) -> Result<Config, ConfigError> {
    load_with(toml, &[], &[])
}

/// The error of loading `toml`, checked to name the file, table `number`
/// (with `id` when given) and `field`; its text.
fn refused(toml: &str, number: Option<usize>, id: Option<&str>, field: &str) -> String {
    refused_with(toml, &[], number, id, field)
}

fn refused_with(
    toml: &str,
    env: &[(&str, &str)],
    number: Option<usize>,
    id: Option<&str>,
    field: &str,
) -> String {
    let err = load_with(toml, env, &[]).expect_err("refused");
    let text = err.to_string();
    match &err {
        ConfigError::Tenant {
            file,
            number: n,
            external_id,
            field: f,
            ..
        } => {
            let file = file.as_ref().expect("the file is named");
            assert!(text.contains(&file.display().to_string()), "{text}");
            assert_eq!(*n, number, "{text}");
            assert_eq!(external_id.as_deref(), id, "{text}");
            assert_eq!(f, field, "{text}");
        }
        other => panic!("expected a tenant error, got {other:?}"),
    }
    if let Some(n) = number {
        assert!(text.contains(&format!("[[tenants]] #{n}")), "{text}");
    }
    if let Some(id) = id {
        assert!(text.contains(&format!("{id:?}")), "{text}");
    }
    assert!(text.contains(&format!("`{field}`")), "{text}");
    text
}

/// A table for tenant `id` with `extra` lines.
fn table(id: &str, extra: &str) -> String {
    format!("[[tenants]]\nexternal_id = \"{id}\"\njwt_secret = \"{SECRET_A}\"\n{extra}\n")
}

const DB: &str = "db_host = \"127.0.0.1\"\ndb_port = 5432\ndb_name = \"postgres\"\n\
                  db_user = \"supabase_admin\"\ndb_password = \"pw\"\nssl_enforced = false";

fn runtime(config: &Config, rec: &TenantRecord) -> TenantConfig {
    record::to_config(
        rec,
        &TenantDefaults::from_config(config),
        ClaimValidators::default(),
    )
    .unwrap()
}

#[test]
fn two_tables_become_two_tenants_with_the_server_defaults_for_what_they_leave_out() {
    let toml = format!(
        "max_channels_per_client = 50\nprivate_only = true\nmax_payload_size_in_kb = 40\n\
         max_presence_events_per_second = 30\n\n{}\n{}\n{}",
        table(
            "acme",
            &format!("max_channels_per_client = 2\nsuspend = true\n{DB}")
        ),
        "[[tenants]]\nexternal_id = \"beta\"\n\
         jwt_jwks = { keys = [ { kty = \"oct\", k = \"c2VjcmV0\" } ] }\n\
         private_only = false\npresence_enabled = true\nmax_payload_size_in_kb = 7",
        table(
            "gamma",
            "jwt_jwks = '{\"keys\":[{\"kty\":\"oct\",\"k\":\"eA\"}]}'"
        ),
    );
    let config = load(&toml).unwrap();
    let recs = file_tenants(&config).unwrap();
    let ids: Vec<_> = recs.iter().map(|r| r.external_id.as_str()).collect();
    assert_eq!(ids, ["acme", "beta", "gamma"]);

    let acme = runtime(&config, &recs[0]);
    assert_eq!(acme.jwt.secret.as_deref(), Some(SECRET_A));
    assert_eq!(acme.limits.max_channels_per_client, 2);
    assert!(acme.suspended);
    assert!(acme.private_only, "left out: the server-wide private_only");
    let db = acme.db.expect("a database");
    assert_eq!(
        (
            db.host.as_str(),
            db.port,
            db.name.as_str(),
            db.user.as_str()
        ),
        ("127.0.0.1", 5432, "postgres", "supabase_admin")
    );
    assert_eq!(db.password, "pw");
    assert!(!db.ssl_enforced);
    assert_eq!(
        (db.publication.as_str(), db.slot_name.as_str()),
        (record::DEFAULT_PUBLICATION, record::DEFAULT_SLOT)
    );
    assert!(acme.has_database);

    let beta = runtime(&config, &recs[1]);
    assert_eq!(beta.jwt.secret, None);
    assert_eq!(
        beta.jwt.jwks,
        Some(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}))
    );
    assert!(!beta.private_only && beta.presence_enabled && !beta.suspended);
    assert_eq!(beta.limits.max_payload_size_in_kb, 7);
    assert_eq!(
        beta.limits.max_channels_per_client, 50,
        "left out: the file's server-wide default"
    );
    assert!(beta.db.is_none() && !beta.has_database);
    // Every limit left out is the server's, not the record's column
    // default (3000 kB, 1000 presence events/s).
    let d = &config;
    assert_eq!(
        (
            beta.limits.max_concurrent_users,
            beta.limits.max_events_per_second,
            beta.limits.max_presence_events_per_second,
            beta.limits.max_joins_per_second,
            beta.limits.client_presence_max_calls,
            beta.limits.client_presence_window_ms,
        ),
        (
            d.max_concurrent_users,
            d.max_events_per_second,
            d.max_presence_events_per_second,
            d.max_joins_per_second,
            d.client_presence_max_calls,
            d.client_presence_window_ms,
        )
    );
    let gamma = runtime(&config, &recs[2]);
    // The two limits whose record column defaults (3000 kB, 1000/s) are
    // not read from the server's settings take the server's too.
    assert_eq!(
        (
            gamma.limits.max_payload_size_in_kb,
            gamma.limits.max_presence_events_per_second
        ),
        (40, 30)
    );
    assert_eq!(
        gamma.jwt.jwks,
        Some(json!({"keys": [{"kty": "oct", "k": "eA"}]})),
        "JSON text, as API_JWT_JWKS takes it"
    );
}

#[test]
fn the_environment_and_flags_set_the_defaults_file_tenants_leave_out() {
    let toml = format!(
        "max_channels_per_client = 50\nmax_joins_per_second = 40\n\n{}{}",
        table("acme", "max_channels_per_client = 2"),
        table("beta", "")
    );
    let env = [
        ("TENANT_MAX_CHANNELS_PER_CLIENT", "9"),
        ("TENANT_MAX_JOINS_PER_SECOND", "8"),
        ("TENANT_PRESENCE_ENABLED", "true"),
    ];
    let config = load_with(&toml, &env, &["--max-joins-per-second", "7"]).unwrap();
    let recs = file_tenants(&config).unwrap();
    let (acme, beta) = (runtime(&config, &recs[0]), runtime(&config, &recs[1]));
    // A tenant's own value is the tenant's: the server-wide layers set
    // only the defaults.
    assert_eq!(acme.limits.max_channels_per_client, 2);
    // The file's server-wide value < environment < flag.
    assert_eq!(beta.limits.max_channels_per_client, 9);
    assert_eq!(
        (
            acme.limits.max_joins_per_second,
            beta.limits.max_joins_per_second
        ),
        (7, 7)
    );
    assert!(acme.presence_enabled && beta.presence_enabled);
}

#[test]
fn unknown_keys_are_refused_naming_the_key_and_the_tenant() {
    let toml = format!(
        "{}{}",
        table("acme", ""),
        table("beta", "max_chanels_per_client = 2")
    );
    let text = refused(&toml, Some(2), Some("beta"), "max_chanels_per_client");
    assert!(text.contains("is unknown"), "{text}");
    assert!(
        text.contains("max_channels_per_client"),
        "lists the keys: {text}"
    );
    // Admin API keys without effect here, and extension settings unused.
    for key in ["name = \"x\"", "poll_interval_ms = 100", "extensions = []"] {
        let field = key.split(' ').next().unwrap();
        refused(&table("acme", key), Some(1), Some("acme"), field);
    }
}

#[test]
fn the_external_id_is_required_and_must_be_a_host_label() {
    let text = refused(
        &format!("[[tenants]]\njwt_secret = \"{SECRET_A}\""),
        Some(1),
        None,
        "external_id",
    );
    assert!(text.contains("can't be blank"), "{text}");
    for bad in ["Acme", "a.b", "a b", ""] {
        let text = load(&table(bad, "")).unwrap_err().to_string();
        assert!(text.contains("`external_id`"), "{bad:?}: {text}");
    }
    let text = refused(&table("Acme", ""), Some(1), Some("Acme"), "external_id");
    assert!(
        text.contains(crate::realtime::tenant::params::NOT_A_HOST_LABEL),
        "{text}"
    );
    refused(
        "[[tenants]]\nexternal_id = 5\njwt_secret = \"x\"",
        Some(1),
        None,
        "external_id",
    );
}

#[test]
fn a_tenant_needs_a_secret_or_a_jwks_with_keys() {
    let text = refused(
        "[[tenants]]\nexternal_id = \"acme\"",
        Some(1),
        Some("acme"),
        "jwt_secret",
    );
    assert!(
        text.contains("either jwt_secret or jwt_jwks must be provided"),
        "{text}"
    );
    refused(
        "[[tenants]]\nexternal_id = \"acme\"\njwt_secret = \"\"",
        Some(1),
        Some("acme"),
        "jwt_secret",
    );
    let text = refused(
        "[[tenants]]\nexternal_id = \"acme\"\njwt_jwks = { keys = [] }",
        Some(1),
        Some("acme"),
        "jwt_jwks",
    );
    assert!(text.contains("no token could be verified"), "{text}");
    // With a secret, an empty JWKS is allowed (as API_JWT_JWKS is).
    load(&table("acme", "jwt_jwks = { keys = [] }")).unwrap();
}

#[test]
fn a_jwks_is_checked_as_api_jwt_jwks_is() {
    for (jwks, says) in [
        ("{ kty = \"oct\" }", "{\"keys\":[...]}"),
        ("{ keys = [ { k = \"eA\" } ] }", "keys[0]"),
        ("'{\"keys\": ['", "is not valid JSON"),
        ("[1, 2]", "{\"keys\":[...]}"),
    ] {
        let text = refused(
            &table("acme", &format!("jwt_jwks = {jwks}")),
            Some(1),
            Some("acme"),
            "jwt_jwks",
        );
        assert!(text.contains(says), "{jwks}: {text}");
    }
}

#[test]
fn limits_must_be_whole_numbers_from_one() {
    for (line, says) in [
        ("max_channels_per_client = 0", "must be greater than 0"),
        ("max_joins_per_second = -3", "must be greater than 0"),
        ("max_events_per_second = 1.5", "is invalid"),
        ("max_concurrent_users = \"many\"", "is invalid"),
        ("max_payload_size_in_kb = 4294967296", "is invalid"),
        ("client_presence_window_ms = 1979-05-27", "is invalid"),
        ("private_only = \"maybe\"", "is invalid"),
        ("suspend = 2", "is invalid"),
    ] {
        let field = line.split(' ').next().unwrap();
        let text = refused(&table("acme", line), Some(1), Some("acme"), field);
        assert!(text.contains(says), "{line}: {text}");
    }
    // Digit strings are numbers, as the admin API casts them.
    let config = load(&table("acme", "max_channels_per_client = \"3\"")).unwrap();
    let rec = &file_tenants(&config).unwrap()[0];
    assert_eq!(runtime(&config, rec).limits.max_channels_per_client, 3);
}

#[test]
fn a_database_needs_its_five_connection_settings() {
    for missing in ["db_host", "db_port", "db_name", "db_user", "db_password"] {
        let lines: Vec<&str> = DB.lines().filter(|l| !l.starts_with(missing)).collect();
        let text = refused(
            &table("acme", &lines.join("\n")),
            Some(1),
            Some("acme"),
            missing,
        );
        assert!(text.contains("can't be blank"), "{text}");
    }
    // Any database key asks for a database.
    let text = refused(
        &table("acme", "slot_name = \"acme_slot\""),
        Some(1),
        Some("acme"),
        "db_password",
    );
    assert!(text.contains("db_host, db_port"), "{text}");
    for (line, field, says) in [
        ("db_port = 0", "db_port", "TCP port"),
        ("db_port = 70000", "db_port", "TCP port"),
        ("db_port = \"x\"", "db_port", "TCP port"),
        ("ssl_enforced = \"no\"", "ssl_enforced", "true or false"),
        (
            "slot_name = \"Bad-Slot\"",
            "slot_name",
            "Postgres slot name",
        ),
        ("publication = \"\"", "publication", "non-empty"),
        ("db_host = 5", "db_host", "is invalid"),
    ] {
        let field_line = line.split(' ').next().unwrap();
        let rest: Vec<&str> = DB.lines().filter(|l| !l.starts_with(field_line)).collect();
        let text = refused(
            &table("acme", &format!("{}\n{line}", rest.join("\n"))),
            Some(1),
            Some("acme"),
            field,
        );
        assert!(text.contains(says), "{line}: {text}");
    }
    // The port as text, a publication and slot of its own.
    let ok = DB.replace("db_port = 5432", "db_port = \"6543\"");
    let config = load(&table(
        "acme",
        &format!("{ok}\npublication = \"pub_a\"\nslot_name = \"slot_a\"\nregion = \"eu\""),
    ))
    .unwrap();
    let db = runtime(&config, &file_tenants(&config).unwrap()[0])
        .db
        .unwrap();
    assert_eq!(
        (
            db.port,
            db.publication.as_str(),
            db.slot_name.as_str(),
            db.region.as_deref()
        ),
        (6543, "pub_a", "slot_a", Some("eu"))
    );
}

#[test]
fn external_ids_are_unique_and_not_the_environments_tenant() {
    let toml = format!(
        "{}{}{}",
        table("acme", ""),
        table("beta", ""),
        table("acme", "")
    );
    let text = refused(&toml, Some(3), Some("acme"), "external_id");
    assert!(text.contains("[[tenants]] #1"), "{text}");

    let text = refused(
        &table("realtime-dev", ""),
        Some(1),
        Some("realtime-dev"),
        "external_id",
    );
    assert!(text.contains("SELF_HOST_TENANT_NAME"), "{text}");
    // The environment's tenant is named after every layer.
    refused_with(
        &table("acme", ""),
        &[("SELF_HOST_TENANT_NAME", "acme")],
        Some(1),
        Some("acme"),
        "external_id",
    );
    load_with(
        &format!("self_host_tenant_name = \"acme\"\n{}", table("acme", "")),
        &[("SELF_HOST_TENANT_NAME", "home")],
        &[],
    )
    .unwrap();
}

#[test]
fn two_tenants_on_one_database_need_their_own_slots() {
    let toml = format!("{}{}", table("acme", DB), table("beta", DB));
    let text = refused(&toml, Some(2), Some("beta"), "slot_name");
    assert!(text.contains("[[tenants]] #1 (\"acme\")"), "{text}");
    let toml = format!(
        "{}{}",
        table("acme", DB),
        table("beta", &format!("{DB}\nslot_name = \"beta_slot\""))
    );
    load(&toml).unwrap();
    // The environment's tenant streams with the default slot too.
    let text = refused_with(
        &table("acme", DB),
        &[("DB_HOST", "127.0.0.1")],
        Some(1),
        Some("acme"),
        "slot_name",
    );
    assert!(text.contains("environment's tenant"), "{text}");
    load_with(
        &table("acme", DB),
        &[("DB_HOST", "127.0.0.1"), ("DB_NAME", "other")],
        &[],
    )
    .unwrap();
}

#[test]
fn a_control_database_refuses_tenants_from_the_file() {
    let env = [
        ("CONTROL_DB", "true"),
        ("DB_HOST", "db"),
        ("DB_ENC_KEY", "0123456789abcdef"),
    ];
    let text = refused_with(&table("acme", ""), &env, None, None, "control_db");
    assert!(text.contains("admin API"), "{text}");
    let env = [
        ("SEED_SELF_HOST", "true"),
        ("DB_HOST", "db"),
        ("DB_ENC_KEY", "0123456789abcdef"),
    ];
    refused_with(&table("acme", ""), &env, None, None, "seed_self_host");
    // Without tables a control database is fine.
    load_with("", &env, &[]).unwrap();
}

#[test]
fn check_output_hides_tenant_secrets_and_loads_back() {
    let toml = format!(
        "{}[[tenants]]\nexternal_id = \"beta\"\n\
         jwt_jwks = {{ keys = [ {{ kty = \"oct\", k = \"c2VjcmV0\", kid = \"k1\" }} ] }}\n",
        table("acme", DB)
    );
    let config = load(&toml).unwrap();
    let out = config.to_toml();
    for secret in [SECRET_A, "\"pw\"", "c2VjcmV0"] {
        assert!(!out.contains(secret), "{secret} shown:\n{out}");
        assert!(!format!("{config:?}").contains(secret), "{secret} in Debug");
    }
    assert!(out.contains("[[tenants]]"), "{out}");
    assert!(out.contains("external_id = \"acme\""), "{out}");
    assert!(out.contains("k1"), "public JWKS members stay: {out}");
    let back = load(&out).unwrap();
    assert_eq!(back.tenants.len(), 2);
    assert_eq!(back.to_toml(), out);
    // Without tables nothing is printed for them.
    assert!(!Config::default().to_toml().contains("tenants"));
}

#[test]
fn placement_is_home_unless_spread_and_a_bad_one_is_named() {
    let toml = format!(
        "{}{}",
        table("acme", "placement = \"spread\""),
        table("beta", "")
    );
    let config = load(&toml).unwrap();
    let recs = file_tenants(&config).unwrap();
    assert_eq!(runtime(&config, &recs[0]).placement, Placement::Spread);
    assert_eq!(
        runtime(&config, &recs[1]).placement,
        Placement::Home,
        "left out: home"
    );
    // The environment's tenant's placement is its own.
    let config = load_with(
        &table("beta", ""),
        &[("SELF_HOST_TENANT_PLACEMENT", "spread")],
        &[],
    )
    .unwrap();
    assert_eq!(
        runtime(&config, &file_tenants(&config).unwrap()[0]).placement,
        Placement::Home
    );
    for (line, value) in [
        ("placement = \"everywhere\"", "\"everywhere\""),
        ("placement = \"Spread\"", "\"Spread\""),
        ("placement = 2", "2"),
    ] {
        let toml = format!("{}{}", table("acme", ""), table("beta", line));
        let text = refused(&toml, Some(2), Some("beta"), "placement");
        assert!(
            text.ends_with(&format!(
                "`placement`: {value} is not a placement: home or spread"
            )),
            "{line}: {text}"
        );
    }
}
