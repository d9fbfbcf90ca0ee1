//! A shard's side of the cluster: its own connection to NATS
//! (`NATS_URL`), the subjects of the topics it has subscribers of, and
//! the messages of other nodes delivered to them.
//!
//! # Shape
//!
//! Every shard of every node keeps one connection (thread per core: no
//! connection shared between executors, no queue to a transport
//! thread). A hub tells its shard's link when it gains its first
//! subscriber of a topic or loses its last (`realtime::cluster::NodeLink`);
//! the link subscribes to or unsubscribes from the topic's subject, so
//! nats-server sends a message only to shards that have subscribers of
//! it. What a hub fans out is published once, as the frames its own
//! subscribers got ([`crate::realtime::cluster::NodeFrame`]); a
//! receiving shard delivers them to its own subscribers only. Shards of
//! the sending node, subscribed to the same subject, skip its copy: they
//! had the message between shards.
//!
//! # Subjects
//!
//! `rt.b.<tenant>.<topic>` for public topics, `rt.p.<tenant>.<topic>` for
//! private ones, each name one escaped token (`proto::nats::subject`): no
//! topic name reaches another topic's subject or a wildcard. A subject
//! too long for a control line is `rt.h.<hash>`; the archive names its
//! tenant and topic, which the receiver compares with the subscription's,
//! so a hash collision delivers nothing wrong.
//!
//! # Joins
//!
//! A subscription is in effect at nats-server once a `PING` written after
//! it is answered. A join whose topic is new on this shard waits for that
//! (see [`Cluster::join_ready`]) before it is answered, so a broadcast
//! sent from any node after the client saw its join reply reaches it.
//!
//! # Presence and liveness
//!
//! Presence crosses as state on the topic's subject (see
//! `realtime::hub`'s presence module): deltas as they happen, and
//! snapshots, which may ask for the receivers' in return. This link
//! decides when a snapshot is due ([`Incoming::Sync`]): after a new
//! subscription (asking everyone), after a reconnect (what was sent
//! while down is lost), and when another node's shard is heard of for
//! the first time or again (asking it). Every shard publishes its
//! replica id on `rt.hb` five times per `NODE_TIMEOUT_MS`; a shard not
//! heard from (heartbeat or presence) for that long is gone
//! ([`Incoming::ReplicaGone`]), and is asked again once it is heard.
//! Every shard hears every shard's heartbeats: (nodes x shards)^2
//! messages per beat, small at the sizes tested (see DECISIONS, "Presence
//! between nodes").
//!
//! # Outages
//!
//! While NATS is unreachable the shard serves its own sockets as a single
//! node would: nothing waits for it, messages for other nodes are counted
//! as dropped, and other nodes' entries leave after the timeout. The
//! link reconnects with backoff, trying each server in turn, subscribes
//! to every topic again and sends its presence of each.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use realtime_shards::ShardStats;

use bytes::Bytes;

use super::nats::{NatsConn, NatsConnError};
use crate::proto::nats::{self as wire, Msg};
use crate::realtime::cluster::{self, NodeLink, NodePresence, Received, ASK_ALL};
use crate::realtime::interest::{Forward, TopicId};
use crate::realtime::presence::ReplicaId;

/// Deadline of a connection's handshake and of each write.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a quiet connection is pinged; two unanswered pings close it.
const PING_EVERY: Duration = Duration::from_secs(2);
/// The longest a join waits for its topic's subscription.
pub const JOIN_WAIT: Duration = Duration::from_secs(2);
/// Longest subject used as is; longer ones are hashed.
const MAX_SUBJECT: usize = 1024;
/// Where nodes tell each other of admin API changes to tenants.
pub const TENANTS_SUBJECT: &str = "rt.admin.tenants";
/// The subscription id of [`TENANTS_SUBJECT`] (topics count up from 1,
/// and never get this far).
const TENANTS_SID: u64 = 1 << 48;
/// Where every shard of every node says it is alive (its replica id, 8
/// bytes little-endian), five times per `NODE_TIMEOUT_MS`.
const HEARTBEAT_SUBJECT: &str = "rt.hb";
/// The subscription id of [`HEARTBEAT_SUBJECT`].
const HEARTBEAT_SID: u64 = TENANTS_SID + 1;
/// Where nodes report their tenants' users and rate counts (shard 0 of
/// each; see `cluster_load`).
pub const LOAD_SUBJECT: &str = "rt.load";
/// The subscription id of [`LOAD_SUBJECT`].
const LOAD_SID: u64 = TENANTS_SID + 2;
/// Where a shard new to a topic asks every other node's shard for its
/// entries of it (see `cluster_peers`).
const ASK_SUBJECT: &str = "rt.ask";
/// The subscription id of [`ASK_SUBJECT`].
const ASK_SID: u64 = TENANTS_SID + 3;
/// The subscription id of this shard's inbox, where answers come.
const INBOX_SID: u64 = TENANTS_SID + 4;

/// This process as a node of the cluster.
pub struct Node {
    /// Random per start: a restarted node is a new one to the others.
    pub id: u64,
    /// `NODE_NAME`, or the host name and port.
    pub name: String,
}

impl Node {
    /// The node `config` describes.
    pub fn of(config: &crate::config::Config) -> Node {
        let name = if config.node_name.is_empty() {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into());
            format!("{host}:{}", config.port)
        } else {
            config.node_name.clone()
        };
        // The low 16 bits name a shard in its presence replicas.
        let id = loop {
            let id = rand::random::<u64>() & !0xffff;
            if id != 0 {
                break id;
            }
        };
        Node { id, name }
    }
}

/// What a link hands to its shard (see `cluster_node`, which acts on it).
pub enum Incoming {
    /// Another node's message for this shard's subscribers of its topic.
    Message(Forward),
    /// A notice on the tenants subject (JSON, see `cluster_node`).
    TenantNotice(Bytes),
    /// Another node's presence of a topic this shard is subscribed to.
    Presence {
        /// The topic.
        id: TopicId,
        /// A delta, or a snapshot (perhaps asking for this shard's).
        body: NodePresence,
    },
    /// This shard's entries of a topic are due to the other nodes
    /// (subscribed anew, connected again, or a replica newly heard of),
    /// asking `ask` for theirs (see `realtime::cluster::ASK_ALL`).
    Sync {
        /// The topic.
        id: TopicId,
        /// Who should answer.
        ask: u64,
    },
    /// Another node's shard went unheard for `NODE_TIMEOUT_MS`: its
    /// entries leave.
    ReplicaGone(ReplicaId),
    /// Another node's report of its tenants' load (shard 0 only).
    Load(Bytes),
    /// A heartbeat went by (shard 0 only): time to report this node's
    /// load.
    Beat,
    /// A shard of another node new to a topic asks for this shard's
    /// entries of it ([`Cluster::answer`] them).
    Ask {
        /// The topic.
        id: TopicId,
        /// The asking shard.
        from: ReplicaId,
    },
}

/// One shard's link to the other nodes.
pub struct Cluster {
    /// Itself, for the tasks it spawns (only the fault hooks', so far).
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    me: Weak<Cluster>,
    /// The shard's counters.
    stats: Arc<[ShardStats]>,
    shard: usize,
    /// Where what arrives goes.
    sink: Box<dyn Fn(Incoming)>,
    /// This process's node id (random per start).
    node: u64,
    /// Receives the tenant changes of other nodes (shard 0 of each node).
    tenants: bool,
    /// The client name nats-server shows (`NODE_NAME`, shard).
    name: String,
    /// `host:port` of each NATS server, tried in turn.
    servers: Vec<String>,
    /// Bytes of operations that may wait for the connection.
    max_out: usize,
    inner: RefCell<Inner>,
    /// The connection's task, waiting for operations to send.
    writer: Cell<Option<Waker>>,
    /// Joins waiting for their topic's subscription.
    waiters: RefCell<Vec<Waker>>,
    /// How long another node's shard may go unheard.
    timeout: Duration,
    /// The other nodes' shards heard from, and when last.
    peers: RefCell<HashMap<ReplicaId, Instant>>,
}

#[derive(Default)]
struct Inner {
    /// Operations written, not yet handed to the connection.
    out: BytesMut,
    /// Connected and past the handshake.
    up: bool,
    /// The server's `max_payload`.
    max_payload: usize,
    topics: HashMap<TopicId, Interest>,
    by_sid: HashMap<u64, TopicId>,
    next_sid: u64,
    /// `PING`s written on this connection, and `PONG`s read.
    pings: u64,
    pongs: u64,
    /// Topics whose entries are due to the other nodes, and who should
    /// answer ([`Incoming::Sync`]).
    sync: Vec<(TopicId, u64)>,
    /// Topics newly subscribed to, and the other nodes' shards whose
    /// entries of them have not arrived yet: joins wait for them.
    pending: HashMap<TopicId, std::collections::HashSet<ReplicaId>>,
}

/// A topic this shard is subscribed to.
struct Interest {
    sid: u64,
    /// Its subscribers here, plus joins waiting for it.
    holders: u32,
    /// In effect once this many `PONG`s were read.
    effective_at: u64,
}

/// The subject where answers to shard `replica`'s asks come.
fn inbox_of(replica: ReplicaId) -> String {
    format!("rt.r.{:x}", replica.0)
}

/// The subject of a topic's messages.
pub fn subject_of(id: &TopicId) -> String {
    let prefix = if id.1 { "rt.p" } else { "rt.b" };
    let s = wire::subject(prefix, &[id.0.as_bytes(), id.2.as_bytes()]);
    if s.len() <= MAX_SUBJECT {
        return s;
    }
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    for part in [id.0.as_bytes(), &[u8::from(id.1)], id.2.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let mut s = String::from("rt.h.");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn topic_id(tenant: &Arc<str>, topic: &str, private: bool) -> TopicId {
    (tenant.clone(), private, topic.into())
}

impl Cluster {
    /// The link of shard `shard` of node `node`, to `servers`; what
    /// arrives goes to `sink`; other nodes' shards unheard for `timeout`
    /// are gone.
    pub fn new(
        node: u64,
        name: &str,
        (shard, stats): (usize, Arc<[ShardStats]>),
        servers: Vec<String>,
        (max_out, timeout): (usize, Duration),
        sink: Box<dyn Fn(Incoming)>,
    ) -> Rc<Cluster> {
        Rc::new_cyclic(|me| Cluster {
            me: me.clone(),
            stats,
            shard,
            sink,
            node,
            tenants: shard == 0,
            name: format!("{name}/shard-{shard}"),
            servers,
            max_out,
            inner: RefCell::default(),
            writer: Cell::new(None),
            waiters: RefCell::default(),
            timeout,
            peers: RefCell::default(),
        })
    }

    /// This shard's presence replica.
    pub fn replica(&self) -> ReplicaId {
        ReplicaId::of(self.node, self.shard)
    }

    /// This node's id.
    pub fn node(&self) -> u64 {
        self.node
    }

    fn stats(&self) -> &ShardStats {
        &self.stats[self.shard]
    }

    /// Publishes `payload` to `subject` as is; false (nothing sent) while
    /// NATS is down.
    pub fn publish_raw(&self, subject: &str, payload: &[u8]) -> bool {
        let mut i = self.inner.borrow_mut();
        if !i.up || wire::write_pub(&mut i.out, subject.as_bytes(), None, payload).is_err() {
            return false;
        }
        drop(i);
        self.wake_writer();
        true
    }

    /// Whether the link is connected.
    pub fn is_up(&self) -> bool {
        self.inner.borrow().up
    }

    fn wake_writer(&self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    fn wake_waiters(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Subscribes to `id` (once for all its holders).
    pub fn hold(&self, id: &TopicId) {
        let mut i = self.inner.borrow_mut();
        if let Some(t) = i.topics.get_mut(id) {
            t.holders += 1;
            return;
        }
        i.next_sid += 1;
        let sid = i.next_sid;
        i.topics.insert(
            id.clone(),
            Interest {
                sid,
                holders: 1,
                effective_at: u64::MAX,
            },
        );
        i.by_sid.insert(sid, id.clone());
        drop(i);
        #[cfg(feature = "fault-injection")]
        if id.2.contains(super::fault::SLOW_SUBSCRIBE) {
            if let Some(me) = self.me.upgrade() {
                let id = id.clone();
                glommio::spawn_local(async move {
                    let late = Duration::from_millis(super::fault::SLOW_SUBSCRIBE_MS);
                    glommio::timer::sleep(late).await;
                    me.subscribe(&id, sid);
                })
                .detach();
                return;
            }
        }
        self.subscribe(id, sid);
    }

    /// Writes the subscription `sid` of `id` (if still held under it),
    /// with the `PING` whose answer puts it in effect. Written even while
    /// down: the buffer is replaced on connecting, which subscribes to
    /// every topic then held.
    fn subscribe(&self, id: &TopicId, sid: u64) {
        let mut i = self.inner.borrow_mut();
        let Inner {
            out, pings, topics, ..
        } = &mut *i;
        let Some(t) = topics.get_mut(id).filter(|t| t.sid == sid) else {
            return;
        };
        t.effective_at = match wire::write_sub(out, subject_of(id).as_bytes(), None, sid) {
            Ok(()) => {
                wire::write_ping(out);
                *pings += 1;
                *pings
            }
            // Not a subject nats-server takes (cannot happen: every name
            // is escaped): never in effect, joins wait their deadline.
            Err(_) => u64::MAX,
        };
        drop(i);
        // The other nodes' entries: joins wait for every live shard's.
        self.ask(id);
        self.wake_writer();
    }

    /// One holder of `id` less; unsubscribes after the last, and then
    /// returns true: nothing more of the topic is heard here, so the
    /// other nodes' entries of it must go.
    pub fn release(&self, id: &TopicId) -> bool {
        let mut i = self.inner.borrow_mut();
        let Some(t) = i.topics.get_mut(id) else {
            return false;
        };
        t.holders -= 1;
        if t.holders > 0 {
            return false;
        }
        let sid = t.sid;
        i.topics.remove(id);
        i.by_sid.remove(&sid);
        i.sync.retain(|(s, _)| s != id);
        i.pending.remove(id);
        wire::write_unsub(&mut i.out, sid);
        drop(i);
        self.wake_writer();
        true
    }

    /// Whether a join of `id` may be answered: its subscription is in
    /// effect and every other node's shard sent its entries of the topic
    /// (or went), or NATS is down (the node serves alone meanwhile).
    pub fn join_ready(&self, id: &TopicId) -> bool {
        let i = self.inner.borrow();
        !i.up
            || (i.topics.get(id).is_some_and(|t| i.pongs >= t.effective_at)
                && !i.pending.contains_key(id))
    }

    /// Resolves once [`Cluster::join_ready`] holds for `id`.
    pub async fn until_join_ready(&self, id: &TopicId) {
        poll_fn(|cx| {
            if self.join_ready(id) {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Connects, serves the connection until it fails, and again, for the
    /// life of the shard.
    pub async fn run(self: Rc<Self>) {
        glommio::spawn_local(self.clone().beat()).detach();
        let mut backoff = Duration::from_millis(100);
        let mut turn = 0usize;
        loop {
            let server = &self.servers[turn % self.servers.len()];
            turn += 1;
            match self.connect(server).await {
                Ok(conn) => {
                    tracing::info!(server = %server, client = %self.name, "connected to NATS");
                    backoff = Duration::from_millis(100);
                    let e = self.serve(conn).await;
                    tracing::warn!(server = %server, error = %e, "NATS connection lost; serving this node's sockets alone until it is back");
                }
                Err(e) => {
                    tracing::warn!(server = %server, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach NATS");
                }
            }
            self.set_down();
            glommio::timer::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn connect(&self, server: &str) -> Result<NatsConn, NatsConnError> {
        let addr: SocketAddr = server
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{server}: no address")))?;
        NatsConn::connect(addr, &self.name, IO_TIMEOUT).await
    }

    fn set_down(&self) {
        let mut i = self.inner.borrow_mut();
        if i.up {
            i.up = false;
            ShardStats::gauge(&self.stats().nats_up, -1);
        }
        // No answer comes now; a reconnect asks again.
        i.pending.clear();
        drop(i);
        self.wake_waiters();
    }

    /// Subscribes to every topic held, then moves operations and messages
    /// until the connection fails.
    async fn serve(&self, mut conn: NatsConn) -> NatsConnError {
        {
            let mut i = self.inner.borrow_mut();
            let Inner {
                out,
                topics,
                pings,
                pongs,
                ..
            } = &mut *i;
            // What was written for the last connection is stale: its
            // subscriptions are all written again below, and messages
            // meant for it are lost with it (counted when written).
            out.clear();
            *pings = 1;
            *pongs = 0;
            for (id, t) in topics.iter_mut() {
                t.effective_at = match wire::write_sub(out, subject_of(id).as_bytes(), None, t.sid)
                {
                    Ok(()) => 1,
                    Err(_) => u64::MAX,
                };
            }
            if self.tenants {
                let _ = wire::write_sub(out, TENANTS_SUBJECT.as_bytes(), None, TENANTS_SID);
                let _ = wire::write_sub(out, LOAD_SUBJECT.as_bytes(), None, LOAD_SID);
            }
            let _ = wire::write_sub(out, ASK_SUBJECT.as_bytes(), None, ASK_SID);
            let inbox = inbox_of(self.replica());
            let _ = wire::write_sub(out, inbox.as_bytes(), None, INBOX_SID);
            let _ = wire::write_sub(out, HEARTBEAT_SUBJECT.as_bytes(), None, HEARTBEAT_SID);
            // Heard of before anything else it sends (see `heard`).
            let me = self.replica().0.to_le_bytes();
            let _ = wire::write_pub(out, HEARTBEAT_SUBJECT.as_bytes(), None, &me);
            wire::write_ping(out);
            // What the others heard of this shard's presence while it was
            // away may be stale, and what it heard of theirs.
            i.sync = i.topics.keys().map(|id| (id.clone(), ASK_ALL)).collect();
            i.up = true;
            i.max_payload = conn.max_payload();
        }
        ShardStats::gauge(&self.stats().nats_up, 1);
        let base = conn.pongs();
        loop {
            let sync = std::mem::take(&mut self.inner.borrow_mut().sync);
            for (id, ask) in sync {
                (self.sink)(Incoming::Sync { id, ask });
            }
            let ops = std::mem::take(&mut self.inner.borrow_mut().out);
            if !ops.is_empty() {
                conn.queue_written(&ops);
            }
            if conn.has_queued() {
                if let Err(e) = conn.flush().await {
                    return e;
                }
            }
            let pongs = conn.pongs() - base;
            if pongs != self.inner.borrow().pongs {
                self.inner.borrow_mut().pongs = pongs;
                self.wake_waiters();
            }
            enum Event {
                Msg(Result<Option<Msg>, NatsConnError>),
                Ops,
                Tick,
            }
            let next = async { Event::Msg(conn.next_unflushed().await) };
            let ops = async {
                poll_fn(|cx| {
                    let i = self.inner.borrow();
                    if i.out.is_empty() && i.sync.is_empty() {
                        self.writer.set(Some(cx.waker().clone()));
                        Poll::Pending
                    } else {
                        Poll::Ready(())
                    }
                })
                .await;
                Event::Ops
            };
            let tick = async {
                glommio::timer::sleep(PING_EVERY).await;
                Event::Tick
            };
            match future::or(next, future::or(ops, tick)).await {
                Event::Msg(Ok(Some(m))) => self.receive(m),
                // A PONG: counted at the top of the loop.
                Event::Msg(Ok(None)) => {}
                Event::Msg(Err(e)) => return e,
                Event::Ops => {}
                Event::Tick => {
                    self.inner.borrow_mut().pongs = conn.pongs() - base;
                    let mut i = self.inner.borrow_mut();
                    if i.pings.saturating_sub(i.pongs) >= 2 {
                        return NatsConnError::Timeout("two pings");
                    }
                    wire::write_ping(&mut i.out);
                    i.pings += 1;
                }
            }
        }
    }

    /// Hands another node's message to this shard.
    fn receive(&self, m: Msg) {
        if m.sid == TENANTS_SID {
            return (self.sink)(Incoming::TenantNotice(m.payload));
        }
        if m.sid == LOAD_SID {
            return (self.sink)(Incoming::Load(m.payload));
        }
        if m.sid == ASK_SID {
            return self.asked(&m.payload);
        }
        if m.sid == INBOX_SID {
            return self.answered(&m.payload);
        }
        if m.sid == HEARTBEAT_SID {
            match <[u8; 8]>::try_from(&m.payload[..]) {
                Ok(b) => self.heard(ReplicaId(u64::from_le_bytes(b))),
                Err(_) => ShardStats::add(&self.stats().nats_invalid, 1),
            }
            return;
        }
        let Some(id) = self.inner.borrow().by_sid.get(&m.sid).cloned() else {
            // Unsubscribed meanwhile.
            return;
        };
        let Ok(received) = cluster::decode(&m.payload) else {
            ShardStats::add(&self.stats().nats_invalid, 1);
            return;
        };
        if received.origin() == self.node {
            return;
        }
        if received.topic() != (&*id.0, id.1, &*id.2) {
            // A hashed subject shared by two topics: not this one's.
            return;
        }
        ShardStats::add(&self.stats().nats_in, 1);
        match received {
            Received::Fanout { fwd, .. } => (self.sink)(Incoming::Message(fwd)),
            Received::Presence { body, .. } => {
                let replica = match &body {
                    NodePresence::Delta(d) => d.origin(),
                    NodePresence::Snapshot { entries, .. } => entries.origin(),
                };
                self.heard(replica);
                (self.sink)(Incoming::Presence { id, body });
            }
        }
    }
}

impl NodeLink for Cluster {
    fn gained(&self, tenant: &Arc<str>, topic: &str, private: bool) {
        self.hold(&topic_id(tenant, topic, private));
    }

    fn lost(&self, tenant: &Arc<str>, topic: &str, private: bool) -> bool {
        self.release(&topic_id(tenant, topic, private))
    }

    fn node_id(&self) -> u64 {
        self.node
    }

    fn presence(&self, tenant: &Arc<str>, topic: &str, private: bool, body: NodePresence) {
        let stats = self.stats();
        let i = self.inner.borrow();
        if !i.up {
            // Sent again in full once connected (see `serve`).
            ShardStats::add(&stats.nats_drops, 1);
            return;
        }
        let payload = cluster::encode_presence(tenant, topic, private, &body);
        if payload.len() > i.max_payload {
            tracing::warn!(tenant = %tenant, topic, bytes = payload.len(), "presence of a topic too large for NATS's max_payload: not sent to the other nodes");
        }
        drop(i);
        self.publish_on_topic(&topic_id(tenant, topic, private), &payload);
    }

    fn publish(&self, fwd: &Forward) {
        let stats = self.stats();
        let i = self.inner.borrow();
        if !i.up || i.out.len() > self.max_out {
            ShardStats::add(&stats.nats_drops, 1);
            return;
        }
        drop(i);
        let payload = cluster::encode(self.node, fwd);
        let id = (fwd.tenant.clone(), fwd.private, fwd.topic.clone());
        self.publish_on_topic(&id, &payload);
    }
}

impl Cluster {
    /// Publishes `payload` on a topic's subject, or counts it dropped
    /// (over the server's `max_payload`).
    fn publish_on_topic(&self, id: &TopicId, payload: &[u8]) {
        let stats = self.stats();
        let mut i = self.inner.borrow_mut();
        if payload.len() > i.max_payload
            || wire::write_pub(&mut i.out, subject_of(id).as_bytes(), None, payload).is_err()
        {
            ShardStats::add(&stats.nats_drops, 1);
            return;
        }
        ShardStats::add(&stats.nats_out, 1);
        drop(i);
        self.wake_writer();
    }
}

#[path = "cluster_peers.rs"]
mod peers;

#[cfg(test)]
mod tests {
    use super::*;

    fn id(tenant: &str, private: bool, topic: &str) -> TopicId {
        (tenant.into(), private, topic.into())
    }

    #[test]
    fn subjects_keep_names_apart() {
        assert_eq!(
            subject_of(&id("t", false, "realtime:a")),
            "rt.b._t._realtime%3Aa"
        );
        assert_eq!(
            subject_of(&id("t", true, "realtime:a")),
            "rt.p._t._realtime%3Aa"
        );
        // Wildcards and separators in a name stay inside its token.
        let s = subject_of(&id("t", false, "realtime:>.*"));
        assert_eq!(s.split('.').count(), 4);
        assert!(!s.contains('*') && !s.contains('>'));
        // A tenant cannot run into the topic.
        assert_ne!(
            subject_of(&id("a.b", false, "c")),
            subject_of(&id("a", false, "b.c"))
        );
    }

    #[test]
    fn long_names_are_hashed_and_still_apart() {
        let long = "x".repeat(2000);
        let a = subject_of(&id("t", false, &long));
        let b = subject_of(&id("t", true, &long));
        assert!(a.starts_with("rt.h.") && a.len() == 5 + 40);
        assert_ne!(a, b);
    }
}
