//! Moving a socket to the shard that serves it. A tenant placed `home`
//! has every socket on its home shard, so nothing of it crosses shards.
//! A tenant placed `spread` balances its WebSockets to the least loaded
//! shard; its topics, presence and limits are then kept across shards
//! (`forward`, `realtime::interest`). Its REST requests still go home: a
//! caller's sequential requests, each on a fresh connection, are then
//! published from one shard, in order (from different shards, a later
//! request delivered locally could overtake an earlier one still crossing). The listener moves a socket after its first
//! request head; the REST loop moves a keep-alive socket whose next
//! request names a tenant served elsewhere (a client that reuses one
//! connection for several projects), which would otherwise be served from
//! a second, subscriber-less copy of that tenant here.

use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;

use bytes::BytesMut;
use glommio::net::TcpStream;

use std::sync::atomic::Ordering;

use super::handoff::Handoff;
use super::shard::{ShardMsg, ShardState};
use super::sock::SharedStream;
use super::tenants::{self, Resolved};
use crate::proto::http;
use crate::realtime::tenant::Placement;

/// The shard that serves this request: the home shard of the tenant the
/// head's Host names, unless that tenant is spread (see the module doc).
/// A tenant that cannot be looked up goes home, where its error is told.
pub async fn target_shard(state: &Rc<ShardState>, head: &http::RequestHead) -> usize {
    if state.shard.nr_shards == 1 {
        return state.shard.id;
    }
    let host = head.header_str("host").unwrap_or("");
    let tenant = state.directory.tenant_id_for_host(host).into_owned();
    let home = state.home_of(&tenant);
    if http::check_upgrade(head).is_err() {
        return home;
    }
    match tenants::resolve(state, &tenant).await {
        Resolved::Found(cfg) if cfg.placement == Placement::Spread => least_loaded(state),
        _ => home,
    }
}

/// The shard with the fewest open WebSockets; this one among equals.
fn least_loaded(state: &ShardState) -> usize {
    let load = |i: usize| state.shard.stats[i].connections.load(Ordering::Relaxed);
    let mut best = state.shard.id;
    for i in 0..state.shard.nr_shards {
        if load(i) < load(best) {
            best = i;
        }
    }
    best
}

/// Hands the socket, its request `head` and the bytes read after it to
/// shard `target`, which serves it from there; refused (503) when it
/// cannot move or that shard is gone (stopping), never served here.
pub async fn hand_off(
    state: &Rc<ShardState>,
    target: usize,
    stream: SharedStream,
    head: http::RequestHead,
    rest: BytesMut,
) {
    match detach(stream) {
        Ok(fd) => {
            let msg = ShardMsg::Adopt(Box::new(Handoff { fd, head, rest }));
            if let Err(ShardMsg::Adopt(h)) = state.shard.send_to(target, msg).await {
                let stream = SharedStream::accepted(stream_from_fd(h.fd));
                refuse_unavailable(&stream).await;
            }
        }
        Err(stream) => refuse_unavailable(&stream).await,
    }
}

/// Turns a handed-over descriptor back into a stream on this executor.
pub fn stream_from_fd(fd: OwnedFd) -> TcpStream {
    use std::os::fd::IntoRawFd;
    // SAFETY: the descriptor is an open TCP socket we own exclusively.
    unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
}

/// An owning descriptor for the socket, this shard's handle on it dropped;
/// the stream back when no descriptor is left to duplicate it into.
fn detach(stream: SharedStream) -> Result<OwnedFd, SharedStream> {
    // SAFETY: dup of a descriptor we hold; the result is checked below.
    let dup = unsafe { libc::dup(stream.fd()) };
    if dup < 0 {
        return Err(stream);
    }
    // The socket stays open through the duplicate once the stream goes.
    drop(stream);
    // SAFETY: `dup` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

async fn refuse_unavailable(stream: &SharedStream) {
    let resp = http::response(503, None, &[], b"");
    let _ = stream.write_all(&resp).await;
}
