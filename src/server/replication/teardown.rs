//! A removed tenant's permanent slot: dropped from its database, or it
//! would hold back WAL there forever. The stream was stopped just before,
//! and its walsender lets go of the slot a moment after the connection
//! closes, so the drop is retried while the slot is still in use.

use std::time::{Duration, Instant};

use super::settings::ReplicationSettings;
use crate::server::pgconn::{PgConn, PgError};

/// How long a slot still in use is waited for.
const WAIT: Duration = Duration::from_secs(10);

/// Drops the tenant's slot; `Ok(true)` if it existed. An error leaves the
/// slot for an operator (the caller logs its name).
pub async fn drop_slot(settings: &ReplicationSettings) -> Result<bool, PgError> {
    let mut conn = PgConn::connect(&settings.sql).await?;
    let deadline = Instant::now() + WAIT;
    let mut pause = Duration::from_millis(20);
    let result = loop {
        let dropped = conn
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND NOT active",
                &[Some(&settings.slot)],
            )
            .await?;
        if !dropped.rows.is_empty() {
            break Ok(true);
        }
        let left = conn
            .query(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[Some(&settings.slot)],
            )
            .await?;
        if left.rows.is_empty() {
            break Ok(false);
        }
        if Instant::now() >= deadline {
            break Err(PgError::Protocol(format!(
                "slot {} still in use after {} s",
                settings.slot,
                WAIT.as_secs()
            )));
        }
        glommio::timer::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    };
    conn.terminate().await;
    result
}
