//! Postgres Changes subscriptions of channels on a shard other than their
//! tenant's home (a `spread` tenant). The replication stream, the
//! subscription checker and the batched RLS checks stay on the home shard,
//! which holds every subscription of the tenant; a non-home shard's
//! registry only relays: it sends each subscription there (with its
//! bindings and claims), sends leaves and new claims after it, and hands
//! the frames the home shard sends back to the channel's socket.

use std::rc::Rc;

use super::access::SubClaims;
use crate::proto::phoenix::{Ref, Vsn};
use crate::realtime::hub::{ChannelId, Outbound};
use crate::realtime::postgres_changes::binding::Binding;

/// A channel's subscription on its way to the tenant's home shard:
/// everything of a [`super::CdcSub`] but its socket, which stays here.
#[derive(Debug, Clone)]
pub struct RemoteSub {
    /// The channel (ids are unique across shards).
    pub channel: ChannelId,
    /// `realtime:<name>`.
    pub topic: Box<str>,
    /// Its socket's serializer.
    pub vsn: Vsn,
    /// Join ref, for the channel's `system` pushes.
    pub join_ref: Option<Ref>,
    /// Parsed bindings.
    pub bindings: Vec<Binding>,
    /// Joined in the legacy topic form.
    pub legacy: bool,
    /// Role and claims the rows are authorised with.
    pub claims: SubClaims,
}

/// Where a non-home shard's registry sends what it relays; the server
/// implements it with its ordered queues between shards. Never waits.
pub trait CdcRelay {
    /// A channel subscribed.
    fn add(&self, sub: RemoteSub);
    /// A channel's subscription ended.
    fn remove(&self, channel: ChannelId);
    /// A channel's token was refreshed: new claims to check against.
    fn claims(&self, channel: ChannelId, claims: SubClaims);
}

/// A relaying registry's state: the relay and the sockets of the channels
/// it relayed.
pub(super) struct Relaying {
    pub(super) relay: Box<dyn CdcRelay>,
    pub(super) channels: std::collections::HashMap<ChannelId, Rc<dyn Outbound>>,
}
