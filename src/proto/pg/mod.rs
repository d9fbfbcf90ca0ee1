//! PostgreSQL logical replication, sans-io: the pieces the replication driver
//! feeds with the bytes it reads and asks for the bytes it writes.
//!
//! - [`replication`]: the CopyData payloads of a `START_REPLICATION` stream
//!   (XLogData, primary keepalive, standby status update), [`Lsn`] and
//!   [`PgTimestamp`].
//! - [`pgoutput`]: the pgoutput plugin's messages (protocol version 1, plus
//!   the version 2 streaming messages), decoded from `Bytes`;
//!   [`tuple`](mod@tuple): their row images, whose values are borrowed from
//!   the message, never copied.
//! - [`relcache`]: relations and type names announced by Relation and Type
//!   messages, keyed by OID.
//! - [`extended`]: one statement with bound parameters (the extended
//!   query protocol): the request's bytes and the reply's reader.
//! - [`sql`]: quoting text into SQL, correct whatever
//!   `standard_conforming_strings` says.
//! - [`types`]: built-in type table and the [`TypeResolver`] hook for
//!   non-builtin OIDs (enums, domains, composites, arrays of those).
//! - [`typed_json`]: a text-format column value rendered as the JSON
//!   `to_jsonb(value::type)` gives (PROTOCOL "Typed JSON"), written straight
//!   into a byte buffer; [`jsonb`] holds the JSON canonicalisation it needs.
//!
//! Nothing here reads a clock or touches a socket: times are passed in.

use std::fmt;

pub mod extended;
pub mod jsonb;
pub mod pgoutput;
pub mod relcache;
pub mod replication;
pub mod sql;
pub mod tuple;
pub mod typed_json;
pub mod types;

pub use pgoutput::{Column, Decoder, Message, PgOutputError, TupleData};
pub use relcache::RelCache;
pub use replication::{Lsn, PgTimestamp, ReplicationMessage};
pub use typed_json::{write_column, write_typed, write_typed_or_string, TypedJsonError};
pub use types::{TypeCache, TypeKind, TypeResolver};

/// A PostgreSQL object identifier (`pg_class.oid`, `pg_type.oid`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oid(pub u32);

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
