//! The admin API, `/api/tenants` (PROTOCOL 7.2): list, create or update,
//! show, delete, reload, shutdown and health of tenants kept in the
//! control database.
//!
//! Every route checks the `Authorization: Bearer` token first (HS-signed
//! with `API_JWT_SECRET` or `API_JWT_SECRET_NEXT`, not blocklisted; else
//! an empty 403). Validation and the JSON shapes are the domain's
//! (`realtime::tenant::record`); this module reads and writes the store,
//! then tells every shard what changed, and only answers once they have
//! been told: a client that sees the answer and reconnects meets the new
//! settings.

use std::rc::Rc;
use std::sync::Arc;

use serde_json::json;

use super::control::store;
use super::control::ControlError;
use super::replication::settings::ReplicationSettings;
use super::replication::teardown;
use super::resp::Resp;
use super::shard::{now_unix, ShardState, TenantChange, TenantView};
use super::tenant_db;
use super::tenants;
use crate::proto::http::RequestHead;
use crate::realtime::auth::{self, ClaimValidators};
use crate::realtime::secrets::SecretKeys;
use crate::realtime::tenant::params::{self, apply_params};
use crate::realtime::tenant::record::{self, TenantDefaults, TenantRecord};
use crate::realtime::tenant::row::{self, TenantRow};
use crate::realtime::tenant::TenantConfig;

/// An admin route, parsed from method and path.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    List,
    Create,
    Show(&'a str),
    Update(&'a str),
    Delete(&'a str),
    Reload(&'a str),
    Shutdown(&'a str),
    Health(&'a str),
}

/// Whether `path` belongs to the admin API.
pub fn is_admin_path(path: &str) -> bool {
    path == "/api/tenants" || path.starts_with("/api/tenants/")
}

fn parse<'a>(method: &str, path: &'a str) -> Option<Route<'a>> {
    let rest = path.strip_prefix("/api/tenants")?;
    if rest.is_empty() {
        return match method {
            "GET" => Some(Route::List),
            "POST" => Some(Route::Create),
            _ => None,
        };
    }
    let rest = rest.strip_prefix('/')?;
    let (id, action) = match rest.split_once('/') {
        Some((id, action)) => (id, Some(action)),
        None => (rest, None),
    };
    if id.is_empty() {
        return None;
    }
    match (method, action) {
        ("GET", None) => Some(Route::Show(id)),
        ("PUT" | "PATCH", None) => Some(Route::Update(id)),
        ("DELETE", None) => Some(Route::Delete(id)),
        ("POST", Some("reload")) => Some(Route::Reload(id)),
        ("POST", Some("shutdown")) => Some(Route::Shutdown(id)),
        ("GET", Some("health")) => Some(Route::Health(id)),
        _ => None,
    }
}

/// The admin token check of the Elixir router: exactly `Bearer <token>`,
/// the token URL-decoded and stripped of whitespace, not blocklisted, and
/// HS-verified by one of the API secrets.
fn authorized(state: &ShardState, head: &RequestHead) -> bool {
    let Some(value) = head
        .header("authorization")
        .and_then(|h| std::str::from_utf8(h).ok())
    else {
        return false;
    };
    let Some(raw) = value.strip_prefix("Bearer ") else {
        return false;
    };
    let token = auth::clean_token(raw);
    if state.config.api_token_blocklist.contains(&token) {
        return false;
    }
    let mut secrets = vec![state.config.api_jwt_secret.as_str()];
    if let Some(next) = &state.config.api_jwt_secret_next {
        secrets.push(next);
    }
    secrets.retain(|s| !s.is_empty());
    auth::verify_hs(&token, &secrets, &Default::default(), now_unix()).is_ok()
}

/// Serves an admin request (`is_admin_path` was true).
pub async fn serve(state: &Rc<ShardState>, head: &RequestHead, path: &str, body: &[u8]) -> Resp {
    let Some(route) = parse(&head.method, path) else {
        return Resp::message(404, "not found");
    };
    if !authorized(state, head) {
        return Resp::empty(403);
    }
    if !state.config.uses_control_db() {
        return Resp::message(
            503,
            "tenants are kept in a control database: start the server with CONTROL_DB=true",
        );
    }
    let id = match route_id(&route) {
        Some(id) => match percent_decode(id) {
            Some(id) => Some(id),
            None => return Resp::message(404, "not found"),
        },
        None => None,
    };
    let result = match route {
        Route::List => list(state).await,
        Route::Create => create(state, body).await,
        Route::Show(_) => show(state, id.as_deref().unwrap_or_default()).await,
        Route::Update(_) => update(state, id.as_deref().unwrap_or_default(), body).await,
        Route::Delete(_) => delete(state, id.as_deref().unwrap_or_default()).await,
        Route::Reload(_) => {
            act(
                state,
                id.as_deref().unwrap_or_default(),
                TenantChange::Disconnect,
            )
            .await
        }
        Route::Shutdown(_) => {
            act(
                state,
                id.as_deref().unwrap_or_default(),
                TenantChange::Shutdown,
            )
            .await
        }
        Route::Health(_) => health(state, id.as_deref().unwrap_or_default()).await,
    };
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "admin request failed on the control database");
        Resp::message(500, "control database error")
    })
}

fn route_id<'a>(r: &Route<'a>) -> Option<&'a str> {
    match r {
        Route::List | Route::Create => None,
        Route::Show(id)
        | Route::Update(id)
        | Route::Delete(id)
        | Route::Reload(id)
        | Route::Shutdown(id)
        | Route::Health(id) => Some(id),
    }
}

/// `%XX` escapes of a path segment decoded; `None` if they do not make
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn keys(state: &ShardState) -> SecretKeys {
    SecretKeys::new(
        state.config.db_enc_key.as_deref(),
        state.config.db_enc_key_gcm.as_deref(),
        state.config.db_enc_write_gcm,
    )
    .expect("validated with the config")
}

fn nonce() -> [u8; 12] {
    rand::random()
}

fn new_id() -> String {
    row::uuid_v4(rand::random())
}

/// Now, as the store writes timestamps (UTC, whole seconds).
fn now_text() -> String {
    row::timestamp_text(now_unix())
}

fn protocol(e: impl std::fmt::Display) -> ControlError {
    ControlError::Row(e.to_string())
}

/// Reads tenant `id` from the store: the row as stored (what the views
/// render) and the record decrypted.
async fn load(
    state: &ShardState,
    id: &str,
) -> Result<Option<(TenantRow, TenantRecord)>, ControlError> {
    let row = state
        .control
        .with(async |c| store::get(c, id).await)
        .await?;
    match row {
        None => Ok(None),
        Some(row) => {
            let rec = TenantRecord::from_row(row.clone(), &keys(state)).map_err(protocol)?;
            Ok(Some((row, rec)))
        }
    }
}

fn data(v: serde_json::Value) -> Resp {
    Resp::json(200, json!({ "data": v }).to_string())
}

async fn list(state: &Rc<ShardState>) -> Result<Resp, ControlError> {
    let rows = state.control.with(async |c| store::list(c).await).await?;
    let out: Vec<_> = rows.iter().map(record::view).collect();
    Ok(data(serde_json::Value::Array(out)))
}

async fn show(state: &Rc<ShardState>, id: &str) -> Result<Resp, ControlError> {
    Ok(match load(state, id).await? {
        Some((row, _)) => data(record::view(&row)),
        None => Resp::message(404, "not found"),
    })
}

/// `POST /api/tenants`: the upsert of the body's `external_id`.
async fn create(state: &Rc<ShardState>, body: &[u8]) -> Result<Resp, ControlError> {
    let existing = match params::requested_external_id(body) {
        Some(id) => load(state, &id).await?,
        None => None,
    };
    upsert(state, existing, None, body).await
}

/// `PUT|PATCH /api/tenants/:id`: creates the tenant under the path's name
/// or changes it.
async fn update(state: &Rc<ShardState>, id: &str, body: &[u8]) -> Result<Resp, ControlError> {
    let existing = load(state, id).await?;
    upsert(state, existing, Some(id), body).await
}

/// Validates, stores and announces a tenant; a change to its keys,
/// `private_only` or `suspend` disconnects its sockets.
async fn upsert(
    state: &Rc<ShardState>,
    existing: Option<(TenantRow, TenantRecord)>,
    path_id: Option<&str>,
    body: &[u8],
) -> Result<Resp, ControlError> {
    let defaults = TenantDefaults::from_config(&state.config);
    let old = existing.as_ref().map(|(_, r)| r);
    let next = match apply_params(old, path_id, body, &defaults, new_id, &now_text()) {
        Ok(r) => r,
        Err(invalid) => return Ok(Resp::json(invalid.status, invalid.body)),
    };
    let row = next.to_row(&keys(state), nonce).map_err(protocol)?;
    let (stored_row, created) = state
        .control
        .with(async |c| store::upsert(c, &row).await)
        .await?;
    let stored = TenantRecord::from_row(stored_row.clone(), &keys(state)).map_err(protocol)?;
    let change = match old {
        Some(old) if params::needs_disconnect(old, &stored) => TenantChange::Disconnect,
        // New, or settings that keep sockets. A new tenant may be
        // remembered as missing somewhere: forgetting that is all it needs.
        _ => TenantChange::Updated,
    };
    let validators = ClaimValidators::parse(&state.config.jwt_claim_validators)
        .map_err(|e| protocol(format!("JWT_CLAIM_VALIDATORS: {e}")))?;
    let config = record::to_config(&stored, &defaults, validators).map_err(protocol)?;
    if created {
        migrate_new(state, &stored.external_id, &config).await;
    }
    tenants::announce(state, &stored.external_id, change, Some(Arc::new(config))).await;
    super::cluster_node::announce_tenant_change(state, &stored.external_id, change);
    let mut resp = Resp::json(
        if created { 201 } else { 200 },
        json!({ "data": record::view(&stored_row) }).to_string(),
    );
    resp.headers
        .push(("location", format!("/api/tenants/{}", stored.external_id)));
    Ok(resp)
}

/// A new tenant's database gets the `realtime` schema before the answer,
/// as on the Elixir server, within the run's deadline. A failure does not
/// undo the creation (the row is stored, the answer is still 201): it is
/// logged, and the tenant's first activation migrates again, with retries.
async fn migrate_new(state: &ShardState, id: &str, cfg: &TenantConfig) {
    let Some(pg) = tenant_db::pg_config(&state.config, cfg) else {
        return;
    };
    let started = std::time::Instant::now();
    match tenant_db::migrate(&pg).await {
        Ok(m) => tenant_db::log_migrated(id, &m, started),
        Err(e) => tracing::warn!(
            tenant = %id,
            duration_ms = started.elapsed().as_millis() as u64,
            error = %e,
            "MigrationsFailedToRun: the new tenant's database was not migrated; its activation tries again"
        ),
    }
}

/// `DELETE /api/tenants/:id`: 204 whether or not it existed. The record
/// goes first, so sockets that reconnect after the disconnect find no
/// tenant; then its stream stops (with the disconnect) and its permanent
/// slot is dropped from its database, as the Elixir server does.
async fn delete(state: &Rc<ShardState>, id: &str) -> Result<Resp, ControlError> {
    let existing = load(state, id).await?;
    let removed = state
        .control
        .with(async |c| store::delete(c, id).await)
        .await?;
    if removed {
        tenants::announce(state, id, TenantChange::Disconnect, None).await;
        super::cluster_node::announce_tenant_change(state, id, TenantChange::Disconnect);
        // Every shard has let the tenant go: its shared users and rates
        // go too (sockets still closing count down their own copy).
        state.shared_tenants.remove(id);
        if let Some((_, rec)) = existing {
            drop_slot(state, &rec).await;
        }
    }
    Ok(Resp::empty(204))
}

/// Drops a deleted tenant's slot; failures are logged with the slot's
/// name (the tenant is gone either way).
async fn drop_slot(state: &ShardState, rec: &TenantRecord) {
    let defaults = TenantDefaults::from_config(&state.config);
    let Ok(cfg) = record::to_config(rec, &defaults, ClaimValidators::default()) else {
        return;
    };
    let Some(settings) = ReplicationSettings::for_tenant(&state.config, &cfg) else {
        return;
    };
    // Postgres Changes' slot, then the messages stream's.
    let messages = crate::server::db_broadcast::settings(&state.config, &settings);
    for settings in [settings, messages] {
        match teardown::drop_slot(&settings).await {
            Ok(true) => {
                tracing::info!(tenant = %rec.external_id, slot = %settings.slot, "replication slot dropped")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(
                tenant = %rec.external_id,
                slot = %settings.slot,
                error = %e,
                "could not drop the deleted tenant's replication slot; drop it by hand or it holds WAL"
            ),
        }
    }
}

/// `reload` (disconnect everything) and `shutdown` (database connections
/// only): 204, or 404 for an unknown tenant.
async fn act(state: &Rc<ShardState>, id: &str, change: TenantChange) -> Result<Resp, ControlError> {
    if load(state, id).await?.is_none() {
        return Ok(Resp::message(404, "not found"));
    }
    tenants::announce(state, id, change, None).await;
    super::cluster_node::announce_tenant_change(state, id, change);
    Ok(Resp::empty(204))
}

/// `GET /api/tenants/:id/health`, from what the tenant's home shard sees.
async fn health(state: &Rc<ShardState>, id: &str) -> Result<Resp, ControlError> {
    let Some((_, rec)) = load(state, id).await? else {
        return Ok(Resp::message(404, "not found"));
    };
    let TenantView { users, streaming } = tenants::view(state, id).await;
    let cdc = rec.cdc_extension();
    let region = cdc.and_then(|e| e.settings.get("region").cloned());
    Ok(data(json!({
        "healthy": cdc.is_none() || streaming || users == 0,
        "db_connected": streaming,
        "replication_connected": streaming,
        "connected_cluster": users,
        "region": region,
        "node": node_name(state),
        // This node's link to the cluster, as the answering shard sees it.
        "nats": match &state.cluster {
            None => "off",
            Some(c) if c.is_up() => "connected",
            Some(_) => "unreachable",
        },
    })))
}

fn node_name(state: &ShardState) -> String {
    if state.config.node_name.is_empty() {
        format!("realtime@{}:{}", state.config.bind, state.config.port)
    } else {
        state.config.node_name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse("GET", "/api/tenants"), Some(Route::List));
        assert_eq!(parse("POST", "/api/tenants"), Some(Route::Create));
        assert_eq!(parse("GET", "/api/tenants/a"), Some(Route::Show("a")));
        assert_eq!(parse("PATCH", "/api/tenants/a"), Some(Route::Update("a")));
        assert_eq!(parse("PUT", "/api/tenants/a"), Some(Route::Update("a")));
        assert_eq!(parse("DELETE", "/api/tenants/a"), Some(Route::Delete("a")));
        assert_eq!(
            parse("POST", "/api/tenants/a/reload"),
            Some(Route::Reload("a"))
        );
        assert_eq!(
            parse("POST", "/api/tenants/a/shutdown"),
            Some(Route::Shutdown("a"))
        );
        assert_eq!(
            parse("GET", "/api/tenants/a/health"),
            Some(Route::Health("a"))
        );
        assert_eq!(parse("DELETE", "/api/tenants"), None);
        assert_eq!(parse("GET", "/api/tenants/"), None);
        assert_eq!(parse("GET", "/api/tenants/a/other"), None);
        assert_eq!(parse("GET", "/api/tenantsx"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Db").as_deref(), Some("a-b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("cut%2"), Some("cut%2".into()));
        assert_eq!(percent_decode("%ff"), None);
    }
}
