//! Postgres Changes subscribers of one tenant, and the fan-out of each
//! decoded change to them.
//!
//! A change is rendered once into the `data` object; channels that matched
//! the same set of binding ids share one encoded frame.

use std::rc::Rc;

use super::frames;
use super::hub::{ChannelId, Outbound};
use super::postgres_changes::binding::Binding;
use super::postgres_changes::change::Change;
use super::postgres_changes::eval::Tri;
use super::postgres_changes::payload::{write_change, write_message_payload, PayloadOptions};
use crate::proto::pg::types::TypeResolver;
use crate::proto::phoenix::{Ref, Vsn};

/// One channel's Postgres Changes subscription.
pub struct CdcSub {
    /// The channel.
    pub channel: ChannelId,
    /// `realtime:<name>`.
    pub topic: Box<str>,
    /// Its socket's serializer.
    pub vsn: Vsn,
    /// Its socket's queue.
    pub out: Rc<dyn Outbound>,
    /// Join ref, for the channel's `system` pushes.
    pub join_ref: Option<Ref>,
    /// Parsed bindings, ids as echoed in the join reply.
    pub bindings: Vec<Binding>,
    /// Joined without `config` (legacy topic form): events are named by the
    /// change type and carry the bare `data`.
    pub legacy: bool,
    /// `Subscribed to PostgreSQL` was sent for the current stream.
    pub told_ready: bool,
}

/// All Postgres Changes subscribers of a tenant.
#[derive(Default)]
pub struct CdcRegistry {
    /// The tenant has a database configured.
    pub enabled: bool,
    /// The replication stream is up.
    streaming: bool,
    /// Subscribers in join order.
    pub subs: Vec<CdcSub>,
}

impl CdcRegistry {
    /// Adds a subscription; tells it at once if the stream is up.
    pub fn add(&mut self, mut sub: CdcSub) {
        if self.streaming {
            tell_ready(&sub);
            sub.told_ready = true;
        }
        self.subs.push(sub);
    }

    /// Drops a channel's subscription.
    pub fn remove(&mut self, channel: ChannelId) {
        self.subs.retain(|s| s.channel != channel);
    }

    /// Whether the stream is up.
    pub fn is_streaming(&self) -> bool {
        self.streaming
    }

    /// The stream went up (tell everyone `Subscribed to PostgreSQL`) or down
    /// (tell those who were told it was up, with `reason`).
    pub fn set_streaming(&mut self, up: bool, reason: &str) {
        if up == self.streaming {
            return;
        }
        self.streaming = up;
        for s in &mut self.subs {
            if up && !s.told_ready {
                tell_ready(s);
                s.told_ready = true;
            } else if !up && s.told_ready {
                let p = frames::system_payload(
                    "postgres_changes",
                    "error",
                    reason,
                    Some(sub_topic(&s.topic)),
                );
                s.out.push(frames::message(
                    s.vsn,
                    s.join_ref.as_ref(),
                    None,
                    &s.topic,
                    "system",
                    &p,
                ));
                s.told_ready = false;
            }
        }
    }

    /// Whether any subscriber exists (the driver skips work otherwise).
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }
}

fn sub_topic(topic: &str) -> &str {
    topic.strip_prefix("realtime:").unwrap_or(topic)
}

fn tell_ready(s: &CdcSub) {
    let p = frames::system_payload(
        "postgres_changes",
        "ok",
        "Subscribed to PostgreSQL",
        Some(sub_topic(&s.topic)),
    );
    s.out.push(frames::message(
        s.vsn,
        s.join_ref.as_ref(),
        None,
        &s.topic,
        "system",
        &p,
    ));
}

/// A change rendered for one `select` variant.
struct Rendered<'s> {
    select: Option<&'s [String]>,
    data: Vec<u8>,
}

impl CdcRegistry {
    /// Fans one decoded change out to every channel with a matching
    /// binding. `data` is rendered once per distinct `select` list and each
    /// frame once per (topic, ids, serializer). Returns frames queued.
    ///
    /// Filters that only the database can evaluate exactly (collation
    /// order, pattern matching) are not evaluated yet: such a binding does
    /// not match, and that is logged once per change.
    pub fn on_change(&mut self, change: &Change<'_>, types: &dyn TypeResolver) -> u64 {
        if self.subs.is_empty() {
            return 0;
        }
        let (schema, table) = (change.rel.schema.as_str(), change.rel.name.as_str());
        let mut rendered: Vec<Rendered<'_>> = Vec::new();
        let mut sent: Vec<(&str, Vec<u64>, Vsn, bytes::Bytes)> = Vec::new();
        let mut deliveries = 0;
        let mut deferred = false;
        for sub in &self.subs {
            // Matching bindings grouped by their `select` list: the Elixir
            // server sends one message per group, carrying that group's ids.
            let mut groups: Vec<(Option<&[String]>, Vec<u64>)> = Vec::new();
            for b in &sub.bindings {
                if !b.event.matches(change.kind) || !b.matches_relation(schema, table) {
                    continue;
                }
                match b.eval(change) {
                    Tri::True => {
                        let select = b.select.as_deref();
                        match groups.iter_mut().find(|(s, _)| *s == select) {
                            Some((_, ids)) => ids.push(b.id),
                            None => groups.push((select, vec![b.id])),
                        }
                    }
                    Tri::False => {}
                    Tri::NeedsDatabase => deferred = true,
                }
            }
            for (select, mut ids) in groups {
                // The Elixir server lists matching ids in reverse join order.
                ids.reverse();
                if let Some((_, _, _, f)) = sent
                    .iter()
                    .find(|(t, i, v, _)| *t == &*sub.topic && *i == ids && *v == sub.vsn)
                {
                    sub.out.push(f.clone());
                    deliveries += 1;
                    continue;
                }
                let data = match rendered.iter().position(|r| r.select == select) {
                    Some(i) => &rendered[i].data,
                    None => {
                        let mut data = Vec::with_capacity(512);
                        let opts = PayloadOptions {
                            select,
                            ..PayloadOptions::default()
                        };
                        if let Err(e) = write_change(&mut data, change, types, &opts) {
                            tracing::warn!(error = %e, schema, table, "change not rendered");
                            return deliveries;
                        }
                        rendered.push(Rendered { select, data });
                        &rendered.last().expect("just pushed").data
                    }
                };
                let frame = if sub.legacy {
                    frames::message(sub.vsn, None, None, &sub.topic, change.kind.as_str(), data)
                } else {
                    let mut payload = bytes::BytesMut::with_capacity(data.len() + 32);
                    write_message_payload(&mut payload, &ids, data);
                    frames::message(
                        sub.vsn,
                        None,
                        None,
                        &sub.topic,
                        "postgres_changes",
                        &payload,
                    )
                };
                sub.out.push(frame.clone());
                deliveries += 1;
                sent.push((&sub.topic, ids, sub.vsn, frame));
            }
        }
        if deferred {
            tracing::warn!(
                schema,
                table,
                "a binding's filter needs the database to evaluate; not delivered"
            );
        }
        deliveries
    }
}
