//! The replication driver: one per tenant database, on the tenant's home
//! shard. An explicit state machine, each step logged with its duration:
//!
//! ```text
//! Connect -> CheckPublication -> CheckSlot (-> CreateSlot) -> Start -> Streaming
//!    ^              |                                                   |
//!    |              +--> NotConfigured (30 s or a join) --+             |
//!    +------------------------ backoff (capped) <---------+-------------+
//! ```
//!
//! Failures back off; a missing publication ([`SessionEnd::NotConfigured`])
//! and a slot to recreate ([`SessionEnd::SlotRecreated`]) are outcomes, not
//! failures. The stream's bookkeeping is [`stream::Stream`], free of I/O;
//! this driver performs what it asks for.
//!
//! The slot is permanent and START_REPLICATION asks for `0/0`, which for a
//! logical slot means "from the confirmed position": after a crash or a
//! Postgres restart the stream resumes where the last confirmation left it.
//! A transaction's end LSN is confirmed only once its changes have been
//! handed to subscribers' queues (fan-out is synchronous in this loop), and
//! reported only after [`confirm::HOLD`] more, so the frames have left the
//! process before Postgres may forget them. The stream starts only once the
//! tenant has a subscriber ([`start`]), so what the slot kept while this
//! server was down goes to the clients that come back; [`lag`] caps the WAL
//! the slot may pin.

pub mod authorize;
pub mod catalog;
pub mod confirm;
pub mod keepalive;
pub mod lag;
pub mod settings;
pub mod silence;
pub mod start;
pub mod stream;
pub mod subscribe;
pub mod teardown;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::fault::{self, Boundary};
use super::pgconn::{CopyMsg, PgConn, PgError};
use super::shard::{with_tenant, ShardState};
use crate::proto::pg::types::TypeCache;
use crate::realtime::postgres_changes::change::Change;
use authorize::AccessCache;
use keepalive::{status_update, KeepAlive};
pub use settings::ReplicationSettings;
use stream::{Action, Pending, Stream, Tx};

/// The driver's state, for logs and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Waiting before a retry.
    Disconnected,
    /// Opening both connections.
    Connect,
    /// Checking the publication exists.
    CheckPublication,
    /// Looking for the slot.
    CheckSlot,
    /// Creating the slot.
    CreateSlot,
    /// Sending START_REPLICATION.
    Start,
    /// Receiving changes.
    Streaming,
    /// The database is reachable but not set up to stream (no
    /// publication): re-checked every [`NOT_CONFIGURED_RECHECK`] or when a
    /// subscriber joins, not retried as a failure.
    NotConfigured,
}

/// How a session ended other than by a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The slot must be recreated (over its lag cap, invalidated, or gone):
    /// an active slot cannot be dropped, so the session ends and the next
    /// one drops it at once. Holds the reason.
    SlotRecreated(String),
    /// Nothing to stream until the database is set up: holds the reason.
    NotConfigured(String),
}

/// How often a driver whose database lacks the publication looks again.
/// Creating it is an operator's act, rare next to this; a subscriber that
/// joins meanwhile triggers a look at once.
pub const NOT_CONFIGURED_RECHECK: Duration = Duration::from_secs(30);

/// What Postgres Changes subscribers are told when the stream goes down.
const DOWN: &str = "Realtime was unable to connect to the project database";

/// Runs the driver for `tenant` forever (until the shard stops).
pub async fn run(state: Rc<ShardState>, tenant: String, settings: ReplicationSettings) {
    let mut backoff = Duration::from_millis(100);
    // The reason last logged for a missing setup, so it is logged once.
    let mut not_configured: Option<String> = None;
    loop {
        // A panic ends the session as a failure does, restarted below with
        // the same backoff (see `fault`): its connections are dropped
        // with it, and the subscribers told the stream is down.
        let ended = match fault::caught(session(&state, &tenant, &settings)).await {
            Ok(ended) => ended,
            Err(msg) => {
                fault::record(&state, Boundary::Stream, &tenant, &msg);
                Err(PgError::Protocol(format!(
                    "the stream's handler panicked: {msg}"
                )))
            }
        };
        match ended {
            // The next session drops the slot and tells subscribers.
            Ok(SessionEnd::SlotRecreated(reason)) => {
                tracing::info!(tenant = %tenant, reason = %reason, "replication session ended to recreate its slot");
                backoff = Duration::from_millis(100);
                not_configured = None;
            }
            Ok(SessionEnd::NotConfigured(reason)) => {
                if not_configured.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(
                        tenant = %tenant,
                        step = ?Step::NotConfigured,
                        recheck_s = NOT_CONFIGURED_RECHECK.as_secs(),
                        "replication not configured: {reason}"
                    );
                }
                with_tenant(&state, &tenant, |t| t.cdc.set_streaming(false, DOWN));
                not_configured = Some(reason);
                backoff = Duration::from_millis(100);
                start::wait_for_join(&state, &tenant, NOT_CONFIGURED_RECHECK).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, retry_in_ms = backoff.as_millis() as u64, "replication stopped");
                with_tenant(&state, &tenant, |t| t.cdc.set_streaming(false, DOWN));
                not_configured = None;
            }
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

pub(crate) async fn step<T>(
    tenant: &str,
    step: Step,
    fut: impl std::future::Future<Output = Result<T, PgError>>,
) -> Result<T, PgError> {
    let started = Instant::now();
    let r = fut.await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match &r {
        Ok(_) => tracing::info!(tenant, ?step, ms, "replication step done"),
        Err(e) => tracing::warn!(tenant, ?step, ms, error = %e, "replication step failed"),
    }
    r
}

/// One connected session: returns on any error (the caller backs off),
/// or when the slot must be recreated or the database lacks the
/// publication.
async fn session(
    state: &Rc<ShardState>,
    tenant: &str,
    s: &ReplicationSettings,
) -> Result<SessionEnd, PgError> {
    start::wait_for_subscriber(state, tenant).await;
    let (mut sql, repl) = connect(tenant, s).await?;
    let exists = step(
        tenant,
        Step::CheckPublication,
        catalog::publication_exists(&mut sql, &s.publication),
    )
    .await?;
    if !exists {
        return Ok(SessionEnd::NotConfigured(format!(
            "publication `{}` does not exist; create it and add tables (the server never creates it)",
            s.publication
        )));
    }
    lag::enforce_before_start(state, tenant, &mut sql, s).await?;
    let mut live = Live::start(tenant, sql, repl, s).await?;
    tracing::info!(tenant, slot = %s.slot, "replication streaming");
    with_tenant(state, tenant, |t| t.cdc.set_streaming(true, ""));

    let mut types = TypeCache::new();
    let mut access = AccessCache::default();
    let mut checks = authorize::CheckPool::new(s.sql.clone(), s.check_connections);
    loop {
        let Some(d) = live.next(tenant).await? else {
            continue;
        };
        // Nobody subscribed: changes are not kept, and commits still
        // confirm them.
        let anyone = || with_tenant(state, tenant, |t| !t.cdc.is_empty()).unwrap_or(false);
        let asked = match live.stream.on_copy_data(d, anyone)? {
            Action::Nothing => false,
            Action::Status => true,
            Action::Resolve(rel) => {
                let oids: Vec<_> = rel.columns.iter().map(|c| c.type_oid).collect();
                catalog::resolve_types(&mut live.sql, &mut types, &oids).await?;
                let pk = catalog::primary_key(&mut live.sql, &rel).await?;
                live.stream.resolved(rel.oid, pk);
                access.forget(rel.oid);
                false
            }
            Action::Flush(tx) => {
                let st = live.stream.status(Instant::now());
                let mut db = BatchDb {
                    sql: &mut live.sql,
                    checks: &mut checks,
                    keep: KeepAlive {
                        repl: &mut live.repl,
                        buf: &mut live.buf,
                        status: st,
                    },
                };
                let done = flush(
                    state,
                    tenant,
                    &mut db,
                    &mut access,
                    live.stream.pending_mut(),
                    &types,
                    tx,
                )
                .await?;
                live.stream.flushed(tx, done);
                pace_relay(state).await;
                false
            }
        };
        if let Some(end) = live.after(tenant, asked, s).await? {
            return Ok(end);
        }
    }
}

/// The longest a stream stops reading at a time for a congested queue to
/// other shards (`pace_relay`).
const RELAY_PACE_LIMIT: Duration = Duration::from_secs(5);

/// After a batch went out: while this shard's queue to other shards is
/// congested (a spread tenant's channels there read slower than the stream
/// relays to them), the stream reads nothing further, for at most
/// [`RELAY_PACE_LIMIT`], as a busy socket's reader waits in
/// `forward::pace`. What is not read stays in the database's slot, so
/// waiting loses nothing, while relaying on would overflow the queue and
/// close those channels as slow consumers.
pub(crate) async fn pace_relay(state: &ShardState) {
    if state.outbox.congested() {
        super::forward::pace(state, RELAY_PACE_LIMIT).await;
    }
}

/// Changes of a batch delivered between two looks at the queues to other
/// shards (`pace_relay`).
const DELIVER_PART: usize = 64;

/// The parts a batch of `n` changes is delivered in.
fn parts(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..n)
        .step_by(DELIVER_PART)
        .map(move |start| start..(start + DELIVER_PART).min(n))
}

/// Opens a session's two connections: catalog queries, then the stream.
pub(crate) async fn connect(
    tenant: &str,
    s: &ReplicationSettings,
) -> Result<(PgConn, PgConn), PgError> {
    let sql = step(tenant, Step::Connect, PgConn::connect(&s.sql)).await?;
    let repl = step(tenant, Step::Connect, PgConn::connect(&s.stream)).await?;
    Ok((sql, repl))
}

/// A streaming session: its connections and the stream's bookkeeping.
/// Shared by the Postgres Changes driver and the messages stream
/// (`server::db_broadcast`), which differ in what they do with a batch.
pub(crate) struct Live {
    /// Catalog queries and the lag check.
    pub sql: PgConn,
    /// The replication stream.
    pub repl: PgConn,
    /// What may be confirmed, and the batch being collected.
    pub stream: Stream,
    /// Status updates are encoded here.
    pub buf: BytesMut,
    /// Paces the slot's lag check.
    lag_watch: lag::LagWatch,
    /// Silence before a reply is requested.
    idle: Duration,
    /// A reply was requested after `idle` of silence and none came yet.
    probed: bool,
}

impl Live {
    /// Reads the silence timeout, then finds or creates the slot and
    /// starts streaming (the publication and the lag cap were seen to).
    pub(crate) async fn start(
        tenant: &str,
        mut sql: PgConn,
        mut repl: PgConn,
        s: &ReplicationSettings,
    ) -> Result<Live, PgError> {
        let idle = silence::idle_timeout(&mut sql, s.idle_timeout).await?;
        start_streaming(tenant, &mut sql, &mut repl, s).await?;
        Ok(Live {
            sql,
            repl,
            stream: Stream::new(
                s.status_interval,
                confirm::FlushGate::default(),
                Instant::now(),
            ),
            buf: BytesMut::with_capacity(64),
            lag_watch: lag::LagWatch::default(),
            idle,
            probed: false,
        })
    }

    /// The next CopyData (`None`: a quiet stream was asked for a reply;
    /// call again).
    pub(crate) async fn next(&mut self, tenant: &str) -> Result<Option<bytes::Bytes>, PgError> {
        next_copy_data(
            tenant,
            &mut self.repl,
            self.idle,
            &mut self.probed,
            &mut self.stream,
            &mut self.buf,
        )
        .await
    }

    /// After each message: [`after_message`].
    pub(crate) async fn after(
        &mut self,
        tenant: &str,
        asked: bool,
        s: &ReplicationSettings,
    ) -> Result<Option<SessionEnd>, PgError> {
        after_message(
            tenant,
            &mut self.stream,
            asked,
            &mut self.buf,
            &mut self.repl,
            &mut self.lag_watch,
            &mut self.sql,
            s,
        )
        .await
    }
}

/// Finds the permanent slot of `s` (created if missing) and starts
/// streaming its publication from the slot's confirmed position.
async fn start_streaming(
    tenant: &str,
    sql: &mut PgConn,
    repl: &mut PgConn,
    s: &ReplicationSettings,
) -> Result<(), PgError> {
    let slot_q = format!(
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = {}",
        catalog::literal(&s.slot)?
    );
    let found = step(tenant, Step::CheckSlot, sql.simple_query(&slot_q)).await?;
    if found[0].rows.is_empty() {
        let q = format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput NOEXPORT_SNAPSHOT",
            s.slot
        );
        step(tenant, Step::CreateSlot, repl.simple_query(&q)).await?;
    }
    let q = format!(
        "START_REPLICATION SLOT {} LOGICAL 0/0 (proto_version '1', publication_names {})",
        s.slot,
        crate::proto::pg::sql::replication_literal(&s.publication)
            .ok_or_else(|| PgError::Protocol("the publication name holds a NUL byte".into()))?
    );
    step(tenant, Step::Start, repl.start_copy_both(&q)).await
}

/// The stream's next CopyData. After `idle` of silence a status update
/// asking for a reply is sent and `None` returned (call again); a stream
/// still silent after that is dead.
async fn next_copy_data(
    tenant: &str,
    repl: &mut PgConn,
    idle: Duration,
    probed: &mut bool,
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<Option<bytes::Bytes>, PgError> {
    match silence::recv_within(repl, idle).await? {
        Some(CopyMsg::Data(d)) => {
            *probed = false;
            Ok(Some(d))
        }
        Some(CopyMsg::Done) => Err(PgError::Protocol(
            "the server ended the replication stream".into(),
        )),
        None if *probed => Err(silence::dead(idle)),
        None => {
            *probed = true;
            tracing::info!(
                tenant,
                idle_ms = idle.as_millis() as u64,
                "replication stream quiet; asking the database for a reply"
            );
            let st = stream.probe(Instant::now());
            status_update(buf, st, true);
            repl.send_copy_data(buf).await?;
            Ok(None)
        }
    }
}

/// After each message: a status update when due (or `asked`), and the
/// slot's lag check, which may end the session to recreate the slot.
#[allow(clippy::too_many_arguments)]
async fn after_message(
    tenant: &str,
    stream: &mut Stream,
    asked: bool,
    buf: &mut BytesMut,
    repl: &mut PgConn,
    lag_watch: &mut lag::LagWatch,
    sql: &mut PgConn,
    s: &ReplicationSettings,
) -> Result<Option<SessionEnd>, PgError> {
    // One clock reading per message serves every timer below.
    let now = Instant::now();
    if let Some(st) = stream.report_status(now, asked) {
        status_update(buf, st, false);
        repl.send_copy_data(buf).await?;
    }
    Ok(lag_watch
        .check(now, tenant, sql, s)
        .await?
        .map(SessionEnd::SlotRecreated))
}

/// The connections a batch uses: `sql` for its questions, and the
/// stream, kept alive while they are answered.
struct BatchDb<'a> {
    sql: &'a mut PgConn,
    checks: &'a mut authorize::CheckPool,
    keep: KeepAlive<'a>,
}

/// Authorises and delivers the pending changes, in order: the tables'
/// access is refreshed if stale, the batch's questions are answered in one
/// round trip, then every change is queued to the subscribers it reaches.
///
/// Row checks look the row up in the table, so they need the transaction
/// committed and visible: before the commit (a batch cut at [`stream::MAX_BATCH`])
/// a batch that needs them is kept (`Ok(false)`), and at the commit the
/// check first waits until the transaction is visible to new snapshots
/// (the walsender may send a commit a moment before the committing
/// backend leaves the proc array).
async fn flush(
    state: &Rc<ShardState>,
    tenant: &str,
    db: &mut BatchDb<'_>,
    access: &mut AccessCache,
    pending: &mut Vec<Pending>,
    types: &TypeCache,
    tx: Tx,
) -> Result<bool, PgError> {
    if pending.is_empty() {
        return Ok(true);
    }
    let changes: Vec<Change<'_>> = pending
        .iter()
        .filter_map(|p| Change::from_message(&p.msg, &p.rel, &p.pk, p.commit_time))
        .collect();
    let needs = with_tenant(state, tenant, |t| t.cdc.access_needs(&changes)).unwrap_or_default();
    if !needs.is_empty() {
        access
            .refresh(db.sql, &needs, |oid| {
                changes.iter().find(|c| c.rel.oid == oid).map(|c| c.rel)
            })
            .await?;
        let questions = with_tenant(state, tenant, |t| t.cdc.plan(&changes, access, types));
        let answers = match questions {
            Some(q) if !q.rows.is_empty() && !tx.committed => {
                return Ok(false);
            }
            Some(q) if !q.is_empty() => {
                if !q.rows.is_empty() {
                    authorize::wait_visible(db.sql, tx.xid).await?;
                }
                authorize::answer(db.sql, db.checks, &changes, &q, access, &mut db.keep).await?
            }
            _ => Default::default(),
        };
        let mut queued = 0;
        for part in parts(changes.len()) {
            if part.start > 0 {
                pace_relay(state).await;
            }
            queued += with_tenant(state, tenant, |t| {
                // Inside the tenant's borrow on purpose (see `fault`). Only
                // a change someone subscribes to, so a restarted stream gets
                // past the poisoned row once its subscriber is gone.
                #[cfg(feature = "fault-injection")]
                for c in &changes[part.clone()] {
                    if needs.iter().any(|(oid, _)| *oid == c.rel.oid) {
                        fault::inject("replication delivery", c.rel.name.as_bytes());
                    }
                }
                t.cdc.deliver_part(&changes, part, access, types, &answers)
            })
            .unwrap_or(0);
        }
        tracing::trace!(tenant, changes = changes.len(), queued, "batch delivered");
    }
    drop(changes);
    pending.clear();
    Ok(true)
}
