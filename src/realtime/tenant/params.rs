//! The admin API's tenant input (`POST /api/tenants`, `PUT|PATCH
//! /api/tenants/:id`, body `{"tenant": {...}}`) applied to a record with
//! the Elixir server's changeset rules, and its 4xx answers rendered as
//! that server renders them.
//!
//! What the Elixir server does, and this module with it: fields are cast
//! by type (integers from JSON integers or digit strings, booleans from
//! `true`/`false`/`"true"`/`"1"`/`"false"`/`"0"`, an empty string reads
//! as null), a wrong type is `is invalid` and leaves the field unchanged,
//! `external_id` is required, the five env-defaulted limits take
//! `TENANT_*` when null, extensions of type `postgres` are renamed, their
//! default settings merged under the client's, and their required settings
//! checked; the check constraint `jwt_secret_or_jwt_jwks_required` speaks
//! only once everything else is valid (it comes from the database there).
//!
//! Where this server refuses what the Elixir server accepts or crashes on
//! (each a 422 in the same `{"errors": ...}` shape, nothing stored):
//! unknown keys (`is unknown`); a `jwt_jwks` that is not `{"keys":[...]}`
//! with a string `kty` in every key; NUL characters anywhere (Postgres text
//! and jsonb cannot hold them); integers outside the columns' 32-bit range;
//! null for a column that cannot be NULL (`can't be blank`); an
//! `external_id` no Host can select (see [`usable_host_label`]); an
//! extension with a type and no settings object. A body that is not an
//! object with a `tenant` object is 400 `"Bad Request"`, as Phoenix answers
//! a request no action clause matches.
//!
//! One field is this server's own: `placement`, `"home"` (the default) or
//! `"spread"`; anything else `is invalid`, null `can't be blank`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::record::{ExtensionRecord, TenantDefaults, TenantRecord, CDC_RLS, LEGACY_CDC};
use super::Placement;
use crate::config::Config;

/// A refused admin API request: the exact status and JSON body to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub status: u16,
    pub body: Vec<u8>,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, String::from_utf8_lossy(&self.body))
    }
}

impl Invalid {
    fn bad_request() -> Invalid {
        Invalid {
            status: 400,
            body: b"\"Bad Request\"".to_vec(),
        }
    }
}

/// Changeset messages.
pub const INVALID: &str = "is invalid";
pub const BLANK: &str = "can't be blank";
pub const UNKNOWN: &str = "is unknown";
pub const JWT_REQUIRED: &str = "either jwt_secret or jwt_jwks must be provided";
pub const TAKEN: &str = "has already been taken";
pub const NOT_A_HOST_LABEL: &str =
    "is not a usable Host label (1 to 63 characters of a-z, 0-9, - and _)";

/// Keys of `tenant` the API accepts besides `extensions`.
const FIELDS: [&str; 21] = [
    "name",
    "external_id",
    "jwt_secret",
    "jwt_jwks",
    "max_concurrent_users",
    "max_events_per_second",
    "postgres_cdc_default",
    "max_bytes_per_second",
    "max_channels_per_client",
    "max_joins_per_second",
    "max_presence_events_per_second",
    "max_payload_size_in_kb",
    "suspend",
    "private_only",
    "migrations_ran",
    "broadcast_adapter",
    "max_client_presence_events_per_window",
    "client_presence_window_ms",
    "presence_enabled",
    "feature_flags",
    "placement",
];

/// Keys of an extension object; `id`, timestamps and the owner are what a
/// client echoing a rendered tenant sends back, and are ignored.
const EXTENSION_KEYS: [&str; 6] = [
    "type",
    "settings",
    "tenant_external_id",
    "id",
    "inserted_at",
    "updated_at",
];

/// Required settings of the CDC extension, in the order the Elixir server
/// checks them (its messages come out in the reverse order).
const CDC_REQUIRED: [&str; 6] = [
    "region",
    "db_host",
    "db_port",
    "db_name",
    "db_user",
    "db_password",
];

/// Settings a CDC extension gets unless the client gives them.
pub fn cdc_default_settings() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("poll_interval_ms".into(), 100.into());
    m.insert("poll_max_changes".into(), 100.into());
    m.insert("poll_max_record_bytes".into(), 1_048_576.into());
    m.insert(
        "publication".into(),
        super::record::DEFAULT_PUBLICATION.into(),
    );
    m.insert("slot_name".into(), super::record::DEFAULT_SLOT.into());
    m
}

/// A new tenant before the client's fields: the schema's and the
/// database's column defaults, the env limits for the five limits the
/// Elixir server defaults from its environment.
pub fn new_record(id: String, d: &TenantDefaults, now: &str) -> TenantRecord {
    let n = |v: u64| Some(i64::try_from(v).unwrap_or(i64::MAX));
    TenantRecord {
        id,
        postgres_cdc_default: Some(CDC_RLS.to_owned()),
        max_concurrent_users: n(d.max_concurrent_users),
        max_events_per_second: n(d.max_events_per_second),
        max_presence_events_per_second: Some(1000),
        max_payload_size_in_kb: Some(3000),
        max_bytes_per_second: n(d.max_bytes_per_second),
        max_channels_per_client: n(d.max_channels_per_client),
        max_joins_per_second: n(d.max_joins_per_second),
        broadcast_adapter: Some("gen_rpc".to_owned()),
        feature_flags: Value::Object(Map::new()),
        inserted_at: now.to_owned(),
        updated_at: now.to_owned(),
        ..TenantRecord::default()
    }
}

/// Whether a Host's first label can ever select this id: the server
/// lower-cases the Host and cuts it at the first dot, so an id with
/// upper-case letters, dots, or characters a host name cannot carry would
/// name a tenant nobody can reach.
pub fn usable_host_label(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// `Ok(None)` is null (or an empty string, which Ecto reads as null).
type Cast<T> = Result<Option<T>, ()>;

/// Ecto's default empty value: only the empty string (not blanks).
fn blank_string(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.is_empty())
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn cast_string(v: &Value) -> Cast<String> {
    match v {
        Value::Null => Ok(None),
        _ if blank_string(v) => Ok(None),
        Value::String(s) if !s.contains('\0') => Ok(Some(s.clone())),
        _ => Err(()),
    }
}

/// Integers as Ecto casts them (digit strings too, no floats), within the
/// `integer` (32-bit) columns they are stored in.
fn cast_int(v: &Value) -> Cast<i64> {
    let n = match v {
        Value::Null => return Ok(None),
        _ if blank_string(v) => return Ok(None),
        Value::Number(n) => n.as_i64().ok_or(())?,
        Value::String(s) => {
            let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            s.strip_prefix('+')
                .unwrap_or(s)
                .parse::<i64>()
                .map_err(|_| ())?
        }
        _ => return Err(()),
    };
    i32::try_from(n).map(|_| Some(n)).map_err(|_| ())
}

fn cast_bool(v: &Value) -> Cast<bool> {
    match v {
        Value::Null => Ok(None),
        _ if blank_string(v) => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) if s == "true" || s == "1" => Ok(Some(true)),
        Value::String(s) if s == "false" || s == "0" => Ok(Some(false)),
        _ => Err(()),
    }
}

fn cast_map(v: &Value) -> Cast<Value> {
    match v {
        Value::Null => Ok(None),
        _ if blank_string(v) => Ok(None),
        Value::Object(_) if !has_nul(v) => Ok(Some(v.clone())),
        _ => Err(()),
    }
}

/// `{"keys":[{"kty":"...",...},...]}`: the only shape the verifier reads.
fn jwks_shape_ok(v: &Value) -> bool {
    match v.get("keys") {
        Some(Value::Array(keys)) => keys
            .iter()
            .all(|k| matches!(k.get("kty"), Some(Value::String(_)))),
        _ => false,
    }
}

#[derive(Default)]
struct Errors(BTreeMap<String, Vec<String>>);

impl Errors {
    fn add(&mut self, field: &str, msg: impl Into<String>) {
        self.0.entry(field.to_owned()).or_default().push(msg.into());
    }
    fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }
    fn to_json(&self) -> Map<String, Value> {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect()
    }
}

fn unprocessable(errors: Map<String, Value>) -> Invalid {
    let body = serde_json::json!({ "errors": errors });
    Invalid {
        status: 422,
        body: body.to_string().into_bytes(),
    }
}

/// Applies an admin API body to `existing` (an update) or to a new tenant
/// (`id()` gives fresh UUIDs: the tenant's, then one per extension).
///
/// `path_id` is the `:external_id` of `PUT|PATCH /api/tenants/:id`; it
/// names the tenant and wins over the body's `external_id` (the Elixir
/// server creates under the path id but lets the body rename an existing
/// tenant; renaming would strand its sockets' Host, so here the path
/// decides). `None` for `POST /api/tenants`, where the body's
/// `external_id` names it. A new tenant's `name` is its external id, as
/// the Elixir server creates it whatever the body says.
pub fn apply_params(
    existing: Option<&TenantRecord>,
    path_id: Option<&str>,
    body: &[u8],
    defaults: &TenantDefaults,
    mut id: impl FnMut() -> String,
    now: &str,
) -> Result<TenantRecord, Invalid> {
    let Ok(Value::Object(mut top)) = serde_json::from_slice::<Value>(body) else {
        return Err(Invalid::bad_request());
    };
    let Some(Value::Object(params)) = top.remove("tenant") else {
        return Err(Invalid::bad_request());
    };
    let mut errors = Errors::default();
    let mut rec = match existing {
        Some(e) => e.clone(),
        None => new_record(String::new(), defaults, now),
    };
    let is_new = existing.is_none();
    for (key, value) in &params {
        if key != "extensions" && !FIELDS.contains(&key.as_str()) {
            errors.add(key, UNKNOWN);
            continue;
        }
        cast_field(&mut rec, key, value, is_new, defaults, &mut errors);
    }
    if let Some(path) = path_id {
        rec.external_id = path.to_owned();
        errors.0.remove("external_id");
    } else if let Some(e) = existing {
        // POST found the tenant by the body's id; it stays that tenant.
        rec.external_id = e.external_id.clone();
    }
    if !errors.has("external_id") {
        if rec.external_id.is_empty() {
            errors.add("external_id", BLANK);
        } else if is_new && !usable_host_label(&rec.external_id) {
            errors.add("external_id", NOT_A_HOST_LABEL);
        }
    }
    if is_new {
        rec.name = Some(rec.external_id.clone());
    }
    if let Some(jwks) = &rec.jwt_jwks {
        if params.contains_key("jwt_jwks") && !jwks_shape_ok(jwks) && !errors.has("jwt_jwks") {
            errors.add("jwt_jwks", INVALID);
        }
    }
    let mut ext_errors: Vec<Errors> = Vec::new();
    match params.get("extensions") {
        None => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_object) => {
            let mut exts = Vec::with_capacity(items.len());
            for item in items {
                let (ext, errs) = extension(item.as_object().expect("checked"), now);
                exts.push(ext);
                ext_errors.push(errs);
            }
            rec.extensions = exts;
        }
        Some(_) => errors.add("extensions", INVALID),
    }
    let ext_invalid = ext_errors.iter().any(|e| !e.0.is_empty());
    if !errors.0.is_empty() || ext_invalid {
        let mut out = errors.to_json();
        if ext_invalid {
            let list = ext_errors
                .iter()
                .map(|e| Value::Object(e.to_json()))
                .collect();
            out.insert("extensions".into(), Value::Array(list));
        }
        return Err(unprocessable(out));
    }
    // What the database's constraints say, once the changeset is valid.
    if rec.jwt_secret.is_none() && rec.jwt_jwks.is_none() {
        let mut out = Map::new();
        out.insert("jwt_secret".into(), Value::from(vec![JWT_REQUIRED]));
        return Err(unprocessable(out));
    }
    let mut seen = std::collections::HashSet::new();
    let dup: Vec<bool> = rec
        .extensions
        .iter()
        .map(|e| !seen.insert(e.kind.clone()))
        .collect();
    if dup.iter().any(|d| *d) {
        let list = dup
            .iter()
            .map(|d| {
                if *d {
                    serde_json::json!({ "tenant_external_id": [TAKEN] })
                } else {
                    serde_json::json!({})
                }
            })
            .collect();
        let mut out = Map::new();
        out.insert("extensions".into(), Value::Array(list));
        return Err(unprocessable(out));
    }
    if is_new {
        rec.id = id();
    }
    if params.contains_key("extensions") {
        for ext in &mut rec.extensions {
            ext.id = id();
        }
    }
    if let Some(e) = existing {
        if *e != rec {
            rec.updated_at = now.to_owned();
        }
    }
    Ok(rec)
}

/// The `external_id` a `POST /api/tenants` body names, to look the stored
/// tenant up before [`apply_params`] (the Elixir server upserts by it).
/// `None` when the body has no usable one; `apply_params` then says why.
pub fn requested_external_id(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    match cast_string(v.get("tenant")?.get("external_id")?) {
        Ok(Some(id)) => Some(id),
        _ => None,
    }
}

/// Whether an update must disconnect the tenant's sockets (`Server
/// requested disconnect`, close 1012): its keys, `private_only` or
/// `suspend` changed. The Elixir server also disconnects when a request
/// merely repeats the same `jwt_secret` (it compares against the
/// ciphertext); here only a real change does. A new `placement` keeps the
/// sockets: it is a setting like the limits.
pub fn needs_disconnect(old: &TenantRecord, new: &TenantRecord) -> bool {
    old.jwt_secret != new.jwt_secret
        || old.jwt_jwks != new.jwt_jwks
        || old.private_only != new.private_only
        || old.suspend != new.suspend
}

/// Whether an update must restart the tenant's database connections and
/// replication: its extensions' settings, keys or `suspend` changed.
pub fn needs_db_restart(old: &TenantRecord, new: &TenantRecord) -> bool {
    let settings = |r: &TenantRecord| -> Vec<(String, Map<String, Value>)> {
        r.extensions
            .iter()
            .map(|e| (e.kind.clone(), e.settings.clone()))
            .collect()
    };
    settings(old) != settings(new)
        || old.jwt_secret != new.jwt_secret
        || old.jwt_jwks != new.jwt_jwks
        || old.suspend != new.suspend
}

/// Casts one known field into `rec`; a bad value adds its error and
/// leaves the field as it was.
fn cast_field(
    rec: &mut TenantRecord,
    key: &str,
    value: &Value,
    is_new: bool,
    d: &TenantDefaults,
    errors: &mut Errors,
) {
    let def = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    // The five limits the Elixir server defaults from its environment:
    // null on a new tenant takes the default; null on a stored one would
    // break the column's NOT NULL.
    let defaulted =
        |slot: &mut Option<i64>, default: u64, errors: &mut Errors| match cast_int(value) {
            Ok(Some(n)) => *slot = Some(n),
            Ok(None) if is_new || slot.is_none() => *slot = Some(def(default)),
            Ok(None) => errors.add(key, BLANK),
            Err(()) => errors.add(key, INVALID),
        };
    let nullable = |slot: &mut Option<i64>, errors: &mut Errors| match cast_int(value) {
        Ok(v) => *slot = v,
        Err(()) => errors.add(key, INVALID),
    };
    let flag = |slot: &mut bool, errors: &mut Errors| match cast_bool(value) {
        Ok(Some(b)) => *slot = b,
        Ok(None) => errors.add(key, BLANK),
        Err(()) => errors.add(key, INVALID),
    };
    let text = |slot: &mut Option<String>, errors: &mut Errors| match cast_string(value) {
        Ok(v) => *slot = v,
        Err(()) => errors.add(key, INVALID),
    };
    match key {
        "name" => text(&mut rec.name, errors),
        "external_id" => match cast_string(value) {
            Ok(v) => rec.external_id = v.unwrap_or_default(),
            Err(()) => errors.add(key, INVALID),
        },
        "jwt_secret" => text(&mut rec.jwt_secret, errors),
        "postgres_cdc_default" => text(&mut rec.postgres_cdc_default, errors),
        "jwt_jwks" => match cast_map(value) {
            Ok(v) => rec.jwt_jwks = v,
            Err(()) => errors.add(key, INVALID),
        },
        "feature_flags" => match cast_map(value) {
            Ok(Some(v)) => rec.feature_flags = v,
            Ok(None) => errors.add(key, BLANK),
            Err(()) => errors.add(key, INVALID),
        },
        "broadcast_adapter" => match cast_string(value) {
            Ok(None) => rec.broadcast_adapter = None,
            Ok(Some(s)) if s == "phoenix" || s == "gen_rpc" => rec.broadcast_adapter = Some(s),
            _ => errors.add(key, INVALID),
        },
        "max_concurrent_users" => defaulted(
            &mut rec.max_concurrent_users,
            d.max_concurrent_users,
            errors,
        ),
        "max_events_per_second" => defaulted(
            &mut rec.max_events_per_second,
            d.max_events_per_second,
            errors,
        ),
        "max_bytes_per_second" => defaulted(
            &mut rec.max_bytes_per_second,
            d.max_bytes_per_second,
            errors,
        ),
        "max_channels_per_client" => defaulted(
            &mut rec.max_channels_per_client,
            d.max_channels_per_client,
            errors,
        ),
        "max_joins_per_second" => defaulted(
            &mut rec.max_joins_per_second,
            d.max_joins_per_second,
            errors,
        ),
        "max_presence_events_per_second" => {
            nullable(&mut rec.max_presence_events_per_second, errors)
        }
        "max_payload_size_in_kb" => nullable(&mut rec.max_payload_size_in_kb, errors),
        "max_client_presence_events_per_window" => {
            nullable(&mut rec.max_client_presence_events_per_window, errors)
        }
        "client_presence_window_ms" => nullable(&mut rec.client_presence_window_ms, errors),
        "migrations_ran" => match cast_int(value) {
            Ok(Some(n)) => rec.migrations_ran = n,
            Ok(None) => errors.add(key, BLANK),
            Err(()) => errors.add(key, INVALID),
        },
        // This server's own field: `home` or `spread`, never null.
        "placement" => match cast_string(value) {
            Ok(Some(s)) => match Placement::parse(&s) {
                Some(p) => rec.placement = p,
                None => errors.add(key, INVALID),
            },
            Ok(None) => errors.add(key, BLANK),
            Err(()) => errors.add(key, INVALID),
        },
        "suspend" => flag(&mut rec.suspend, errors),
        "private_only" => flag(&mut rec.private_only, errors),
        "presence_enabled" => flag(&mut rec.presence_enabled, errors),
        _ => {}
    }
}

/// One extension object of the body, and its errors.
fn extension(item: &Map<String, Value>, now: &str) -> (ExtensionRecord, Errors) {
    let mut errs = Errors::default();
    for key in item.keys() {
        if !EXTENSION_KEYS.contains(&key.as_str()) {
            errs.add(key, UNKNOWN);
        }
    }
    let kind = match item.get("type").map(cast_string) {
        None | Some(Ok(None)) => {
            errs.add("type", BLANK);
            None
        }
        Some(Err(())) => {
            errs.add("type", INVALID);
            None
        }
        Some(Ok(Some(t))) if t == LEGACY_CDC => Some(CDC_RLS.to_owned()),
        Some(Ok(Some(t))) => Some(t),
    };
    let mut settings = match item.get("settings") {
        None | Some(Value::Null) => {
            errs.add("settings", BLANK);
            Map::new()
        }
        Some(Value::Object(m)) if !has_nul(&Value::Object(m.clone())) => m.clone(),
        Some(_) => {
            errs.add("settings", INVALID);
            Map::new()
        }
    };
    // The API's public name for the subscription pool size.
    if let Some(pool) = settings.remove("postgres_changes_pool") {
        settings.insert("subcriber_pool_size".into(), pool);
    }
    if kind.as_deref() == Some(CDC_RLS) && !errs.has("settings") {
        let mut merged = cdc_default_settings();
        merged.extend(settings);
        settings = merged;
        let mut msgs = Vec::new();
        for field in CDC_REQUIRED {
            match settings.get(field) {
                None | Some(Value::Null) => msgs.push(format!("{field} {BLANK}")),
                Some(Value::String(_)) => {}
                Some(_) => msgs.push(format!("{field} {INVALID}")),
            }
        }
        for m in msgs.into_iter().rev() {
            errs.add("settings", m);
        }
    }
    let ext = ExtensionRecord {
        id: String::new(),
        kind: kind.unwrap_or_default(),
        settings,
        inserted_at: now.to_owned(),
        updated_at: now.to_owned(),
    };
    (ext, errs)
}

/// The tenant `SEED_SELF_HOST=true` writes: named after
/// `SELF_HOST_TENANT_NAME`, placed by `SELF_HOST_TENANT_PLACEMENT`, the
/// API's JWT secret and JWKS, and one CDC
/// extension pointing at the `DB_*` database (`host.docker.internal` and
/// `postgres` where `DB_HOST`/`DB_PASSWORD` are unset, as upstream seeds).
pub fn seed_record(
    config: &Config,
    defaults: &TenantDefaults,
    mut id: impl FnMut() -> String,
    now: &str,
) -> TenantRecord {
    let name = config.self_host_tenant_name.clone();
    let mut settings = cdc_default_settings();
    for (k, v) in [
        ("db_name", Value::from(config.db_name.clone())),
        (
            "db_host",
            Value::from(
                config
                    .db_host
                    .clone()
                    .unwrap_or_else(|| "host.docker.internal".into()),
            ),
        ),
        ("db_user", Value::from(config.db_user.clone())),
        (
            "db_password",
            Value::from(
                config
                    .db_password
                    .clone()
                    .unwrap_or_else(|| "postgres".into()),
            ),
        ),
        ("db_port", Value::from(config.db_port.to_string())),
        ("region", Value::from("us-east-1")),
        ("poll_interval_ms", Value::from(100)),
        ("poll_max_record_bytes", Value::from(1_048_576)),
        ("ssl_enforced", Value::from(false)),
    ] {
        settings.insert(k.to_owned(), v);
    }
    let mut rec = new_record(id(), defaults, now);
    rec.name = Some(name.clone());
    rec.external_id = name;
    rec.jwt_secret = (!config.api_jwt_secret.is_empty()).then(|| config.api_jwt_secret.clone());
    rec.jwt_jwks = config.api_jwt_jwks.clone();
    rec.placement = Placement::parse(&config.self_host_tenant_placement).unwrap_or_default();
    rec.extensions = vec![ExtensionRecord {
        id: id(),
        kind: CDC_RLS.to_owned(),
        settings,
        inserted_at: now.to_owned(),
        updated_at: now.to_owned(),
    }];
    rec
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod params_tests;
