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

use super::ask::Asks;
use super::conns::Conn;
use super::handoff::Handoff;
use super::outq::Writers;
use crate::config::Config;
use crate::realtime::authz::{AuthAnswer, AuthQuestion};
use crate::realtime::cdc::{RemoteSub, SubClaims};
use crate::realtime::hub::TopicSnapshot;
use crate::realtime::interest::{Forward, ShardInterest};
use crate::realtime::presence::PresenceDelta;
use crate::realtime::replay::{ReplayAnswer, ReplayRequest};
use crate::realtime::session::{Session, Settings};
use crate::realtime::tenant::{Directory, Tenant, TenantConfig, Tenants};

pub use crate::realtime::interest::TopicId;

/// Forwarded messages of one topic waiting, in order, and their bytes.
#[derive(Default)]
pub struct WaitingTopic {
    /// Oldest first.
    pub queue: std::collections::VecDeque<Arc<Forward>>,
    /// The frames' bytes.
    pub bytes: usize,
}

/// Messages between shards.
pub enum ShardMsg {
    /// A socket whose tenant lives on the receiving shard, with the request
    /// head the accepting shard read from it.
    Adopt(Box<Handoff>),
    /// A tenant was created, changed or removed: forget what is cached of
    /// it, and act on its live state (see `tenants`).
    TenantChanged {
        /// The tenant's external id.
        id: String,
        /// What follows for its sockets and connections.
        change: TenantChange,
        /// Its settings now; `None` if it is gone or only acted upon.
        config: Option<Arc<TenantConfig>>,
        /// The announcing shard and its ticket, to answer [`ShardMsg::Done`].
        reply_to: (usize, u64),
    },
    /// A shard has acted on the announcement with this ticket.
    Done(u64),
    /// What does the tenant's home shard see of it (admin API `health`)?
    ViewTenant {
        /// The tenant's external id.
        id: String,
        /// The asking shard and its ticket, to answer [`ShardMsg::Viewed`].
        reply_to: (usize, u64),
    },
    /// The answer to [`ShardMsg::ViewTenant`] with this ticket.
    Viewed(u64, TenantView),
    /// Run this policy check on the tenant's authorization pool (a REST
    /// request that reached another shard than the tenant's home).
    Authorize {
        /// The tenant's settings (its home may not have it active).
        config: Arc<TenantConfig>,
        /// The check.
        question: Box<AuthQuestion>,
        /// The asking shard and its ticket, to answer [`ShardMsg::Authorized`].
        reply_to: (usize, u64),
    },
    /// The answer to [`ShardMsg::Authorize`] with this ticket.
    Authorized(u64, AuthAnswer),
    /// Fetch these stored messages on the tenant's authorization pool (a
    /// private join with a replay on another shard than the tenant's
    /// home).
    Replay {
        /// The tenant's settings.
        config: Arc<TenantConfig>,
        /// The query's question.
        request: Box<ReplayRequest>,
        /// The asking shard and its ticket, to answer [`ShardMsg::Replayed`].
        reply_to: (usize, u64),
    },
    /// The answer to [`ShardMsg::Replay`] with this ticket.
    Replayed(u64, ReplayAnswer),
    /// A message fanned out on the sending shard, for this shard's
    /// subscribers of its topic (see `forward`).
    Fanout(Arc<Forward>),
    /// Messages were dropped on their way here.
    Gap(GapKey),
    /// A spread tenant's presence change on the sending shard.
    Presence {
        /// The tenant's external id.
        tenant: Arc<str>,
        /// The topic.
        topic: Arc<str>,
        /// Its private namespace.
        private: bool,
        /// The change.
        delta: PresenceDelta,
    },
    /// A spread tenant became active on shard `from`: send it this
    /// shard's presence entries of the tenant.
    PresenceAsk {
        /// The tenant's external id.
        tenant: Arc<str>,
        /// The asking shard.
        from: usize,
    },
    /// The answer to [`ShardMsg::PresenceAsk`]: this shard's entries of
    /// every topic of the tenant that has some.
    PresenceSync {
        /// The tenant's external id.
        tenant: Arc<str>,
        /// Per topic.
        topics: Vec<TopicSnapshot>,
    },
    /// To a tenant's home: the tenant became active on another shard, so
    /// its database work must run here.
    Activate(Arc<TenantConfig>),
    /// To a tenant's home: a channel on shard `origin` subscribed to
    /// Postgres Changes (see `cdc_relay`).
    CdcAdd {
        /// The tenant's settings (its home may not have it active).
        config: Arc<TenantConfig>,
        /// The channel's shard.
        origin: usize,
        /// The subscription.
        sub: Box<RemoteSub>,
    },
    /// To a tenant's home: a relayed channel's subscription ended.
    CdcRemove {
        /// The tenant's external id.
        tenant: Arc<str>,
        /// The channel.
        channel: u64,
    },
    /// To a tenant's home: a relayed channel's new claims.
    CdcClaims {
        /// The tenant's external id.
        tenant: Arc<str>,
        /// The channel.
        channel: u64,
        /// Its claims now.
        claims: SubClaims,
    },
    /// From a tenant's home: a frame for a relayed channel.
    ToChannel {
        /// The tenant's external id.
        tenant: Arc<str>,
        /// The channel.
        channel: u64,
        /// The frame.
        frame: bytes::Bytes,
    },
    /// From a tenant's home: close a relayed channel's socket.
    CloseChannel {
        /// The tenant's external id.
        tenant: Arc<str>,
        /// The channel.
        channel: u64,
        /// The close code.
        code: u16,
    },
}

/// A tenant's live state as its home shard sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantView {
    /// Connections with a joined channel.
    pub users: u64,
    /// Its replication stream is streaming.
    pub streaming: bool,
}

/// What a change to a tenant means for its live state on a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantChange {
    /// Settings changed (limits, switches that keep sockets): the live
    /// state takes the new settings, sockets stay.
    Updated,
    /// Keys, `private_only` or `suspend` changed, or the tenant was deleted
    /// or reloaded: every socket is told `Server requested disconnect` and
    /// closed with 1012, its database work stops, its state goes.
    Disconnect,
    /// Close its database connections only; they reopen when needed.
    Shutdown,
}

/// Everything one shard owns.
pub struct ShardState {
    /// Shard handle: id, mesh, stats table.
    pub shard: Shard<ShardMsg>,
    /// Effective configuration.
    pub config: Arc<Config>,
    /// The tenants of the environment and the config file (shared,
    /// read-only); empty but for the bare-host default with a control
    /// database.
    pub directory: Arc<Directory>,
    /// Connections to the control database (none without one).
    pub control: super::control::pool::Pool,
    /// What this shard knows of tenants, by external id: their settings,
    /// or that there is no such tenant. Filled on first use, emptied per
    /// tenant by [`ShardMsg::TenantChanged`].
    pub catalog: RefCell<HashMap<String, Option<Arc<TenantConfig>>>>,
    /// Bumped by every tenant change, so a lookup that was under way
    /// across one does not cache what it read before it.
    pub catalog_epoch: Cell<u64>,
    /// Control-database lookups under way, by tenant id: later askers
    /// wait for the first instead of asking again.
    pub lookups: RefCell<HashMap<String, Rc<LookupWait>>>,
    /// Announcements of this shard still waiting for other shards: ticket
    /// -> (shards yet to answer, the announcer's waker).
    pub pending_acks: RefCell<HashMap<u64, (usize, Option<std::task::Waker>)>>,
    /// Questions of this shard to a tenant's home shard still unanswered:
    /// ticket -> (the answer once it came, the asker's waker).
    pub pending_views: Asks<TenantView>,
    /// Policy checks this shard asked of a tenant's home shard.
    pub pending_auths: Asks<AuthAnswer>,
    /// Replays this shard asked of a tenant's home shard.
    pub pending_replays: Asks<ReplayAnswer>,
    /// Next announcement or question ticket.
    pub next_ticket: Cell<u64>,
    /// Tasks working for a tenant whose home is this shard (its
    /// replication stream and subscription checker), stopped with it.
    pub tenant_tasks: RefCell<HashMap<String, Vec<glommio::task::JoinHandle<()>>>>,
    /// Where the `realtime` schema of each home tenant with a database
    /// stands (see `tenant_db`), for joins that need it.
    pub tenant_schemas: RefCell<HashMap<String, crate::realtime::tenant::schema::SchemaState>>,
    /// Authorization pools of the tenants whose home is this shard (the
    /// RLS checks of private channels), made on first use, dropped with
    /// the tenant's database work.
    pub auth_pools: RefCell<HashMap<String, Rc<super::rls_batch::Checker>>>,
    /// This shard's side of the interest table; `None` with one shard.
    pub interest: Option<Rc<ShardInterest>>,
    /// This shard's link to the other nodes (`NATS_URL` set).
    pub cluster: Option<Rc<super::cluster::Cluster>>,
    /// Its ordered queues to the other shards, for what must keep its
    /// order (forwarded messages, Postgres Changes relays; see `forward`).
    pub outbox: realtime_shards::outbox::Outbox<ShardMsg, GapKey>,
    /// Messages this shard forwarded to other shards; a reader that made
    /// it grow paces itself on the outbox (`forward::pace`).
    pub forwarded: Cell<u64>,
    /// Forwarded messages of a topic waiting here for its subscribers'
    /// room, behind a patient one (`forward::deliver`).
    pub waiting_topics: RefCell<HashMap<TopicId, WaitingTopic>>,
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
    /// Connections with a channel waiting for its tenant's messages stream
    /// (`broadcast.replication_ready`), asked on every tick until none
    /// waits ([`crate::server::shutdown::replication_ready_sweeper`]).
    pub replication_waiting: RefCell<std::collections::BTreeSet<u64>>,
    /// Spread tenants that became active here and still wait for other
    /// shards' presence entries: answers left, and who waits.
    pub presence_syncs: RefCell<HashMap<String, (usize, Vec<std::task::Waker>)>>,
    /// Set when the server is draining.
    pub shutting_down: Cell<bool>,
    /// What the shards serving a tenant share (users gauge, rate
    /// counters), by tenant id; one registry for the process.
    pub shared_tenants: Arc<crate::realtime::tenant::shared::SharedTenants>,
    /// Monotonic origin for `now_ms`, the same on every shard (tenant rate
    /// counters shared by shards number their ticks on it).
    pub started: Instant,
}

/// What lost messages between shards name: a tenant's topic (its
/// subscribers on the receiving shard are closed), or one channel whose
/// Postgres Changes frames cross from the tenant's home shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GapKey {
    /// (tenant, private, topic).
    Topic(Arc<str>, bool, Arc<str>),
    /// (tenant, channel).
    Channel(Arc<str>, u64),
}

/// Whoever waits for a lookup another task is making.
#[derive(Default)]
pub struct LookupWait {
    done: Cell<bool>,
    wakers: RefCell<Vec<std::task::Waker>>,
}

impl LookupWait {
    /// Wakes every waiter.
    pub fn finish(&self) {
        self.done.set(true);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once [`LookupWait::finish`] ran.
    pub async fn finished(&self) {
        std::future::poll_fn(|cx| {
            if self.done.get() {
                return std::task::Poll::Ready(());
            }
            self.wakers.borrow_mut().push(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }
}

impl ShardState {
    /// Milliseconds since the server started (monotonic, the same clock
    /// on every shard).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// This shard's counters.
    pub fn stats(&self) -> &ShardStats {
        self.shard.my_stats()
    }

    /// The live state of a tenant active on this shard (see
    /// `tenants::activate` for how it becomes active).
    pub fn tenant(&self, id: &str) -> Option<Rc<RefCell<Tenant>>> {
        self.tenants.borrow().get(id).cloned()
    }

    /// Which shard owns `tenant`.
    pub fn home_of(&self, tenant: &str) -> usize {
        realtime_shards::home_shard(tenant, self.shard.nr_shards)
    }

    /// Sends shard `to` the question `make((this shard, ticket))` builds
    /// and waits for its answer in `asks`, at most `wait`. `None` when
    /// that shard is gone or did not answer in time.
    pub async fn ask<T>(
        &self,
        asks: &Asks<T>,
        to: usize,
        wait: std::time::Duration,
        make: impl FnOnce((usize, u64)) -> ShardMsg,
    ) -> Option<T> {
        let ticket = asks.ticket(&self.next_ticket);
        let msg = make((self.shard.id, ticket.id));
        if self.shard.send_to(to, msg).await.is_err() {
            return None;
        }
        ticket.answer(wait).await
    }

    /// The other side of [`ask`](Self::ask): runs `work` here in the
    /// background and sends the message it ends with (the answer, naming
    /// the asker's ticket) back to shard `origin`.
    pub fn answer(
        self: &Rc<Self>,
        origin: usize,
        work: impl std::future::Future<Output = ShardMsg> + 'static,
    ) {
        let st = self.clone();
        glommio::spawn_local(async move {
            let _ = st.shard.send_to(origin, work.await).await;
        })
        .detach();
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

/// Runs `f` on the live state of `tenant` on this shard; `None` if the
/// tenant is not active here.
pub(crate) fn with_tenant<R>(
    state: &ShardState,
    tenant: &str,
    f: impl FnOnce(&mut Tenant) -> R,
) -> Option<R> {
    let t = state.tenant(tenant)?;
    let mut t = t.borrow_mut();
    Some(f(&mut t))
}
