//! Runtime-free domain logic: everything here is plain data and functions of
//! it, driven by the `server` layer. Time is always passed in.
//!
//! - [`tenant`]: tenant settings, the directory, per-shard tenant state,
//!   and what a tenant's shards share (users gauge, rate counters).
//! - [`auth`]: JWT verification and the exact error texts.
//! - [`authz`]: private channels: the RLS questions handlers ask of the
//!   tenant database and the answers the server hands back.
//! - [`join_config`]: the `phx_join` config, read leniently.
//! - [`hub`]: topics, subscribers and the serialize-once fan-out.
//! - [`interest`]: which shards have subscribers of a topic, and the
//!   frames that cross to them.
//! - [`replay`]: a private join's stored messages, replayed after its
//!   reply.
//! - [`session`]: routing of a connection's messages to event handlers.
//! - [`state`]: one connection's channels and what handlers are given.
//! - [`events`]: one file per Phoenix event.
//! - [`presence`]: presence state and diffs of one topic.
//! - [`limits`]: rolling rate counters, alone or kept across shards.
//! - [`frames`]: Phoenix messages framed as server WebSocket frames.
//! - [`errors`]: the exact join and connect errors clients are told.
//! - [`rest`]: REST broadcast request bodies.
//! - [`secrets`]: tenant secrets at rest in the control database (the two
//!   ciphers an Elixir deployment writes).
//! - [`postgres_changes`]: Postgres Changes bindings, filters and their
//!   verdict on a row change, and the bytes a subscriber receives.
//! - [`db_broadcast`]: rows of `realtime.messages` from the replication
//!   stream, as user broadcasts with `meta.id` (Broadcast from Database).
//! - [`cdc`]: a tenant's Postgres Changes subscribers (checked, then
//!   ready) and the batched fan-out of decoded changes to them.

pub mod auth;
pub mod authz;
pub mod cdc;
pub mod cluster;
pub mod db_broadcast;
pub mod errors;
pub mod events;
pub mod frames;
pub mod hub;
pub mod interest;
pub mod join_config;
pub mod limits;
pub mod outgoing;
pub mod postgres_changes;
pub mod presence;
pub mod replay;
pub mod rest;
pub mod secrets;
pub mod session;
pub mod state;
pub mod tenant;
