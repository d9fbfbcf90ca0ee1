//! The slot lag cap: a permanent slot keeps every byte of WAL from its
//! `restart_lsn` on, so a stream that falls far behind (or a server that
//! stays down) can fill the database's disk. When the WAL a slot retains
//! exceeds `REPLICATION_MAX_SLOT_LAG_MB`, or Postgres has invalidated the
//! slot (`wal_status = 'lost'`, from its own `max_slot_wal_keep_size`), the
//! slot is dropped and recreated: changes in between are lost, which is
//! logged at error level and told to every Postgres Changes subscriber with
//! a `system` error.
//!
//! Checked before each START_REPLICATION ([`enforce_before_start`]) and
//! every [`CHECK_EVERY`] while streaming ([`LagWatch`]). An active slot
//! cannot be dropped, so a streaming check that finds the cap exceeded ends
//! the session (`SessionEnd::SlotRecreated`) and the next session's check
//! drops it.

use std::time::{Duration, Instant};

use super::catalog::literal;
use super::settings::{ReplicationSettings, MB};
use crate::realtime::frames;
use crate::server::pgconn::{PgConn, PgError};
use crate::server::shard::ShardState;

/// How often a streaming session measures its slot.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Attempts, 100 ms apart, to drop a slot still held by a walsender.
const DROP_TRIES: u32 = 30;

/// A slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// `pg_current_wal_lsn() - restart_lsn`: WAL the slot keeps on disk
    /// (`None` when the slot has no restart_lsn).
    pub retained: Option<u64>,
    /// `wal_status`: reserved, extended, unreserved or lost.
    pub wal_status: String,
}

/// Why a slot must be recreated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recreate {
    /// It retains more than the cap (both in bytes).
    OverCap {
        /// Retained WAL.
        retained: u64,
        /// The cap.
        cap: u64,
    },
    /// Postgres removed WAL it needed; it can never stream again.
    Lost,
}

impl Recreate {
    /// What subscribers and the log are told.
    pub fn message(&self, slot: &str) -> String {
        match self {
            Recreate::OverCap { retained, cap } => format!(
                "Replication slot {slot} retained {} MB of WAL, over the {} MB cap \
                 (REPLICATION_MAX_SLOT_LAG_MB): it was dropped and recreated to protect \
                 the database's disk, and changes committed meanwhile were not delivered",
                retained / MB,
                cap / MB
            ),
            Recreate::Lost => format!(
                "Replication slot {slot} was invalidated by the database (the WAL it needed \
                 was removed): it was dropped and recreated, and changes committed meanwhile \
                 were not delivered"
            ),
        }
    }
}

/// What to do with a slot, given the cap in bytes (0 = no cap).
pub fn verdict(slot: &SlotState, cap: u64) -> Option<Recreate> {
    if slot.wal_status == "lost" {
        return Some(Recreate::Lost);
    }
    match slot.retained {
        Some(retained) if cap > 0 && retained > cap => Some(Recreate::OverCap { retained, cap }),
        _ => None,
    }
}

/// The slot's state, or `None` if it does not exist.
pub async fn slot_state(sql: &mut PgConn, slot: &str) -> Result<Option<SlotState>, PgError> {
    let q = format!(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, \
         coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = {}",
        literal(slot)?
    );
    let rows = sql.simple_query(&q).await?;
    let Some(row) = rows.first().and_then(|r| r.rows.first()) else {
        return Ok(None);
    };
    Ok(Some(SlotState {
        retained: row[0]
            .as_deref()
            .and_then(|v| v.parse::<i64>().ok())
            .map(|v| v.max(0) as u64),
        wal_status: row[1].clone().unwrap_or_default(),
    }))
}

/// Before START_REPLICATION: drops the slot if it is over the cap or lost
/// (the caller then creates it afresh), logging and telling subscribers.
pub async fn enforce_before_start(
    state: &ShardState,
    tenant: &str,
    sql: &mut PgConn,
    s: &ReplicationSettings,
) -> Result<(), PgError> {
    if let Some(message) = drop_if_over_cap(tenant, sql, s).await? {
        tell_subscribers(state, tenant, &message);
    }
    Ok(())
}

/// Drops the slot of `s` if it is over the cap or lost, logged at error
/// level; returns what was lost, for the stream's subscribers.
pub async fn drop_if_over_cap(
    tenant: &str,
    sql: &mut PgConn,
    s: &ReplicationSettings,
) -> Result<Option<String>, PgError> {
    let Some(slot) = slot_state(sql, &s.slot).await? else {
        return Ok(None);
    };
    let Some(why) = verdict(&slot, s.max_slot_lag_bytes) else {
        return Ok(None);
    };
    // A previous session's walsender (ours, just ended by the streaming
    // check) may still hold the slot for a moment: object_in_use is
    // retried briefly, then left to the driver's backoff.
    let q = format!("SELECT pg_drop_replication_slot({})", literal(&s.slot)?);
    let mut tries = 0;
    loop {
        match sql.simple_query(&q).await {
            Ok(_) => break,
            Err(e) if e.code() == Some("55006") && tries < DROP_TRIES => {
                tries += 1;
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
    let message = why.message(&s.slot);
    tracing::error!(tenant, slot = %s.slot, reason = ?why, "{message}");
    Ok(Some(message))
}

/// Paces the streaming-time check.
#[derive(Debug)]
pub struct LagWatch {
    /// When the slot was last measured.
    last: Instant,
}

impl Default for LagWatch {
    fn default() -> Self {
        LagWatch {
            last: Instant::now(),
        }
    }
}

impl LagWatch {
    /// While streaming: every [`CHECK_EVERY`] (`now` is the caller's clock
    /// reading, taken once per replication message), measures the slot;
    /// `Some(reason)` when it must be recreated, which ends the session.
    pub async fn check(
        &mut self,
        now: Instant,
        tenant: &str,
        sql: &mut PgConn,
        s: &ReplicationSettings,
    ) -> Result<Option<String>, PgError> {
        if now.saturating_duration_since(self.last) < CHECK_EVERY {
            return Ok(None);
        }
        self.last = now;
        let Some(slot) = slot_state(sql, &s.slot).await? else {
            return Ok(Some(format!(
                "replication slot {} disappeared while streaming",
                s.slot
            )));
        };
        match verdict(&slot, s.max_slot_lag_bytes) {
            None => Ok(None),
            Some(why) => {
                tracing::warn!(tenant, slot = %s.slot, reason = ?why, "slot over its lag cap; restarting the stream to recreate it");
                Ok(Some(why.message(&s.slot)))
            }
        }
    }
}

/// Sends every Postgres Changes subscriber of `tenant` a `postgres_changes`
/// `system` error, and marks the stream down (a `Subscribed to PostgreSQL`
/// follows when the new slot streams).
fn tell_subscribers(state: &ShardState, tenant: &str, message: &str) {
    let Some(t) = state.tenants.borrow().get(tenant).cloned() else {
        return;
    };
    let mut t = t.borrow_mut();
    // Those told the stream was up hear it from set_streaming; the others
    // directly.
    for s in t.cdc.subs.iter().filter(|s| !s.told_ready) {
        s.out.push(frames::system(
            s.vsn,
            s.join_ref.as_ref(),
            &s.topic,
            "postgres_changes",
            "error",
            message,
            true,
        ));
    }
    t.cdc.set_streaming(false, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(retained: Option<u64>, wal_status: &str) -> SlotState {
        SlotState {
            retained,
            wal_status: wal_status.into(),
        }
    }

    #[test]
    fn a_slot_is_recreated_only_over_the_cap_or_when_lost() {
        assert_eq!(verdict(&slot(Some(10 * MB), "reserved"), 0), None);
        assert_eq!(verdict(&slot(Some(10 * MB), "reserved"), 10 * MB), None);
        assert_eq!(
            verdict(&slot(Some(10 * MB + 1), "extended"), 10 * MB),
            Some(Recreate::OverCap {
                retained: 10 * MB + 1,
                cap: 10 * MB
            })
        );
        assert_eq!(verdict(&slot(None, "lost"), 0), Some(Recreate::Lost));
        assert_eq!(verdict(&slot(None, ""), MB), None);
        assert_eq!(
            verdict(&slot(Some(0), "lost"), 10 * MB),
            Some(Recreate::Lost)
        );
    }

    #[test]
    fn the_message_names_the_slot_the_sizes_and_the_loss() {
        let m = Recreate::OverCap {
            retained: 12 * MB,
            cap: MB,
        }
        .message("s1");
        assert!(
            m.contains("s1") && m.contains("12 MB") && m.contains("1 MB cap"),
            "{m}"
        );
        assert!(m.contains("not delivered"), "{m}");
    }
}
