//! The RLS checks of private channels (PROTOCOL 4.3): where a tenant's
//! checks run. Each tenant has one [`Checker`] on its home shard, over a
//! small pool of connections to its database ([`AuthPool`]); a check
//! asked on another shard (a REST request) is sent there as a
//! [`ShardMsg::Authorize`] and its answer comes back. What a check runs
//! is in `rls_script`, how checks are shared and sent together in
//! `rls_batch`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::replication::ReplicationSettings;
use super::rls_batch::Checker;
use super::rls_pool::AuthPool;
use super::shard::{ShardMsg, ShardState};
use super::tenant_db;
use crate::realtime::authz::{AuthAnswer, AuthError, AuthQuestion, AuthRequest};
use crate::realtime::tenant::TenantConfig;

/// Connections a tenant's pool holds when its record says nothing
/// (`db_pool`).
const DEFAULT_POOL: u64 = 2;
/// Most connections a tenant's pool may hold, whatever its record says.
const MAX_POOL: u64 = 16;

/// The authorization pool of `tenant` on this shard (its home), made on
/// first use; `None` when it has no database this server reaches.
pub fn pool_for(state: &ShardState, tenant: &TenantConfig) -> Option<Rc<Checker>> {
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
    let checker = Checker::new(
        AuthPool::new(cfg, size),
        state.shard.stats.clone(),
        state.shard.id,
    );
    state
        .auth_pools
        .borrow_mut()
        .insert(tenant.external_id.clone(), checker.clone());
    Some(checker)
}

/// Longest a check waits for its tenant's first schema pass (half a
/// client's join timeout): a join or REST message that arrives while the
/// server prepares the schema (a start, an activation) waits for it
/// instead of meeting a half-made one.
const SCHEMA_WAIT: Duration = Duration::from_secs(5);

/// Answers `req` for `tenant` on this shard, its home: once its schema is
/// ready (bounded, see [`SCHEMA_WAIT`]), on its pool.
pub async fn check_here(
    state: &ShardState,
    tenant: &TenantConfig,
    req: &AuthRequest,
) -> AuthAnswer {
    let schema = tenant_db::wait_ready(state, &tenant.external_id, SCHEMA_WAIT).await;
    if let Some((code, reason)) = schema.and_then(|s| s.join_error()) {
        return Err(AuthError::DatabaseUnavailable(format!(
            "{code}: {reason} (the tenant schema is not migrated yet)"
        )));
    }
    match pool_for(state, tenant) {
        Some(checker) => checker.check(req).await,
        None => Err(AuthError::DatabaseUnavailable(
            "the tenant has no database to check policies on".into(),
        )),
    }
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
        return Some(check_here(state, tenant, req).await);
    }
    // The home shard's check has its own deadlines: two waits for a
    // connection and two tries at most, each within the query timeout.
    let wait = Duration::from_millis(state.config.db_query_timeout_ms.saturating_mul(4) + 1000);
    let question = Box::new(AuthQuestion::from(req));
    let answer = state
        .ask(&state.pending_auths, home, wait, |reply_to| {
            ShardMsg::Authorize {
                config: tenant.clone(),
                question,
                reply_to,
            }
        })
        .await;
    if answer.is_none() {
        tracing::warn!(tenant = %tenant.external_id, home, "a policy check asked of the tenant's home shard got no answer");
    }
    answer
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
    state.answer(origin, async move {
        let req = AuthRequest::from(question);
        ShardMsg::Authorized(ticket, check_here(&st, &tenant, &req).await)
    });
}

/// The answer to this shard's check `ticket` came.
pub fn answered(state: &ShardState, ticket: u64, answer: AuthAnswer) {
    state.pending_auths.answered(ticket, answer);
}

/// Drops the pool of `tenant` on this shard (its settings changed or it
/// went away).
pub fn close_pool(state: &ShardState, tenant: &str) {
    if let Some(p) = state.auth_pools.borrow_mut().remove(tenant) {
        p.pool.close();
    }
}
