//! Stopping: SIGTERM/SIGINT set a flag every shard watches; each shard
//! stops accepting, tells every channel `Server requested disconnect`,
//! closes its sockets with 1012 and waits (bounded) for them to flush.
//! Also the periodic token-expiry sweep, which shares the timer cadence.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use super::connection::with_env;
use super::outq::{CloseReason, OutState};
use super::shard::{now_unix, ShardState};

/// Set by the signal handler (an `Arc` because signal-hook's safe `flag`
/// API keeps a reference for the life of the process).
static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(Arc::default);

/// How often shards look at the stop flag and at token expiries.
const TICK: Duration = Duration::from_millis(100);

/// Routes SIGTERM and SIGINT to the stop flag.
pub fn install_signal_handlers() -> std::io::Result<()> {
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&STOP))?;
    }
    Ok(())
}

/// Asks the server to stop, as a signal would (tests and embedding).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// io_uring registers locked memory; as root, lift the limit so shard
/// start-up does not depend on the shell's `ulimit -l`.
pub fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain setrlimit call with a valid struct; failure is harmless.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) != 0 {
            tracing::debug!("could not raise RLIMIT_MEMLOCK; keeping the current limit");
        }
    }
}

/// Resolves when a stop was requested.
pub async fn wait_for_signal() {
    while !STOP.load(Ordering::SeqCst) {
        glommio::timer::sleep(TICK).await;
    }
}

/// Shuts down channels whose token expired, checking every tick.
pub async fn expiry_sweeper(state: Rc<ShardState>) {
    loop {
        glommio::timer::sleep(TICK).await;
        let now = now_unix();
        loop {
            let due = {
                let mut heap = state.expiries.borrow_mut();
                match heap.peek() {
                    Some(std::cmp::Reverse((exp, _))) if *exp <= now => heap.pop().map(|r| r.0 .1),
                    _ => None,
                }
            };
            let Some(conn_id) = due else { break };
            let conn = state.sessions.borrow().get(&conn_id).cloned();
            if let Some(conn) = conn {
                with_env(&state, &conn, |session, env| session.expire_tokens(env));
                let session = conn.session.borrow();
                // Only future expiries go back on the heap, or a token that
                // still verifies would be popped again at once.
                if session.earliest_expiry().is_some_and(|exp| exp > now) {
                    state.schedule_expiry(&session);
                }
            }
        }
    }
}

/// Tells channels waiting for their tenant's messages stream that it is up
/// (or shuts them down at their deadline), every tick, asking only the
/// connections that have such a channel.
pub async fn replication_ready_sweeper(state: Rc<ShardState>) {
    loop {
        glommio::timer::sleep(TICK).await;
        if state.replication_waiting.borrow().is_empty() {
            continue;
        }
        let ids: Vec<u64> = state.replication_waiting.borrow().iter().copied().collect();
        for id in ids {
            let conn = state.sessions.borrow().get(&id).cloned();
            let waits = conn.is_some_and(|conn| {
                with_env(&state, &conn, |session, env| session.replication_ready(env))
            });
            if !waits {
                state.replication_waiting.borrow_mut().remove(&id);
            }
        }
    }
}

/// Every `NO_CHANNEL_TIMEOUT_IN_MS`, drops connections that attempted a
/// join and now have no channel, without a close frame (the Elixir
/// tracker kills such processes; clients see 1006 and reconnect).
pub async fn channelless_sweeper(state: Rc<ShardState>) {
    let period = Duration::from_millis(state.config.no_channel_timeout_ms);
    loop {
        glommio::timer::sleep(period).await;
        let idle: Vec<_> = state
            .sessions
            .borrow()
            .values()
            .filter(|c| {
                let s = c.session.borrow();
                s.attempted_join && s.channels.is_empty()
            })
            .cloned()
            .collect();
        for conn in idle {
            tracing::debug!(
                conn = conn.session.borrow().id,
                "no channel left: dropping connection"
            );
            conn.out.kill();
        }
    }
}

/// Longest idle timeout the sweep honours: `last_inbound_ms` is a wrapping
/// 32-bit clock, so silences are measured exactly up to 2^31 ms (24 days).
const MAX_IDLE_MS: u64 = (u32::MAX / 2) as u64;

/// Closes WebSocket connections that sent nothing for
/// `WEBSOCKET_IDLE_TIMEOUT_MS`, as a read timeout would, without a close
/// frame, and releases empty write queues' buffers. One walk of the shard's sessions every eighth of the timeout
/// (10 ms to 5 s), so a silent socket goes between the timeout and the
/// timeout plus one period, and no socket holds a timer of its own.
pub async fn idle_sweeper(state: Rc<ShardState>) {
    let timeout = state.config.idle_timeout_ms.clamp(1, MAX_IDLE_MS) as u32;
    let period = Duration::from_millis((u64::from(timeout) / 8).clamp(10, 5_000));
    loop {
        glommio::timer::sleep(period).await;
        let now = state.now_ms() as u32;
        let mut idle = Vec::new();
        for c in state.sessions.borrow().values() {
            // Quiet sockets give their write buffer back (done here rather
            // than whenever a queue drains, which would allocate per send).
            c.out.trim();
            // Only sockets still reading: a closing one is flushing its
            // close frame, as with a read timeout.
            if c.out.state() == OutState::Open
                && now.wrapping_sub(c.session.borrow().last_inbound_ms) >= timeout
            {
                idle.push(c.clone());
            }
        }
        for conn in idle {
            tracing::debug!(conn = conn.session.borrow().id, "idle timeout: closing");
            conn.out.kill();
        }
    }
}

/// Tells every session to go and waits up to `limit` for their sockets.
pub async fn drain(state: &Rc<ShardState>, limit: Duration) {
    let conns: Vec<_> = state.sessions.borrow().values().cloned().collect();
    for conn in &conns {
        conn.session.borrow().push_server_disconnect();
        conn.out.close_with(1012, CloseReason::ShuttingDown);
    }
    let deadline = Instant::now() + limit;
    while !state.sessions.borrow().is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    for conn in state.sessions.borrow().values() {
        conn.out.kill();
    }
}
