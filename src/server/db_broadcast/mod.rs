//! Broadcast from Database: per tenant database, on the tenant's home
//! shard, a logical replication stream of `realtime.messages` whose
//! inserted rows go out as user broadcasts with `meta.id` (see
//! [`crate::realtime::db_broadcast`]). A state machine like the Postgres
//! Changes driver's, built from its pieces (the socket-free
//! [`Stream`], the confirmation gate, the lag cap, the silence probe, the
//! panic boundary with backoff):
//!
//! ```text
//! WaitSchema -> WaitChannel -> Connect -> EnsurePublication
//!     -> CheckSlot (-> CreateSlot) -> Start -> Streaming
//!     ^                                                                                  |
//!     +--------------------------- backoff (capped) <------------------------------------+
//! ```
//!
//! **When it streams.** Once the tenant's schema is migrated (the table
//! exists only then) and the tenant has at least one joined channel on
//! this shard; the publication and the slot are made then, if missing (a
//! database whose tenant never has a channel gets no slot holding its WAL).
//! The slot is **permanent**, so what is committed from its creation on,
//! while this server is down or before anyone joined again, waits there and
//! reaches the clients that come back and join; once streaming, messages
//! with nobody on their topic are confirmed and dropped, as a broadcast to
//! nobody is.
//!
//! **Slot.** `realtime_messages_slot<SLOT_NAME_SUFFIX>`, deliberately not the
//! Elixir server's `supabase_realtime_messages_replication_slot_<suffix>`:
//! the Elixir server uses a temporary slot and defers for ever while a slot
//! of its name exists, so handing the database back to it is never blocked
//! by ours. Deleting the tenant through the admin API drops this slot too.
//! A position is confirmed only after its rows are in subscribers' queues
//! and [`confirm::HOLD`](crate::server::replication::confirm::HOLD) more
//! (at-least-once); `REPLICATION_MAX_SLOT_LAG_MB` caps the WAL it keeps.
//!
//! **Why a stream of its own** (not the Postgres Changes slot with two
//! publications): the two start under different rules (a Postgres Changes
//! subscriber vs any joined channel and a migrated schema), a Postgres
//! Changes batch that waits on RLS row checks (or fails them and retries)
//! must not hold broadcasts back, and neither may a slow one block the
//! other's confirmations. The cost, a second walsender decoding the same
//! WAL, is measured in `perf/DECISIONS.md`.

pub mod publication;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use realtime_shards::ShardStats;

use super::fault::{self, Boundary};
use super::pgconn::{PgConn, PgError};
use super::replication::stream::{Action, Pending};
use super::replication::{
    connect, lag, pace_relay, step, Live, ReplicationSettings, SessionEnd, Step,
};
use super::shard::{with_tenant, ShardState};
use crate::config::Config;
use crate::proto::pg::pgoutput::Message;
use crate::realtime::db_broadcast::{self, is_messages_relation, DbMessage};
use crate::realtime::tenant::schema::SchemaState;
use crate::realtime::tenant::shared::SharedTenant;

/// The slot's name before `SLOT_NAME_SUFFIX`.
pub const SLOT_PREFIX: &str = "realtime_messages_slot";

/// How often a waiting driver looks for a migrated schema and a channel.
const POLL: Duration = Duration::from_millis(50);

/// Between attempts while the slot is still held by a walsender that has
/// not noticed its session ended.
const SLOT_BUSY_RETRY: Duration = Duration::from_millis(200);

/// Quick retries (about 10 s) before a slot in use is retried with the
/// backoff.
const SLOT_BUSY_TRIES: u32 = 50;

/// The messages stream's settings: the tenant database's, with the
/// messages publication and slot.
pub fn settings(c: &Config, base: &ReplicationSettings) -> ReplicationSettings {
    let mut s = base.clone();
    s.publication = publication::PUBLICATION.into();
    s.slot = format!("{SLOT_PREFIX}{}", c.slot_name_suffix);
    s.stream.application_name = "realtime_broadcast_changes".into();
    s
}

/// Whether the tenant's schema is migrated (the table exists).
fn schema_ready(state: &ShardState, tenant: &str) -> bool {
    super::tenant_db::schema_state(state, tenant) == Some(SchemaState::Ready)
}

/// Whether the tenant has a joined channel: on this shard (its home), or
/// on any other (a spread tenant's users are counted tenant-wide).
fn has_channel(state: &ShardState, tenant: &str) -> bool {
    with_tenant(state, tenant, |t| t.hub.nr_topics() > 0 || t.nr_users() > 0).unwrap_or(false)
}

/// Runs the messages stream of `tenant` until the shard stops or the
/// tenant's database work is cancelled.
pub async fn run(state: Rc<ShardState>, tenant: String, settings: ReplicationSettings) {
    let mut backoff = Duration::from_millis(100);
    // Quick retries spent on a slot in use.
    let mut busy = 0;
    loop {
        while !schema_ready(&state, &tenant) {
            glommio::timer::sleep(POLL).await;
        }
        let ended = match fault::caught(async {
            wait_for_channel(&state, &tenant, &settings).await;
            session(&state, &tenant, &settings).await
        })
        .await
        {
            Ok(ended) => ended,
            Err(msg) => {
                fault::record(&state, Boundary::Stream, &tenant, &msg);
                Err(PgError::Protocol(format!(
                    "the messages stream's handler panicked: {msg}"
                )))
            }
        };
        if !matches!(&ended, Err(e) if e.code() == Some("55006")) {
            busy = 0;
        }
        match ended {
            Ok(end) => {
                tracing::info!(tenant = %tenant, end = ?end, "messages stream session ended");
                backoff = Duration::from_millis(100);
            }
            // The slot is still held by the walsender of a session that
            // just ended (ours, or a server killed a moment ago): Postgres
            // lets go of it as soon as it notices, so look again soon
            // rather than back off, for a while (a slot another stream
            // keeps using, e.g. another tenant on the same database, is
            // then retried with the backoff).
            Err(e) if e.code() == Some("55006") && busy < SLOT_BUSY_TRIES => {
                busy += 1;
                tracing::info!(tenant = %tenant, error = %e, "messages slot still in use; retrying");
                glommio::timer::sleep(SLOT_BUSY_RETRY).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, retry_in_ms = backoff.as_millis() as u64, "messages stream stopped")
            }
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Returns once the tenant has a joined channel (logged once if it waits).
async fn wait_for_channel(state: &ShardState, tenant: &str, s: &ReplicationSettings) {
    if has_channel(state, tenant) {
        return;
    }
    tracing::info!(tenant, slot = %s.slot, "messages stream waits for a first joined channel");
    while !has_channel(state, tenant) {
        glommio::timer::sleep(POLL).await;
    }
}

/// [`publication::ensure`], logged when it had to act.
async fn ensure_publication(tenant: &str, sql: &mut PgConn) -> Result<(), PgError> {
    let ensured = step(tenant, Step::CheckPublication, publication::ensure(sql)).await?;
    if ensured != publication::Ensured::Valid {
        tracing::warn!(
            tenant,
            publication = publication::PUBLICATION,
            ?ensured,
            "messages publication set up"
        );
    }
    Ok(())
}

/// The tenant's `messages_streaming` flag, up while this lives. It holds
/// the tenant's shared state itself, so the flag goes down with the
/// stream even when the tenant's state on this shard went first (a
/// tenant change stops the stream).
struct Streaming(Option<Arc<SharedTenant>>);

impl Streaming {
    fn set(state: &ShardState, tenant: &str) -> Self {
        Streaming(with_tenant(state, tenant, |t| {
            t.set_messages_streaming(true);
            t.users.tenant().clone()
        }))
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.set_messages_streaming(false);
        }
    }
}

/// One connected session; returns on an error or to recreate the slot.
async fn session(
    state: &Rc<ShardState>,
    tenant: &str,
    s: &ReplicationSettings,
) -> Result<SessionEnd, PgError> {
    let (mut sql, repl) = connect(tenant, s).await?;
    ensure_publication(tenant, &mut sql).await?;
    // What the old slot held is gone; the log says so at error level.
    lag::drop_if_over_cap(tenant, &mut sql, s).await?;
    let mut live = Live::start(tenant, sql, repl, s).await?;
    tracing::info!(tenant, slot = %s.slot, "messages stream streaming");
    // Channels that asked (`broadcast.replication_ready`) are told on the
    // next tick; the flag drops when the session ends, however it ends.
    let _streaming = Streaming::set(state, tenant);
    loop {
        let Some(d) = live.next(tenant).await? else {
            continue;
        };
        let asked = match live.stream.on_copy_data(d, || has_channel(state, tenant))? {
            Action::Nothing => false,
            Action::Status => true,
            // Rows are read by column name: nothing to look up.
            Action::Resolve(rel) => {
                live.stream.resolved(rel.oid, Vec::new());
                false
            }
            Action::Flush(tx) => {
                deliver(state, tenant, live.stream.pending_mut()).await;
                live.stream.flushed(tx, true);
                false
            }
        };
        if let Some(end) = live.after(tenant, asked, s).await? {
            return Ok(end);
        }
    }
}

/// Fans out the inserts among `pending`, in commit order, and empties it.
/// A row that cannot go out is logged as `UnableToBroadcastChanges` and
/// counted; it is confirmed with the rest (retrying would not change it).
/// Between messages, a congested queue to other shards is waited for
/// (`pace_relay`).
async fn deliver(state: &ShardState, tenant: &str, pending: &mut Vec<Pending>) {
    let stats = state.stats();
    for p in pending.drain(..) {
        let now = state.now_ms();
        let Message::Insert(ins) = &p.msg else {
            continue;
        };
        if !is_messages_relation(&p.rel.schema, &p.rel.name) {
            continue;
        }
        let sent = DbMessage::from_insert(&p.rel, ins).and_then(|m| {
            with_tenant(state, tenant, |t| db_broadcast::deliver(t, &m, now))
                .unwrap_or(Ok(0))
                .map(|n| (m, n))
        });
        match sent {
            Ok((m, n)) => {
                ShardStats::add(&stats.db_broadcasts, 1);
                tracing::trace!(tenant, id = %m.id, frames = n, "database broadcast delivered");
            }
            Err(e) => {
                ShardStats::add(&stats.db_broadcast_drops, 1);
                tracing::error!(tenant, error = %e, "UnableToBroadcastChanges: {e}");
            }
        }
        pace_relay(state).await;
    }
}
