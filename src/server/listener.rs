//! Accepting sockets and sending each to its tenant's home shard.
//!
//! Every shard accepts on the same port (SO_REUSEPORT). The request head is
//! read with `MSG_PEEK`, so it stays in the kernel: a socket whose Host names
//! a tenant homed elsewhere moves as a bare file descriptor and the home
//! shard reads the head as if it had accepted the socket itself. REST
//! sockets move too, so every tenant counter lives on one shard
//! (perf/DECISIONS.md).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};

use super::{connection, ShardMsg, ShardState};
use crate::proto::http;

/// Longest request head we wait for while routing.
const MAX_PEEK: usize = 16 * 1024;
/// How long routing waits for a complete request head.
const PEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts until cancelled.
pub async fn accept_loop(state: Rc<ShardState>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(route(state.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Turns a handed-over descriptor back into a stream on this executor.
pub fn stream_from_fd(fd: OwnedFd) -> TcpStream {
    use std::os::fd::IntoRawFd;
    // SAFETY: the descriptor is an open TCP socket we own exclusively.
    unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
}

async fn route(state: Rc<ShardState>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // A client that connects and sends nothing is served (and timed out)
    // here rather than waited on forever.
    let peek = async { peek_target(&state, &stream).await };
    let give_up = async {
        glommio::timer::sleep(PEEK_TIMEOUT).await;
        None
    };
    let target = futures_lite::future::or(peek, give_up)
        .await
        .unwrap_or(state.shard.id);
    if target == state.shard.id {
        connection::serve_socket(state, stream).await;
        return;
    }
    // Duplicate the descriptor into an owning handle, then let the local
    // stream go: the socket stays open through the duplicate.
    // SAFETY: dup of a descriptor we hold; the result is owned by OwnedFd.
    let dup = unsafe { libc::dup(stream.as_raw_fd()) };
    if dup < 0 {
        connection::serve_socket(state, stream).await;
        return;
    }
    // SAFETY: `dup` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(dup) };
    drop(stream);
    if let Err(ShardMsg::Adopt(fd)) = state.shard.send_to(target, ShardMsg::Adopt(fd)).await {
        connection::serve_socket(state, stream_from_fd(fd)).await;
    }
}

/// Peeks the request head and returns the home shard of the tenant its
/// Host names. Anything unreadable stays here.
async fn peek_target(state: &ShardState, stream: &TcpStream) -> Option<usize> {
    if state.shard.nr_shards == 1 {
        return None;
    }
    let mut buf = vec![0u8; MAX_PEEK];
    for _ in 0..200 {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        match http::parse_head(&buf[..n]) {
            Ok(Some(head)) => {
                let host = head
                    .header("host")
                    .and_then(|h| std::str::from_utf8(h).ok())?;
                let tenant = state.directory.tenant_id_for_host(host);
                return Some(state.home_of(tenant));
            }
            Ok(None) if n < MAX_PEEK => {
                // The head has not fully arrived; peek returns at once while
                // any bytes wait, so back off briefly before looking again.
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            _ => return None,
        }
    }
    None
}

/// The WebSocket endpoints.
pub fn is_ws_path(path: &str) -> bool {
    matches!(path, "/socket/websocket" | "/realtime/v1/websocket")
}
