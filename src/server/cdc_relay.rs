//! Postgres Changes for a spread tenant's channels on shards other than
//! its home: their subscriptions cross to the home shard, which streams,
//! checks and batches RLS for all of them, and the frames it builds for
//! them cross back (see `realtime::cdc::relay`). Both ways go through the
//! ordered queues between shards (`forward`), so a subscription's leave
//! never overtakes its join, and its frames keep their order.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use bytes::Bytes;

use super::shard::{GapKey, ShardMsg, ShardState};
use crate::realtime::cdc::{CdcRelay, CdcSub, RemoteSub, SubClaims};
use crate::realtime::hub::{ChannelId, Outbound};
use crate::realtime::tenant::{Tenant, TenantConfig};

/// A non-home shard's relay of one tenant's subscriptions to its home.
pub struct ShardRelay {
    state: Weak<ShardState>,
    me: usize,
    home: usize,
    config: Arc<TenantConfig>,
    tenant: Arc<str>,
}

impl ShardRelay {
    /// The relay of tenant `config` on `state`'s shard.
    pub fn new(state: &Rc<ShardState>, config: Arc<TenantConfig>) -> Self {
        Self {
            state: Rc::downgrade(state),
            me: state.shard.id,
            home: state.home_of(&config.external_id),
            tenant: config.external_id.as_str().into(),
            config,
        }
    }

    fn send(&self, msg: ShardMsg) {
        if let Some(st) = self.state.upgrade() {
            st.outbox.send(&st.shard, self.home, msg, 0, None);
        }
    }
}

impl CdcRelay for ShardRelay {
    fn add(&self, sub: RemoteSub) {
        self.send(ShardMsg::CdcAdd {
            config: self.config.clone(),
            origin: self.me,
            sub: Box::new(sub),
        });
    }

    fn remove(&self, channel: ChannelId) {
        self.send(ShardMsg::CdcRemove {
            tenant: self.tenant.clone(),
            channel,
        });
    }

    fn claims(&self, channel: ChannelId, claims: SubClaims) {
        self.send(ShardMsg::CdcClaims {
            tenant: self.tenant.clone(),
            channel,
            claims,
        });
    }
}

/// On the home shard: the socket of a relayed channel, on shard `origin`.
/// Frames queue without waiting; the socket's own bound applies on its
/// shard, and frames lost between the shards close the channel's socket
/// (1008) there.
struct RemoteChannel {
    state: Weak<ShardState>,
    origin: usize,
    tenant: Arc<str>,
    channel: ChannelId,
}

impl Outbound for RemoteChannel {
    fn push(&self, frame: Bytes) {
        let len = frame.len();
        let msg = ShardMsg::ToChannel {
            tenant: self.tenant.clone(),
            channel: self.channel,
            frame,
        };
        let gap = GapKey::Channel(self.tenant.clone(), self.channel);
        if let Some(st) = self.state.upgrade() {
            st.outbox.send(&st.shard, self.origin, msg, len, Some(gap));
        }
    }

    fn speaks_kind0(&self) -> bool {
        false
    }

    fn close(&self, code: u16) {
        let msg = ShardMsg::CloseChannel {
            tenant: self.tenant.clone(),
            channel: self.channel,
            code,
        };
        if let Some(st) = self.state.upgrade() {
            st.outbox.send(&st.shard, self.origin, msg, 0, None);
        }
    }
}

/// At home: a channel on shard `origin` subscribed to `tenant` (made
/// active here by the caller).
pub fn added(state: &Rc<ShardState>, tenant: &RefCell<Tenant>, origin: usize, sub: RemoteSub) {
    let id = tenant.borrow().config.external_id.as_str().into();
    let out = Rc::new(RemoteChannel {
        state: Rc::downgrade(state),
        origin,
        tenant: id,
        channel: sub.channel,
    });
    tenant.borrow_mut().cdc.add(CdcSub {
        channel: sub.channel,
        topic: sub.topic,
        vsn: sub.vsn,
        out,
        join_ref: sub.join_ref,
        bindings: sub.bindings,
        legacy: sub.legacy,
        claims: Rc::new(sub.claims),
        ready: false,
        generation: 0,
        told_ready: false,
    });
}

/// At home: a relayed channel's subscription ended.
pub fn removed(state: &ShardState, tenant: &str, channel: ChannelId) {
    if let Some(t) = state.tenant(tenant) {
        t.borrow_mut().cdc.remove(channel);
    }
}

/// At home: a relayed channel has new claims.
pub fn claims(state: &ShardState, tenant: &str, channel: ChannelId, claims: SubClaims) {
    if let Some(t) = state.tenant(tenant) {
        t.borrow_mut().cdc.update_claims(channel, Rc::new(claims));
    }
}

/// On the channel's shard: a frame from home.
pub fn frame(state: &ShardState, tenant: &str, channel: ChannelId, frame: Bytes) {
    #[cfg(feature = "fault-injection")]
    super::fault::stall_if_marked(&frame);
    if let Some(t) = state.tenant(tenant) {
        t.borrow().cdc.relayed_push(channel, frame);
    }
}

/// On the channel's shard: home closes its socket.
pub fn close(state: &ShardState, tenant: &str, channel: ChannelId, code: u16) {
    if let Some(t) = state.tenant(tenant) {
        t.borrow().cdc.relayed_close(channel, code);
    }
}
