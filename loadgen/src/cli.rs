//! Command line: one subcommand per scenario, each with the common options.

use std::net::SocketAddrV4;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use realtime::proto::phoenix::Vsn;
use serde::Serialize;

use crate::phx::Proto;
use crate::report::Thresholds;

/// Thread-per-core load generator for Realtime-protocol servers.
#[derive(Debug, Parser)]
#[command(name = "realtime-loadgen", version, about)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N connections each joined to K channels at a ramp rate, held; joins/s
    /// and server RSS per connection.
    Connect(ConnectArgs),
    /// Publishers at an open-loop rate, subscribers per topic; deliveries/s,
    /// latency, server CPU per million deliveries.
    Broadcast(BroadcastArgs),
    /// Presence track/untrack churn with M members per channel; diffs/s and
    /// latency.
    Presence(PresenceArgs),
    /// Sustained joins/s: connect, join, leave, repeat.
    JoinStorm(JoinStormArgs),
    /// HTTP keep-alive POSTs to /api/broadcast at a rate, socket subscribers.
    RestBroadcast(RestArgs),
    /// A writer committing rows to a table of the tenant database, S
    /// subscribers with a `postgres_changes` binding on it; commit-to-delivery
    /// latency, rows/s, and optionally pg_recvlogical's rows/s on the same
    /// workload (the walsender's own ceiling).
    PostgresChanges(PgArgs),
    /// A writer calling `realtime.send()` at a rate (or N back to back), S
    /// subscribers on its public topic; deliveries/s, commit-to-delivery
    /// latency, and optionally pg_recvlogical's rows/s on the same
    /// workload. A missing delivery fails the run.
    DbBroadcast(PgArgs),
    /// A few seconds of tiny broadcast + connect; exit 0 if messages flowed.
    Smoke(SmokeArgs),
    /// One NATS client publishing to a subject, another receiving, each
    /// driven by a glommio executor as a shard would drive it: messages/s
    /// at saturation, client CPU per message, publish-to-receipt latency at
    /// an open-loop rate (no Realtime server involved).
    NatsClient(NatsClientArgs),
}

/// What kind of server is under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// This server (or any Supabase Realtime).
    Realtime,
    /// nats-server with its WebSocket listener (NATS protocol in binary frames).
    Nats,
    /// The minimal Node `ws` relay in bench/peers/node-ws (`sub`/`pub` text frames).
    NodeWs,
    /// The tokio + tokio-tungstenite relay in bench/peers/tokio-relay (same protocol).
    TokioRelay,
}

impl Target {
    /// The name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Realtime => "realtime",
            Target::Nats => "nats",
            Target::NodeWs => "node-ws",
            Target::TokioRelay => "tokio-relay",
        }
    }
}

/// How long-lived subscribers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RxMode {
    /// Edge-triggered epoll in one receiver thread per loadgen core.
    Epoll,
    /// glommio streams (an io_uring poll per read).
    Uring,
}

/// Parses `1`, `1.0.0`, `2`, `2.0.0`.
pub fn parse_vsn(s: &str) -> Result<Vsn, String> {
    match s {
        "1" | "1.0.0" => Ok(Vsn::V1),
        "2" | "2.0.0" => Ok(Vsn::V2),
        _ => Err(format!("vsn must be 1 or 2, not {s:?}")),
    }
}

/// Options every scenario takes.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Common {
    /// Kind of server under test; the peers (see bench/peers/README.md) are
    /// supported by `broadcast` and `connect`.
    #[arg(long, value_enum, default_value = "realtime")]
    pub target: Target,
    /// Server address; several (a comma list, or the option repeated)
    /// spread `broadcast` subscribers and `connect` connections round-robin
    /// over the servers of a cluster; publishers and admin requests use the
    /// first. Other scenarios take one.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:4000")]
    pub addr: Vec<SocketAddrV4>,
    /// Host header (names the tenant); default: the address.
    #[arg(long)]
    pub host: Option<String>,
    /// WebSocket path (peers get it without the `apikey`/`vsn` query).
    #[arg(long, default_value = "/socket/websocket")]
    pub path: String,
    /// JWT for `apikey` (and REST); default: signed with --secret.
    #[arg(long)]
    #[serde(skip)]
    pub token: Option<String>,
    /// HS256 secret used to sign a token when --token is not given.
    #[arg(
        long,
        default_value = "super-secret-jwt-token-with-at-least-32-characters-long"
    )]
    #[serde(skip)]
    pub secret: String,
    /// Do not send `access_token` in joins (realtime-js always does).
    #[arg(long)]
    pub no_join_token: bool,
    /// Loadgen cores, e.g. `1` or `2-5`; default: the cores the server is not on.
    #[arg(long)]
    pub cores: Option<String>,
    /// Server pid for CPU and RSS readings; several (comma list or repeated)
    /// are summed, e.g. the nodes of a cluster. Default: whoever listens on
    /// each address's port.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// nats-server pid: its CPU is reported apart from the servers'
    /// (`nats` in the report), not summed with them.
    #[arg(long)]
    pub nats_pid: Option<u32>,
    /// Loopback source addresses 127.0.0.1..=N to spread connections over
    /// (0 = one per 5k connections, none below that).
    #[arg(long, default_value_t = 0)]
    pub source_addrs: u32,
    /// Connections opened per second during setup (all cores together).
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Give up setting up after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub setup_timeout: u64,
    /// Per-connection connect timeout, seconds.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Heartbeat interval, seconds (realtime-js: 25).
    #[arg(long, default_value_t = 25)]
    pub heartbeat_secs: u64,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Write the JSON result here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write SVG plots into this directory.
    #[arg(long)]
    pub svg_dir: Option<PathBuf>,
    /// Pass/fail thresholds.
    #[command(flatten)]
    pub thresholds: Thresholds,
}

impl Common {
    /// The first server address (publishers, admin requests, single-server
    /// scenarios).
    pub fn first_addr(&self) -> SocketAddrV4 {
        self.addr
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 4000))
    }
}

/// `connect`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct ConnectArgs {
    /// Connections.
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    /// Channels joined per connection.
    #[arg(long, default_value_t = 1)]
    pub channels: u64,
    /// Distinct topics the joins spread over.
    #[arg(long, default_value_t = 100)]
    pub topics: u64,
    /// Connections per second (overrides --connect-rate for this scenario).
    #[arg(long)]
    pub ramp_rate: Option<f64>,
    /// Seconds to hold the connections once all are up.
    #[arg(long, default_value_t = 10)]
    pub hold: u64,
    /// Serializer.
    #[arg(long, value_parser = parse_vsn, default_value = "2")]
    #[serde(skip)]
    pub vsn: Vsn,
    /// Tenants and the admin API.
    #[command(flatten)]
    pub tenants: TenantArgs,
    /// Common options.
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
}

/// `connect`'s tenant options (a server with a control database).
#[derive(Debug, Clone, Args, Serialize)]
pub struct TenantArgs {
    /// Spread the connections over this many tenants: connection i sends
    /// `Host: {prefix}{i % N}.localhost` (0: every connection uses --host).
    #[arg(long, default_value_t = 0)]
    pub tenants: u64,
    /// Prefix of the tenant names (`{prefix}{n}`).
    #[arg(long, default_value = "t")]
    pub tenant_prefix: String,
    /// The tenants' JWT secret (every tenant has the same one); connections
    /// sign their token with it. Default: --secret.
    #[arg(long)]
    #[serde(skip)]
    pub tenant_secret: Option<String>,
    /// Create the --tenants tenants through the admin API first (creates/s).
    #[arg(long)]
    pub create_tenants: bool,
    /// Delete the --tenants tenants through the admin API at the end (deletes/s).
    #[arg(long)]
    pub delete_tenants: bool,
    /// Admin API requests in flight at once (one keep-alive connection each).
    #[arg(long, default_value_t = 8)]
    pub admin_concurrency: u64,
    /// The server's API_JWT_SECRET (signs the admin API's bearer token).
    #[arg(
        long,
        default_value = "super-secret-jwt-token-with-at-least-32-characters-long"
    )]
    #[serde(skip)]
    pub admin_secret: String,
    /// After the hold, for each K listed: create tenant `{prefix}patch{K}`,
    /// open K sockets to it, PATCH its jwt_secret and time each socket's
    /// close 1012 from the PATCH (then delete it). E.g. `1,100`.
    #[arg(long, value_delimiter = ',')]
    pub patch_sockets: Vec<u64>,
    /// RSS per connection of a run with the same connections on one tenant
    /// (bytes): the report subtracts it to give the memory per tenant.
    #[arg(long)]
    pub baseline_rss_per_conn: Option<f64>,
}

impl TenantArgs {
    /// No tenants, no admin API (the command line's defaults).
    pub fn none() -> TenantArgs {
        TenantArgs {
            tenants: 0,
            tenant_prefix: "t".into(),
            tenant_secret: None,
            create_tenants: false,
            delete_tenants: false,
            admin_concurrency: 8,
            admin_secret: String::new(),
            patch_sockets: Vec::new(),
            baseline_rss_per_conn: None,
        }
    }

    /// Whether the run talks to the admin API at all.
    pub fn uses_admin(&self) -> bool {
        (self.tenants > 0 && (self.create_tenants || self.delete_tenants))
            || !self.patch_sockets.is_empty()
    }

    /// Refuses combinations that cannot mean anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.tenants == 0 && (self.create_tenants || self.delete_tenants) {
            return Err("--create-tenants / --delete-tenants need --tenants N".into());
        }
        if self.admin_concurrency == 0 {
            return Err("--admin-concurrency must be at least 1".into());
        }
        if self.patch_sockets.contains(&0) {
            return Err("--patch-sockets: every count must be at least 1".into());
        }
        // The name becomes the first label of a Host header.
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if self.tenant_prefix.is_empty() || !self.tenant_prefix.chars().all(ok) {
            return Err(format!(
                "--tenant-prefix {:?}: letters, digits, '-' and '_' only",
                self.tenant_prefix
            ));
        }
        Ok(())
    }
}

/// `broadcast`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct BroadcastArgs {
    /// Publisher connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: u64,
    /// Subscriber connections per topic.
    #[arg(long, default_value_t = 100)]
    pub subscribers: u64,
    /// Topics (publisher j sends to topic j mod T).
    #[arg(long, default_value_t = 1)]
    pub topics: u64,
    /// User payload bytes (min 27).
    #[arg(long, default_value_t = 100)]
    pub payload_size: usize,
    /// Publisher framing.
    #[arg(long, value_enum, default_value = "binary")]
    pub proto: Proto,
    /// Subscriber serializer.
    #[arg(long, value_parser = parse_vsn, default_value = "2")]
    #[serde(skip)]
    pub sub_vsn: Vsn,
    /// Join with broadcast `self: true` (the publisher receives its own).
    #[arg(long = "self")]
    pub self_: bool,
    /// Join with broadcast `ack: true` (every send is replied to).
    #[arg(long)]
    pub ack: bool,
    /// Messages/s offered by all publishers together; a list steps through rates.
    #[arg(long, default_value = "1000")]
    pub rate: String,
    /// Seconds per rate step.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait for in-flight deliveries after the last send.
    #[arg(long, default_value_t = 1.0)]
    pub drain: f64,
    /// Broadcast event name.
    #[arg(long, default_value = "lg")]
    pub event: String,
    /// How subscribers read: epoll receiver threads (default), or glommio's
    /// io_uring polls (costs the server an interrupt per wake-up; kept to
    /// measure that).
    #[arg(long, value_enum, default_value = "epoll")]
    pub rx: RxMode,
    /// Publishers wake only on this grid (ms) and send everything due in
    /// one write (0 = wake for every message). Intended times stay exact, so
    /// the batching delay shows up in the latency.
    #[arg(long, default_value_t = 0.0)]
    pub tick_ms: f64,
    /// Common options.
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
}

/// `presence`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct PresenceArgs {
    /// Channels.
    #[arg(long, default_value_t = 10)]
    pub channels: u64,
    /// Members (connections) per channel.
    #[arg(long, default_value_t = 10)]
    pub members: u64,
    /// Track/untrack operations/s offered (all members together); list = steps.
    #[arg(long, default_value = "100")]
    pub rate: String,
    /// Seconds per rate step.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait for in-flight diffs after the last op.
    #[arg(long, default_value_t = 1.0)]
    pub drain: f64,
    /// Meta bytes per track.
    #[arg(long, default_value_t = 60)]
    pub payload_size: usize,
    /// Serializer.
    #[arg(long, value_parser = parse_vsn, default_value = "2")]
    #[serde(skip)]
    pub vsn: Vsn,
    /// Common options.
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
}

/// `join-storm`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct JoinStormArgs {
    /// Concurrent connect-join-leave loops.
    #[arg(long, default_value_t = 200)]
    pub workers: u64,
    /// Joins/s offered (all workers together); 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Joins per connection before reconnecting (1 = connect per join).
    #[arg(long, default_value_t = 10)]
    pub joins_per_conn: u64,
    /// Joins each worker sends back to back (distinct topics, one write)
    /// before waiting for their replies; then as many leaves the same way.
    /// realtime-js joins every channel of a page like this on connect.
    #[arg(long, default_value_t = 1)]
    pub pipeline: u64,
    /// Distinct topics joined.
    #[arg(long, default_value_t = 1000)]
    pub topics: u64,
    /// Private joins: each worker acts for user `lg<u>` (`u` = worker mod
    /// `--users`), with a join `access_token` whose `sub` is that, on
    /// topics `lg<u>:<k>`; the tenant database needs a policy letting
    /// `sub` read the topics it prefixes (see loadgen/README.md).
    #[arg(long)]
    pub private: bool,
    /// Distinct users of `--private` joins (0 = one per worker).
    #[arg(long, default_value_t = 0)]
    pub users: u64,
    /// Port of the tenant database, on this machine: the CPU seconds of
    /// its cluster (postmaster and every backend) over the run are
    /// reported beside the server's.
    #[arg(long)]
    pub db_port: Option<u16>,
    /// Serializer.
    #[arg(long, value_parser = parse_vsn, default_value = "2")]
    #[serde(skip)]
    pub vsn: Vsn,
    /// Common options.
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
}

/// `rest-broadcast`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct RestArgs {
    /// Subscriber connections per topic.
    #[arg(long, default_value_t = 100)]
    pub subscribers: u64,
    /// Topics.
    #[arg(long, default_value_t = 1)]
    pub topics: u64,
    /// HTTP keep-alive connections posting.
    #[arg(long, default_value_t = 4)]
    pub http_conns: u64,
    /// Requests/s offered (all HTTP connections together); list = steps.
    #[arg(long, default_value = "500")]
    pub rate: String,
    /// Seconds per rate step.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait for in-flight deliveries after the last request.
    #[arg(long, default_value_t = 1.0)]
    pub drain: f64,
    /// Messages per batch request (ignored with --single).
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Use `POST /api/broadcast/:topic/events/:event` instead of the batch endpoint.
    #[arg(long)]
    pub single: bool,
    /// User payload bytes (min 27).
    #[arg(long, default_value_t = 100)]
    pub payload_size: usize,
    /// Subscriber serializer.
    #[arg(long, value_parser = parse_vsn, default_value = "2")]
    #[serde(skip)]
    pub sub_vsn: Vsn,
    /// Common options.
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
}

/// `postgres-changes`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct PgArgs {
    /// Subscriber connections, each joined with a binding on the table.
    #[arg(long, default_value_t = 1)]
    pub subscribers: u64,
    /// Rows/s offered by the writer; a list steps through rates. Ignored
    /// with --rows.
    #[arg(long, default_value = "1000")]
    pub rate: String,
    /// Max-rate mode: write this many rows back to back instead of
    /// following --rate, and measure how fast they drain.
    #[arg(long)]
    pub rows: Option<u64>,
    /// Max-rate mode: write the rows while the consumer (the server, or
    /// pg_recvlogical) is stopped with SIGSTOP, then time the drain of that
    /// backlog from SIGCONT, so the writer's own speed does not bound it.
    #[arg(long)]
    pub backlog: bool,
    /// Rows per transaction (one multi-row INSERT per commit).
    #[arg(long, default_value_t = 1)]
    pub rows_per_commit: u64,
    /// Bytes of filler text per row.
    #[arg(long, default_value_t = 64)]
    pub pad: usize,
    /// Seconds per rate step.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait for in-flight deliveries after the last commit
    /// (max-rate mode: the most to wait for the last one).
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// Table the scenario creates in `public`, adds to `supabase_realtime`
    /// and drops at the end.
    #[arg(long, default_value = "lg_changes")]
    pub table: String,
    /// Row level security, compared with the same shape without it in the
    /// same run: tables `<table>_ref` and `<table>_rls` with an `owner`
    /// uuid (row k belongs to user k % --users), the second readable by a
    /// user only for the rows it owns; subscriber i joins with an
    /// `authenticated` token of user i % --users. Reports deliveries
    /// against those due, deliveries/s, commit-to-delivery latency and, per
    /// 1,000 rows, server CPU, Postgres CPU (every process of a local
    /// cluster) and the server's database round trips (transactions it
    /// committed, from pg_stat_database), for both tables and their ratio.
    #[arg(long)]
    pub rls: bool,
    /// With --rls: distinct users (JWT `sub`) the subscribers and rows are
    /// spread over; each row is due to subscribers / users of them.
    #[arg(long, default_value_t = 10)]
    pub users: u64,
    /// Max-rate mode: first drain the same workload with pg_recvlogical
    /// (pgoutput, own slot) to measure the walsender's ceiling.
    #[arg(long)]
    pub compare_recvlogical: bool,
    /// The pg_recvlogical binary (default: from `pg_config --bindir`, else
    /// /usr/lib/postgresql/15/bin, else PATH).
    #[arg(long)]
    pub recvlogical_bin: Option<PathBuf>,
    /// Subscriber serializer.
    #[arg(long, value_parser = parse_vsn, default_value = "2")]
    #[serde(skip)]
    pub sub_vsn: Vsn,
    /// Tenant database host.
    #[arg(long, env = "DB_HOST", default_value = "127.0.0.1")]
    pub db_host: String,
    /// Tenant database port.
    #[arg(long, env = "DB_PORT", default_value_t = 5432)]
    pub db_port: u16,
    /// Tenant database name.
    #[arg(long, env = "DB_NAME", default_value = "postgres")]
    pub db_name: String,
    /// Tenant database role (must own tables and alter the publication).
    #[arg(long, env = "DB_USER", default_value = "postgres")]
    pub db_user: String,
    /// Its password.
    #[arg(long, env = "DB_PASSWORD", default_value = "postgres")]
    #[serde(skip)]
    pub db_password: String,
    /// Common options.
    #[command(flatten)]
    #[serde(skip)]
    pub common: Common,
}

/// `smoke`.
#[derive(Debug, Clone, Args)]
pub struct SmokeArgs {
    /// Seconds of broadcast.
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
    /// Common options.
    #[command(flatten)]
    pub common: Common,
}

/// Which NATS client `nats-client` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatsClient {
    /// The server's own `NatsConn` on each glommio executor.
    Glommio,
    /// async-nats on a tokio current-thread runtime of its own thread per
    /// node, fed by and feeding the executors over crossbeam queues.
    AsyncNats,
}

/// `nats-client`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct NatsClientArgs {
    /// The client under test.
    #[arg(long, value_enum)]
    pub client: NatsClient,
    /// nats-server address.
    #[arg(long, default_value = "127.0.0.1:4222")]
    pub nats: SocketAddrV4,
    /// nats-server pid, for its CPU; default: whoever listens on the port.
    #[arg(long)]
    pub nats_pid: Option<u32>,
    /// Subject the messages go to.
    #[arg(long, default_value = "lg.nats-client")]
    pub subject: String,
    /// Payload bytes (min 24: phase, sequence number, intended send time).
    #[arg(long, default_value_t = 200)]
    pub size: usize,
    /// Messages sent back to back before anything is measured.
    #[arg(long, default_value_t = 20_000)]
    pub warmup: u64,
    /// Messages of the saturation phase, sent as fast as the window allows.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Saturation phase: most messages published and not yet received.
    #[arg(long, default_value_t = 4096)]
    pub window: u64,
    /// Saturation phase: the publishing executor hands its messages on
    /// (glommio: one write) after this many.
    #[arg(long, default_value_t = 64)]
    pub batch: u64,
    /// Latency phase: open-loop messages/s, each handed on at once.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Latency phase: seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// async-nats: slots of each crossbeam queue between an executor and
    /// its tokio thread.
    #[arg(long, default_value_t = 8192)]
    pub queue: usize,
    /// Give up after this many seconds in all.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Write the JSON result here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(args: &[&str]) -> Result<ConnectArgs, clap::Error> {
        let mut v = vec!["realtime-loadgen", "connect"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v)?.scenario {
            Scenario::Connect(a) => Ok(a),
            _ => panic!("not connect"),
        }
    }

    #[test]
    fn connect_tenant_options() {
        let a = connect(&[]).unwrap();
        assert_eq!(a.tenants.tenants, 0);
        assert_eq!(a.tenants.tenant_prefix, "t");
        assert!(!a.tenants.uses_admin());
        assert!(a.tenants.validate().is_ok());

        let a = connect(&[
            "--tenants",
            "50",
            "--tenant-prefix",
            "lg-",
            "--tenant-secret",
            "s3cret",
            "--create-tenants",
            "--delete-tenants",
            "--admin-secret",
            "adm",
            "--admin-concurrency",
            "4",
            "--patch-sockets",
            "1,100",
            "--baseline-rss-per-conn",
            "12000",
        ])
        .unwrap();
        let t = &a.tenants;
        assert_eq!((t.tenants, t.tenant_prefix.as_str()), (50, "lg-"));
        assert_eq!(t.tenant_secret.as_deref(), Some("s3cret"));
        assert!(t.create_tenants && t.delete_tenants);
        assert_eq!((t.admin_secret.as_str(), t.admin_concurrency), ("adm", 4));
        assert_eq!(t.patch_sockets, vec![1, 100]);
        assert_eq!(t.baseline_rss_per_conn, Some(12000.0));
        assert!(t.uses_admin());
        assert!(t.validate().is_ok());
        // Secrets stay out of the report's parameters.
        let p = serde_json::to_string(&a).unwrap();
        assert!(!p.contains("s3cret") && !p.contains("\"adm\""), "{p}");

        let bad = |args: &[&str]| connect(args).unwrap().tenants.validate().unwrap_err();
        assert!(bad(&["--create-tenants"]).contains("need --tenants"));
        assert!(bad(&["--tenants", "2", "--admin-concurrency", "0"]).contains("at least 1"));
        assert!(bad(&["--patch-sockets", "0"]).contains("at least 1"));
        assert!(bad(&["--tenants", "2", "--tenant-prefix", "a.b"]).contains("letters"));
        assert!(connect(&["--tenants", "-1"]).is_err());
        assert!(connect(&["--patch-sockets", "x"]).is_err());
    }

    #[test]
    fn postgres_changes_rls_options() {
        let cli = Cli::try_parse_from([
            "realtime-loadgen",
            "postgres-changes",
            "--rls",
            "--users",
            "100",
            "--subscribers",
            "400",
            "--rows",
            "8000",
            "--rows-per-commit",
            "400",
        ])
        .unwrap();
        let Scenario::PostgresChanges(a) = cli.scenario else {
            panic!("not postgres-changes");
        };
        assert!(a.rls);
        assert_eq!((a.users, a.subscribers), (100, 400));
        assert_eq!((a.rows, a.rows_per_commit), (Some(8000), 400));
        let cli = Cli::try_parse_from(["realtime-loadgen", "postgres-changes"]).unwrap();
        let Scenario::PostgresChanges(a) = cli.scenario else {
            panic!("not postgres-changes");
        };
        assert!(!a.rls);
        assert_eq!(a.users, 10);
        assert!(
            Cli::try_parse_from(["realtime-loadgen", "postgres-changes", "--users", "x"]).is_err()
        );
    }
}
