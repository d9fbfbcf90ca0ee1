//! The messages publication, `supabase_realtime_messages_publication`
//! `FOR TABLE realtime.messages`: created when missing, and dropped and
//! created again when it holds any other table (as the Elixir server
//! does). `pg_publication_tables` lists the daily partitions of the
//! partitioned table (`messages_YYYY_MM_DD`), so `realtime.messages` and
//! `realtime.messages_*` are both what it should hold.

use crate::realtime::db_broadcast::is_messages_relation;
use crate::server::pgconn::{PgConn, PgError};

/// The publication's name, as the Elixir server spells it.
pub const PUBLICATION: &str = "supabase_realtime_messages_publication";

/// What [`ensure`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// It was there with the right table.
    Valid,
    /// It did not exist and was created.
    Created,
    /// It held other tables (or none) and was recreated.
    Repaired,
}

/// Makes sure the publication exists and publishes only the messages
/// table.
pub async fn ensure(sql: &mut PgConn) -> Result<Ensured, PgError> {
    let create = format!("CREATE PUBLICATION {PUBLICATION} FOR TABLE realtime.messages");
    let exists = sql
        .query(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[Some(PUBLICATION)],
        )
        .await?;
    if exists.rows.is_empty() {
        sql.simple_query(&create).await?;
        return Ok(Ensured::Created);
    }
    let tables = sql
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[Some(PUBLICATION)],
        )
        .await?;
    let valid = !tables.rows.is_empty()
        && tables.rows.iter().all(|r| {
            is_messages_relation(
                r[0].as_deref().unwrap_or_default(),
                r[1].as_deref().unwrap_or_default(),
            )
        });
    if valid {
        return Ok(Ensured::Valid);
    }
    sql.simple_query(&format!(
        "BEGIN; DROP PUBLICATION IF EXISTS {PUBLICATION}; {create}; COMMIT"
    ))
    .await?;
    Ok(Ensured::Repaired)
}
