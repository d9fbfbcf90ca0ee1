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
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::future::CatchUnwind;
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
///
/// A plain fn returning [`Caught`], not an `async fn`: an `async fn` keeps
/// its argument and the future it awaits side by side, so a connection's
/// task held its read loop's state twice (488 bytes instead of 264).
pub fn caught<F: Future>(fut: F) -> Caught<F> {
    Caught {
        inner: AssertUnwindSafe(fut).catch_unwind(),
    }
}

pin_project_lite::pin_project! {
    /// [`caught`]'s future: the wrapped future, held once.
    pub struct Caught<F> {
        #[pin]
        inner: CatchUnwind<AssertUnwindSafe<F>>,
    }
}

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .inner
            .poll(cx)
            .map(|r| r.map_err(|p| panic_message(p.as_ref())))
    }
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

/// Test hook: a topic whose name holds this is subscribed to at NATS
/// [`SLOW_SUBSCRIBE_MS`] late, as over a slow link to nats-server (a join
/// of it must still hear what is sent after its reply).
#[cfg(feature = "fault-injection")]
pub const SLOW_SUBSCRIBE: &str = "__slow_subscribe__";

/// How late [`SLOW_SUBSCRIBE`] topics are subscribed to.
#[cfg(feature = "fault-injection")]
pub const SLOW_SUBSCRIBE_MS: u64 = 300;

/// Test hook: another node's ask for its entries of a topic whose name
/// holds this is answered [`SLOW_SUBSCRIBE_MS`] late, as by a busy node
/// (a join must still see them in its `presence_state`).
#[cfg(feature = "fault-injection")]
pub const SLOW_ANSWER: &str = "__slow_answer__";

/// Test hook: with this environment variable set, shard 1 blocks before
/// it listens, for longer than `server::STARTUP_DEADLINE`.
#[cfg(feature = "fault-injection")]
pub const STALL_SHARD_START: &str = "REALTIME_FAULT_STALL_SHARD_START";

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's task awaits its read loop through `caught` for the
    /// socket's whole life, so the wrapper must not hold a second copy of
    /// the loop's state (as an `async fn caught` did).
    #[test]
    fn caught_holds_its_future_once() {
        let fut = async {
            let big = [7u8; 256];
            futures_lite::future::yield_now().await;
            big.iter().map(|&b| b as usize).sum::<usize>()
        };
        let alone = std::mem::size_of_val(&fut);
        let wrapped = caught(fut);
        let size = std::mem::size_of_val(&wrapped);
        assert!(size <= alone + 16, "caught: {size} bytes around {alone}");
        assert_eq!(futures_lite::future::block_on(wrapped), Ok(256 * 7));
    }

    #[test]
    fn caught_returns_the_panic_message() {
        let r = futures_lite::future::block_on(caught(async {
            futures_lite::future::yield_now().await;
            panic!("boom in a test");
        }));
        assert_eq!(r, Err::<(), _>("boom in a test".to_owned()));
    }
}
