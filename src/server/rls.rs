//! The RLS checks of private channels (PROTOCOL 4.3), run on a tenant's
//! authorization pool ([`AuthPool`]) on its home shard.
//!
//! Read: in one transaction, always rolled back, the connection's own
//! (privileged) user inserts a probe row per extension into
//! `realtime.messages`; then the claims' role and the request settings are
//! set for the transaction and the probes are selected back: a probe the
//! policies let the role see is a read granted. Write: the same settings,
//! then per extension an INSERT as the role in a savepoint; `42501` is a
//! write refused. Every client value (topic, role, claims, headers) is a
//! bound parameter, never part of a statement's text; the whole check has
//! one deadline (`DB_QUERY_TIMEOUT_MS`), each statement the same one.

use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::pgconn::{PgConn, PgError};
use super::replication::ReplicationSettings;
use super::rls_pool::{AuthPool, Lease};
use super::shard::{ShardMsg, ShardState};
use crate::realtime::authz::{
    AuthAnswer, AuthContext, AuthError, AuthQuestion, AuthRequest, Policies,
};
use crate::realtime::tenant::TenantConfig;

/// Connections a tenant's pool holds when its record says nothing
/// (`db_pool`).
const DEFAULT_POOL: u64 = 2;
/// Most connections a tenant's pool may hold, whatever its record says.
const MAX_POOL: u64 = 16;

/// The authorization pool of `tenant` on this shard (its home), made on
/// first use; `None` when it has no database this server reaches.
pub fn pool_for(state: &ShardState, tenant: &TenantConfig) -> Option<Rc<AuthPool>> {
    if let Some(p) = state.auth_pools.borrow().get(&tenant.external_id) {
        return Some(p.clone());
    }
    if state.home_of(&tenant.external_id) != state.shard.id {
        return None;
    }
    let mut cfg = ReplicationSettings::for_tenant(&state.config, tenant)?.sql;
    cfg.application_name = "realtime_rls".into();
    let size = tenant
        .db
        .as_ref()
        .and_then(|d| d.db_pool)
        .unwrap_or(DEFAULT_POOL)
        .clamp(1, MAX_POOL) as usize;
    let pool = AuthPool::new(cfg, size);
    state
        .auth_pools
        .borrow_mut()
        .insert(tenant.external_id.clone(), pool.clone());
    Some(pool)
}

/// Answers `req` for `tenant` from any shard: on its pool here when this
/// is its home, else asked of its home shard ([`ShardMsg::Authorize`]).
/// `None` when the home shard gave no answer in time.
pub async fn authorize(
    state: &Rc<ShardState>,
    tenant: &Arc<TenantConfig>,
    req: &AuthRequest,
) -> Option<AuthAnswer> {
    let home = state.home_of(&tenant.external_id);
    if home == state.shard.id {
        return Some(match pool_for(state, tenant) {
            Some(pool) => check(&pool, req).await,
            None => Err(AuthError::DatabaseUnavailable(
                "the tenant has no database to check policies on".into(),
            )),
        });
    }
    let ticket = state.next_ticket.get();
    state.next_ticket.set(ticket + 1);
    state
        .pending_auths
        .borrow_mut()
        .insert(ticket, (None, None));
    let msg = ShardMsg::Authorize {
        config: tenant.clone(),
        question: Box::new(AuthQuestion::from(req)),
        reply_to: (state.shard.id, ticket),
    };
    if state.shard.send_to(home, msg).await.is_err() {
        state.pending_auths.borrow_mut().remove(&ticket);
        return None;
    }
    let answer = std::future::poll_fn(|cx| {
        let mut waiting = state.pending_auths.borrow_mut();
        match waiting.get_mut(&ticket) {
            Some((Some(_), _)) => Poll::Ready(waiting.remove(&ticket).and_then(|(a, _)| a)),
            Some((None, waker)) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            None => Poll::Ready(None),
        }
    });
    // The home shard's check has its own deadlines: two waits for a
    // connection and two tries at most, each within the query timeout.
    let wait = Duration::from_millis(state.config.db_query_timeout_ms.saturating_mul(4) + 1000);
    let timeout = async {
        glommio::timer::sleep(wait).await;
        state.pending_auths.borrow_mut().remove(&ticket);
        tracing::warn!(tenant = %tenant.external_id, home, "a policy check asked of the tenant's home shard got no answer");
        None
    };
    futures_lite::future::or(answer, timeout).await
}

/// Runs another shard's [`ShardMsg::Authorize`] here and sends the answer
/// back.
pub fn answer_remote(
    state: &Rc<ShardState>,
    tenant: Arc<TenantConfig>,
    question: AuthQuestion,
    (origin, ticket): (usize, u64),
) {
    let st = state.clone();
    glommio::spawn_local(async move {
        let req = AuthRequest::from(question);
        let answer = match pool_for(&st, &tenant) {
            Some(pool) => check(&pool, &req).await,
            None => Err(AuthError::DatabaseUnavailable(
                "the tenant has no database to check policies on".into(),
            )),
        };
        let _ = st
            .shard
            .send_to(origin, ShardMsg::Authorized(ticket, answer))
            .await;
    })
    .detach();
}

/// The answer to this shard's check `ticket` came.
pub fn answered(state: &ShardState, ticket: u64, answer: AuthAnswer) {
    let mut waiting = state.pending_auths.borrow_mut();
    if let Some((slot, waker)) = waiting.get_mut(&ticket) {
        *slot = Some(answer);
        if let Some(w) = waker.take() {
            w.wake();
        }
    }
}

/// Drops the pool of `tenant` on this shard (its settings changed or it
/// went away).
pub fn close_pool(state: &ShardState, tenant: &str) {
    if let Some(p) = state.auth_pools.borrow_mut().remove(tenant) {
        p.close();
    }
}

/// Answers `req` on `pool`, within the pool's deadline. A connection
/// that waited in the pool and turns out dead at its first statement (the
/// database restarted, its backend was terminated) is closed and the check
/// runs once more on a new one.
pub async fn check(pool: &Rc<AuthPool>, req: &AuthRequest) -> AuthAnswer {
    let lease = pool.acquire().await?;
    if !lease.reused {
        return attempt(pool, lease, req).await.map_err(|f| f.error);
    }
    match attempt(pool, lease, req).await {
        Err(Failure { stale: true, .. }) => {
            let lease = pool.acquire().await?;
            attempt(pool, lease, req).await.map_err(|f| f.error)
        }
        other => other.map_err(|f| f.error),
    }
}

/// Why a check decided nothing, and what that says of its connection.
struct Failure {
    error: AuthError,
    /// The connection is outside any transaction and may be reused.
    clean: bool,
    /// The connection was dead before the check began.
    stale: bool,
}

impl Failure {
    fn new(error: AuthError, clean: bool) -> Failure {
        Failure {
            error,
            clean,
            stale: false,
        }
    }
}

/// One try of `req` on `lease`'s connection, which goes back to the pool
/// only if clean.
async fn attempt(
    pool: &AuthPool,
    mut lease: Lease,
    req: &AuthRequest,
) -> Result<Policies, Failure> {
    let Some(conn) = lease.conn.as_mut() else {
        return Err(Failure::new(
            AuthError::DatabaseUnavailable("no connection".into()),
            false,
        ));
    };
    let timeout = pool.cfg.timeout;
    let ran = futures_lite::future::or(async { Some(run(conn, req).await) }, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await;
    match ran {
        None => Err(Failure::new(
            AuthError::DatabaseUnavailable(format!(
                "the policy check took over {} ms",
                timeout.as_millis()
            )),
            false,
        )),
        Some(Ok(p)) => {
            lease.keep();
            Ok(p)
        }
        Some(Err(f)) => {
            if f.clean {
                lease.keep();
            }
            Err(f)
        }
    }
}

/// The answer, or why not.
async fn run(conn: &mut PgConn, req: &AuthRequest) -> Result<Policies, Failure> {
    let mut p = Policies::default();
    if let Some(presence) = req.read {
        begin(conn).await?;
        let r = read(conn, &req.ctx, presence, &mut p).await;
        rollback(conn, r).await?;
    }
    if req.write {
        begin(conn).await?;
        let r = write(conn, &req.ctx, &mut p).await;
        rollback(conn, r).await?;
    }
    Ok(p)
}

async fn begin(conn: &mut PgConn) -> Result<(), Failure> {
    match conn.simple_query("BEGIN").await {
        Ok(_) => Ok(()),
        // Not trusted again. A socket that fails at once was dead already.
        Err(e) => Err(Failure {
            error: map_error(&e),
            clean: false,
            stale: match &e {
                PgError::Io(_) | PgError::Protocol(_) => true,
                // The backend was ended (57P01 and the like) while idle.
                PgError::Db { severity, .. } => severity == "FATAL",
                _ => false,
            },
        }),
    }
}

/// Ends the check's transaction: nothing a check does stays.
async fn rollback(conn: &mut PgConn, r: Result<(), PgError>) -> Result<(), Failure> {
    let clean = conn.simple_query("ROLLBACK").await.is_ok();
    match r {
        Ok(()) if clean => Ok(()),
        Ok(()) => Err(Failure::new(
            AuthError::DatabaseUnavailable("the check's rollback failed".into()),
            false,
        )),
        Err(e) => Err(Failure::new(map_error(&e), clean)),
    }
}

/// `set_config(..., true)` of the role, topic, claims and headers, each a
/// bound parameter.
async fn settings(conn: &mut PgConn, ctx: &AuthContext) -> Result<(), PgError> {
    conn.query(
        "SELECT set_config('role', $1, true), set_config('realtime.topic', $2, true), \
         set_config('request.jwt.claims', $3, true), \
         set_config('request.jwt.claim.sub', $4, true), \
         set_config('request.jwt.claim.role', $5, true), \
         set_config('request.headers', $6, true)",
        &[
            Some(&ctx.role),
            Some(&ctx.topic),
            Some(&ctx.claims),
            ctx.sub.as_deref(),
            Some(&ctx.role),
            Some(&ctx.headers),
        ],
    )
    .await
    .map(|_| ())
}

/// The read check: probes inserted by the connection's user, then
/// selected back as the role.
async fn read(
    conn: &mut PgConn,
    ctx: &AuthContext,
    presence: bool,
    p: &mut Policies,
) -> Result<(), PgError> {
    let probes = if presence {
        "VALUES (gen_random_uuid(), $1, 'broadcast', now(), now()), \
         (gen_random_uuid(), $1, 'presence', now(), now())"
    } else {
        "VALUES (gen_random_uuid(), $1, 'broadcast', now(), now())"
    };
    let inserted = conn
        .query(
            &format!(
                "INSERT INTO realtime.messages (id, topic, extension, inserted_at, updated_at) \
                 {probes} RETURNING id::text, extension"
            ),
            &[Some(&ctx.topic)],
        )
        .await?
        .rows;
    let id_of = |ext: &str| {
        inserted
            .iter()
            .find(|r| r.get(1).and_then(|e| e.as_deref()) == Some(ext))
            .and_then(|r| r.first().cloned().flatten())
    };
    let (b_id, p_id) = (id_of("broadcast"), id_of("presence"));
    settings(conn, ctx).await?;
    let seen = conn
        .query(
            "SELECT id::text FROM realtime.messages WHERE id IN ($1::uuid, $2::uuid)",
            &[b_id.as_deref(), p_id.as_deref()],
        )
        .await?
        .rows;
    let visible = |id: &Option<String>| {
        id.as_deref().is_some_and(|id| {
            seen.iter()
                .any(|r| r.first().and_then(|v| v.as_deref()) == Some(id))
        })
    };
    p.broadcast_read = Some(visible(&b_id));
    if presence {
        p.presence_read = Some(visible(&p_id));
    }
    Ok(())
}

/// The write check: one INSERT per extension as the role, each in its
/// own savepoint.
async fn write(conn: &mut PgConn, ctx: &AuthContext, p: &mut Policies) -> Result<(), PgError> {
    settings(conn, ctx).await?;
    for ext in ["broadcast", "presence"] {
        conn.simple_query("SAVEPOINT rls_write").await?;
        let sql = format!(
            "INSERT INTO realtime.messages (id, topic, extension, inserted_at, updated_at) \
             VALUES (gen_random_uuid(), $1, '{ext}', now(), now())"
        );
        let allowed = match conn.query(&sql, &[Some(&ctx.topic)]).await {
            Ok(_) => true,
            Err(e) if e.code() == Some("42501") => false,
            Err(e) => return Err(e),
        };
        conn.simple_query("ROLLBACK TO SAVEPOINT rls_write").await?;
        match ext {
            "broadcast" => p.broadcast_write = Some(allowed),
            _ => p.presence_write = Some(allowed),
        }
    }
    Ok(())
}

/// The Elixir server's reading of a failed check.
fn map_error(e: &PgError) -> AuthError {
    match e {
        PgError::Db { code, message, .. } => match code.as_str() {
            "57014" => AuthError::QueryCanceled(message.clone()),
            // A row with no partition to go to: today's is missing.
            "23514" if message.contains("\"messages") => AuthError::MissingPartition,
            _ => AuthError::RlsPolicy(format!("{code}: {message}")),
        },
        // A value the protocol cannot carry (a NUL byte in the topic):
        // the database would have refused it as a policy error.
        PgError::Param(m) => AuthError::RlsPolicy(m.clone()),
        other => AuthError::DatabaseUnavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(code: &str, message: &str) -> PgError {
        PgError::Db {
            severity: "ERROR".into(),
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn errors_map_as_the_elixir_server_reads_them() {
        assert_eq!(
            map_error(&db("57014", "canceling statement due to statement timeout")),
            AuthError::QueryCanceled("canceling statement due to statement timeout".into())
        );
        assert_eq!(
            map_error(&db(
                "23514",
                "no partition of relation \"messages\" found for row"
            )),
            AuthError::MissingPartition
        );
        assert!(matches!(
            map_error(&db("23514", "violates check constraint \"x\" of \"t\"")),
            AuthError::RlsPolicy(_)
        ));
        assert!(matches!(
            map_error(&db("22023", "role \"nobody\" does not exist")),
            AuthError::RlsPolicy(_)
        ));
        assert!(matches!(
            map_error(&PgError::Timeout("x".into())),
            AuthError::DatabaseUnavailable(_)
        ));
    }
}
