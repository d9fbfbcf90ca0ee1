//! What one shard sends another when a socket belongs to a tenant homed
//! there. Plain data apart from the `listener` that makes and adopts it,
//! so the shard messages can carry it without depending on the listener.

use std::os::fd::OwnedFd;

use bytes::BytesMut;

use crate::proto::http;

/// A socket moving to its tenant's home shard, its head already read.
pub struct Handoff {
    /// The socket.
    pub fd: OwnedFd,
    /// Its request head.
    pub head: http::RequestHead,
    /// Bytes read after the head (a request body, say).
    pub rest: BytesMut,
}
