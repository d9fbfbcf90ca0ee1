//! One shard's state: what every driver on an executor shares, and the
//! messages shards send each other. A leaf beneath the drivers: it names
//! the data types they keep here ([`Conn`], [`Handoff`], [`Writers`]) but
//! none of the drivers themselves.

use std::cell::{Cell, RefCell};
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use realtime_shards::{Shard, ShardStats};

use super::conns::Conn;
use super::handoff::Handoff;
use super::outq::Writers;
use crate::config::Config;
use crate::realtime::session::{Session, Settings};
use crate::realtime::tenant::{Directory, Tenant, Tenants};

/// Messages between shards.
pub enum ShardMsg {
    /// A socket whose tenant lives on the receiving shard, with the request
    /// head the accepting shard read from it.
    Adopt(Box<Handoff>),
}

/// Everything one shard owns.
pub struct ShardState {
    /// Shard handle: id, mesh, stats table.
    pub shard: Shard<ShardMsg>,
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Known tenants (shared, read-only).
    pub directory: Arc<Directory>,
    /// Handler switches derived from the config.
    pub settings: Settings,
    /// Tenants active on this shard.
    pub tenants: RefCell<Tenants>,
    /// The sockets' flush list and room waiters (see `outq`).
    pub writers: Rc<Writers>,
    /// Live sessions by connection id (for token expiry and shutdown).
    pub sessions: RefCell<HashMap<u64, Rc<Conn>>>,
    /// Next connection id.
    pub next_conn_id: Cell<u64>,
    /// Next channel id.
    pub next_channel_id: Cell<u64>,
    /// (expiry unix seconds, connection id), earliest first; entries may be
    /// stale and are re-checked when popped.
    pub expiries: RefCell<BinaryHeap<std::cmp::Reverse<(i64, u64)>>>,
    /// Set when the server is draining.
    pub shutting_down: Cell<bool>,
    /// Monotonic origin for `now_ms`.
    pub started: Instant,
}

impl ShardState {
    /// Milliseconds since the shard started (monotonic).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// This shard's counters.
    pub fn stats(&self) -> &ShardStats {
        self.shard.my_stats()
    }

    /// The live state of a tenant whose home is this shard, created on first use.
    pub fn tenant(&self, id: &str) -> Option<Rc<RefCell<Tenant>>> {
        if let Some(t) = self.tenants.borrow().get(id) {
            return Some(t.clone());
        }
        let cfg = self.directory.get(id)?.clone();
        let t = Rc::new(RefCell::new(Tenant::new(cfg, self.now_ms())));
        self.tenants.borrow_mut().insert(id.to_owned(), t.clone());
        Some(t)
    }

    /// Which shard owns `tenant`.
    pub fn home_of(&self, tenant: &str) -> usize {
        realtime_shards::home_shard(tenant, self.shard.nr_shards)
    }

    /// Remembers to check a session's tokens at `exp`.
    pub fn schedule_expiry(&self, session: &Session) {
        if let Some(exp) = session.earliest_expiry() {
            self.expiries
                .borrow_mut()
                .push(std::cmp::Reverse((exp, session.id)));
        }
    }
}

/// Wall-clock Unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs `f` on the live state of `tenant` on this shard (created on first
/// use); `None` if the tenant is unknown.
pub(crate) fn with_tenant<R>(
    state: &ShardState,
    tenant: &str,
    f: impl FnOnce(&mut Tenant) -> R,
) -> Option<R> {
    let t = state.tenant(tenant)?;
    let mut t = t.borrow_mut();
    Some(f(&mut t))
}
