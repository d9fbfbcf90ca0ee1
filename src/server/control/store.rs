//! Tenant rows in the control database: read one or all, insert or update
//! one with its extensions, delete one. Every value is a bound parameter
//! ([`PgConn::query`]); only column names, which are constants here, are
//! part of the SQL. Names carry the `_realtime.` schema, so nothing depends
//! on the connection's `search_path`.
//!
//! Timestamps are written as the Elixir server writes them, UTC to the
//! second (`timestamp(0)` columns), and read back as `YYYY-MM-DD HH:MM:SS`
//! whatever the session's DateStyle.

use super::ControlError;
use crate::realtime::tenant::row::{ExtensionRow, TenantRow};
use crate::server::pgconn::{PgConn, Rows};

/// UTC now to the second, as Ecto's timestamps store it.
const NOW: &str = "date_trunc('second', now() at time zone 'utc')";

/// The tenant columns read, in [`tenant_from`]'s order.
const TENANT_COLUMNS: &str = "id::text, name, external_id, jwt_secret, jwt_jwks::text,
    postgres_cdc_default, max_concurrent_users, max_events_per_second,
    max_presence_events_per_second, max_payload_size_in_kb, max_bytes_per_second,
    max_channels_per_client, max_joins_per_second, max_client_presence_events_per_window,
    client_presence_window_ms, suspend, private_only, presence_enabled, migrations_ran,
    broadcast_adapter, feature_flags::text, placement,
    to_char(gcm_migrated_at, 'YYYY-MM-DD HH24:MI:SS'),
    to_char(inserted_at, 'YYYY-MM-DD HH24:MI:SS'),
    to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS')";

const EXTENSION_COLUMNS: &str = "tenant_external_id, id::text, type, settings::text,
    to_char(inserted_at, 'YYYY-MM-DD HH24:MI:SS'),
    to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS')";

/// The tenant `external_id`, with its extensions.
pub async fn get(conn: &mut PgConn, external_id: &str) -> Result<Option<TenantRow>, ControlError> {
    let t = conn
        .query(
            &format!("select {TENANT_COLUMNS} from _realtime.tenants where external_id = $1"),
            &[Some(external_id)],
        )
        .await?;
    let Some(row) = t.rows.first() else {
        return Ok(None);
    };
    let mut tenant = tenant_from(row)?;
    let e = conn
        .query(
            &format!(
                "select {EXTENSION_COLUMNS} from _realtime.extensions
                 where tenant_external_id = $1 order by type"
            ),
            &[Some(external_id)],
        )
        .await?;
    for row in &e.rows {
        tenant.extensions.push(extension_from(row)?.1);
    }
    Ok(Some(tenant))
}

/// Every tenant with its extensions, oldest first (then by external id).
pub async fn list(conn: &mut PgConn) -> Result<Vec<TenantRow>, ControlError> {
    let t = conn
        .query(
            &format!(
                "select {TENANT_COLUMNS} from _realtime.tenants order by inserted_at, external_id"
            ),
            &[],
        )
        .await?;
    let mut tenants = t
        .rows
        .iter()
        .map(|r| tenant_from(r))
        .collect::<Result<Vec<_>, _>>()?;
    let e = conn
        .query(
            &format!(
                "select {EXTENSION_COLUMNS} from _realtime.extensions
                 order by tenant_external_id, type"
            ),
            &[],
        )
        .await?;
    let index: std::collections::HashMap<String, usize> = tenants
        .iter()
        .enumerate()
        .map(|(i, t)| (t.external_id.clone(), i))
        .collect();
    for row in &e.rows {
        let (owner, ext) = extension_from(row)?;
        if let Some(&i) = owner.as_ref().and_then(|o| index.get(o)) {
            tenants[i].extensions.push(ext);
        }
    }
    Ok(tenants)
}

/// Inserts the tenant `row.external_id`, or updates it if it exists, and
/// makes its extensions those of `row` (by type: kept types are updated in
/// place, others inserted, missing ones deleted); one transaction. Returns
/// the row as stored and whether it was created.
///
/// The server sets the timestamps (`inserted_at` kept on update). An empty
/// `row.id` gets a fresh UUID on insert; the id of an existing tenant never
/// changes. A `None` for a column that is NOT NULL (the limits with
/// defaults, `placement`) means its default on insert and the stored value
/// on update; any other `None` is written as NULL. An empty
/// `feature_flags` keeps the stored flags (`{}` on insert).
pub async fn upsert(conn: &mut PgConn, row: &TenantRow) -> Result<(TenantRow, bool), ControlError> {
    conn.transaction(async |c| upsert_in_transaction(c, row).await)
        .await
}

/// Deletes the tenant and (by the foreign key's cascade) its extensions.
/// Whether it existed.
pub async fn delete(conn: &mut PgConn, external_id: &str) -> Result<bool, ControlError> {
    let r = conn
        .query(
            "delete from _realtime.tenants where external_id = $1",
            &[Some(external_id)],
        )
        .await?;
    Ok(affected(&r)? > 0)
}

/// A column to write: name, value, type cast of its parameter.
type Field = (&'static str, Option<String>, &'static str);

fn fields(row: &TenantRow) -> Vec<Field> {
    let n = |v: Option<i64>| v.map(|v| v.to_string());
    let b = |v: bool| Some(if v { "true" } else { "false" }.to_owned());
    let mut f: Vec<Field> = vec![
        ("name", row.name.clone(), "text"),
        ("jwt_secret", row.jwt_secret.clone(), "text"),
        ("jwt_jwks", row.jwt_jwks.clone(), "jsonb"),
        (
            "postgres_cdc_default",
            row.postgres_cdc_default.clone(),
            "text",
        ),
        (
            "max_presence_events_per_second",
            n(row.max_presence_events_per_second),
            "integer",
        ),
        (
            "max_payload_size_in_kb",
            n(row.max_payload_size_in_kb),
            "integer",
        ),
        (
            "max_client_presence_events_per_window",
            n(row.max_client_presence_events_per_window),
            "integer",
        ),
        (
            "client_presence_window_ms",
            n(row.client_presence_window_ms),
            "integer",
        ),
        ("suspend", b(row.suspend), "boolean"),
        ("private_only", b(row.private_only), "boolean"),
        ("presence_enabled", b(row.presence_enabled), "boolean"),
        ("migrations_ran", n(Some(row.migrations_ran)), "integer"),
        ("broadcast_adapter", row.broadcast_adapter.clone(), "text"),
        (
            "gcm_migrated_at",
            row.gcm_migrated_at.clone(),
            "timestamp(0)",
        ),
    ];
    // NOT NULL columns: absent means "default, or as stored".
    let required = [
        ("max_concurrent_users", row.max_concurrent_users),
        ("max_events_per_second", row.max_events_per_second),
        ("max_bytes_per_second", row.max_bytes_per_second),
        ("max_channels_per_client", row.max_channels_per_client),
        ("max_joins_per_second", row.max_joins_per_second),
    ];
    for (col, v) in required {
        if let Some(v) = v {
            f.push((col, Some(v.to_string()), "integer"));
        }
    }
    if let Some(p) = &row.placement {
        f.push(("placement", Some(p.clone()), "text"));
    }
    if !row.feature_flags.is_empty() {
        f.push(("feature_flags", Some(row.feature_flags.clone()), "jsonb"));
    }
    f
}

async fn upsert_in_transaction(
    conn: &mut PgConn,
    row: &TenantRow,
) -> Result<(TenantRow, bool), ControlError> {
    let fields = fields(row);
    let mut cols = String::from("id, external_id");
    let mut vals = String::from("coalesce($1::uuid, gen_random_uuid()), $2");
    let mut sets = String::new();
    for (i, (col, _, cast)) in fields.iter().enumerate() {
        cols.push_str(&format!(", {col}"));
        vals.push_str(&format!(", ${}::{cast}", i + 3));
        sets.push_str(&format!("{col} = excluded.{col}, "));
    }
    let sql = format!(
        "insert into _realtime.tenants ({cols}, inserted_at, updated_at)
         values ({vals}, {NOW}, {NOW})
         on conflict (external_id) do update set {sets}updated_at = excluded.updated_at
         returning (xmax = 0)::text"
    );
    let id = (!row.id.is_empty()).then_some(row.id.as_str());
    let mut params: Vec<Option<&str>> = vec![id, Some(&row.external_id)];
    params.extend(fields.iter().map(|(_, v, _)| v.as_deref()));
    let r = conn.query(&sql, &params).await?;
    let created = match r.rows.first().and_then(|r| r.first()) {
        Some(Some(v)) => v == "true",
        _ => return Err(ControlError::Row("upsert returned no row".into())),
    };

    // The types to keep travel as one JSON array parameter.
    let types = serde_json::to_string(
        &row.extensions
            .iter()
            .map(|e| e.kind.as_str())
            .collect::<Vec<_>>(),
    )
    .expect("strings serialise");
    conn.query(
        "delete from _realtime.extensions
         where tenant_external_id = $1
           and (type is null
                or type <> all (array(select jsonb_array_elements_text($2::jsonb))))",
        &[Some(&row.external_id), Some(&types)],
    )
    .await?;
    for ext in &row.extensions {
        let id = (!ext.id.is_empty()).then_some(ext.id.as_str());
        conn.query(
            &format!(
                "insert into _realtime.extensions
                     (id, type, settings, tenant_external_id, inserted_at, updated_at)
                 values (coalesce($1::uuid, gen_random_uuid()), $2, $3::jsonb, $4, {NOW}, {NOW})
                 on conflict (tenant_external_id, type) do update
                     set settings = excluded.settings, updated_at = excluded.updated_at"
            ),
            &[
                id,
                Some(&ext.kind),
                Some(&ext.settings),
                Some(&row.external_id),
            ],
        )
        .await?;
    }
    let stored = get(conn, &row.external_id)
        .await?
        .ok_or_else(|| ControlError::Row("the upserted tenant is gone".into()))?;
    Ok((stored, created))
}

/// Rows a command touched, from its tag (`DELETE 1`).
fn affected(r: &Rows) -> Result<u64, ControlError> {
    r.tag
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ControlError::Row(format!("command tag {:?}", r.tag)))
}

/// Reads the columns of one result row in order.
struct Cols<'a> {
    row: &'a [Option<String>],
    at: usize,
}

impl<'a> Cols<'a> {
    fn opt(&mut self) -> Result<Option<String>, ControlError> {
        let v = self
            .row
            .get(self.at)
            .ok_or_else(|| ControlError::Row(format!("{} columns", self.row.len())))?;
        self.at += 1;
        Ok(v.clone())
    }

    fn text(&mut self) -> Result<String, ControlError> {
        Ok(self.opt()?.unwrap_or_default())
    }

    fn int(&mut self) -> Result<Option<i64>, ControlError> {
        self.opt()?
            .map(|v| {
                v.parse()
                    .map_err(|_| ControlError::Row(format!("integer column {}: {v:?}", self.at)))
            })
            .transpose()
    }

    /// A nullable boolean column; NULL reads as false.
    fn flag(&mut self) -> Result<bool, ControlError> {
        Ok(self.opt()?.as_deref() == Some("t"))
    }
}

fn tenant_from(row: &[Option<String>]) -> Result<TenantRow, ControlError> {
    let mut c = Cols { row, at: 0 };
    Ok(TenantRow {
        id: c.text()?,
        name: c.opt()?,
        external_id: c.text()?,
        jwt_secret: c.opt()?,
        jwt_jwks: c.opt()?,
        postgres_cdc_default: c.opt()?,
        max_concurrent_users: c.int()?,
        max_events_per_second: c.int()?,
        max_presence_events_per_second: c.int()?,
        max_payload_size_in_kb: c.int()?,
        max_bytes_per_second: c.int()?,
        max_channels_per_client: c.int()?,
        max_joins_per_second: c.int()?,
        max_client_presence_events_per_window: c.int()?,
        client_presence_window_ms: c.int()?,
        suspend: c.flag()?,
        private_only: c.flag()?,
        presence_enabled: c.flag()?,
        migrations_ran: c.int()?.unwrap_or(0),
        broadcast_adapter: c.opt()?,
        feature_flags: c.text()?,
        placement: c.opt()?,
        gcm_migrated_at: c.opt()?,
        inserted_at: c.text()?,
        updated_at: c.text()?,
        extensions: Vec::new(),
    })
}

/// An extension row and the tenant it belongs to.
fn extension_from(row: &[Option<String>]) -> Result<(Option<String>, ExtensionRow), ControlError> {
    let mut c = Cols { row, at: 0 };
    let owner = c.opt()?;
    Ok((
        owner,
        ExtensionRow {
            id: c.text()?,
            kind: c.text()?,
            // A NULL settings column reads as JSON null.
            settings: c.opt()?.unwrap_or_else(|| "null".into()),
            inserted_at: c.text()?,
            updated_at: c.text()?,
        },
    ))
}
