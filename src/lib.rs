//! A thread-per-core server that speaks the Supabase Realtime protocol.
//!
//! # Layout
//!
//! - [`proto`]: sans-io codecs. WebSocket frames (`proto::ws`), the Phoenix
//!   serializers v1 JSON, v2 JSON and v2 binary (`proto::phoenix`), HTTP request
//!   heads and query strings (`proto::http`), the logical replication stream,
//!   pgoutput and typed JSON of Postgres values (`proto::pg`). No I/O, no
//!   clocks, no runtime.
//! - [`realtime`]: runtime-free domain logic. Tenants and their limits, JWT
//!   verification, channel events (one file each under `realtime::events`),
//!   presence state and diffs, the per-topic subscriber registry that fans a
//!   message out as shared bytes, and Postgres Changes: bindings, filters
//!   and the fan-out of decoded row changes; private channels ask the
//!   tenant database their RLS questions through `realtime::authz`.
//! - [`server`]: the glommio drivers. Listener and socket handoff, the
//!   WebSocket connection's read loop, the per-socket write queues and the
//!   one flusher per shard that writes them (`server::outq`), the REST API,
//!   shutdown, and the tenant database side: the Postgres client
//!   (`server::pgconn`, TLS in `server::tls`), the replication driver, the
//!   private channels' RLS checks (`server::rls`), and the `realtime`
//!   schema in tenant databases (`server::tenant_db`: its migrations through
//!   the runner the control database uses too, `server::migrator`, and the
//!   daily message partitions).
//! - [`config`]: layered configuration (defaults < TOML < env < CLI), and
//!   the TOML file's `[[tenants]]`.
//!
//! The executor pool, tenant-to-shard routing and the cross-shard mesh live in
//! the `realtime-shards` crate.

pub mod config;
pub mod proto;
pub mod realtime;
pub mod server;
