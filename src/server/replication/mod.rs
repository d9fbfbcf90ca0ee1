//! The replication driver: one per tenant database, on the tenant's home
//! shard. An explicit state machine, each step logged with its duration:
//!
//! ```text
//! Connect -> CheckPublication -> CheckSlot (-> CreateSlot) -> Start -> Streaming
//!    ^                                                                  |
//!    +------------------------ backoff (capped) <-----------------------+
//! ```
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
pub mod subscribe;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::pgconn::{CopyMsg, PgConn, PgError};
use super::shard::{with_tenant, ShardState};
use crate::proto::pg::pgoutput::{self, Message, Relation};
use crate::proto::pg::relcache::RelCache;
use crate::proto::pg::replication::{Lsn, PgTimestamp, ReplicationMessage};
use crate::proto::pg::types::TypeCache;
use crate::proto::pg::{Oid, PgTimestamp as CommitTime};
use crate::realtime::postgres_changes::change::Change;
use authorize::AccessCache;
use keepalive::{status_update, KeepAlive};
pub use settings::ReplicationSettings;

/// Most changes held before they are authorised and delivered: a batch
/// ends at a commit or at this many changes, whichever comes first (a batch
/// with rows of RLS tables always waits for its commit; see [`flush`]).
const MAX_BATCH: usize = 512;

/// A change waiting for its batch to be authorised and delivered.
struct Pending {
    msg: Message,
    rel: Arc<Relation>,
    pk: Rc<[usize]>,
    commit_time: CommitTime,
}

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
}

/// Runs the driver for `tenant` forever (until the shard stops).
pub async fn run(state: Rc<ShardState>, tenant: String, settings: ReplicationSettings) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(&state, &tenant, &settings).await {
            Ok(()) => backoff = Duration::from_millis(100),
            // The next session drops the slot and tells subscribers.
            Err(PgError::SlotLag(_)) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, retry_in_ms = backoff.as_millis() as u64, "replication stopped");
                with_tenant(&state, &tenant, |t| {
                    t.cdc.set_streaming(
                        false,
                        "Realtime was unable to connect to the project database",
                    )
                });
            }
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn step<T>(
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

/// One connected session: returns on any error (the caller backs off).
async fn session(
    state: &Rc<ShardState>,
    tenant: &str,
    s: &ReplicationSettings,
) -> Result<(), PgError> {
    start::wait_for_subscriber(state, tenant).await;
    let mut sql = step(tenant, Step::Connect, PgConn::connect(&s.sql)).await?;
    let mut repl = step(tenant, Step::Connect, PgConn::connect(&s.stream)).await?;
    let exists = step(
        tenant,
        Step::CheckPublication,
        catalog::publication_exists(&mut sql, &s.publication),
    )
    .await?;
    if !exists {
        return Err(PgError::Protocol(format!(
            "publication `{}` does not exist; create it and add tables (the server never creates it)",
            s.publication
        )));
    }
    let idle = silence::idle_timeout(&mut sql, s.idle_timeout).await?;
    lag::enforce_before_start(state, tenant, &mut sql, s).await?;
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
    step(tenant, Step::Start, repl.start_copy_both(&q)).await?;
    tracing::info!(tenant, slot = %s.slot, "replication streaming");
    with_tenant(state, tenant, |t| t.cdc.set_streaming(true, ""));

    let mut relcache = RelCache::new();
    let mut primary_keys: HashMap<Oid, Rc<[usize]>> = HashMap::new();
    let mut types = TypeCache::new();
    let mut access = AccessCache::default();
    let mut checks = authorize::CheckPool::new(s.sql.clone(), s.check_connections);
    let mut pending: Vec<Pending> = Vec::new();
    let mut next_flush = MAX_BATCH;
    let mut xid = 0u32;
    let mut received = Lsn(0);
    let mut confirmed = Lsn(0);
    let mut commit_time = PgTimestamp(0);
    let mut in_tx = false;
    let mut last_status = Instant::now();
    let mut status = BytesMut::with_capacity(64);
    let mut flush_gate = confirm::FlushGate::default();
    let mut lag_watch = lag::LagWatch::default();
    // A reply was requested after `idle` of silence and none came yet.
    let mut probed = false;
    loop {
        let msg = match silence::recv_within(&mut repl, idle).await? {
            Some(m) => {
                probed = false;
                m
            }
            None if probed => return Err(silence::dead(idle)),
            None => {
                probed = true;
                tracing::info!(
                    tenant,
                    idle_ms = idle.as_millis() as u64,
                    "replication stream quiet; asking the database for a reply"
                );
                let now = Instant::now();
                status_update(&mut status, received, flush_gate.reportable(now), true);
                repl.send_copy_data(&status).await?;
                last_status = now;
                continue;
            }
        };
        let reply_requested = match msg {
            CopyMsg::Done => {
                return Err(PgError::Protocol(
                    "the server ended the replication stream".into(),
                ))
            }
            CopyMsg::Data(d) => match ReplicationMessage::parse(d)
                .map_err(|e| PgError::Protocol(e.to_string()))?
            {
                ReplicationMessage::Keepalive(k) => {
                    received = received.max(k.end);
                    if !in_tx {
                        // Every change before this point has been handled
                        // and no transaction is half-seen: confirm it, so
                        // the slot does not pin WAL of unpublished tables.
                        confirmed = confirmed.max(k.end);
                    }
                    k.reply_requested
                }
                ReplicationMessage::XLogData(x) => {
                    received = received.max(x.start);
                    let msg =
                        pgoutput::decode(x.data).map_err(|e| PgError::Protocol(e.to_string()))?;
                    if let Some(oid) = change_relation(&msg) {
                        let rel = relcache.get(oid).cloned().ok_or_else(|| {
                            PgError::Protocol(format!("change for unknown relation {}", oid.0))
                        })?;
                        // Nobody subscribed: nothing to deliver, and the
                        // commit still confirms it.
                        let anyone =
                            with_tenant(state, tenant, |t| !t.cdc.is_empty()).unwrap_or(false);
                        if anyone {
                            let pk = primary_keys
                                .get(&oid)
                                .cloned()
                                .unwrap_or_else(|| Rc::from([]));
                            pending.push(Pending {
                                msg,
                                rel,
                                pk,
                                commit_time,
                            });
                            if pending.len() >= next_flush {
                                let tx = Tx {
                                    xid,
                                    committed: false,
                                };
                                let done = flush(
                                    state,
                                    tenant,
                                    &mut BatchDb {
                                        sql: &mut sql,
                                        checks: &mut checks,
                                        keep: KeepAlive {
                                            repl: &mut repl,
                                            buf: &mut status,
                                            received,
                                            flushed: flush_gate.reportable(Instant::now()),
                                        },
                                    },
                                    &mut access,
                                    &mut pending,
                                    &types,
                                    tx,
                                )
                                .await?;
                                // Rows of RLS tables wait for the commit;
                                // try again when twice as many are held.
                                next_flush = if done { MAX_BATCH } else { next_flush * 2 };
                            }
                        }
                    } else {
                        match &msg {
                            Message::Relation(r) => {
                                let oids: Vec<_> = r.columns.iter().map(|c| c.type_oid).collect();
                                relcache.apply(&msg);
                                catalog::resolve_types(&mut sql, &mut types, &oids).await?;
                                let pk = catalog::primary_key(&mut sql, r).await?;
                                primary_keys.insert(r.oid, pk.into());
                                access.forget(r.oid);
                            }
                            Message::Type(_) => {
                                relcache.apply(&msg);
                            }
                            Message::Begin(b) => {
                                commit_time = b.commit_time;
                                xid = b.xid;
                                in_tx = true;
                            }
                            Message::Commit(c) => {
                                let tx = Tx {
                                    xid,
                                    committed: true,
                                };
                                flush(
                                    state,
                                    tenant,
                                    &mut BatchDb {
                                        sql: &mut sql,
                                        checks: &mut checks,
                                        keep: KeepAlive {
                                            repl: &mut repl,
                                            buf: &mut status,
                                            received,
                                            flushed: flush_gate.reportable(Instant::now()),
                                        },
                                    },
                                    &mut access,
                                    &mut pending,
                                    &types,
                                    tx,
                                )
                                .await?;
                                next_flush = MAX_BATCH;
                                // Everything of this transaction is in
                                // subscriber queues: its end may be confirmed.
                                confirmed = confirmed.max(c.end_lsn);
                                in_tx = false;
                            }
                            _ => {}
                        }
                    }
                    false
                }
            },
        };
        // One clock reading per message serves every timer below.
        let now = Instant::now();
        flush_gate.fanned_out(confirmed, now);
        if reply_requested || now.saturating_duration_since(last_status) >= s.status_interval {
            status_update(&mut status, received, flush_gate.reportable(now), false);
            repl.send_copy_data(&status).await?;
            last_status = now;
        }
        lag_watch.check(now, tenant, &mut sql, s).await?;
    }
}

/// The connections a batch uses: `sql` for its questions, and the
/// stream, kept alive while they are answered.
struct BatchDb<'a> {
    sql: &'a mut PgConn,
    checks: &'a mut authorize::CheckPool,
    keep: KeepAlive<'a>,
}

/// The relation of an Insert, Update or Delete.
fn change_relation(msg: &Message) -> Option<Oid> {
    match msg {
        Message::Insert(m) => Some(m.relation),
        Message::Update(m) => Some(m.relation),
        Message::Delete(m) => Some(m.relation),
        _ => None,
    }
}

/// The transaction a batch belongs to.
#[derive(Debug, Clone, Copy)]
struct Tx {
    /// Its id (pgoutput's 32-bit xid).
    xid: u32,
    /// Its commit has been decoded.
    committed: bool,
}

/// Authorises and delivers the pending changes, in order: the tables'
/// access is refreshed if stale, the batch's questions are answered in one
/// round trip, then every change is queued to the subscribers it reaches.
///
/// Row checks look the row up in the table, so they need the transaction
/// committed and visible: before the commit (a batch cut at [`MAX_BATCH`])
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
        let queued = with_tenant(state, tenant, |t| {
            t.cdc.deliver(&changes, access, types, &answers)
        })
        .unwrap_or(0);
        tracing::trace!(tenant, changes = changes.len(), queued, "batch delivered");
    }
    drop(changes);
    pending.clear();
    Ok(true)
}
