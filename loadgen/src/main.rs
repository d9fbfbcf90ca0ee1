//! `realtime-loadgen`: a thread-per-core load generator for servers that
//! speak the Supabase Realtime protocol, and for the comparison peers in
//! `bench/peers/` (`--target`).
//!
//! # Layout
//!
//! - [`cli`]: the command line, one subcommand per scenario.
//! - [`wire`]: client-side WebSocket framing and HTTP response heads (sans-io).
//! - [`peers`]: the comparison peers' protocols (NATS over WebSocket, the
//!   `sub`/`pub` relays), sans-io.
//! - [`phx`]: Realtime messages: pre-encoded joins and templates with a
//!   patchable timestamp; fast delivery recognition; control decoding.
//! - [`conn`]: the glommio client: source-address binding, one read buffer
//!   per executor, in-place frame parsing, heartbeats.
//! - [`sched`]: open-loop schedules (intended send times).
//! - [`stats`]: the shared clock, counters, HDR histograms.
//! - [`procfs`]: server CPU and RSS, listener pid, affinity, machine.
//! - [`runner`]: executors pinned to the loadgen cores, and the monitor.
//! - [`rx`]: epoll receiver threads that read every long-lived subscriber.
//! - [`report`]: JSON, markdown, SVG output and thresholds.
//! - [`svg`]: the hand-written chart renderer.
//! - [`scenario`]: connect, broadcast, presence, join-storm,
//!   rest-broadcast, postgres-changes, db-broadcast, smoke, nats-client.
//!
//! Exit codes: 0 pass, 1 a threshold was violated (or smoke saw nothing
//! flow), 2 the run could not happen.

mod cli;
mod conn;
mod peers;
mod phx;
mod procfs;
mod report;
mod runner;
mod rx;
mod scenario;
mod sched;
mod stats;
mod svg;
mod wire;

use clap::Parser;

use cli::{Cli, Scenario};

fn main() {
    // Start the clock before any thread reads it.
    let _ = stats::now_ns();
    let cli = Cli::parse();
    let code = match &cli.scenario {
        Scenario::Connect(a) => scenario::connect::run(a),
        Scenario::Broadcast(a) => scenario::broadcast::run(a),
        Scenario::Presence(a) => scenario::presence::run(a),
        Scenario::JoinStorm(a) => scenario::join_storm::run(a),
        Scenario::RestBroadcast(a) => scenario::rest::run(a),
        Scenario::PostgresChanges(a) => scenario::pg_changes::run(a),
        Scenario::DbBroadcast(a) => scenario::db_broadcast::run(a),
        Scenario::Smoke(a) => scenario::smoke::run(a),
        Scenario::NatsClient(a) => scenario::nats_client::run(a),
    };
    std::process::exit(code);
}
