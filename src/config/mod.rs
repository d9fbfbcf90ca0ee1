//! Layered configuration: defaults < TOML file (`--config PATH`) <
//! environment < command-line flags.
//!
//! Every setting is one field of [`Config`]. Its TOML key is the field name,
//! its flag the kebab-case field name (`max_frame_size` -> `--max-frame-size`),
//! and its environment variable the name the Elixir server uses where it has
//! one ([`env_table`] lists them all with their defaults). Values that fail to
//! parse at any layer are errors naming the variable, flag or key; nothing is
//! silently ignored. [`load_from`] and [`load`] end with [`Config::validate`];
//! `--check` asks the caller to print [`Config::to_toml`] and exit instead of
//! serving.

mod error;
mod ssl_mode;
pub mod tenants;
mod validate;
mod value;

#[cfg(test)]
mod tenants_tests;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use error::ConfigError;
pub use ssl_mode::SslMode;
pub use validate::{
    MAX_BUFFER_BYTES, MAX_DURATION_MS, MAX_HEADER_LENGTH, MAX_LIMIT, MAX_SHARDS, MIN_FRAME_SIZE,
    MIN_HEADER_LENGTH,
};
use value::Setting;

/// The well-known JWT secret of Supabase's local development setup. It is
/// public: a server using it accepts tokens anyone can mint. For development
/// only.
pub const DEV_JWT_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

/// What [`env_table`] shows as the default of a setting that is unset.
pub const UNSET: &str = "(unset)";

/// One row of the settings table.
#[derive(Debug)]
struct Field {
    name: &'static str,
    env: &'static str,
    default: &'static str,
    secret: bool,
    is_bool: bool,
}

/// Declares every setting once and generates [`Config`], its `Default`, the
/// clap overrides, the environment layer and the settings table from it.
macro_rules! settings {
    (@secret) => { false };
    (@secret secret) => { true };
    ($(
        $(#[doc = $doc:literal])+
        $(#[serde($($serde:tt)*)])*
        $([$secret:ident])?
        $field:ident: $ty:ty = $default:expr, $default_text:literal, env $env:literal;
    )+) => {
        /// The server's configuration. Build it with [`load`] or
        /// [`load_from`]; `Default` gives the documented defaults.
        #[derive(Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $(
                $(#[doc = $doc])+
                $(#[serde($($serde)*)])*
                pub $field: $ty,
            )+
            /// The config file's `[[tenants]]` tables, served beside the
            /// environment's tenant without a control database ([`tenants`]).
            /// Only a file sets them: no variable, no flag.
            #[serde(skip_serializing_if = "Vec::is_empty")]
            pub tenants: Vec<toml::Table>,
        }

        impl Default for Config {
            fn default() -> Self {
                Self { $($field: $default,)+ tenants: Vec::new() }
            }
        }

        /// Command line. Every setting is an optional string here and is parsed
        /// by the same code as its environment variable.
        #[derive(Parser, Debug)]
        #[command(
            name = "realtime",
            version,
            about = "Thread-per-core server speaking the Supabase Realtime protocol",
            long_about = None,
        )]
        struct Cli {
            /// TOML file with settings (keys are the field names); the
            /// environment and flags override it.
            #[arg(long, value_name = "PATH")]
            config: Option<PathBuf>,
            /// Validate the configuration, print it (secrets redacted) and exit.
            #[arg(long)]
            check: bool,
            $(
                $(#[doc = $doc])+
                #[arg(long)]
                $field: Option<String>,
            )+
        }

        const TABLE: &[(&str, &str, &str)] = &[$(($env, stringify!($field), $default_text),)+];

        const FIELDS: &[Field] = &[$(
            Field {
                name: stringify!($field),
                env: $env,
                default: $default_text,
                secret: settings!(@secret $($secret)?),
                is_bool: <$ty as Setting>::IS_BOOL,
            },
        )+];

        impl Config {
            /// Applies every environment variable that is set.
            fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
                $(
                    if let Some(value) = env($env) {
                        self.$field = <$ty as Setting>::parse_text(&value).map_err(|reason| {
                            ConfigError::Env {
                                var: $env,
                                value: shown(settings!(@secret $($secret)?), value),
                                reason,
                            }
                        })?;
                    }
                )+
                Ok(())
            }

            /// Applies every flag that was given.
            fn apply_cli(&mut self, cli: Cli) -> Result<(), ConfigError> {
                $(
                    if let Some(value) = cli.$field {
                        self.$field = <$ty as Setting>::parse_text(&value).map_err(|reason| {
                            ConfigError::Flag {
                                flag: stringify!($field).replace('_', "-"),
                                value: shown(settings!(@secret $($secret)?), value),
                                reason,
                            }
                        })?;
                    }
                )+
                Ok(())
            }

            /// A copy with secret values replaced.
            fn redacted(&self) -> Self {
                let mut out = self.clone();
                $(
                    if settings!(@secret $($secret)?) {
                        out.$field = Setting::redact(&self.$field);
                    }
                )+
                out.tenants = tenants::redacted(&self.tenants);
                out
            }
        }

        /// Shows every field, secrets redacted.
        impl fmt::Debug for Config {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let shown = self.redacted();
                f.debug_struct("Config")
                    $(.field(stringify!($field), &shown.$field))+
                    .field("tenants", &shown.tenants)
                    .finish()
            }
        }

        /// Names of the fields whose `Default` disagrees with the text in
        /// [`env_table`].
        #[cfg(test)]
        fn defaults_not_matching_table() -> Vec<&'static str> {
            let defaults = Config::default();
            let mut wrong = Vec::new();
            $(
                let ok = if $default_text == UNSET {
                    Setting::is_unset(&defaults.$field)
                } else {
                    <$ty as Setting>::parse_text($default_text).as_ref() == Ok(&defaults.$field)
                };
                if !ok {
                    wrong.push(stringify!($field));
                }
            )+
            wrong
        }
    };
}

/// A value for an error message: secrets are replaced by their length.
fn shown(secret: bool, value: String) -> String {
    if secret {
        format!("{} ({} bytes)", value::REDACTED, value.len())
    } else {
        value
    }
}

settings! {
    // ---- listener ----

    /// Address the HTTP/WebSocket listener binds. Loopback by default so a
    /// development server is not exposed; use 0.0.0.0 or :: in containers.
    bind: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST), "127.0.0.1", env "BIND_ADDR";

    /// TCP port of the listener (HTTP, WebSocket, REST, metrics).
    port: u16 = 4000, "4000", env "PORT";

    /// Executor threads, one pinned per core; 0 means one per available core.
    /// Fewer leaves cores to other processes, more than cores only adds
    /// context switches.
    shards: usize = 0, "0", env "SHARDS";

    /// Longest pause between accept attempts while accepting fails (at the
    /// descriptor limit): the pause doubles from 5 ms up to this. Longer
    /// wastes fewer wake-ups on a full table, shorter lets waiting clients
    /// in sooner once descriptors free up.
    accept_backoff_max_ms: u64 = 500, "500", env "ACCEPT_BACKOFF_MAX_MS";

    // ---- authentication ----

    /// HS secret for the admin REST API and for the default tenant's JWTs. The
    /// default is the public local-development secret: for development only.
    /// May be empty only when `api_jwt_jwks` has keys.
    [secret]
    api_jwt_secret: String = DEV_JWT_SECRET.to_owned(), "super-secret-jwt-token-with-at-least-32-characters-long", env "API_JWT_SECRET";

    /// Second secret also accepted on the admin REST API, so the secret can be
    /// rotated without downtime; unset accepts only `api_jwt_secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    [secret]
    api_jwt_secret_next: Option<String> = None, "(unset)", env "API_JWT_SECRET_NEXT";

    /// JWKS (`{"keys":[...]}`) for the default tenant's JWTs, next to
    /// `api_jwt_secret`; needed for RS/ES/EdDSA tokens and `kid`-selected HS
    /// keys. Read once at start, never fetched remotely.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "value::jwks_serde::serialize",
        deserialize_with = "value::jwks_serde::deserialize"
    )]
    [secret]
    api_jwt_jwks: Option<Value> = None, "(unset)", env "API_JWT_JWKS";

    /// Comma-separated tokens refused by the admin REST API even when their
    /// signature is valid: a way to revoke a leaked token before it expires.
    [secret]
    api_token_blocklist: Vec<String> = Vec::new(), "", env "API_TOKEN_BLOCKLIST";

    /// JSON object of claims every client JWT must carry with exactly these
    /// values (e.g. `{"iss":"supabase"}`); `{}` checks nothing extra.
    jwt_claim_validators: String = "{}".to_owned(), "{}", env "JWT_CLAIM_VALIDATORS";

    /// External id of the tenant served without a control database; a Host
    /// with no subdomain (IP address, localhost) resolves to it.
    self_host_tenant_name: String = "realtime-dev".to_owned(), "realtime-dev", env "SELF_HOST_TENANT_NAME";

    /// Which shards serve the environment's tenant (and the one
    /// `seed_self_host` writes): `home` keeps every socket of it on its
    /// home shard, nothing crosses shards; `spread` (the default: a
    /// self-hosted server has this one tenant) balances its sockets over
    /// the shards, so it uses every core.
    self_host_tenant_placement: String = "spread".to_owned(), "spread", env "SELF_HOST_TENANT_PLACEMENT";

    /// Delay before answering a refused WebSocket connect. Slows reconnect
    /// storms from misconfigured clients at the cost of slower error reports;
    /// tests set 0.
    connect_error_backoff_ms: u64 = 2000, "2000", env "CONNECT_ERROR_BACKOFF_MS";

    /// Delay before a `phx_join` error reply. Slows rejoin storms at the cost
    /// of slower error reports; tests set 0.
    channel_error_backoff_ms: u64 = 5000, "5000", env "CHANNEL_ERROR_BACKOFF_MS";

    /// How long a channel joined with `broadcast.replication_ready` waits
    /// for its tenant's Broadcast from Database stream before it is shut
    /// down (`Replication connection was not established in time`), as the
    /// Elixir server's one minute. Tests set it short.
    replication_ready_timeout_ms: u64 = 60000, "60000", env "REPLICATION_READY_TIMEOUT_MS";

    // ---- tenant limit defaults ----

    /// Connections with at least one joined channel a tenant may have. Caps
    /// one tenant's share of the server; too low refuses real users (429).
    max_concurrent_users: u64 = 200, "200", env "TENANT_MAX_CONCURRENT_USERS";

    /// Broadcast events per second per tenant (pushes, fan-out deliveries,
    /// REST). Protects fan-out cost; past it channels are shut down.
    max_events_per_second: u64 = 100, "100", env "TENANT_MAX_EVENTS_PER_SECOND";

    /// Presence events per second per tenant. Presence diffs fan out to every
    /// subscriber, so this bounds their cost; past it channels are shut down.
    max_presence_events_per_second: u64 = 1000, "1000", env "TENANT_MAX_PRESENCE_EVENTS_PER_SECOND";

    /// Largest broadcast or presence payload, in kB of 1000 bytes. Bounds
    /// per-message memory and fan-out bytes; too low rejects real payloads.
    max_payload_size_in_kb: u64 = 3000, "3000", env "TENANT_MAX_PAYLOAD_SIZE_IN_KB";

    /// Bytes per second per tenant. Recorded on the tenant and reported, but
    /// not enforced (as in the Elixir server).
    max_bytes_per_second: u64 = 100_000, "100000", env "TENANT_MAX_BYTES_PER_SECOND";

    /// Channels one connection may have joined at once. Bounds per-socket
    /// state; too low breaks apps that open many channels.
    max_channels_per_client: u64 = 100, "100", env "TENANT_MAX_CHANNELS_PER_CLIENT";

    /// Longest topic a channel may join, in bytes of the whole
    /// `realtime:<name>`. Every joined channel keeps its topic; 255 is also
    /// the most a binary (kind 4) broadcast can carry, so longer topics could
    /// never get binary broadcasts anyway. Joins over it: `TopicNameTooLong`.
    max_topic_bytes: u64 = 255, "255", env "TENANT_MAX_TOPIC_BYTES";

    /// Largest presence a channel may track, in bytes: the meta as compact
    /// JSON plus the presence key (also the longest key a join may set).
    /// Bounds what one track pins; too low refuses rich metas.
    max_presence_meta_bytes: u64 = 65_536, "65536", env "TENANT_MAX_PRESENCE_META_BYTES";

    /// Presence bytes (metas plus keys, as above) one connection may hold
    /// across all its channels. Bounds presence memory per socket; past it a
    /// track gets an error reply and the previous presence stays.
    max_presence_bytes_per_client: u64 = 1_048_576, "1048576", env "TENANT_MAX_PRESENCE_BYTES_PER_CLIENT";

    /// Connects and channel joins per second per tenant. Stops join storms
    /// (a join over it also closes the socket); too low refuses reconnect waves.
    max_joins_per_second: u64 = 100, "100", env "TENANT_MAX_JOINS_PER_SECOND";

    /// Presence on for every join of the default tenant, whatever the client
    /// asks. Costs a `presence_state` per join.
    presence_enabled: bool = false, "false", env "TENANT_PRESENCE_ENABLED";

    /// Refuse public channels on the default tenant, so every join passes RLS
    /// authorization. Safer, but public-channel clients break.
    private_only: bool = false, "false", env "TENANT_PRIVATE_ONLY";

    /// Presence messages one channel may send per window. Stops a client
    /// flooding presence; past it the channel is shut down.
    client_presence_max_calls: u32 = 5, "5", env "CLIENT_PRESENCE_MAX_CALLS";

    /// Length of that presence window. Longer windows are stricter on bursts.
    client_presence_window_ms: u64 = 30_000, "30000", env "CLIENT_PRESENCE_WINDOW_MS";

    // ---- WebSocket and HTTP ----

    /// Largest WebSocket frame (and reassembled message) accepted; larger ones
    /// close the socket with 1009. Bounds per-socket read memory.
    max_frame_size: usize = 5_000_000, "5000000", env "WEBSOCKET_MAX_FRAME_SIZE";

    /// Longest single HTTP header value accepted (the `x-api-key` JWT travels
    /// in one). Bounds request-head memory; too low refuses large tokens.
    max_header_length: usize = 4096, "4096", env "MAX_HEADER_LENGTH";

    /// Time a client has to send a whole request head, from connect (or
    /// from the previous response on a kept-alive connection), however
    /// steadily the bytes trickle in. Past it the socket is closed (408 once
    /// a request line has arrived). Shorter frees descriptors held by slow
    /// or hostile clients sooner; too short cuts clients on very slow links.
    request_head_timeout_ms: u64 = 5000, "5000", env "REQUEST_HEAD_TIMEOUT_MS";

    /// Time without any inbound frame after which the socket is closed. Frees
    /// dead peers; must exceed the client heartbeat interval (25 s).
    idle_timeout_ms: u64 = 60_000, "60000", env "WEBSOCKET_IDLE_TIMEOUT_MS";

    /// Bytes waiting to be written to one socket; past it the subscriber is
    /// disconnected. Bounds memory per slow reader; must hold one largest payload.
    socket_queue_bytes: usize = 4 * 1024 * 1024, "4194304", env "WEBSOCKET_QUEUE_BYTES";

    /// How long a REST broadcast waits for a subscriber's full queue to
    /// drain before closing that subscriber as a slow consumer. A REST batch
    /// larger than the queue is delivered at the readers' pace; longer waits
    /// spare slow links but hold the request (and its body) longer.
    rest_queue_wait_ms: u64 = 5000, "5000", env "REST_QUEUE_WAIT_MS";

    /// Bytes of forwarded messages one shard holds for another whose queue
    /// is full (a burst the other shard has not caught up with). Past it
    /// messages to that shard are dropped and it closes its subscribers of
    /// their topics as slow consumers; the sending shard never waits.
    shard_queue_bytes: usize = 16 * 1024 * 1024, "16777216", env "SHARD_QUEUE_BYTES";

    /// NATS servers joining this server to others as one cluster
    /// (comma-separated `nats://host:port` or `host:port`, tried in turn).
    /// Empty: a single node, nothing is sent anywhere.
    nats_url: String = String::new(), "", env "NATS_URL";

    /// This node's name in the cluster (logs, metrics); empty: the host
    /// name and port.
    node_name: String = String::new(), "", env "NODE_NAME";

    /// The region this node runs in, reported with its name.
    region: String = String::new(), "", env "REGION";

    /// How long a node of the cluster may go unheard (its heartbeats come
    /// five times as often) before its presence entries leave on the
    /// others. Shorter notices a dead node sooner; too short drops a node
    /// that only paused (a long GC-free stall, a saturated link).
    node_timeout_ms: u64 = 5000, "5000", env "NODE_TIMEOUT_MS";

    /// How often connections that joined and then left every channel are swept
    /// (closed). Frees abandoned sockets; too short cuts clients between joins.
    no_channel_timeout_ms: u64 = 600_000, "600000", env "NO_CHANNEL_TIMEOUT_IN_MS";

    /// Time given to open sockets to close after a shutdown signal before the
    /// process exits. Longer is gentler on clients, slower to restart.
    shutdown_drain_ms: u64 = 5000, "5000", env "SHUTDOWN_DRAIN_MS";

    // ---- tenant database (Postgres Changes) ----

    /// Host of the default tenant's database. Unset: no tenant database, so
    /// Postgres Changes answer `Postgres Changes are not configured for this
    /// tenant` and private channels cannot be authorised.
    #[serde(skip_serializing_if = "Option::is_none")]
    db_host: Option<String> = None, "(unset)", env "DB_HOST";

    /// Port of the tenant database.
    db_port: u16 = 5432, "5432", env "DB_PORT";

    /// Database name.
    db_name: String = "postgres".to_owned(), "postgres", env "DB_NAME";

    /// Role the server logs in as; needs REPLICATION and SELECT on the
    /// published tables.
    db_user: String = "supabase_admin".to_owned(), "supabase_admin", env "DB_USER";

    /// Its password (cleartext, md5 and SCRAM-SHA-256 are spoken).
    #[serde(skip_serializing_if = "Option::is_none")]
    [secret]
    db_password: Option<String> = None, "(unset)", env "DB_PASSWORD";

    /// Keep tenants in a control database (the `_realtime` schema, created
    /// by the server's migrations when missing) at `db_host` and manage
    /// them with the admin API `/api/tenants`. Off: the one tenant of the
    /// environment (`self_host_tenant_name`), whose database is `db_host`.
    control_db: bool = false, "false", env "CONTROL_DB";

    /// Write the tenant `self_host_tenant_name` into the control database at
    /// start (replacing any tenant of that name), with `api_jwt_secret` and
    /// `db_*` as its database: the self-hosted Supabase setup. Implies
    /// `control_db`.
    seed_self_host: bool = false, "false", env "SEED_SELF_HOST";

    /// SQL run on every new connection to the control database, before
    /// anything else (self-hosted Supabase sets `SET search_path TO
    /// _realtime`). The server qualifies its own names, so it is optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    db_after_connect_query: Option<String> = None, "(unset)", env "DB_AFTER_CONNECT_QUERY";

    /// Key of the legacy at-rest cipher (AES-128-ECB) for tenant secrets in
    /// the control database: exactly 16 bytes, as the Elixir server's
    /// `DB_ENC_KEY`. Needed to read values an Elixir deployment wrote
    /// without GCM.
    #[serde(skip_serializing_if = "Option::is_none")]
    [secret]
    db_enc_key: Option<String> = None, "(unset)", env "DB_ENC_KEY";

    /// Key of the AES-256-GCM at-rest cipher: exactly 32 bytes. Values it
    /// wrote carry a `g1:` prefix and are read whatever `db_enc_write_gcm`
    /// says.
    #[serde(skip_serializing_if = "Option::is_none")]
    [secret]
    db_enc_key_gcm: Option<String> = None, "(unset)", env "DB_ENC_KEY_GCM";

    /// Write new tenant secrets with AES-256-GCM (authenticated, no equal-
    /// block leak) instead of the legacy cipher. Without `db_enc_key_gcm`
    /// it falls back to the legacy cipher with a warning at start, as the
    /// Elixir server does.
    db_enc_write_gcm: bool = false, "false", env "DB_ENC_WRITE_GCM";

    /// TLS to the database: `disable`, `prefer` (TLS when offered, not
    /// verified), `require` (TLS or fail, not verified: the Elixir server's
    /// `ssl_enforced`) or `verify-full` (chain and host name verified).
    /// Verification costs a CA setup; without it an active attacker on the
    /// path can read the stream.
    db_ssl_mode: SslMode = SslMode::Prefer, "prefer", env "DB_SSL_MODE";

    /// PEM file of the CAs `verify-full` trusts. Unset: the Mozilla roots
    /// compiled in (webpki-roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    db_ssl_root_cert: Option<String> = None, "(unset)", env "DB_SSL_ROOT_CERT";

    /// Publication whose tables are streamed. The server never creates it.
    db_publication: String = "supabase_realtime".to_owned(), "supabase_realtime", env "DB_PUBLICATION";

    /// Appended to `supabase_realtime_replication_slot` to name the
    /// permanent logical slot; lets several servers share one database.
    slot_name_suffix: String = String::new(), "", env "SLOT_NAME_SUFFIX";

    /// How often the flush LSN is reported to Postgres when nothing asks.
    /// Shorter frees WAL sooner; longer sends fewer status messages.
    replication_status_interval_ms: u64 = 1000, "1000", env "REPLICATION_STATUS_INTERVAL_MS";

    /// WAL (MB, 2^20 bytes) the permanent slot may retain before it is
    /// dropped and recreated, losing the changes in between (logged as an
    /// error, told to subscribers); 0 turns the cap off. Lower protects the
    /// database's disk sooner; higher rides out longer outages without loss.
    replication_max_slot_lag_mb: u64 = 1024, "1024", env "REPLICATION_MAX_SLOT_LAG_MB";

    /// Deadline of every database operation: connecting (TCP, TLS, startup
    /// and authentication together), each query, START_REPLICATION. Past
    /// it the connection is dropped and reopened with backoff. Shorter
    /// notices a hung database sooner; longer lets slow policy checks finish.
    db_query_timeout_ms: u64 = 15000, "15000", env "DB_QUERY_TIMEOUT_MS";

    /// Connections per tenant database that check one batch's rows under
    /// row level security at once, its claims groups shared out between
    /// them (the first is the replication driver's own catalog connection).
    /// More put more database cores on a large batch and cost a backend
    /// each; 1 checks every group on one connection.
    db_check_connections: u64 = 2, "2", env "DB_CHECK_CONNECTIONS";

    /// Silence on the replication stream after which a status update asks
    /// Postgres for a reply; with no message within as long again, the
    /// stream is reopened from the confirmed position. 0 = half of the
    /// database's `wal_sender_timeout` (30 s if that is off). Shorter
    /// notices a dead path sooner; longer sends fewer probes.
    replication_idle_timeout_ms: u64 = 0, "0", env "REPLICATION_IDLE_TIMEOUT_MS";

    // ---- operations ----

    /// HS secret a Bearer JWT on `/metrics` must be signed with. Unset leaves
    /// `/metrics` open to anyone who can reach the port.
    #[serde(skip_serializing_if = "Option::is_none")]
    [secret]
    metrics_jwt_secret: Option<String> = None, "(unset)", env "METRICS_JWT_SECRET";

    /// Comma-separated tokens refused on `/metrics` even when validly signed.
    [secret]
    metrics_token_blocklist: Vec<String> = Vec::new(), "", env "METRICS_TOKEN_BLOCKLIST";

    /// Serve the inspector page (`/`, `/inspector`, its script and style)
    /// and `/status`: a browser client to join channels and watch what
    /// flows, and the shards' figures. Off answers
    /// those paths with the catch-all 404, for deployments that want no page.
    inspector_enabled: bool = true, "true", env "INSPECTOR_ENABLED";

    /// Least severe log level written: Elixir names (debug, info, notice,
    /// warning, error, critical, alert, emergency) or tracing names (trace,
    /// warn). More verbose costs throughput.
    log_level: String = "info".to_owned(), "info", env "LOG_LEVEL";
}

/// The loaded configuration and whether only `--check` was asked for.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective, validated configuration.
    pub config: Config,
    /// `--check` was given: print `config.to_toml()` and exit 0 instead of
    /// serving.
    pub check_only: bool,
}

/// Loads the configuration from the process's arguments and environment.
/// See [`load_from`].
pub fn load() -> Result<Loaded, ConfigError> {
    // A non-UTF-8 value would otherwise read as unset (or be mangled by a
    // lossy conversion); refuse it by name instead.
    for field in FIELDS {
        if let Some(raw) = std::env::var_os(field.env) {
            if raw.to_str().is_none() {
                return Err(ConfigError::Env {
                    var: field.env,
                    value: shown(field.secret, raw.to_string_lossy().into_owned()),
                    reason: "not valid UTF-8".to_owned(),
                });
            }
        }
    }
    load_from(std::env::args_os(), &|name| std::env::var(name).ok())
}

/// Loads the configuration: defaults, then the TOML file named by `--config`,
/// then the variables `env` returns, then the other flags; then validates it
/// (the file's `[[tenants]]` against the final server-wide settings).
/// `args` starts with the program name, like `std::env::args_os()`.
pub fn load_from(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let matches = command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;

    let file = cli.config.take();
    let mut config = match &file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                path: path.clone(),
                source,
            })?;
            toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
                path: path.clone(),
                source,
            })?
        }
        None => Config::default(),
    };
    config.apply_env(env)?;
    let check_only = cli.check;
    config.apply_cli(cli)?;
    config.validate().map_err(|e| e.in_file(file))?;
    Ok(Loaded { config, check_only })
}

/// The clap command, with each setting's environment variable and default
/// appended to its help and bare boolean flags meaning `true`.
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for field in FIELDS {
        cmd = cmd.mut_arg(field.name, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let default = match field.default {
                "" => String::new(),
                text => format!(" [default: {text}]"),
            };
            let arg = arg.help(format!("{help} [env: {}]{default}", field.env));
            if field.is_bool {
                arg.num_args(0..=1).default_missing_value("true")
            } else {
                arg
            }
        });
    }
    cmd
}

/// Every setting as (environment variable, field, default as text), in
/// declaration order. The field is also the TOML key; the flag is `--` plus
/// the field in kebab-case. A default of [`UNSET`] means the setting is off
/// unless given; an empty default is an empty list.
pub fn env_table() -> &'static [(&'static str, &'static str, &'static str)] {
    TABLE
}

impl Config {
    /// The number of shards to start: `shards`, or the available parallelism
    /// when it is 0 (1 if that cannot be determined).
    pub fn nr_shards(&self) -> usize {
        match self.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The NATS servers of `nats_url` as `host:port` (port 4222 when
    /// none is given), in the order given.
    pub fn nats_servers(&self) -> Vec<String> {
        self.nats_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                let hostport = u.strip_prefix("nats://").unwrap_or(u);
                let hostport = hostport.trim_end_matches('/');
                let has_port = hostport
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    && !hostport.ends_with(']');
                if has_port {
                    hostport.to_owned()
                } else {
                    format!("{hostport}:4222")
                }
            })
            .collect()
    }

    /// Whether tenants live in the control database (`control_db`, or
    /// `seed_self_host`, which needs one).
    pub fn uses_control_db(&self) -> bool {
        self.control_db || self.seed_self_host
    }

    /// The configuration as a TOML document that [`load_from`] accepts back.
    /// Secrets (JWT secrets, blocklisted tokens, private JWKS members) are
    /// replaced by `<redacted>`, except the public development secret, which
    /// is shown so its use is noticed.
    pub fn to_toml(&self) -> String {
        match toml::to_string(&self.redacted()) {
            Ok(text) => text,
            // Unreachable for a validated config (every integer fits TOML's
            // i64); still, show what we have rather than panic.
            Err(e) => format!("# not representable as TOML: {e}\n# {self:?}\n"),
        }
    }

    /// Whether the public development secret is in use (worth a warning at
    /// start-up outside development).
    pub fn uses_dev_jwt_secret(&self) -> bool {
        self.api_jwt_secret == DEV_JWT_SECRET
    }

    /// The claims `jwt_claim_validators` requires, parsed.
    pub fn claim_validators(&self) -> Result<serde_json::Map<String, Value>, ConfigError> {
        validate::claim_validators(&self.jwt_claim_validators)
    }

    /// `log_level` as a tracing level name (`error`, `warn`, `info`, `debug`
    /// or `trace`); Elixir's `notice` maps to `info`, its `critical`, `alert`
    /// and `emergency` to `error`. Unknown names give `info` (validation
    /// refuses them).
    pub fn tracing_level(&self) -> &'static str {
        validate::tracing_level(&self.log_level).unwrap_or("info")
    }
}
