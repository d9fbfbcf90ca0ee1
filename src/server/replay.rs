//! Replay's query (PROTOCOL 4.7) on the tenant's authorization pool (see
//! `rls_pool`): the newest `limit` private broadcasts of a topic inserted
//! since a moment, as the connection's own (privileged) user, the join's
//! read check having decided that the channel may see them.
//!
//! The topic, the moment and the limit are bound parameters; the moment
//! is turned into the table's UTC `timestamp` by the database, exactly
//! (whole days, then milliseconds), as the Elixir server turns it into a
//! naive UTC datetime. The query has the Elixir server's deadline (5 s) or
//! the pool's, whichever is shorter.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::pgconn::{PgConn, PgError};
use super::rls;
use super::rls_pool::{AuthPool, Lease};
use super::shard::{ShardMsg, ShardState};
use crate::realtime::authz::AuthError;
use crate::realtime::replay::{
    ReplayAnswer, ReplayError, ReplayRequest, StoredMessage, StoredPayload,
};
use crate::realtime::tenant::TenantConfig;

/// The Elixir server's replay query timeout.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(5);

/// Newest first, within the table's partial index (`extension =
/// 'broadcast' and private is true`); partitions more than a minute ahead
/// of now are not searched.
const QUERY: &str = "SELECT id::text, event, payload::text, encode(binary_payload, 'hex') \
     FROM realtime.messages \
     WHERE topic = $1 AND private IS TRUE AND extension = 'broadcast' \
       AND inserted_at >= timestamp '1970-01-01' \
           + ($2::bigint / 86400000) * interval '1 day' \
           + ($2::bigint % 86400000) * interval '1 millisecond' \
       AND inserted_at < (now() AT TIME ZONE 'UTC') + interval '1 minute' \
     ORDER BY inserted_at DESC \
     LIMIT $3::integer";

/// [`fetch`] on `tenant`'s authorization pool, on its home shard (asked
/// over the mesh from another shard); failures are logged as the Elixir
/// server logs them.
pub async fn fetch_for(
    state: &Rc<ShardState>,
    tenant: &Arc<TenantConfig>,
    req: &ReplayRequest,
) -> ReplayAnswer {
    let home = state.home_of(&tenant.external_id);
    let answer = if home == state.shard.id {
        fetch_here(state, tenant, req).await
    } else {
        // Two waits for a connection and the query, each bounded.
        let wait = Duration::from_millis(state.config.db_query_timeout_ms.saturating_mul(3) + 1000);
        let asked = state
            .ask(&state.pending_replays, home, wait, |reply_to| {
                ShardMsg::Replay {
                    config: tenant.clone(),
                    request: Box::new(req.clone()),
                    reply_to,
                }
            })
            .await;
        asked.unwrap_or_else(|| {
            Err(ReplayError::Unavailable(
                "the tenant's home shard gave no answer".into(),
            ))
        })
    };
    if let Err(e) = &answer {
        tracing::warn!(tenant = %tenant.external_id, topic = %req.topic, error = ?e, "UnableToReplayMessages");
    }
    answer
}

async fn fetch_here(
    state: &ShardState,
    tenant: &TenantConfig,
    req: &ReplayRequest,
) -> ReplayAnswer {
    match rls::pool_for(state, tenant) {
        Some(checker) => fetch(&checker.pool, req).await,
        None => Err(ReplayError::Unavailable(
            "no authorization pool for the tenant here".into(),
        )),
    }
}

/// Fetches another shard's [`ShardMsg::Replay`] here and sends the answer
/// back.
pub fn answer_remote(
    state: &Rc<ShardState>,
    tenant: Arc<TenantConfig>,
    req: ReplayRequest,
    (origin, ticket): (usize, u64),
) {
    let st = state.clone();
    state.answer(origin, async move {
        ShardMsg::Replayed(ticket, fetch_here(&st, &tenant, &req).await)
    });
}

/// The stored messages `req` asks for, newest first. A pooled connection
/// found dead at the query (the database restarted) is replaced once.
pub async fn fetch(pool: &Rc<AuthPool>, req: &ReplayRequest) -> ReplayAnswer {
    let lease = acquire(pool).await?;
    let reused = lease.reused;
    match attempt(pool, lease, req).await {
        Err(Failed { stale: true, .. }) if reused => {
            let lease = acquire(pool).await?;
            attempt(pool, lease, req).await.map_err(|f| f.error)
        }
        other => other.map_err(|f| f.error),
    }
}

async fn acquire(pool: &Rc<AuthPool>) -> Result<Lease, ReplayError> {
    pool.acquire().await.map_err(|e| match e {
        // A pool that stays busy is a timeout the Elixir server gets back
        // from its pool as an error (not an exception).
        AuthError::IncreaseConnectionPool => {
            ReplayError::Query("no free connection in time".into())
        }
        other => ReplayError::Unavailable(format!("{other:?}")),
    })
}

struct Failed {
    error: ReplayError,
    /// The connection failed as a dead one does, at once.
    stale: bool,
}

async fn attempt(
    pool: &AuthPool,
    mut lease: Lease,
    req: &ReplayRequest,
) -> Result<Vec<StoredMessage>, Failed> {
    let Some(conn) = lease.conn.as_mut() else {
        return Err(Failed {
            error: ReplayError::Unavailable("no connection".into()),
            stale: false,
        });
    };
    let timeout = pool.cfg.timeout.min(REPLAY_TIMEOUT);
    let ran = super::deadline::within(timeout, query(conn, req)).await;
    match ran {
        // Cut off mid-query: the connection is not trusted again.
        None => Err(Failed {
            error: ReplayError::Query(format!("no answer in {} ms", timeout.as_millis())),
            stale: false,
        }),
        Some(Ok(rows)) => {
            lease.keep();
            Ok(rows)
        }
        Some(Err(e)) => {
            let stale = matches!(e, PgError::Io(_) | PgError::Protocol(_))
                || matches!(&e, PgError::Db { severity, .. } if severity == "FATAL");
            if matches!(e, PgError::Db { .. } | PgError::Param(_)) && !stale {
                // A statement refused outside a transaction (or never
                // sent) leaves the connection as it was.
                lease.keep();
            }
            Err(Failed {
                error: ReplayError::Query(e.to_string()),
                stale,
            })
        }
    }
}

async fn query(conn: &mut PgConn, req: &ReplayRequest) -> Result<Vec<StoredMessage>, PgError> {
    let since = req.since_ms.to_string();
    let limit = req.limit.to_string();
    let rows = conn
        .query(QUERY, &[Some(&req.topic), Some(&since), Some(&limit)])
        .await?
        .rows;
    rows.into_iter()
        .map(|mut r| {
            let mut col = |i: usize| r.get_mut(i).and_then(Option::take);
            let (id, event, payload, binary) = (col(0), col(1), col(2), col(3));
            let payload = match binary {
                Some(hex) => StoredPayload::Binary(
                    unhex(&hex).ok_or_else(|| PgError::Protocol("bytea hex".into()))?,
                ),
                None => StoredPayload::Json(payload.map(|p| compact(&p).into_boxed_str())),
            };
            Ok(StoredMessage {
                id: id.unwrap_or_default().into_boxed_str(),
                event: event.map(String::into_boxed_str),
                payload,
            })
        })
        .collect()
}

/// `jsonb` text (`{"a": 1}`) as compact JSON (`{"a":1}`), keys sorted, as
/// the Elixir server re-encodes what it decoded.
fn compact(jsonb: &str) -> String {
    serde_json::from_str::<serde_json::Value>(jsonb)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| jsonb.to_owned())
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = hex.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_jsonb_text_decode() {
        assert_eq!(unhex("dead00ff"), Some(vec![0xde, 0xad, 0x00, 0xff]));
        assert_eq!(unhex(""), Some(vec![]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(
            compact(r#"{"b": [1, 2], "a": "x y"}"#),
            r#"{"a":"x y","b":[1,2]}"#
        );
    }
}
