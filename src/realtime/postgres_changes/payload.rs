//! The delivered message (PROTOCOL 6.3-6.4), written straight into a byte
//! buffer.
//!
//! `data` is what the Elixir server's `realtime.apply_rls` builds from a
//! wal2json change, key for key:
//! - `columns`: `{name, type: typname}` of every column the role may
//!   select, in attribute order, limited by `select` to the selected and
//!   primary key columns.
//! - `record` (INSERT, UPDATE): the new values ([`Change::columns`]) joined
//!   with the old ones ([`Change::identity`]) by name, the new value winning
//!   (so an unchanged TOAST value appears only when the old row carries it:
//!   REPLICA IDENTITY FULL).
//! - `old_record` (UPDATE, DELETE): [`Change::identity`]; for a DELETE on a
//!   table with row level security, only its primary key columns.
//! - Both limited to columns the role may select, and by `select`; keys in
//!   jsonb order (shorter names first, then by bytes), as the jsonb object
//!   the Elixir server forwards has them.
//! - `errors`: `null`, or `["Error 413: Payload Too Large"]` when the change
//!   is larger than `max_record_bytes`: then `record`/`old_record` keep only
//!   non-NULL values whose JSON text (as jsonb prints it) is at most 64
//!   bytes.
//! - A non-DELETE change without any primary key column in its new row is
//!   an error row instead ([`RowError::NoPrimaryKey`]): `commit_timestamp`
//!   null, `columns` `[]`, `record` (and `old_record` for an UPDATE) `{}`;
//!   so is one whose primary key the role may not select
//!   ([`RowError::Unauthorized`]).
//!
//! The top-level key order is PROTOCOL 6.3's (`schema`, `table`, `type`,
//! `commit_timestamp`, `columns`, `record`, `old_record`, `errors`): the
//! Elixir server encodes a struct whose field order is an artefact of atom
//! numbering, not something a client can rely on.

use bytes::{BufMut, Bytes, BytesMut};

use super::change::{Change, ChangeKind};
use crate::proto::json::{write_str_buf, write_u64};
use crate::proto::pg::jsonb::write_string;
use crate::proto::pg::pgoutput::Relation;
use crate::proto::pg::tuple::Column;
use crate::proto::pg::typed_json::{write_column, JsonBuf, TypedJsonError};
use crate::proto::pg::types::{type_name, TypeResolver};
use crate::proto::pg::Oid;
use crate::proto::phoenix::Vsn;

/// Default `max_record_bytes` (the Elixir server's `poll_max_record_bytes`).
pub const MAX_RECORD_BYTES: usize = 1_048_576;

/// Longest value text (jsonb's rendering) kept in an oversized record.
pub const MAX_TRUNCATED_VALUE_BYTES: usize = 64;

/// `errors` entry of an oversized change.
pub const ERROR_413: &str = "Error 413: Payload Too Large";

/// How one subscriber group's copy of a change is written.
#[derive(Debug, Clone, Copy)]
pub struct PayloadOptions<'a> {
    /// Changes whose wal2json text would exceed this many bytes are sent
    /// with [`ERROR_413`] and only short values. Larger keeps more rows
    /// whole; smaller caps what one change costs every subscriber.
    pub max_record_bytes: usize,
    /// The binding's `select` columns (`None`: all). Primary key columns
    /// are always kept.
    pub select: Option<&'a [String]>,
    /// Per column of the relation, whether the subscriber's role may
    /// select it (`None`: all may be). A missing entry counts as allowed.
    pub column_privileges: Option<&'a [bool]>,
    /// The table has row level security: a DELETE's `old_record` keeps only
    /// the primary key (deletes cannot be checked against policies).
    pub rls_enabled: bool,
    /// Render values as the Elixir server's wal2json path does instead of
    /// as `to_jsonb`: `bytea` without its `\x` prefix, and `NaN`/`Infinity`
    /// of `int2 int4 int8 float4 float8 numeric` columns as `null`.
    pub wal2json_values: bool,
    /// The change's commit time as [`PgTimestamp::write_iso_millis`]
    /// writes it, when the caller already has it (it is the same for every
    /// change of a transaction); `None`: written here.
    ///
    /// [`PgTimestamp::write_iso_millis`]: crate::proto::pg::PgTimestamp::write_iso_millis
    pub commit_timestamp: Option<&'a [u8]>,
}

impl Default for PayloadOptions<'_> {
    fn default() -> Self {
        PayloadOptions {
            max_record_bytes: MAX_RECORD_BYTES,
            select: None,
            column_privileges: None,
            rls_enabled: false,
            wal2json_values: false,
            commit_timestamp: None,
        }
    }
}

/// Why a change could not be written (nothing is appended then).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// A value could not be converted; resolve unknown types
    /// (`types::unresolved`) before writing.
    #[error("column {column}: {source}")]
    Value {
        /// The column.
        column: String,
        /// Why.
        source: TypedJsonError,
    },
    /// A column's type is neither builtin nor known to the resolver.
    #[error("column {column}: unknown type OID {oid}")]
    UnknownType {
        /// The column.
        column: String,
        /// Its type.
        oid: Oid,
    },
}

/// The error rows `apply_rls` sends in place of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowError {
    /// INSERT or UPDATE on a table without a primary key.
    NoPrimaryKey,
    /// The role may not select the primary key columns.
    Unauthorized,
}

impl RowError {
    /// The `errors` entry.
    pub fn as_str(self) -> &'static str {
        match self {
            RowError::NoPrimaryKey => "Error 400: Bad Request, no primary key",
            RowError::Unauthorized => "Error 401: Unauthorized",
        }
    }
}

/// The error row `change` becomes for a role with `privileges` (per
/// column, `None`: all selectable), if any: an INSERT or UPDATE whose new
/// row has no primary key value is a 400, one whose primary key the role
/// may not select a 401. DELETEs are never error rows.
pub fn row_error(change: &Change<'_>, privileges: Option<&[bool]>) -> Option<RowError> {
    // `Change::columns` without collecting it: this runs for every
    // subscription a change reaches.
    let columns = match (change.kind, change.new) {
        (ChangeKind::Delete, _) | (_, None) => None,
        (_, Some(t)) => Some(t.iter().enumerate()),
    };
    let columns = columns
        .into_iter()
        .flatten()
        .filter(|&(_, c)| c != Column::UnchangedToast);
    row_error_of(change, columns, privileges)
}

fn row_error_in(
    change: &Change<'_>,
    columns: &[(usize, Column<'_>)],
    privileges: Option<&[bool]>,
) -> Option<RowError> {
    row_error_of(change, columns.iter().copied(), privileges)
}

fn row_error_of<'a>(
    change: &Change<'_>,
    columns: impl Iterator<Item = (usize, Column<'a>)>,
    privileges: Option<&[bool]>,
) -> Option<RowError> {
    if change.kind == ChangeKind::Delete {
        return None;
    }
    let allowed = |i: usize| privileges.is_none_or(|p| p.get(i).copied().unwrap_or(true));
    let mut pks = columns.filter(|(i, _)| change.is_pkey(*i)).peekable();
    if pks.peek().is_none() {
        return Some(RowError::NoPrimaryKey);
    }
    if pks.any(|(i, _)| !allowed(i)) {
        return Some(RowError::Unauthorized);
    }
    None
}

/// Appends the `data` object of `change` for one subscriber group.
pub fn write_change<B: JsonBuf + AsRef<[u8]>>(
    out: &mut B,
    change: &Change<'_>,
    types: &dyn TypeResolver,
    opts: &PayloadOptions<'_>,
) -> Result<(), PayloadError> {
    let columns = change.columns();
    let identity = change.identity();
    let allowed = |i: usize| {
        opts.column_privileges
            .is_none_or(|p| p.get(i).copied().unwrap_or(true))
    };
    if let Some(e) = row_error_in(change, &columns, opts.column_privileges) {
        write_error_row(out, change.rel, change.kind, e);
        return Ok(());
    }
    let rel = change.rel;
    let wanted = |i: usize| {
        allowed(i)
            && (change.is_pkey(i)
                || opts
                    .select
                    .is_none_or(|s| rel.columns.get(i).is_some_and(|c| s.contains(&c.name))))
    };
    let too_large = size_bound(change, &columns, &identity) > opts.max_record_bytes
        && wal_size(change, &columns, &identity, types) > opts.max_record_bytes;
    let mark = out.written();
    let r = (|| {
        write_head(out, rel, change.kind);
        out.put_slice(b",\"commit_timestamp\":\"");
        match opts.commit_timestamp {
            Some(text) => out.put_slice(text),
            None => change.commit_time.write_iso_millis(out),
        }
        out.put_slice(b"\",\"columns\":[");
        let mut first = true;
        for (_, col) in rel.columns.iter().enumerate().filter(|&(i, _)| wanted(i)) {
            let Some(tn) = type_name(col.type_oid, types) else {
                return Err(PayloadError::UnknownType {
                    column: col.name.clone(),
                    oid: col.type_oid,
                });
            };
            if !std::mem::take(&mut first) {
                out.put_u8(b',');
            }
            out.put_slice(b"{\"name\":");
            write_str_buf(out, &col.name);
            out.put_slice(b",\"type\":");
            write_str_buf(out, tn);
            out.put_u8(b'}');
        }
        out.put_u8(b']');
        // One buffer for both objects; write_object sorts it in place.
        let mut values: Vec<(usize, Option<Column<'_>>, Column<'_>)> =
            Vec::with_capacity(columns.len().max(identity.len()));
        if change.kind != ChangeKind::Delete {
            // Full outer join by name: new values, then old-only ones
            // (written as old, checked as absent).
            values.extend(
                columns
                    .iter()
                    .filter(|&&(i, _)| wanted(i))
                    .map(|&(i, c)| (i, Some(c), c)),
            );
            for &(i, c) in &identity {
                if wanted(i) && !columns.iter().any(|&(j, _)| j == i) {
                    values.push((i, None, c));
                }
            }
            out.put_slice(b",\"record\":");
            write_object(out, rel, &mut values, types, opts, too_large)?;
        }
        if change.kind != ChangeKind::Insert {
            values.clear();
            values.extend(
                identity
                    .iter()
                    .filter(|&&(i, _)| wanted(i))
                    .filter(|&&(i, _)| {
                        change.kind != ChangeKind::Delete || !opts.rls_enabled || change.is_pkey(i)
                    })
                    .map(|&(i, c)| (i, Some(c), c)),
            );
            out.put_slice(b",\"old_record\":");
            write_object(out, rel, &mut values, types, opts, too_large)?;
        }
        out.put_slice(b",\"errors\":");
        if too_large {
            out.put_u8(b'[');
            write_str_buf(out, ERROR_413);
            out.put_u8(b']');
        } else {
            out.put_slice(b"null");
        }
        out.put_u8(b'}');
        Ok(())
    })();
    if r.is_err() {
        out.rollback(mark);
    }
    r
}

/// `{"schema":S,"table":T,"type":K` (object left open).
fn write_head<B: BufMut>(out: &mut B, rel: &Relation, kind: ChangeKind) {
    out.put_slice(b"{\"schema\":");
    write_str_buf(out, &rel.schema);
    out.put_slice(b",\"table\":");
    write_str_buf(out, &rel.name);
    out.put_slice(b",\"type\":");
    write_str_buf(out, kind.as_str());
}

/// Appends the error row `apply_rls` sends instead of a change.
pub fn write_error_row<B: BufMut>(out: &mut B, rel: &Relation, kind: ChangeKind, error: RowError) {
    write_head(out, rel, kind);
    out.put_slice(b",\"commit_timestamp\":null,\"columns\":[]");
    if kind != ChangeKind::Delete {
        out.put_slice(b",\"record\":{}");
    }
    if kind != ChangeKind::Insert {
        out.put_slice(b",\"old_record\":{}");
    }
    out.put_slice(b",\"errors\":[");
    write_str_buf(out, error.as_str());
    out.put_slice(b"]}");
}

/// Writes `{name: value, ...}` in jsonb key order (sorting `values` in
/// place). `shown` is the value
/// written; the 413 rule looks at `checked` (the new value for `record`:
/// absent or NULL means dropped).
fn write_object<B: JsonBuf + AsRef<[u8]>>(
    out: &mut B,
    rel: &Relation,
    values: &mut [(usize, Option<Column<'_>>, Column<'_>)],
    types: &dyn TypeResolver,
    opts: &PayloadOptions<'_>,
    too_large: bool,
) -> Result<(), PayloadError> {
    let name = |i: usize| rel.columns.get(i).map_or("", |c| c.name.as_str());
    values.sort_by(|a, b| {
        let (x, y) = (name(a.0).as_bytes(), name(b.0).as_bytes());
        x.len().cmp(&y.len()).then_with(|| x.cmp(y))
    });
    out.put_u8(b'{');
    let mut first = true;
    for &(i, checked, shown) in values.iter() {
        let Some(col) = rel.columns.get(i) else {
            continue;
        };
        let mark = out.written();
        if !first {
            out.put_u8(b',');
        }
        write_str_buf(out, &col.name);
        out.put_u8(b':');
        let start = out.written();
        let is_null = write_value(out, col.type_oid, shown, types, opts.wal2json_values).map_err(
            |source| PayloadError::Value {
                column: col.name.clone(),
                source,
            },
        )?;
        if too_large {
            let checked_null = match checked {
                None => true,
                Some(_) => is_null,
            };
            let len = jsonb_text_len(&out.as_ref()[start..]);
            if checked_null || len > MAX_TRUNCATED_VALUE_BYTES {
                out.rollback(mark);
                continue;
            }
        }
        first = false;
    }
    out.put_u8(b'}');
    Ok(())
}

/// Builtin number types wal2json prints as bare numbers (`null` for the
/// special values).
fn wal2json_number(oid: Oid) -> bool {
    matches!(oid.0, 20 | 21 | 23 | 700 | 701 | 1700)
}

/// Whether wal2json prints this text as `null` (`NaN`, `Infinity`,
/// `-Infinity`, matched by prefix and case-insensitively, as it does).
fn wal2json_special(text: &[u8]) -> bool {
    let starts = |p: &[u8]| text.len() >= p.len() && text[..p.len()].eq_ignore_ascii_case(p);
    starts(b"NaN") || starts(b"Infinity") || starts(b"-Infinity")
}

/// Writes one value; returns whether it is NULL (as the 413 rule sees it).
fn write_value<B: JsonBuf>(
    out: &mut B,
    oid: Oid,
    value: Column<'_>,
    types: &dyn TypeResolver,
    wal2json: bool,
) -> Result<bool, TypedJsonError> {
    if wal2json {
        if let Column::Text(t) = value {
            if wal2json_number(oid) && wal2json_special(t) {
                out.put_slice(b"null");
                return Ok(true);
            }
            if oid == Oid(17) {
                write_string(out, t.strip_prefix(b"\\x").unwrap_or(t));
                return Ok(false);
            }
        }
    }
    write_column(out, oid, value, types)?;
    Ok(value == Column::Null)
}

/// Length of compact JSON text as jsonb prints it: one space after every
/// `,` and `:` outside strings.
fn jsonb_text_len(json: &[u8]) -> usize {
    let (mut in_str, mut escaped, mut extra) = (false, false, 0usize);
    for &c in json {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_str = true,
                b',' | b':' => extra += 1,
                _ => {}
            }
        }
    }
    json.len() + extra
}

/// Length of a JSON string literal for `s` (quotes and escapes included).
fn json_str_len(s: &[u8]) -> usize {
    2 + s
        .iter()
        .map(|&c| match c {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0a | 0x0c | 0x0d => 2,
            c if c < 0x20 => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Length of a jsonb object or array text: `{` / `}` plus `, ` separators.
fn container_len(parts: impl Iterator<Item = usize>) -> usize {
    let (mut n, mut sum) = (0usize, 0usize);
    for p in parts {
        n += 1;
        sum += p;
    }
    2 + sum + 2 * n.saturating_sub(1)
}

/// `"key": value` length.
fn member_len(key: &str, value: usize) -> usize {
    key.len() + 4 + value
}

/// Estimates `octet_length(wal::text)` of the wal2json (format 2) change the
/// Elixir server measures against `max_record_bytes`: exact in structure,
/// approximate where wal2json's text is not at hand (its `type` is
/// `format_type` text, here the `typname`; numbers as printed; the commit
/// time as 29 characters).
/// A cheap upper bound of [`wal_size`], with no allocation: every byte of
/// a name or value escapes to at most 6 JSON bytes, and a column's type
/// name, OID and punctuation take well under 256. Most rows are far below
/// the limit, so the exact size is computed only for large ones.
fn size_bound(
    change: &Change<'_>,
    columns: &[(usize, Column<'_>)],
    identity: &[(usize, Column<'_>)],
) -> usize {
    let rel = change.rel;
    let one = |&(i, v): &(usize, Column<'_>)| {
        let name = rel.columns.get(i).map_or(0, |c| c.name.len());
        let value = match v {
            Column::Text(t) | Column::Binary(t) => t.len(),
            _ => 0,
        };
        (name + value) * 6 + 256
    };
    1024 + rel.schema.len() * 6
        + rel.name.len() * 6
        + columns.iter().map(one).sum::<usize>()
        + identity.iter().map(one).sum::<usize>()
}

fn wal_size(
    change: &Change<'_>,
    columns: &[(usize, Column<'_>)],
    identity: &[(usize, Column<'_>)],
    types: &dyn TypeResolver,
) -> usize {
    let rel = change.rel;
    let type_len = |i: usize| {
        rel.columns
            .get(i)
            .and_then(|c| type_name(c.type_oid, types))
            .map_or(2, |t| json_str_len(t.as_bytes()))
    };
    let oid_len = |i: usize| {
        rel.columns.get(i).map_or(1, |c| {
            c.type_oid.0.checked_ilog10().map_or(1, |d| d as usize + 1)
        })
    };
    let name_len = |i: usize| {
        rel.columns
            .get(i)
            .map_or(2, |c| json_str_len(c.name.as_bytes()))
    };
    let value_len = |i: usize, v: Column<'_>| {
        let oid = rel.columns.get(i).map_or(Oid(0), |c| c.type_oid);
        match v {
            Column::Null | Column::UnchangedToast => 4,
            Column::Binary(b) => json_str_len(b),
            Column::Text(t) if wal2json_number(oid) => {
                if wal2json_special(t) {
                    4
                } else {
                    t.len()
                }
            }
            Column::Text(t) if oid == Oid(16) => {
                if t == b"t" {
                    4
                } else {
                    5
                }
            }
            Column::Text(t) if oid == Oid(17) => json_str_len(t.strip_prefix(b"\\x").unwrap_or(t)),
            Column::Text(t) => json_str_len(t),
        }
    };
    let entry = |i: usize, v: Option<Column<'_>>| {
        let mut m = vec![
            member_len("name", name_len(i)),
            member_len("type", type_len(i)),
            member_len("typeoid", oid_len(i)),
        ];
        if let Some(v) = v {
            m.push(member_len("value", value_len(i, v)));
        }
        container_len(m.into_iter())
    };
    let pk = container_len(change.primary_key.iter().map(|&i| entry(i, None)));
    let mut top = vec![
        member_len("pk", pk),
        member_len("table", json_str_len(rel.name.as_bytes())),
        member_len("action", 3),
        member_len("schema", json_str_len(rel.schema.as_bytes())),
        member_len("timestamp", 31),
    ];
    if change.new.is_some() {
        let c = container_len(columns.iter().map(|&(i, v)| entry(i, Some(v))));
        top.push(member_len("columns", c));
    }
    if change.kind != ChangeKind::Insert && (change.old.is_some() || !identity.is_empty()) {
        let c = container_len(identity.iter().map(|&(i, v)| entry(i, Some(v))));
        top.push(member_len("identity", c));
    }
    container_len(top.into_iter())
}

/// Appends the `postgres_changes` payload `{"ids":[...],"data":<data>}`.
/// The Elixir server lists the ids of the channel's matching bindings in
/// reverse join order.
pub fn write_message_payload(out: &mut BytesMut, ids: &[u64], data: &[u8]) {
    out.put_slice(b"{\"ids\":[");
    for (n, id) in ids.iter().enumerate() {
        if n > 0 {
            out.put_u8(b',');
        }
        write_u64(out, *id);
    }
    out.put_slice(b"],\"data\":");
    out.put_slice(data);
    out.put_u8(b'}');
}

/// How a channel receives changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Joined with `config`: event `postgres_changes`, payload
    /// `{"ids":[...],"data":...}`.
    Bindings,
    /// Joined without `config` (`realtime:schema:table:filter`): event
    /// `INSERT`/`UPDATE`/`DELETE`, payload the bare `data`.
    Legacy,
}

/// The fan-out frame (`[null,null,topic,event,payload]` for vsn 2.0.0) of
/// one change for one channel topic.
pub fn message_frame(
    vsn: Vsn,
    topic: &str,
    delivery: Delivery,
    kind: ChangeKind,
    ids: &[u64],
    data: &[u8],
) -> Bytes {
    match delivery {
        Delivery::Bindings => {
            let hint = data.len() + 16 + ids.len() * 21;
            crate::realtime::frames::message_with(vsn, topic, "postgres_changes", hint, |out| {
                write_message_payload(out, ids, data)
            })
        }
        Delivery::Legacy => {
            crate::realtime::frames::message(vsn, None, None, topic, kind.as_str(), data)
        }
    }
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
