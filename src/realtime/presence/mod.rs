//! Presence state of one topic and the diffs its changes produce
//! (PROTOCOL 5), replicated over shards (later nodes).
//!
//! Each joined channel (an [`OwnerId`]) tracks at most one meta under its
//! channel's presence key. [`TopicPresence::track`] / [`untrack`] /
//! [`leave`] return the [`Diff`] to fan out as `presence_diff`;
//! [`TopicPresence::state_json`] writes the `presence_state` payload.
//!
//! # Matching the Elixir server's bytes
//!
//! The Elixir server keeps metas as maps (`phx_ref` and `phx_ref_prev` are
//! atom keys, user keys are strings) and Jason encodes small maps in term
//! order: atoms before strings, strings bytewise. So a meta goes on the wire
//! as `{"phx_ref":..,"phx_ref_prev":..,<user keys sorted>}`, nested objects
//! sorted too, and floats in Erlang's shortest form (`1.0e3`, `0.1`). We
//! store each meta **pre-serialized that way** (user keys sorted once at
//! track time), so `presence_state` and diffs are plain byte copies, and
//! "same meta again" is a byte comparison (Elixir compares the decoded maps
//! with `===`, which agrees: `1` and `1.0` differ in both). Maps of more
//! than 32 keys are hash-ordered in Elixir; we keep them sorted.
//!
//! Keys are grouped in bytewise order, metas under one key in owner order:
//! the Elixir tracker lists a topic from an ETS `ordered_set` keyed by
//! `{topic, channel_pid, key}`, so metas come out in channel (process)
//! creation order, not tracking order. Owner ids must therefore be handed out
//! in increasing order of channel creation.
//!
//! # Replicas
//!
//! A topic's presence is held by every replica (shard, later node)
//! interested in it: each is authoritative for its own channels' entries
//! (tagged with its [`ReplicaId`]) and sends their changes to the others as
//! [`PresenceDelta`]s, with [`PresenceSnapshot`]s to (re)synchronize; see
//! `replica.rs` for the protocol and what it assumes of the transport.
//! Metas of one key are listed in (owner, origin) order.
//!
//! [`untrack`]: TopicPresence::untrack
//! [`leave`]: TopicPresence::leave

mod key;
mod limiter;
mod meta;
mod replica;
#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;
mod topic;

use serde_json::{Map, Value};

pub use key::{
    key_to_string, new_phx_ref, new_presence_key, presence_key_at, presence_key_from_config,
};
pub use limiter::{
    ClientPresenceLimiter, DEFAULT_CLIENT_PRESENCE_MAX_CALLS, DEFAULT_CLIENT_PRESENCE_WINDOW_MS,
};
pub use meta::{format_erlang_float, write_jason};
pub use replica::{Change, PresenceDelta, PresenceSnapshot};
pub use topic::{Diff, Meta, OwnerId, ReplicaId, TopicPresence};

use meta::write_object_members;

/// The bytes a meta takes as stored and sent: its compact JSON, braces
/// included, as [`TopicPresence::track`] serializes it (a client's
/// `phx_ref` keys, which the store drops, still count: the bound is on
/// what was sent).
pub fn meta_json_len(meta: &Map<String, Value>) -> usize {
    let mut members = Vec::with_capacity(64);
    write_object_members(meta, &mut members);
    members.len() + 2
}
