use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use serde_json::json;

use super::*;

/// A fake environment from pairs.
fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// A TOML file removed when dropped.
struct TempToml(PathBuf);

impl TempToml {
    fn new(text: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "realtime-config-test-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn load_args(args: &[&str], env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    load_from(std::iter::once("realtime").chain(args.iter().copied()), env)
}

fn invalid_field(config: &Config) -> &'static str {
    match config.validate() {
        Err(ConfigError::Invalid { field, env, .. }) => {
            assert!(!env.is_empty(), "field {field} has no env var");
            field
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::default();
    assert_eq!(c.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(c.port, 4000);
    assert_eq!(c.shards, 0);
    assert_eq!(c.api_jwt_secret, DEV_JWT_SECRET);
    assert!(c.uses_dev_jwt_secret());
    assert_eq!(c.api_jwt_jwks, None);
    assert_eq!(c.jwt_claim_validators, "{}");
    assert_eq!(c.self_host_tenant_name, "realtime-dev");
    assert_eq!(
        (c.connect_error_backoff_ms, c.channel_error_backoff_ms),
        (2000, 5000)
    );
    assert_eq!(
        (c.max_concurrent_users, c.max_events_per_second),
        (200, 100)
    );
    assert_eq!(
        (c.max_presence_events_per_second, c.max_payload_size_in_kb),
        (1000, 3000)
    );
    assert_eq!(
        (c.max_channels_per_client, c.max_joins_per_second),
        (100, 100)
    );
    assert_eq!(
        (
            c.max_topic_bytes,
            c.max_presence_meta_bytes,
            c.max_presence_bytes_per_client
        ),
        (255, 65_536, 1_048_576)
    );
    assert!(!c.presence_enabled && !c.private_only);
    assert_eq!(
        (c.client_presence_max_calls, c.client_presence_window_ms),
        (5, 30_000)
    );
    assert_eq!((c.max_frame_size, c.idle_timeout_ms), (5_000_000, 60_000));
    assert_eq!(
        (c.socket_queue_bytes, c.rest_queue_wait_ms),
        (4 << 20, 5000)
    );
    assert_eq!(
        (c.no_channel_timeout_ms, c.shutdown_drain_ms),
        (600_000, 5000)
    );
    assert_eq!(c.metrics_jwt_secret, None);
    assert_eq!(c.log_level, "info");
    c.validate().expect("defaults validate");
}

#[test]
fn env_table_has_a_row_per_field_and_matching_defaults() {
    // Every serialized field, with all options set so none is skipped.
    let full = Config {
        api_jwt_secret_next: Some("n".into()),
        api_jwt_jwks: Some(json!({"keys": []})),
        metrics_jwt_secret: Some("m".into()),
        db_host: Some("h".into()),
        db_password: Some("p".into()),
        db_ssl_root_cert: Some("ca.pem".into()),
        db_enc_key: Some("0123456789abcdef".into()),
        db_enc_key_gcm: Some("0123456789abcdef0123456789abcdef".into()),
        db_after_connect_query: Some("select 1".into()),
        ..Config::default()
    };
    let fields: HashSet<String> = match serde_json::to_value(&full).unwrap() {
        Value::Object(map) => map.keys().cloned().collect(),
        _ => unreachable!(),
    };
    let table_fields: HashSet<String> = env_table().iter().map(|r| r.1.to_owned()).collect();
    assert_eq!(fields, table_fields);
    assert_eq!(env_table().len(), fields.len(), "a field has two rows");

    let envs: HashSet<&str> = env_table().iter().map(|r| r.0).collect();
    assert_eq!(envs.len(), env_table().len(), "an env var is used twice");

    assert_eq!(defaults_not_matching_table(), Vec::<&str>::new());
}

#[test]
fn every_field_has_a_kebab_case_flag() {
    let cmd = command();
    let longs: HashSet<&str> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
    for (_, field, _) in env_table() {
        let flag = field.replace('_', "-");
        assert!(longs.contains(flag.as_str()), "no --{flag}");
    }
    for flag in ["port", "bind", "shards", "config", "check"] {
        assert!(longs.contains(flag), "no --{flag}");
    }
    cmd.debug_assert();
}

#[test]
fn every_env_var_is_read() {
    for (var, field, _) in env_table() {
        let env = env_of(&[(var, "%%not-a-valid-value%%")]);
        match load_args(&[], &env) {
            Err(ConfigError::Env { var: v, .. }) => assert_eq!(v, *var),
            Err(ConfigError::Invalid { env: v, .. }) => assert_eq!(v, *var),
            Ok(loaded) => assert_ne!(loaded.config, Config::default(), "{field}"),
            Err(e) => panic!("{var}: unexpected {e}"),
        }
    }
}

#[test]
fn toml_overrides_defaults() {
    let file = TempToml::new("port = 5000\nbind = \"0.0.0.0\"\nprivate_only = true\n");
    let c = load_args(&["--config", &file.arg()], &no_env)
        .unwrap()
        .config;
    assert_eq!(c.port, 5000);
    assert_eq!(c.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert!(c.private_only);
    assert_eq!(
        c.max_joins_per_second, 100,
        "untouched field keeps its default"
    );
}

#[test]
fn env_overrides_toml() {
    let file = TempToml::new("port = 5000\nshards = 2\n");
    let env = env_of(&[("PORT", "6000")]);
    let c = load_args(&["--config", &file.arg()], &env).unwrap().config;
    assert_eq!(c.port, 6000);
    assert_eq!(c.shards, 2, "TOML value survives when env does not set it");
}

#[test]
fn cli_overrides_env() {
    let env = env_of(&[("PORT", "6000"), ("SHARDS", "3")]);
    let c = load_args(&["--port", "7000"], &env).unwrap().config;
    assert_eq!(c.port, 7000);
    assert_eq!(c.shards, 3);
}

#[test]
fn each_layer_overrides_the_previous_one() {
    let file = TempToml::new(
        "max_joins_per_second = 1\nmax_events_per_second = 1\nmax_channels_per_client = 1\n",
    );
    let env = env_of(&[
        ("TENANT_MAX_EVENTS_PER_SECOND", "2"),
        ("TENANT_MAX_CHANNELS_PER_CLIENT", "2"),
    ]);
    let c = load_args(
        &["--config", &file.arg(), "--max-channels-per-client", "3"],
        &env,
    )
    .unwrap()
    .config;
    assert_eq!(c.max_concurrent_users, 200, "default");
    assert_eq!(c.max_joins_per_second, 1, "toml");
    assert_eq!(c.max_events_per_second, 2, "env");
    assert_eq!(c.max_channels_per_client, 3, "cli");
}

#[test]
fn elixir_env_names_are_honoured() {
    let env = env_of(&[
        ("TENANT_MAX_CONCURRENT_USERS", "11"),
        ("TENANT_MAX_JOINS_PER_SECOND", "12"),
        ("CLIENT_PRESENCE_MAX_CALLS", "13"),
        ("CLIENT_PRESENCE_WINDOW_MS", "14"),
        ("NO_CHANNEL_TIMEOUT_IN_MS", "15"),
        ("CONNECT_ERROR_BACKOFF_MS", "0"),
        ("CHANNEL_ERROR_BACKOFF_MS", "0"),
        ("SELF_HOST_TENANT_NAME", "local"),
        ("JWT_CLAIM_VALIDATORS", r#"{"iss":"supabase"}"#),
        (
            "API_JWT_JWKS",
            r#"{"keys":[{"kty":"oct","kid":"a","k":"c2VjcmV0"}]}"#,
        ),
        ("API_TOKEN_BLOCKLIST", " a , b,,"),
        ("METRICS_JWT_SECRET", "m"),
        ("LOG_LEVEL", "warning"),
    ]);
    let c = load_args(&[], &env).unwrap().config;
    assert_eq!(c.max_concurrent_users, 11);
    assert_eq!(c.max_joins_per_second, 12);
    assert_eq!(c.client_presence_max_calls, 13);
    assert_eq!(c.client_presence_window_ms, 14);
    assert_eq!(c.no_channel_timeout_ms, 15);
    assert_eq!(
        (c.connect_error_backoff_ms, c.channel_error_backoff_ms),
        (0, 0)
    );
    assert_eq!(c.self_host_tenant_name, "local");
    assert_eq!(c.claim_validators().unwrap()["iss"], "supabase");
    assert_eq!(c.api_jwt_jwks.as_ref().unwrap()["keys"][0]["kid"], "a");
    assert_eq!(c.api_token_blocklist, ["a", "b"]);
    assert_eq!(c.metrics_jwt_secret.as_deref(), Some("m"));
    assert_eq!(c.tracing_level(), "warn");
}

#[test]
fn bad_env_value_names_variable_and_value() {
    let err = load_args(&[], &env_of(&[("PORT", "40o0")])).unwrap_err();
    match &err {
        ConfigError::Env { var, value, .. } => assert_eq!((*var, value.as_str()), ("PORT", "40o0")),
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("PORT") && text.contains("40o0"), "{text}");

    for (var, bad) in [
        ("BIND_ADDR", "localhost"),
        ("TENANT_PRIVATE_ONLY", "yes"),
        ("SHARDS", "-1"),
        ("PORT", "70000"),
        ("CLIENT_PRESENCE_MAX_CALLS", ""),
    ] {
        match load_args(&[], &env_of(&[(var, bad)])) {
            Err(ConfigError::Env { var: v, value, .. }) => {
                assert_eq!((v, value.as_str()), (var, bad))
            }
            other => panic!("{var}={bad:?}: {other:?}"),
        }
    }
}

#[test]
fn bad_secret_env_value_is_not_echoed() {
    let err = load_args(&[], &env_of(&[("API_JWT_JWKS", "{\"k\":\"topsecret\"")])).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("API_JWT_JWKS"), "{text}");
    assert!(!text.contains("topsecret"), "{text}");
}

#[test]
fn booleans_accept_elixir_spellings() {
    for (text, want) in [
        ("true", true),
        ("TRUE", true),
        ("1", true),
        ("false", false),
        ("0", false),
    ] {
        let c = load_args(&[], &env_of(&[("TENANT_PRESENCE_ENABLED", text)]))
            .unwrap()
            .config;
        assert_eq!(c.presence_enabled, want, "{text}");
    }
}

#[test]
fn bool_flag_without_value_means_true() {
    let c = load_args(&["--private-only"], &no_env).unwrap().config;
    assert!(c.private_only);
    let env = env_of(&[("TENANT_PRIVATE_ONLY", "true")]);
    let c = load_args(&["--private-only", "false"], &env)
        .unwrap()
        .config;
    assert!(!c.private_only);
}

#[test]
fn bad_flag_value_names_the_flag() {
    match load_args(&["--max-frame-size", "big"], &no_env) {
        Err(ConfigError::Flag { flag, value, .. }) => {
            assert_eq!((flag.as_str(), value.as_str()), ("max-frame-size", "big"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        load_args(&["--no-such-flag"], &no_env),
        Err(ConfigError::Cli(_))
    ));
}

#[test]
fn unknown_toml_key_is_an_error() {
    let file = TempToml::new("port = 4001\nmax_frame_sise = 10\n");
    match load_args(&["--config", &file.arg()], &no_env) {
        Err(e @ ConfigError::ParseFile { .. }) => {
            assert!(e.to_string().contains("max_frame_sise"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn toml_type_errors_and_missing_files_are_errors() {
    let file = TempToml::new("port = \"http\"\n");
    assert!(matches!(
        load_args(&["--config", &file.arg()], &no_env),
        Err(ConfigError::ParseFile { .. })
    ));
    assert!(matches!(
        load_args(&["--config", "/nonexistent/realtime.toml"], &no_env),
        Err(ConfigError::ReadFile { .. })
    ));
}

#[test]
fn jwks_in_toml_as_table_or_json_string() {
    let table =
        TempToml::new("[api_jwt_jwks]\nkeys = [{ kty = \"oct\", kid = \"a\", k = \"eA\" }]\n");
    let string = TempToml::new(
        "api_jwt_jwks = '{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"eA\"}]}'\n",
    );
    let a = load_args(&["--config", &table.arg()], &no_env)
        .unwrap()
        .config;
    let b = load_args(&["--config", &string.arg()], &no_env)
        .unwrap()
        .config;
    assert_eq!(a.api_jwt_jwks, b.api_jwt_jwks);
    assert_eq!(a.api_jwt_jwks.unwrap()["keys"][0]["k"], "eA");
}

#[test]
fn check_flag_is_parsed() {
    assert!(!load_args(&[], &no_env).unwrap().check_only);
    let loaded = load_args(&["--check", "--port", "4100"], &no_env).unwrap();
    assert!(loaded.check_only);
    assert_eq!(loaded.config.port, 4100);
    // An invalid configuration fails --check too.
    assert!(matches!(
        load_args(&["--check", "--port", "0"], &no_env),
        Err(ConfigError::Invalid { field: "port", .. })
    ));
}

#[test]
fn help_and_version_come_back_as_clap_errors() {
    for flag in ["--help", "--version"] {
        match load_args(&[flag], &no_env) {
            Err(ConfigError::Cli(e)) => assert_eq!(e.exit_code(), 0, "{flag}"),
            other => panic!("{flag}: {other:?}"),
        }
    }
    let help = command().render_help().to_string();
    assert!(
        help.contains("[env: TENANT_MAX_JOINS_PER_SECOND]"),
        "{help}"
    );
}

#[test]
fn validate_refuses_nonsense() {
    type Breaker = fn(&mut Config);
    let cases: &[(&str, Breaker)] = &[
        ("port", |c| c.port = 0),
        ("shards", |c| c.shards = MAX_SHARDS + 1),
        ("api_jwt_secret", |c| c.api_jwt_secret.clear()),
        ("api_jwt_secret_next", |c| {
            c.api_jwt_secret_next = Some(String::new())
        }),
        ("api_jwt_jwks", |c| c.api_jwt_jwks = Some(json!([1]))),
        ("api_jwt_jwks", |c| {
            c.api_jwt_jwks = Some(json!({"keys": [{"kid": "x"}]}))
        }),
        ("jwt_claim_validators", |c| {
            c.jwt_claim_validators = "[]".into()
        }),
        ("jwt_claim_validators", |c| {
            c.jwt_claim_validators = "{".into()
        }),
        ("self_host_tenant_name", |c| c.self_host_tenant_name.clear()),
        ("self_host_tenant_name", |c| {
            c.self_host_tenant_name = "a.b".into()
        }),
        ("self_host_tenant_placement", |c| {
            c.self_host_tenant_placement = "Home".into()
        }),
        ("self_host_tenant_placement", |c| {
            c.self_host_tenant_placement.clear()
        }),
        ("accept_backoff_max_ms", |c| c.accept_backoff_max_ms = 0),
        ("db_enc_key", |c| {
            c.db_enc_key = Some("supabaserealtim".into())
        }),
        ("db_enc_key_gcm", |c| {
            c.db_enc_key_gcm = Some("0123456789abcdef".into())
        }),
        ("db_check_connections", |c| c.db_check_connections = 0),
        ("connect_error_backoff_ms", |c| {
            c.connect_error_backoff_ms = MAX_DURATION_MS + 1
        }),
        ("max_concurrent_users", |c| c.max_concurrent_users = 0),
        ("max_events_per_second", |c| c.max_events_per_second = 0),
        ("max_presence_events_per_second", |c| {
            c.max_presence_events_per_second = 0
        }),
        ("max_payload_size_in_kb", |c| c.max_payload_size_in_kb = 0),
        ("max_channels_per_client", |c| c.max_channels_per_client = 0),
        ("max_topic_bytes", |c| c.max_topic_bytes = 9),
        ("max_presence_meta_bytes", |c| c.max_presence_meta_bytes = 0),
        ("max_presence_bytes_per_client", |c| {
            c.max_presence_bytes_per_client = 0
        }),
        ("max_joins_per_second", |c| {
            c.max_joins_per_second = MAX_LIMIT + 1
        }),
        ("client_presence_max_calls", |c| {
            c.client_presence_max_calls = 0
        }),
        ("client_presence_window_ms", |c| {
            c.client_presence_window_ms = 0
        }),
        ("max_frame_size", |c| c.max_frame_size = 1023),
        ("max_frame_size", |c| {
            c.max_frame_size = MAX_BUFFER_BYTES + 1
        }),
        ("max_header_length", |c| c.max_header_length = 100),
        ("request_head_timeout_ms", |c| c.request_head_timeout_ms = 0),
        ("idle_timeout_ms", |c| c.idle_timeout_ms = 0),
        ("socket_queue_bytes", |c| {
            c.socket_queue_bytes = 3_000_000 - 1
        }),
        ("rest_queue_wait_ms", |c| c.rest_queue_wait_ms = u64::MAX),
        ("no_channel_timeout_ms", |c| c.no_channel_timeout_ms = 0),
        ("shutdown_drain_ms", |c| c.shutdown_drain_ms = u64::MAX),
        ("metrics_jwt_secret", |c| {
            c.metrics_jwt_secret = Some(String::new())
        }),
        ("log_level", |c| c.log_level = "verbose".into()),
    ];
    for (field, breaker) in cases {
        let mut c = Config::default();
        breaker(&mut c);
        assert_eq!(invalid_field(&c), *field);
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains(field), "{msg}");
    }
}

#[test]
fn validate_accepts_edge_values() {
    let mut c = Config::default();
    c.api_jwt_secret.clear();
    c.api_jwt_jwks = Some(json!({"keys": [{"kty": "RSA", "kid": "k1", "n": "x", "e": "AQAB"}]}));
    c.max_frame_size = MIN_FRAME_SIZE;
    c.socket_queue_bytes = 3_000_000;
    c.connect_error_backoff_ms = 0;
    c.channel_error_backoff_ms = 0;
    c.shutdown_drain_ms = 0;
    c.log_level = "EMERGENCY".into();
    c.validate().unwrap();
    assert_eq!(c.tracing_level(), "error");
}

#[test]
fn nr_shards_resolves_zero() {
    let mut c = Config::default();
    assert!(c.nr_shards() >= 1);
    c.shards = 3;
    assert_eq!(c.nr_shards(), 3);
}

#[test]
fn to_toml_redacts_secrets_and_loads_back() {
    let c = Config {
        api_jwt_secret: "very-SEKRIT-secret".into(),
        api_jwt_secret_next: Some("next-SEKRIT".into()),
        api_jwt_jwks: Some(json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "oct-SEKRIT"},
            {"kty": "EC", "kid": "e", "x": "pub-x", "y": "pub-y", "d": "ec-SEKRIT", "crv": "P-256"},
            {"kty": "RSA", "kid": "r", "n": "pub-n", "e": "AQAB", "x5c": null},
        ]})),
        api_token_blocklist: vec!["blocked-SEKRIT".into()],
        metrics_jwt_secret: Some("metrics-SEKRIT".into()),
        ..Config::default()
    };
    let text = c.to_toml();
    assert!(!text.contains("SEKRIT"), "{text}");
    assert!(
        text.contains("pub-x") && text.contains("<redacted>"),
        "{text}"
    );
    for shown in [format!("{c:?}"), c.to_toml()] {
        assert!(!shown.contains("SEKRIT"), "{shown}");
    }

    let file = TempToml::new(&text);
    let back = load_args(&["--config", &file.arg()], &no_env)
        .unwrap()
        .config;
    assert_eq!(back, c.redacted());
}

#[test]
fn to_toml_of_defaults_round_trips_and_shows_dev_secret() {
    let text = Config::default().to_toml();
    assert!(text.contains(DEV_JWT_SECRET), "{text}");
    assert!(
        !text.contains("api_jwt_jwks"),
        "unset options are omitted: {text}"
    );
    let back: Config = toml::from_str(&text).unwrap();
    assert_eq!(back, Config::default());
}

proptest! {
    #[test]
    fn to_toml_round_trips(
        port in 1u16..,
        shards in 0usize..=MAX_SHARDS,
        limits in proptest::array::uniform7(1u64..=MAX_LIMIT),
        ms in proptest::array::uniform6(0u64..=MAX_DURATION_MS),
        frame in MIN_FRAME_SIZE..=MAX_BUFFER_BYTES,
        presence_enabled: bool,
        tenant in "[a-z0-9_-]{1,20}",
    ) {
        let c = Config {
            port,
            shards,
            max_concurrent_users: limits[0],
            max_events_per_second: limits[1],
            max_presence_events_per_second: limits[2],
            max_payload_size_in_kb: limits[3],
            max_bytes_per_second: limits[4],
            max_channels_per_client: limits[5],
            max_joins_per_second: limits[6],
            connect_error_backoff_ms: ms[0],
            channel_error_backoff_ms: ms[1],
            client_presence_window_ms: ms[2],
            idle_timeout_ms: ms[3],
            no_channel_timeout_ms: ms[4],
            shutdown_drain_ms: ms[5],
            max_frame_size: frame,
            presence_enabled,
            self_host_tenant_name: tenant,
            ..Config::default()
        };
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        prop_assert_eq!(back, c);
    }

    #[test]
    fn env_integers_round_trip(n: u64) {
        let env = env_of(&[("TENANT_MAX_BYTES_PER_SECOND", &n.to_string())]);
        match load_args(&[], &env) {
            Ok(l) => prop_assert_eq!(l.config.max_bytes_per_second, n),
            Err(ConfigError::Invalid { field, .. }) => {
                prop_assert_eq!(field, "max_bytes_per_second");
                prop_assert!(n == 0 || n > MAX_LIMIT);
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}

#[test]
fn readme_documents_every_setting() {
    let readme = include_str!("../../README.md");
    for (env, field, _) in env_table() {
        let row = format!("| `{env}` | `{field}` |");
        assert!(
            readme.contains(&row),
            "README.md has no configuration row for {env}"
        );
    }
}

#[test]
fn the_environments_tenant_placement_is_spread_home_or_refused_by_name() {
    let env =
        |v: &'static str| move |k: &str| (k == "SELF_HOST_TENANT_PLACEMENT").then(|| v.into());
    assert_eq!(Config::default().self_host_tenant_placement, "spread");
    let c = load_args(&[], &env("home")).unwrap().config;
    assert_eq!(c.self_host_tenant_placement, "home");
    let err = load_args(&[], &env("everywhere")).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid setting `self_host_tenant_placement` (env SELF_HOST_TENANT_PLACEMENT): \
         \"everywhere\" is not a placement: home or spread"
    );
}

#[test]
fn a_control_database_needs_its_host() {
    for (field, env) in [
        ("control_db", "CONTROL_DB"),
        ("seed_self_host", "SEED_SELF_HOST"),
    ] {
        let only = |k: &str| (k == env).then(|| "true".to_owned());
        let err = load_args(&[], &only).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(field) || text.contains(env), "{text}");
        assert!(text.contains("DB_HOST"), "{text}");
        let with_host = |k: &str| match k {
            "DB_HOST" => Some("db".to_owned()),
            k if k == env => Some("true".to_owned()),
            _ => None,
        };
        let err = load_args(&[], &with_host).unwrap_err().to_string();
        assert!(err.contains("DB_ENC_KEY"), "{err}");
        let with_key = |k: &str| match k {
            "DB_ENC_KEY" => Some("supabaserealtime".to_owned()),
            k => with_host(k),
        };
        assert!(load_args(&[], &with_key).unwrap().config.uses_control_db());
    }
}

#[test]
fn nats_urls_are_read_or_refused_with_the_reason() {
    let with = |url: &str| Config {
        nats_url: url.into(),
        ..Config::default()
    };
    assert!(with("").validate().is_ok());
    let c = with(" nats://10.0.0.1:4223, nats-2 ,127.0.0.1:5000,nats://[::1]");
    assert!(c.validate().is_ok());
    assert_eq!(
        c.nats_servers(),
        [
            "10.0.0.1:4223",
            "nats-2:4222",
            "127.0.0.1:5000",
            "[::1]:4222"
        ]
    );
    for bad in [
        "tls://a:4222",
        "nats://u:p@a:4222",
        "a:4222,,b:4222",
        "a:0",
        "a:99999",
        "nats://a:4222/x",
        ":4222",
    ] {
        assert_eq!(invalid_field(&with(bad)), "nats_url", "{bad}");
    }
    let Err(e) = with("tls://a:4222").validate() else {
        unreachable!()
    };
    assert!(e.to_string().contains("tls:// is not supported"), "{e}");
}

#[test]
fn a_node_timeout_under_half_a_second_is_refused() {
    let with = |ms: u64| Config {
        node_timeout_ms: ms,
        ..Config::default()
    };
    assert!(with(500).validate().is_ok());
    assert_eq!(Config::default().node_timeout_ms, 5000);
    for bad in [0, 499] {
        assert_eq!(invalid_field(&with(bad)), "node_timeout_ms", "{bad}");
    }
    let Err(e) = with(1).validate() else {
        unreachable!()
    };
    assert!(e.to_string().contains("at least 500"), "{e}");
}
