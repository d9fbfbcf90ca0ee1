//! Accepting sockets and sending each to the shard that serves it.
//!
//! Every shard accepts on the same port (SO_REUSEPORT). The accepting shard
//! reads the request head, however slowly it arrives, within the head
//! deadline (`REQUEST_HEAD_TIMEOUT_MS`); a socket whose Host names a tenant
//! served elsewhere (see `rehome`: its home shard, or for a spread
//! tenant's WebSocket the least loaded shard) then moves as a bare file
//! descriptor together with the head and any bytes read after it. A socket
//! that cannot move is refused (503), never served by the wrong shard.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::net::{TcpListener, TcpStream};
use realtime_shards::ShardStats;

use super::connection;
use super::handoff::Handoff;
use super::rehome;
use super::shard::ShardState;
use super::sock::SharedStream;

/// First pause after a failed accept; it doubles up to `accept_backoff_max_ms`.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// At most one accept-failure warning per this interval; the ones in
/// between are counted into the next warning.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Accepts until cancelled.
pub async fn accept_loop(state: Rc<ShardState>, listener: TcpListener) {
    let max_pause = Duration::from_millis(state.config.accept_backoff_max_ms);
    let mut pause = ACCEPT_BACKOFF_MIN;
    let log = AcceptLog::default();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                pause = ACCEPT_BACKOFF_MIN;
                glommio::spawn_local(route(state.clone(), stream)).detach();
            }
            Err(e) => {
                // Usually the descriptor table is full (EMFILE/ENFILE). The
                // connection waits in the backlog either way, so retrying at
                // once only spins and floods the log: pause, doubling, and
                // let the sockets already open be served meanwhile.
                ShardStats::add(&state.stats().accept_failures, 1);
                log.failed(&e.to_string(), pause);
                glommio::timer::sleep(pause).await;
                pause = (pause * 2).min(max_pause);
            }
        }
    }
}

/// Rate-limits accept-failure warnings to one per [`ACCEPT_LOG_INTERVAL`],
/// counting the failures in between. Successes do not reset the window: at
/// the limit accepts alternate with failures as sockets close, and that must
/// not flood the log either.
#[derive(Default)]
struct AcceptLog {
    /// When the last warning was written.
    last: Cell<Option<Instant>>,
    /// Failures since then, this one included.
    unlogged: Cell<u64>,
}

impl AcceptLog {
    fn failed(&self, error: &str, pause: Duration) {
        self.unlogged.set(self.unlogged.get() + 1);
        let due = self
            .last
            .get()
            .is_none_or(|t| t.elapsed() >= ACCEPT_LOG_INTERVAL);
        if due {
            tracing::warn!(
                error,
                failures_since_last_warning = self.unlogged.replace(0),
                pause_ms = pause.as_millis() as u64,
                "accept failed; backing off (out of file descriptors?)"
            );
            self.last.set(Some(Instant::now()));
        }
    }
}

/// Serves a socket another shard accepted and read the head of.
pub async fn adopt(state: Rc<ShardState>, handoff: Handoff) {
    let stream = SharedStream::accepted(rehome::stream_from_fd(handoff.fd));
    connection::serve(state, stream, handoff.head, handoff.rest).await;
}

async fn route(state: Rc<ShardState>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let stream = SharedStream::accepted(stream);
    let mut buf = BytesMut::new();
    let Some(head) = stream.read_head(&state.config, &mut buf).await else {
        return;
    };
    let target = rehome::target_shard(&state, &head).await;
    if target == state.shard.id {
        connection::serve(state, stream, head, buf).await;
        return;
    }
    rehome::hand_off(&state, target, stream, head, buf).await;
}
