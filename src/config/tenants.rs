//! Tenants from the config file: `[[tenants]]` tables served beside the
//! environment's tenant when there is no control database.
//!
//! ```toml
//! [[tenants]]
//! external_id = "acme"
//! jwt_secret = "acme-secret-of-at-least-32-characters"
//! max_channels_per_client = 20
//! placement = "spread"
//! db_host = "127.0.0.1"
//! db_port = 5432
//! db_name = "postgres"
//! db_user = "supabase_admin"
//! db_password = "postgres"
//! ssl_enforced = false
//! ```
//!
//! A table is read as the admin API reads `POST /api/tenants`: its tenant
//! keys ([`TENANT_KEYS`]) become the `tenant` object and its database keys
//! ([`DB_KEYS`]) the settings of one `postgres_cdc_rls` extension, and
//! [`params::apply_params`] checks them with the same rules and messages.
//! The record it gives is what [`record::to_config`] turns into a shard's
//! tenant, as for a control-database tenant, so its database is streamed
//! the same way. Where a table differs from an API body:
//!
//! - a key without effect on this server (`name`, `broadcast_adapter`,
//!   `poll_interval_ms`, ...) is unknown, as is any other;
//! - a limit left out takes the server-wide default (`TENANT_*`), and
//!   `private_only` and `presence_enabled` left out take
//!   `TENANT_PRIVATE_ONLY` and `TENANT_PRESENCE_ENABLED`: what the
//!   environment's tenant gets; a limit given must be at least 1;
//! - `placement` left out is `home` (`SELF_HOST_TENANT_PLACEMENT` is the
//!   environment's tenant's alone); a value other than `home` or `spread`
//!   is refused with the value named;
//! - `db_port` may be a TOML integer; `region` may be left out (it only
//!   labels the health answer); `jwt_jwks` is a TOML table or a JSON
//!   string, checked as `API_JWT_JWKS` is.
//!
//! Across tables: with a control database any table is refused (tenants
//! live there then); `external_id`s are unique and differ from
//! `SELF_HOST_TENANT_NAME`; two tenants streaming one database need
//! different slots.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::validate::jwks_keys;
use super::value::{Setting, REDACTED};
use super::{Config, ConfigError};
use crate::realtime::auth::ClaimValidators;
use crate::realtime::tenant::record::{
    self, RecordError, TenantDefaults, TenantRecord, CDC_RLS, DEFAULT_SLOT,
};
use crate::realtime::tenant::{params, Placement};

/// Keys of a table that are the tenant record's: its id, keys, limits and
/// switches.
pub const TENANT_KEYS: [&str; 16] = [
    "external_id",
    "jwt_secret",
    "jwt_jwks",
    "max_concurrent_users",
    "max_events_per_second",
    "max_presence_events_per_second",
    "max_payload_size_in_kb",
    "max_bytes_per_second",
    "max_channels_per_client",
    "max_joins_per_second",
    "max_client_presence_events_per_window",
    "client_presence_window_ms",
    "private_only",
    "suspend",
    "presence_enabled",
    "placement",
];

/// Keys of a table that are its database's: the admin API's settings of
/// the `postgres_cdc_rls` extension. Any of them gives the tenant a
/// database; the first five are then required.
pub const DB_KEYS: [&str; 9] = [
    "db_host",
    "db_port",
    "db_name",
    "db_user",
    "db_password",
    "publication",
    "slot_name",
    "ssl_enforced",
    "region",
];

/// Where a limit is kept in a record.
type LimitField = fn(&mut TenantRecord) -> &mut Option<i64>;

/// The limits among [`TENANT_KEYS`], each with its record field.
const LIMITS: [(&str, LimitField); 9] = [
    ("max_concurrent_users", |r| &mut r.max_concurrent_users),
    ("max_events_per_second", |r| &mut r.max_events_per_second),
    ("max_presence_events_per_second", |r| {
        &mut r.max_presence_events_per_second
    }),
    ("max_payload_size_in_kb", |r| &mut r.max_payload_size_in_kb),
    ("max_bytes_per_second", |r| &mut r.max_bytes_per_second),
    ("max_channels_per_client", |r| {
        &mut r.max_channels_per_client
    }),
    ("max_joins_per_second", |r| &mut r.max_joins_per_second),
    ("max_client_presence_events_per_window", |r| {
        &mut r.max_client_presence_events_per_window
    }),
    ("client_presence_window_ms", |r| {
        &mut r.client_presence_window_ms
    }),
];

/// What a tenant's database needs, said after a missing setting.
const DB_NEEDS: &str =
    "(a tenant's database needs db_host, db_port, db_name, db_user and db_password)";

/// Checks the tables against each other and the rest of the
/// configuration; part of [`Config::validate`].
pub(super) fn check(config: &Config) -> Result<(), ConfigError> {
    file_tenants(config).map(drop)
}

/// The config file's tenants as records, checked: what the server turns
/// into its directory with [`record::to_config`]. Empty without tables.
pub fn file_tenants(config: &Config) -> Result<Vec<TenantRecord>, ConfigError> {
    if config.tenants.is_empty() {
        return Ok(Vec::new());
    }
    if config.uses_control_db() {
        let (field, env) = if config.control_db {
            ("control_db", "CONTROL_DB")
        } else {
            ("seed_self_host", "SEED_SELF_HOST")
        };
        return Err(ConfigError::Tenant {
            file: None,
            number: None,
            external_id: None,
            field: field.to_owned(),
            reason: format!(
                "is on ({env}), and with a control database tenants live there: remove \
                 the {} [[tenants]] table(s) and create them with the admin API, or turn \
                 {env} off",
                config.tenants.len()
            ),
        });
    }
    let defaults = TenantDefaults::from_config(config);
    let mut records = Vec::with_capacity(config.tenants.len());
    for (i, table) in config.tenants.iter().enumerate() {
        records.push(one(config, &defaults, i + 1, table)?);
    }
    across(config, &records)?;
    Ok(records)
}

/// The error for table `number` (`external_id` as far as it is known).
fn error(number: usize, id: Option<&str>, field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Tenant {
        file: None,
        number: Some(number),
        external_id: id.map(str::to_owned),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// A TOML value as the admin API's JSON would carry it; `None` for what
/// JSON has no form for (date-times, non-finite floats).
fn to_json(v: &toml::Value) -> Option<Value> {
    Some(match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(n) => Value::from(*n),
        toml::Value::Float(f) => Value::Number(serde_json::Number::from_f64(*f)?),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(_) => return None,
        toml::Value::Array(a) => Value::Array(a.iter().map(to_json).collect::<Option<_>>()?),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| Some((k.clone(), to_json(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

/// Whether Postgres takes `name` as a replication slot's name.
fn slot_name_ok(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A `jwt_jwks` value: a TOML table, or JSON text as `API_JWT_JWKS` takes.
fn jwks_value(v: &toml::Value) -> Result<Value, String> {
    match v {
        toml::Value::String(text) => {
            serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))
        }
        other => to_json(other).ok_or_else(|| params::INVALID.to_owned()),
    }
}

/// One table, checked and turned into a record.
fn one(
    config: &Config,
    defaults: &TenantDefaults,
    number: usize,
    table: &toml::Table,
) -> Result<TenantRecord, ConfigError> {
    let id = table.get("external_id").and_then(toml::Value::as_str);
    let err = |field: &str, reason: String| error(number, id, field, reason);
    let mut tenant = Map::new();
    let mut settings = Map::new();
    let mut nr_jwks_keys = None;
    for (key, value) in table {
        let key = key.as_str();
        let is_db = DB_KEYS.contains(&key);
        if !is_db && !TENANT_KEYS.contains(&key) {
            return Err(err(
                key,
                format!(
                    "{}: a tenant takes {}, and for its database {}",
                    params::UNKNOWN,
                    TENANT_KEYS.join(", "),
                    DB_KEYS.join(", ")
                ),
            ));
        }
        let json = match key {
            "jwt_jwks" => {
                let jwks = jwks_value(value).map_err(|reason| err(key, reason))?;
                nr_jwks_keys = Some(jwks_keys(&jwks).map_err(|reason| err(key, reason))?);
                jwks
            }
            "db_port" => {
                let port = match value {
                    toml::Value::Integer(n) => u16::try_from(*n).ok(),
                    toml::Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                match port {
                    Some(p) if p > 0 => Value::String(p.to_string()),
                    _ => return Err(err(key, "must be a TCP port from 1 to 65535".into())),
                }
            }
            // Settings the API stores without looking at them: a wrong
            // type there would silently take a default.
            "ssl_enforced" if !value.is_bool() => {
                return Err(err(key, "must be true or false".into()))
            }
            "publication" | "region" if value.as_str().is_none_or(str::is_empty) => {
                return Err(err(key, "must be a non-empty string".into()))
            }
            "placement" if value.as_str().and_then(Placement::parse).is_none() => {
                return Err(err(
                    key,
                    format!("{value} is not a placement: home or spread"),
                ))
            }
            "slot_name" if !value.as_str().is_some_and(slot_name_ok) => {
                return Err(err(
                    key,
                    "must be 1 to 63 characters of a-z, 0-9 and _ (a Postgres slot name)".into(),
                ))
            }
            _ => to_json(value).ok_or_else(|| err(key, params::INVALID.into()))?,
        };
        if is_db {
            settings.insert(key.to_owned(), json);
        } else {
            tenant.insert(key.to_owned(), json);
        }
    }
    if !settings.is_empty() {
        settings
            .entry("region")
            .or_insert_with(|| Value::from("local"));
        tenant.insert(
            "extensions".into(),
            json!([{ "type": CDC_RLS, "settings": settings }]),
        );
    }
    let body = json!({ "tenant": tenant }).to_string();
    let mut rec = params::apply_params(None, None, body.as_bytes(), defaults, String::new, "")
        .map_err(|invalid| api_error(&invalid.body, &err))?;

    for (key, slot) in LIMITS {
        let value = slot(&mut rec);
        if !table.contains_key(key) {
            // The record's column defaults are not the server's: take the
            // server-wide default, as the environment's tenant does.
            *value = None;
        } else if value.is_some_and(|n| n < 1) {
            return Err(err(key, "must be greater than 0".into()));
        }
    }
    if !table.contains_key("private_only") {
        rec.private_only = config.private_only;
    }
    if !table.contains_key("presence_enabled") {
        rec.presence_enabled = config.presence_enabled;
    }
    if rec.jwt_secret.is_none() && nr_jwks_keys == Some(0) {
        return Err(err(
            "jwt_jwks",
            "has no keys and jwt_secret is unset, so no token could be verified".into(),
        ));
    }
    record::to_config(&rec, defaults, ClaimValidators::default()).map_err(|e| match e {
        RecordError::Value { field, reason, .. } => {
            err(field.trim_start_matches("db setting "), reason)
        }
        other => err("external_id", other.to_string()),
    })?;
    Ok(rec)
}

/// The first error of a 422 body of [`params::apply_params`], as a
/// configuration error: `{"errors":{"field":["msg",...]}}`, or for the
/// database `{"errors":{"extensions":[{"settings":["db_host can't be
/// blank",...]}]}}`.
fn api_error(body: &[u8], err: &dyn Fn(&str, String) -> ConfigError) -> ConfigError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(errors) = parsed.get("errors").and_then(Value::as_object) else {
        return err("tenant", String::from_utf8_lossy(body).into_owned());
    };
    let text = |msgs: &Value| -> String {
        msgs.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    };
    if let Some(setting) = errors
        .get("extensions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|e| e.get("settings")?.as_array()?.first()?.as_str())
    {
        let (field, reason) = setting.split_once(' ').unwrap_or((setting, ""));
        return err(field, format!("{reason} {DB_NEEDS}"));
    }
    match errors.iter().find(|(k, _)| *k != "extensions") {
        Some((field, msgs)) => err(field, text(msgs)),
        None => err("tenant", Value::Object(errors.clone()).to_string()),
    }
}

/// Where a tenant streams from: its database (host text, port, name) and
/// slot. Host names are compared as written.
type Stream = (String, u16, String, String);

/// What no single table can see: unique ids, the environment's tenant's
/// id left to it, one slot per tenant on a database.
fn across(config: &Config, records: &[TenantRecord]) -> Result<(), ConfigError> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut streams: HashMap<Stream, String> = HashMap::new();
    if let Some(host) = &config.db_host {
        streams.insert(
            (
                host.clone(),
                config.db_port,
                config.db_name.clone(),
                DEFAULT_SLOT.to_owned(),
            ),
            format!(
                "the environment's tenant {:?} (DB_*)",
                config.self_host_tenant_name
            ),
        );
    }
    let defaults = TenantDefaults::from_config(config);
    for (i, rec) in records.iter().enumerate() {
        let number = i + 1;
        let id = rec.external_id.as_str();
        if id == config.self_host_tenant_name {
            return Err(error(
                number,
                Some(id),
                "external_id",
                "is the environment's tenant (self_host_tenant_name, \
                 SELF_HOST_TENANT_NAME): give this tenant another id, or set \
                 SELF_HOST_TENANT_NAME to another name",
            ));
        }
        if let Some(first) = ids.insert(id, number) {
            return Err(error(
                number,
                Some(id),
                "external_id",
                format!("is also the external_id of [[tenants]] #{first}"),
            ));
        }
        let Ok(cfg) = record::to_config(rec, &defaults, ClaimValidators::default()) else {
            continue;
        };
        if let Some(db) = cfg.db {
            let key = (db.host.clone(), db.port, db.name.clone(), db.slot_name);
            let who = format!("[[tenants]] #{number} ({id:?})");
            if let Some(other) = streams.insert(key.clone(), who) {
                return Err(error(
                    number,
                    Some(id),
                    "slot_name",
                    format!(
                        "{:?} on database {}:{}/{} is also the slot of {other}: \
                         each tenant streaming from one database needs a slot_name of its own",
                        key.3, key.0, key.1, key.2
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The tables with their secrets hidden, for `--check` and `Debug`:
/// `jwt_secret` and `db_password` as the server-wide secrets are, and
/// `jwt_jwks` (written back as JSON text) with its private members hidden.
pub(super) fn redacted(tables: &[toml::Table]) -> Vec<toml::Table> {
    tables
        .iter()
        .map(|table| {
            let mut t = table.clone();
            for key in ["jwt_secret", "db_password"] {
                if let Some(toml::Value::String(s)) = t.get_mut(key) {
                    *s = Setting::redact(s);
                }
            }
            if let Some(v) = t.get("jwt_jwks") {
                let shown = match jwks_value(v) {
                    Ok(jwks) => Setting::redact(&Some(jwks))
                        .map(|j| j.to_string())
                        .unwrap_or_default(),
                    Err(_) => REDACTED.to_owned(),
                };
                t.insert("jwt_jwks".into(), toml::Value::String(shown));
            }
            t
        })
        .collect()
}
