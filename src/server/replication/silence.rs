//! Noticing a replication stream that went quiet because the path to the
//! database died without a reset (a dropped route, a frozen peer): the
//! socket stays open and nothing arrives, forever.
//!
//! Postgres itself only writes when it has WAL to send or when it wants a
//! reply, so silence alone proves nothing. After `idle` without a message
//! the driver sends a status update with the reply-requested flag, which a
//! walsender answers at once with a keepalive; if nothing at all arrives
//! within `idle` more, the stream is declared dead and the session ends
//! (subscribers are told, and the next session resumes from the slot's
//! confirmed position).
//!
//! By default `idle` is half the database's `wal_sender_timeout`, so a dead
//! path is given up on about when the walsender on the other side gives up
//! on us too, and its slot is free again for the next session.

use std::time::Duration;

use crate::server::pgconn::{CopyMsg, PgConn, PgError};

/// `idle` when `wal_sender_timeout` is 0 (off) or unreadable: half its
/// default.
const FALLBACK: Duration = Duration::from_secs(30);

/// The silence before a reply is requested: `configured`, else half of
/// the database's `wal_sender_timeout`.
pub async fn idle_timeout(
    sql: &mut PgConn,
    configured: Option<Duration>,
) -> Result<Duration, PgError> {
    if let Some(d) = configured {
        return Ok(d);
    }
    let rows = sql
        .simple_query("SELECT setting FROM pg_settings WHERE name = 'wal_sender_timeout'")
        .await?;
    let ms = rows
        .first()
        .and_then(|r| r.rows.first())
        .and_then(|row| row.first().cloned().flatten())
        .and_then(|v| v.parse::<u64>().ok());
    Ok(from_wal_sender_timeout(ms))
}

/// Half of `wal_sender_timeout` (in ms), at least 100 ms; [`FALLBACK`]
/// when it is off or unknown.
pub fn from_wal_sender_timeout(ms: Option<u64>) -> Duration {
    match ms {
        Some(ms) if ms > 0 => Duration::from_millis((ms / 2).max(100)),
        _ => FALLBACK,
    }
}

/// The next stream message, or `None` after `wait` without one.
/// Cancelling the read loses nothing ([`PgConn::recv_copy`] is cancel-safe).
pub async fn recv_within(repl: &mut PgConn, wait: Duration) -> Result<Option<CopyMsg>, PgError> {
    crate::server::deadline::within(wait, repl.recv_copy())
        .await
        .transpose()
}

/// The error that ends a session whose stream stayed silent though asked.
pub fn dead(idle: Duration) -> PgError {
    PgError::Timeout(format!(
        "the replication stream sent nothing for {} ms, not even after a reply was requested",
        (idle * 2).as_millis()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_is_half_the_wal_sender_timeout() {
        assert_eq!(
            from_wal_sender_timeout(Some(60_000)),
            Duration::from_secs(30)
        );
        assert_eq!(from_wal_sender_timeout(Some(2_000)), Duration::from_secs(1));
        assert_eq!(
            from_wal_sender_timeout(Some(10)),
            Duration::from_millis(100)
        );
        assert_eq!(from_wal_sender_timeout(Some(0)), FALLBACK);
        assert_eq!(from_wal_sender_timeout(None), FALLBACK);
    }
}
