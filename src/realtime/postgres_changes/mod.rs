//! Postgres Changes, sans-io: what a join's `postgres_changes` bindings
//! ask for, whether a row change passes them, and the bytes a subscriber
//! receives (PROTOCOL 3.5, 6.1-6.4).
//!
//! - [`binding`]: a join's binding ([`parse_binding`]), its relation match
//!   and verdict on a change, and the exact subscription error texts.
//! - [`filter`]: the `filter` grammar ([`parse_filters`]) and the checks
//!   the tenant database's trigger makes.
//! - [`eval`](mod@eval): a filter's verdict on one column value, in Rust
//!   where exact, else [`Tri::NeedsDatabase`] with the SQL to run.
//! - [`change`]: a row change and the row images (`columns`, `identity`)
//!   the Elixir server's wal2json pipeline works from.
//! - [`payload`]: the `data` object, error rows, the 413 rule, and the
//!   `postgres_changes` message around it.
//!
//! The driver's part, per change: build a [`Change`] (primary key from
//! [`primary_key_from_identity`] or the catalog), ask each channel's
//! bindings for [`Binding::eval`], settle `NeedsDatabase` filters with
//! [`Filter::sql`], then write the `data` once per distinct
//! [`PayloadOptions`] (role privileges, `select`) and frame it per channel
//! with the matching binding ids.

pub mod binding;
pub mod change;
pub mod errcodes;
pub mod eval;
pub mod filter;
mod inspect;
pub mod payload;

pub use binding::{
    legacy_params, parse_binding, Binding, BindingError, EventFilter, PgErrorText, SubscribeError,
};
pub use change::{primary_key_from_identity, Change, ChangeKind};
pub use eval::{ColumnValue, Tri};
pub use filter::{parse_filters, Filter, FilterError, FilterValue, Op};
pub use payload::{
    message_frame, write_change, write_error_row, write_message_payload, Delivery, PayloadError,
    PayloadOptions, RowError,
};

/// `extension` of the system messages about Postgres Changes.
pub const EXTENSION: &str = "postgres_changes";

/// `message` of the `ok` system message once a channel's bindings are
/// subscribed.
pub const SUBSCRIBED: &str = "Subscribed to PostgreSQL";

#[cfg(test)]
pub(crate) mod test_support;
