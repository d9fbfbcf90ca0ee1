//! A tenant with its secrets in plaintext and its JSON parsed: what the
//! admin API validates and renders and what a shard's [`TenantConfig`] is
//! built from. The control database holds the same data as a
//! [`TenantRow`]; `from_row`/`to_row` cross that boundary, decrypting and
//! encrypting exactly the values the Elixir server keeps encrypted
//! (`jwt_secret`, and the five `db_*` connection settings of a
//! `postgres_cdc_rls` extension), so either server reads what the other
//! wrote. Runtime-free: nonces, ids and clocks come from the caller.

use serde_json::{Map, Value};

use super::row::{ExtensionRow, TenantRow};
use super::{Limits, Placement, TenantConfig, TenantDb};
use crate::config::Config;
use crate::realtime::auth::{ClaimValidators, JwtKeys};
use crate::realtime::secrets::{SecretError, SecretKeys};

/// The extension type that streams Postgres Changes.
pub const CDC_RLS: &str = "postgres_cdc_rls";
/// What older deployments called it; read (and accepted) as [`CDC_RLS`].
pub const LEGACY_CDC: &str = "postgres";
/// Settings of a [`CDC_RLS`] extension stored encrypted.
pub const ENCRYPTED_SETTINGS: [&str; 5] =
    ["db_host", "db_port", "db_name", "db_user", "db_password"];
/// Default replication slot and publication of a [`CDC_RLS`] extension.
pub const DEFAULT_SLOT: &str = "supabase_realtime_replication_slot";
pub const DEFAULT_PUBLICATION: &str = "supabase_realtime";

/// Why a stored tenant cannot be used; names the tenant and the value so an
/// operator can find the row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("tenant {tenant:?}: {field} cannot be decrypted: {source}")]
    Decrypt {
        tenant: String,
        field: String,
        source: SecretError,
    },
    #[error("tenant {tenant:?}: {field} cannot be encrypted: {source}")]
    Encrypt {
        tenant: String,
        field: String,
        source: SecretError,
    },
    #[error("tenant {tenant:?}: {field} {reason}")]
    Value {
        tenant: String,
        field: String,
        reason: String,
    },
}

fn bad(tenant: &str, field: impl Into<String>, reason: impl Into<String>) -> RecordError {
    RecordError::Value {
        tenant: tenant.to_owned(),
        field: field.into(),
        reason: reason.into(),
    }
}

/// A tenant in plaintext: every column of [`TenantRow`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TenantRecord {
    pub id: String,
    pub name: Option<String>,
    pub external_id: String,
    /// The HS secret in plaintext.
    pub jwt_secret: Option<String>,
    pub jwt_jwks: Option<Value>,
    pub postgres_cdc_default: Option<String>,
    pub max_concurrent_users: Option<i64>,
    pub max_events_per_second: Option<i64>,
    pub max_presence_events_per_second: Option<i64>,
    pub max_payload_size_in_kb: Option<i64>,
    pub max_bytes_per_second: Option<i64>,
    pub max_channels_per_client: Option<i64>,
    pub max_joins_per_second: Option<i64>,
    pub max_client_presence_events_per_window: Option<i64>,
    pub client_presence_window_ms: Option<i64>,
    pub suspend: bool,
    pub private_only: bool,
    pub presence_enabled: bool,
    /// Which shards serve its sockets.
    pub placement: Placement,
    pub migrations_ran: i64,
    pub broadcast_adapter: Option<String>,
    pub feature_flags: Value,
    pub gcm_migrated_at: Option<String>,
    pub inserted_at: String,
    pub updated_at: String,
    pub extensions: Vec<ExtensionRecord>,
}

/// An extension with its settings in plaintext.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExtensionRecord {
    pub id: String,
    /// `postgres_cdc_rls` (legacy `postgres` already renamed).
    pub kind: String,
    pub settings: Map<String, Value>,
    pub inserted_at: String,
    pub updated_at: String,
}

/// The settings keys stored encrypted for an extension of type `kind`:
/// only the CDC extension has required (and so encrypted) settings.
fn encrypted_keys(kind: &str) -> &'static [&'static str] {
    if kind == CDC_RLS {
        &ENCRYPTED_SETTINGS
    } else {
        &[]
    }
}

fn parse_json(tenant: &str, field: &str, text: &str) -> Result<Value, RecordError> {
    serde_json::from_str(text).map_err(|e| bad(tenant, field, format!("is not valid JSON: {e}")))
}

fn decrypt_text(
    keys: &SecretKeys,
    tenant: &str,
    field: &str,
    stored: &str,
) -> Result<String, RecordError> {
    let bytes = keys
        .decrypt(stored)
        .map_err(|source| RecordError::Decrypt {
            tenant: tenant.to_owned(),
            field: field.to_owned(),
            source,
        })?;
    String::from_utf8(bytes).map_err(|_| bad(tenant, field, "decrypts to bytes that are not UTF-8"))
}

impl TenantRecord {
    /// Decrypts and parses a stored tenant.
    pub fn from_row(row: TenantRow, keys: &SecretKeys) -> Result<TenantRecord, RecordError> {
        let t = row.external_id.as_str();
        let jwt_secret = match &row.jwt_secret {
            Some(s) => Some(decrypt_text(keys, t, "jwt_secret", s)?),
            None => None,
        };
        let jwt_jwks = match &row.jwt_jwks {
            Some(s) => Some(parse_json(t, "jwt_jwks", s)?),
            None => None,
        };
        let feature_flags = parse_json(t, "feature_flags", &row.feature_flags)?;
        // A row written before the column existed reads as the default.
        let placement = match row.placement.as_deref() {
            None => Placement::default(),
            Some(s) => Placement::parse(s)
                .ok_or_else(|| bad(t, "placement", format!("{s:?} is not home or spread")))?,
        };
        let mut extensions = Vec::with_capacity(row.extensions.len());
        for ext in &row.extensions {
            let kind = if ext.kind == LEGACY_CDC {
                CDC_RLS.to_owned()
            } else {
                ext.kind.clone()
            };
            let field = format!("extension {kind} settings");
            let Value::Object(mut settings) = parse_json(t, &field, &ext.settings)? else {
                return Err(bad(t, field, "is not a JSON object"));
            };
            for key in encrypted_keys(&kind) {
                if let Some(v) = settings.get_mut(*key) {
                    match v {
                        Value::String(s) => {
                            let plain = decrypt_text(keys, t, &format!("{field}.{key}"), s)?;
                            *v = Value::String(plain);
                        }
                        // Absent values are written as null by nobody we
                        // know, but a null holds no secret to decrypt.
                        Value::Null => {}
                        _ => return Err(bad(t, format!("{field}.{key}"), "is not a string")),
                    }
                }
            }
            extensions.push(ExtensionRecord {
                id: ext.id.clone(),
                kind,
                settings,
                inserted_at: ext.inserted_at.clone(),
                updated_at: ext.updated_at.clone(),
            });
        }
        Ok(TenantRecord {
            id: row.id,
            name: row.name,
            external_id: row.external_id,
            jwt_secret,
            jwt_jwks,
            postgres_cdc_default: row.postgres_cdc_default,
            max_concurrent_users: row.max_concurrent_users,
            max_events_per_second: row.max_events_per_second,
            max_presence_events_per_second: row.max_presence_events_per_second,
            max_payload_size_in_kb: row.max_payload_size_in_kb,
            max_bytes_per_second: row.max_bytes_per_second,
            max_channels_per_client: row.max_channels_per_client,
            max_joins_per_second: row.max_joins_per_second,
            max_client_presence_events_per_window: row.max_client_presence_events_per_window,
            client_presence_window_ms: row.client_presence_window_ms,
            suspend: row.suspend,
            private_only: row.private_only,
            presence_enabled: row.presence_enabled,
            placement,
            migrations_ran: row.migrations_ran,
            broadcast_adapter: row.broadcast_adapter,
            feature_flags,
            gcm_migrated_at: row.gcm_migrated_at,
            inserted_at: row.inserted_at,
            updated_at: row.updated_at,
            extensions,
        })
    }

    /// The row to store: secrets encrypted with the cipher `keys` writes
    /// (a fresh `nonce()` per value for GCM). Fails only when no key for
    /// that cipher is configured.
    pub fn to_row(
        &self,
        keys: &SecretKeys,
        mut nonce: impl FnMut() -> [u8; 12],
    ) -> Result<TenantRow, RecordError> {
        let t = self.external_id.as_str();
        let mut encrypt = |field: &str, text: &str| {
            keys.encrypt(text.as_bytes(), nonce())
                .map_err(|source| RecordError::Encrypt {
                    tenant: t.to_owned(),
                    field: field.to_owned(),
                    source,
                })
        };
        let jwt_secret = match &self.jwt_secret {
            Some(s) => Some(encrypt("jwt_secret", s)?),
            None => None,
        };
        let mut extensions = Vec::with_capacity(self.extensions.len());
        for ext in &self.extensions {
            let mut settings = ext.settings.clone();
            for key in encrypted_keys(&ext.kind) {
                if let Some(Value::String(s)) = settings.get(*key) {
                    let sealed = encrypt(&format!("extension {} settings.{key}", ext.kind), s)?;
                    settings.insert((*key).to_owned(), Value::String(sealed));
                }
            }
            extensions.push(ExtensionRow {
                id: ext.id.clone(),
                kind: ext.kind.clone(),
                settings: Value::Object(settings).to_string(),
                inserted_at: ext.inserted_at.clone(),
                updated_at: ext.updated_at.clone(),
            });
        }
        Ok(TenantRow {
            id: self.id.clone(),
            name: self.name.clone(),
            external_id: self.external_id.clone(),
            jwt_secret,
            jwt_jwks: self.jwt_jwks.as_ref().map(Value::to_string),
            postgres_cdc_default: self.postgres_cdc_default.clone(),
            max_concurrent_users: self.max_concurrent_users,
            max_events_per_second: self.max_events_per_second,
            max_presence_events_per_second: self.max_presence_events_per_second,
            max_payload_size_in_kb: self.max_payload_size_in_kb,
            max_bytes_per_second: self.max_bytes_per_second,
            max_channels_per_client: self.max_channels_per_client,
            max_joins_per_second: self.max_joins_per_second,
            max_client_presence_events_per_window: self.max_client_presence_events_per_window,
            client_presence_window_ms: self.client_presence_window_ms,
            suspend: self.suspend,
            private_only: self.private_only,
            presence_enabled: self.presence_enabled,
            placement: Some(self.placement.as_str().to_owned()),
            migrations_ran: self.migrations_ran,
            broadcast_adapter: self.broadcast_adapter.clone(),
            feature_flags: self.feature_flags.to_string(),
            gcm_migrated_at: self.gcm_migrated_at.clone(),
            inserted_at: self.inserted_at.clone(),
            updated_at: self.updated_at.clone(),
            extensions,
        })
    }

    /// The CDC extension, if the tenant has a database.
    pub fn cdc_extension(&self) -> Option<&ExtensionRecord> {
        self.extensions.iter().find(|e| e.kind == CDC_RLS)
    }
}

/// The server's defaults for tenant limits (the `TENANT_*` settings):
/// what a new tenant gets for the limits it leaves out, and what a shard
/// uses for limits a stored tenant holds as NULL.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantDefaults {
    pub max_concurrent_users: u64,
    pub max_events_per_second: u64,
    pub max_presence_events_per_second: u64,
    pub max_payload_size_in_kb: u64,
    pub max_bytes_per_second: u64,
    pub max_channels_per_client: u64,
    pub max_joins_per_second: u64,
    pub client_presence_max_calls: u32,
    pub client_presence_window_ms: u64,
    /// Server-wide bounds with no tenant column.
    pub max_topic_bytes: u64,
    pub max_presence_meta_bytes: u64,
    pub max_presence_bytes_per_client: u64,
}

impl TenantDefaults {
    pub fn from_config(c: &Config) -> TenantDefaults {
        TenantDefaults {
            max_concurrent_users: c.max_concurrent_users,
            max_events_per_second: c.max_events_per_second,
            max_presence_events_per_second: c.max_presence_events_per_second,
            max_payload_size_in_kb: c.max_payload_size_in_kb,
            max_bytes_per_second: c.max_bytes_per_second,
            max_channels_per_client: c.max_channels_per_client,
            max_joins_per_second: c.max_joins_per_second,
            client_presence_max_calls: c.client_presence_max_calls,
            client_presence_window_ms: c.client_presence_window_ms,
            max_topic_bytes: c.max_topic_bytes,
            max_presence_meta_bytes: c.max_presence_meta_bytes,
            max_presence_bytes_per_client: c.max_presence_bytes_per_client,
        }
    }
}

/// A count in the settings: a JSON integer or a string of digits (the API
/// lets clients send either).
fn setting_count(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl TenantDb {
    /// From a CDC extension's plaintext settings.
    pub fn from_settings(tenant: &str, s: &Map<String, Value>) -> Result<TenantDb, RecordError> {
        let text = |key: &str| match s.get(key) {
            Some(Value::String(v)) => Ok(v.clone()),
            _ => Err(bad(
                tenant,
                format!("db setting {key}"),
                "is missing or not a string",
            )),
        };
        let port_text = text("db_port")?;
        let port = port_text.trim().parse::<u16>().map_err(|_| {
            bad(
                tenant,
                "db setting db_port",
                format!("{port_text:?} is not a TCP port"),
            )
        })?;
        let or = |key: &str, default: &str| match s.get(key) {
            Some(Value::String(v)) => v.clone(),
            _ => default.to_owned(),
        };
        let ssl_enforced = match s.get("ssl_enforced") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(v)) => v != "false",
            _ => true,
        };
        Ok(TenantDb {
            host: text("db_host")?,
            port,
            name: text("db_name")?,
            user: text("db_user")?,
            password: text("db_password")?,
            publication: or("publication", DEFAULT_PUBLICATION),
            slot_name: or("slot_name", DEFAULT_SLOT),
            ssl_enforced,
            region: s.get("region").and_then(Value::as_str).map(str::to_owned),
            db_pool: setting_count(s.get("db_pool")),
            subscriber_pool_size: setting_count(s.get("subcriber_pool_size")),
        })
    }
}

/// A stored limit as the runtime's unsigned count: NULL takes the default,
/// a negative value (which the Elixir server accepts) allows nothing.
fn limit(v: Option<i64>, default: u64) -> u64 {
    v.map_or(default, |n| n.max(0) as u64)
}

/// The shard's runtime view of a tenant.
pub fn to_config(
    rec: &TenantRecord,
    defaults: &TenantDefaults,
    validators: ClaimValidators,
) -> Result<TenantConfig, RecordError> {
    let db = match rec.cdc_extension() {
        Some(ext) => Some(TenantDb::from_settings(&rec.external_id, &ext.settings)?),
        None => None,
    };
    let d = defaults;
    Ok(TenantConfig {
        external_id: rec.external_id.clone(),
        jwt: JwtKeys {
            secret: rec.jwt_secret.clone(),
            jwks: rec.jwt_jwks.clone(),
        },
        validators,
        limits: Limits {
            max_concurrent_users: limit(rec.max_concurrent_users, d.max_concurrent_users),
            max_events_per_second: limit(rec.max_events_per_second, d.max_events_per_second),
            max_presence_events_per_second: limit(
                rec.max_presence_events_per_second,
                d.max_presence_events_per_second,
            ),
            max_payload_size_in_kb: limit(rec.max_payload_size_in_kb, d.max_payload_size_in_kb),
            max_channels_per_client: limit(rec.max_channels_per_client, d.max_channels_per_client),
            max_joins_per_second: limit(rec.max_joins_per_second, d.max_joins_per_second),
            client_presence_max_calls: limit(
                rec.max_client_presence_events_per_window,
                u64::from(d.client_presence_max_calls),
            )
            .min(u64::from(u32::MAX)) as u32,
            client_presence_window_ms: limit(
                rec.client_presence_window_ms,
                d.client_presence_window_ms,
            ),
            max_topic_bytes: d.max_topic_bytes,
            max_presence_meta_bytes: d.max_presence_meta_bytes,
            max_presence_bytes_per_client: d.max_presence_bytes_per_client,
        },
        suspended: rec.suspend,
        private_only: rec.private_only,
        presence_enabled: rec.presence_enabled,
        has_database: db.is_some(),
        db,
        placement: rec.placement,
    })
}

/// `2026-12-07 07:25:00` (how Postgres prints the column) as the Elixir
/// server renders a naive timestamp in JSON: `2026-12-07T07:25:00`.
pub fn iso_timestamp(pg: &str) -> String {
    pg.replacen(' ', "T", 1)
}

/// The tenant JSON of the admin API (`index`, `show`, create/update),
/// from the stored row: the Elixir server renders extension settings as
/// stored, so `db_host`, `db_port`, `db_name` and `db_user` appear
/// encrypted; `db_password` is dropped and `jwt_secret` never appears.
/// `placement` is this server's own key (`home` or `spread`).
pub fn view(row: &TenantRow) -> Value {
    let extensions: Vec<Value> = row
        .extensions
        .iter()
        .map(|ext| {
            let mut settings = match serde_json::from_str::<Value>(&ext.settings) {
                Ok(Value::Object(m)) => m,
                // A row this server cannot parse still lists its type.
                _ => Map::new(),
            };
            settings.remove("db_password");
            let kind = if ext.kind == LEGACY_CDC {
                CDC_RLS
            } else {
                &ext.kind
            };
            serde_json::json!({
                "type": kind,
                "settings": settings,
                "inserted_at": iso_timestamp(&ext.inserted_at),
                "updated_at": iso_timestamp(&ext.updated_at),
            })
        })
        .collect();
    serde_json::json!({
        "id": row.id,
        "external_id": row.external_id,
        "name": row.name,
        "max_concurrent_users": row.max_concurrent_users,
        "max_channels_per_client": row.max_channels_per_client,
        "max_events_per_second": row.max_events_per_second,
        "max_joins_per_second": row.max_joins_per_second,
        "inserted_at": iso_timestamp(&row.inserted_at),
        "extensions": extensions,
        "private_only": row.private_only,
        "max_client_presence_events_per_window": row.max_client_presence_events_per_window,
        "client_presence_window_ms": row.client_presence_window_ms,
        "presence_enabled": row.presence_enabled,
        "placement": row.placement,
    })
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod record_tests;
