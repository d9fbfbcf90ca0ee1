//! Fault isolation: a panic in one tenant's work stays in that work.
//!
//! Three boundaries catch a panic where it is polled, so the shard's other
//! tasks (every other connection and tenant on the executor) keep running:
//!
//! - a WebSocket connection (handshake, then its read loop and handlers):
//!   the socket is closed with 1011 and the connection's normal teardown
//!   runs;
//! - a REST request: answered 500 with an empty body, then the socket is
//!   closed;
//! - a replication stream session: ended as a failed session is, and
//!   restarted with the driver's backoff.
//!
//! Each is logged with the tenant id and counted in
//! `realtime_task_panics_total{kind=...}`.
//!
//! The rule that keeps shared state consistent: shard state a tenant's
//! tasks share (the tenant's hub, presence, counters, the shard's session
//! map, the flush list) is changed only inside `RefCell` borrows whose
//! guards unwinding releases, and each change is made whole within one
//! borrow, with no code that may panic between its halves. After a catch,
//! the boundary runs the same teardown as a normal end (a connection
//! leaves its channels and is taken off the session map, a stream's
//! subscribers are told it is down), so nothing of the failed work stays
//! registered. A panic in that teardown is caught too; the connection is
//! then still removed from the shard's maps.
//!
//! The release profile unwinds (no `panic = "abort"` in Cargo.toml): that
//! is what makes a panic catchable at all.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_lite::FutureExt;
use realtime_shards::ShardStats;

use super::shard::ShardState;

/// Which boundary caught a panic (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// A WebSocket connection.
    Connection,
    /// A REST request.
    Request,
    /// A replication stream session.
    Stream,
}

impl Boundary {
    /// The metric label and log text.
    pub fn as_str(self) -> &'static str {
        match self {
            Boundary::Connection => "connection",
            Boundary::Request => "request",
            Boundary::Stream => "stream",
        }
    }
}

/// Runs `fut`; `Err` with the panic's message if polling it panicked. The
/// future is dropped (its locals unwound) before this returns.
pub async fn caught<F: Future>(fut: F) -> Result<F::Output, String> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|p| panic_message(p.as_ref()))
}

/// Runs `f`; `Err` with the panic's message if it panicked.
pub fn caught_sync<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(p.as_ref()))
}

/// Logs a caught panic with its tenant and counts it.
pub fn record(state: &ShardState, kind: Boundary, tenant: &str, message: &str) {
    let stats = state.stats();
    let counter = match kind {
        Boundary::Connection => &stats.panics_connection,
        Boundary::Request => &stats.panics_request,
        Boundary::Stream => &stats.panics_stream,
    };
    ShardStats::add(counter, 1);
    tracing::error!(
        tenant,
        kind = kind.as_str(),
        panic = message,
        "task panicked; caught at its boundary, other work goes on"
    );
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Test hook: panics when `name` holds the reserved marker [`POISON`].
/// Compiled only with the `fault-injection` feature, which the test
/// command enables and a plain `cargo run --release` does not.
#[cfg(feature = "fault-injection")]
pub fn inject(point: &str, name: &[u8]) {
    if name.windows(POISON.len()).any(|w| w == POISON.as_bytes()) {
        panic!("fault injection at {point}");
    }
}

/// The reserved name that makes [`inject`] panic.
#[cfg(feature = "fault-injection")]
pub const POISON: &str = "__panic__";

/// Test hook: blocks this shard's thread for [`STALL_MS`] when `bytes`
/// hold the marker [`STALL`] (for [`PAUSE_MS`] with [`PAUSE`]), as a shard
/// busy with other work would be (its queues from other shards fill
/// meanwhile). Compiled only with the `fault-injection` feature.
#[cfg(feature = "fault-injection")]
pub fn stall_if_marked(bytes: &[u8]) {
    let has = |m: &str| bytes.windows(m.len()).any(|w| w == m.as_bytes());
    let ms = if has(STALL) {
        STALL_MS
    } else if has(PAUSE) {
        PAUSE_MS
    } else {
        return;
    };
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// The reserved payload text that makes [`stall_if_marked`] block for
/// less than a paced publisher waits (`connection::pace`).
#[cfg(feature = "fault-injection")]
pub const PAUSE: &str = "__pause_shard__";

/// How long [`stall_if_marked`] blocks on [`PAUSE`].
#[cfg(feature = "fault-injection")]
pub const PAUSE_MS: u64 = 300;

/// The reserved payload text that makes [`stall_if_marked`] block.
#[cfg(feature = "fault-injection")]
pub const STALL: &str = "__stall_shard__";

/// How long [`stall_if_marked`] blocks.
#[cfg(feature = "fault-injection")]
pub const STALL_MS: u64 = 1500;
