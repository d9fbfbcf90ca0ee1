//! A tenant as the control database stores it (`_realtime.tenants` with its
//! `_realtime.extensions`), before decryption and validation. The store in
//! `server::control` reads and writes these; the domain turns them into
//! records and configs. Every limit is optional because rows written by older
//! schema versions may hold NULL where a newer one has a default.

/// One `_realtime.tenants` row with its extension rows. Secrets are still
/// encrypted (`jwt_secret`, and the `db_*` keys inside each extension's
/// settings); JSON columns are JSON text; timestamps are as Postgres prints
/// a `timestamp(0)` (`2026-12-07 07:25:00`), in UTC.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TenantRow {
    /// Primary key, a UUID in its text form.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// The Host label that selects the tenant; unique.
    pub external_id: String,
    /// Encrypted HS secret (legacy base64 or `g1:` GCM form).
    pub jwt_secret: Option<String>,
    /// JWKS as JSON text (`{"keys":[...]}`).
    pub jwt_jwks: Option<String>,
    /// Name of the default change-data-capture extension.
    pub postgres_cdc_default: Option<String>,
    /// Limits (PROTOCOL 7.1).
    pub max_concurrent_users: Option<i64>,
    pub max_events_per_second: Option<i64>,
    pub max_presence_events_per_second: Option<i64>,
    pub max_payload_size_in_kb: Option<i64>,
    pub max_bytes_per_second: Option<i64>,
    pub max_channels_per_client: Option<i64>,
    pub max_joins_per_second: Option<i64>,
    pub max_client_presence_events_per_window: Option<i64>,
    pub client_presence_window_ms: Option<i64>,
    /// Switches.
    pub suspend: bool,
    pub private_only: bool,
    pub presence_enabled: bool,
    /// Which shards serve its sockets: `home` or `spread` (this server's
    /// own column). `None` when writing: the column's default (`home`) on
    /// insert, the stored value on update; a row read always has it.
    pub placement: Option<String>,
    /// Tenant-database migrations applied so far.
    pub migrations_ran: i64,
    /// `phoenix` or `gen_rpc`; kept so an Elixir deployment reads it back.
    pub broadcast_adapter: Option<String>,
    /// JSON text of a map; kept, not interpreted.
    pub feature_flags: String,
    /// When the secrets were re-encrypted with GCM, if ever.
    pub gcm_migrated_at: Option<String>,
    pub inserted_at: String,
    pub updated_at: String,
    /// `_realtime.extensions` rows whose `tenant_external_id` is this tenant.
    pub extensions: Vec<ExtensionRow>,
}

/// One `_realtime.extensions` row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExtensionRow {
    /// Primary key, a UUID in its text form.
    pub id: String,
    /// `postgres_cdc_rls` (older rows: `postgres`).
    pub kind: String,
    /// JSON text of the settings object; the `db_*` connection keys are
    /// encrypted strings.
    pub settings: String,
    pub inserted_at: String,
    pub updated_at: String,
}

/// A version 4 UUID in its text form, from 16 random bytes.
pub fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Unix seconds as a `timestamp(0)` prints them (UTC).
pub fn timestamp_text(unix: i64) -> String {
    let (y, m, d) = crate::proto::pg::replication::civil_from_days(unix.div_euclid(86_400));
    let rem = unix.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_utc() {
        assert_eq!(timestamp_text(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp_text(951_782_400 + 3661), "2000-02-29 01:01:01");
        assert_eq!(timestamp_text(1_796_714_584), "2026-12-08 07:23:04");
        assert_eq!(timestamp_text(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn ids_are_v4_uuids() {
        assert_eq!(uuid_v4([0xff; 16]), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
    }
}
