//! Tenants: their immutable settings and the per-shard state their home
//! shard keeps for them.

pub mod params;
pub mod record;
pub mod row;
pub mod schema;
pub mod shared;

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::auth::memo::TokenMemo;
use super::auth::{ClaimValidators, JwtKeys};
use super::hub::Hub;
use super::limits::RateCounter;
use shared::{SharedTenant, UsersShare};

/// Per-tenant limits (PROTOCOL 7.1); defaults come from the server config.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections with at least one joined channel.
    pub max_concurrent_users: u64,
    /// Broadcast events per second (client pushes + deliveries + REST).
    pub max_events_per_second: u64,
    /// Presence events per second for the whole tenant.
    pub max_presence_events_per_second: u64,
    /// Largest broadcast or presence payload, in kB (x1000 bytes).
    pub max_payload_size_in_kb: u64,
    /// Channels one connection may have joined at once.
    pub max_channels_per_client: u64,
    /// Joins (and connects) per second.
    pub max_joins_per_second: u64,
    /// Presence messages one channel may send per window.
    pub client_presence_max_calls: u32,
    /// Length of that window.
    pub client_presence_window_ms: u64,
    /// Longest topic a join may name (whole `realtime:<name>`, bytes).
    pub max_topic_bytes: u64,
    /// Largest tracked presence: compact meta JSON plus key, bytes.
    pub max_presence_meta_bytes: u64,
    /// Presence bytes one connection may hold over all its channels.
    pub max_presence_bytes_per_client: u64,
}

impl Limits {
    /// Largest payload in bytes, with the 500-byte allowance the Elixir server
    /// gives on top of `max_payload_size_in_kb * 1000`.
    pub fn max_payload_bytes(&self) -> usize {
        (self.max_payload_size_in_kb * 1000 + 500) as usize
    }
}

/// What a tenant is: identity, keys, limits and switches. Immutable once
/// built; every shard holds a copy so it can authenticate where a request
/// lands.
#[derive(Debug)]
pub struct TenantConfig {
    /// The tenant's external id (first label of the Host).
    pub external_id: String,
    /// Keys its JWTs are verified with.
    pub jwt: JwtKeys,
    /// Extra exact-match claim checks (`JWT_CLAIM_VALIDATORS`).
    pub validators: ClaimValidators,
    /// Its limits.
    pub limits: Limits,
    /// Suspended tenants refuse connections.
    pub suspended: bool,
    /// Only private channels may be joined.
    pub private_only: bool,
    /// Presence is on for every join, whatever the client asks.
    pub presence_enabled: bool,
    /// A tenant database is configured (Postgres Changes are served).
    pub has_database: bool,
    /// Where that database is (from the tenant's CDC extension, or the
    /// `DB_*` settings for the environment's tenant).
    pub db: Option<TenantDb>,
    /// Which shards serve its sockets.
    pub placement: Placement,
}

/// Which shards serve a tenant's sockets. Its control state (limits'
/// home, replication streams, authorization pool) is on its home shard
/// either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Placement {
    /// Every socket moves to the home shard: nothing of the tenant
    /// crosses shards. Right for the many small tenants of a dense box.
    #[default]
    Home,
    /// Sockets stay on the shard that accepted them (balanced to the
    /// least loaded): one big tenant uses every core, and its topics,
    /// presence and limits are kept across shards.
    Spread,
}

impl Placement {
    /// The name the tenant record and the config file use.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Home => "home",
            Placement::Spread => "spread",
        }
    }

    /// Reads a name written by [`Placement::as_str`] (case-sensitive).
    pub fn parse(s: &str) -> Option<Placement> {
        match s {
            "home" => Some(Placement::Home),
            "spread" => Some(Placement::Spread),
            _ => None,
        }
    }
}

/// Where a tenant's database is, from its CDC extension: what the
/// replication and authorization code connects with.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantDb {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password: String,
    pub publication: String,
    pub slot_name: String,
    /// TLS required (certificate not verified). Absent means true, as the
    /// Elixir server reads it.
    pub ssl_enforced: bool,
    pub region: Option<String>,
    /// Authorization pool size (`db_pool`).
    pub db_pool: Option<u64>,
    /// Subscription pool size (`subcriber_pool_size`, spelled as stored).
    pub subscriber_pool_size: Option<u64>,
}

impl TenantConfig {
    /// Whether `other` streams from a different database than `self`, so
    /// the tenant's database work must start again.
    pub fn database_differs(&self, other: &TenantConfig) -> bool {
        self.db != other.db
    }
}

/// The tenants this server knows, shared read-only by all shards.
#[derive(Debug, Default)]
pub struct Directory {
    tenants: HashMap<String, Arc<TenantConfig>>,
    /// Tenant served for hosts without a subdomain (IPs, `localhost`).
    default_tenant: Option<String>,
}

impl Directory {
    /// A directory with exactly one tenant, also used for bare hosts.
    pub fn single(config: TenantConfig) -> Self {
        let id = config.external_id.clone();
        let mut tenants = HashMap::new();
        tenants.insert(id.clone(), Arc::new(config));
        Self {
            tenants,
            default_tenant: Some(id),
        }
    }

    /// The directory with `config` added beside its tenants (the config
    /// file's tenants beside the environment's); one of the same id is
    /// replaced.
    pub fn with(mut self, config: TenantConfig) -> Self {
        self.tenants
            .insert(config.external_id.clone(), Arc::new(config));
        self
    }

    /// A directory with no tenants of its own: tenants come from the
    /// control database, and bare hosts name `default_tenant`.
    pub fn default_only(default_tenant: &str) -> Self {
        Self {
            tenants: HashMap::new(),
            default_tenant: Some(default_tenant.to_owned()),
        }
    }

    /// The tenant id a request's Host names (PROTOCOL 1.3), before lookup.
    /// Lower-cased: host names are case-insensitive, and Cowboy hands the
    /// Elixir server a lower-cased host, so `ABC.example` is tenant `abc`.
    pub fn tenant_id_for_host<'a>(&'a self, host: &'a str) -> Cow<'a, str> {
        if crate::proto::http::is_bare_host(host) {
            if let Some(d) = &self.default_tenant {
                return Cow::Borrowed(d);
            }
        }
        crate::proto::http::host_tenant_lowercase(host)
    }

    /// Looks a tenant up by id.
    pub fn get(&self, id: &str) -> Option<&Arc<TenantConfig>> {
        self.tenants.get(id)
    }
}

/// A tenant's live state on a shard that serves it (its home shard, or
/// any shard for a `Spread` tenant). Its limits' counters are the
/// tenant's, shared with its other shards ([`shared`]).
pub struct Tenant {
    /// Settings shared with the directory.
    pub config: Arc<TenantConfig>,
    /// Topics, subscribers and presence.
    pub hub: Hub,
    /// Connects and joins per second, over all the tenant's shards.
    pub joins: RateCounter,
    /// Broadcast events per second, over all the tenant's shards.
    pub events: RateCounter,
    /// Presence events per second, over all the tenant's shards.
    pub presence_events: RateCounter,
    /// This shard's part of the tenant-wide count of connections that have
    /// joined a channel and are still open.
    pub users: UsersShare,
    /// Postgres Changes subscribers.
    pub cdc: super::cdc::CdcRegistry,
    /// Join tokens verified recently: most joins repeat a token.
    pub join_tokens: TokenMemo<TenantConfig>,
}

impl Tenant {
    /// Fresh state for a tenant that only this shard serves (its counters
    /// shared with nobody).
    pub fn new(config: Arc<TenantConfig>, now_ms: u64) -> Self {
        Self::on_shard(config, Arc::new(SharedTenant::new(1, now_ms)), 0, now_ms)
    }

    /// Fresh state for a tenant that just became active on shard `shard`,
    /// counting into the tenant's `shared` state (from
    /// [`shared::SharedTenants::attach`]).
    pub fn on_shard(
        config: Arc<TenantConfig>,
        shared: Arc<SharedTenant>,
        shard: usize,
        now_ms: u64,
    ) -> Self {
        let mut cdc = super::cdc::CdcRegistry::default();
        cdc.enabled = config.has_database;
        let [joins, events, presence_events] = shared.counters(shard, now_ms);
        Self {
            hub: Hub::default(),
            joins,
            events,
            presence_events,
            users: UsersShare::new(shared),
            cdc,
            join_tokens: TokenMemo::default(),
            config,
        }
    }

    /// Connections with a joined channel, on every shard of the tenant.
    pub fn nr_users(&self) -> u64 {
        self.users.nr_users()
    }

    /// The tenant's Broadcast from Database stream is streaming (set by
    /// the server's driver on the home shard; `broadcast.replication_ready`
    /// waits for it on every shard).
    pub fn messages_streaming(&self) -> bool {
        self.users.tenant().messages_streaming()
    }

    /// Its Broadcast from Database stream went up or down.
    pub fn set_messages_streaming(&self, up: bool) {
        self.users.tenant().set_messages_streaming(up);
    }
}

/// Shard-local map of the tenants that are active here.
pub type Tenants = HashMap<String, Rc<std::cell::RefCell<Tenant>>>;
