//! When the replication stream may start: only once the tenant has a
//! Postgres Changes subscriber.
//!
//! The slot is permanent, so whatever was committed while this server was
//! down (or before anyone subscribed) waits in it. Starting the stream with
//! nobody listening would confirm those changes to no one; waiting for the
//! first subscriber hands them to the clients that come back after a restart
//! (at-least-once: rows fanned out but not yet confirmed before a crash come
//! again). Once streaming, the stream keeps running, and changes that match
//! no subscriber are confirmed and dropped, as the Elixir server drops them.

use std::time::Duration;

use crate::server::shard::ShardState;

/// How often an idle driver looks for a first subscriber. Joins are rare
/// next to this, and the check is one hash lookup.
const POLL: Duration = Duration::from_millis(50);

/// Whether `tenant` currently has a Postgres Changes subscriber on this
/// shard (its home). Does not create the tenant's state.
pub fn has_subscriber(state: &ShardState, tenant: &str) -> bool {
    state
        .tenants
        .borrow()
        .get(tenant)
        .is_some_and(|t| !t.borrow().cdc.is_empty())
}

/// Returns once `tenant` has a Postgres Changes subscriber.
pub async fn wait_for_subscriber(state: &ShardState, tenant: &str) {
    if has_subscriber(state, tenant) {
        return;
    }
    tracing::info!(
        tenant,
        "replication waits for a first postgres_changes subscriber"
    );
    while !has_subscriber(state, tenant) {
        glommio::timer::sleep(POLL).await;
    }
}

/// Returns once a subscriber joins `tenant` (their number grows) or after
/// `max`, whichever comes first: a driver with nothing to stream looks
/// again then.
pub async fn wait_for_join(state: &ShardState, tenant: &str, max: Duration) {
    let count = |state: &ShardState| {
        state
            .tenants
            .borrow()
            .get(tenant)
            .map_or(0, |t| t.borrow().cdc.subs.len())
    };
    let before = count(state);
    let until = std::time::Instant::now() + max;
    while count(state) <= before && std::time::Instant::now() < until {
        glommio::timer::sleep(POLL).await;
    }
}
