//! Postgres Changes subscribers of one tenant, and the fan-out of each
//! decoded change to them.
//!
//! A subscription goes through two states. It is **checked** first: the
//! tenant's subscription checker (a task on the home shard with its own
//! database connection) verifies its bindings against the catalog as the
//! Elixir server's `realtime.subscription` trigger does, and either marks
//! it ready or sends the exact error and drops it. Only **ready**
//! subscriptions receive changes and `Subscribed to PostgreSQL`.
//!
//! Changes are fanned out in batches (see [`fanout`]): what only the
//! database can decide (row level security, filters whose semantics depend
//! on collations or regexes) is collected as [`access::Questions`] for the
//! whole batch, answered with one round trip, then every change is
//! delivered in order.

pub mod access;
pub mod fanout;
pub mod index;
pub mod relay;
pub mod rowcheck;

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

use super::frames;
use super::hub::{ChannelId, Outbound};
use super::postgres_changes::binding::Binding;
use crate::proto::phoenix::{Ref, Vsn};
pub use access::SubClaims;
pub use relay::{CdcRelay, RemoteSub};

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
    /// Role and claims the rows are authorised with.
    pub claims: Rc<SubClaims>,
    /// The catalog checks passed for the current claims.
    pub ready: bool,
    /// Bumped whenever the subscription must be checked again (new
    /// claims), so a check that raced with the change is ignored.
    pub generation: u32,
    /// `Subscribed to PostgreSQL` was sent for the current stream.
    pub told_ready: bool,
}

/// A subscription the checker should verify.
#[derive(Debug, Clone)]
pub struct CheckJob {
    /// The channel.
    pub channel: ChannelId,
    /// Its generation when the job was taken.
    pub generation: u32,
    /// Its bindings.
    pub bindings: Vec<Binding>,
    /// Its claims.
    pub claims: Rc<SubClaims>,
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
    /// Channels waiting for the checker, oldest first.
    to_check: VecDeque<ChannelId>,
    /// Wakes the checker (set by the server when it starts one).
    wake: Option<Box<dyn Fn()>>,
    /// One shared value per distinct claims: subscriptions with equal
    /// claims hold the same `Rc`, so a batch's questions and answers key
    /// claims groups by address (see [`access::ClaimsKey`]).
    claims: std::collections::HashSet<Rc<SubClaims>>,
    /// Set on a shard other than the tenant's home: subscriptions are
    /// relayed there (see [`relay`]) instead of kept here.
    relaying: Option<relay::Relaying>,
}

impl CdcRegistry {
    /// Installs the function that wakes the subscription checker.
    pub fn set_waker(&mut self, wake: Box<dyn Fn()>) {
        self.wake = Some(wake);
        if !self.to_check.is_empty() {
            self.wake_checker();
        }
    }

    fn wake_checker(&self) {
        if let Some(w) = &self.wake {
            w();
        }
    }

    /// The shared value of `claims`.
    fn intern(&mut self, claims: Rc<SubClaims>) -> Rc<SubClaims> {
        if let Some(c) = self.claims.get(&*claims) {
            return c.clone();
        }
        self.claims.insert(claims.clone());
        claims
    }

    /// Forgets claims no subscription holds any more.
    fn forget_unused_claims(&mut self) {
        self.claims.retain(|c| Rc::strong_count(c) > 1);
    }

    /// Adds a subscription; it receives changes once checked.
    pub fn add(&mut self, mut sub: CdcSub) {
        if let Some(r) = &mut self.relaying {
            r.channels.insert(sub.channel, sub.out.clone());
            r.relay.add(RemoteSub {
                channel: sub.channel,
                topic: sub.topic,
                vsn: sub.vsn,
                join_ref: sub.join_ref,
                bindings: sub.bindings,
                legacy: sub.legacy,
                claims: (*sub.claims).clone(),
            });
            return;
        }
        sub.claims = self.intern(sub.claims);
        sub.ready = false;
        sub.told_ready = false;
        self.to_check.push_back(sub.channel);
        self.subs.push(sub);
        self.wake_checker();
    }

    /// New claims for a channel (its token was refreshed): the subscription
    /// is checked again and, once ready, told `Subscribed to PostgreSQL`
    /// again. Returns whether the channel had a subscription.
    pub fn update_claims(&mut self, channel: ChannelId, claims: Rc<SubClaims>) -> bool {
        if let Some(r) = &self.relaying {
            if !r.channels.contains_key(&channel) {
                return false;
            }
            r.relay.claims(channel, (*claims).clone());
            return true;
        }
        if !self.subs.iter().any(|s| s.channel == channel) {
            return false;
        }
        let claims = self.intern(claims);
        let Some(s) = self.subs.iter_mut().find(|s| s.channel == channel) else {
            return false;
        };
        s.claims = claims;
        s.ready = false;
        s.told_ready = false;
        s.generation = s.generation.wrapping_add(1);
        self.to_check.push_back(channel);
        self.forget_unused_claims();
        self.wake_checker();
        true
    }

    /// Drops a channel's subscription.
    pub fn remove(&mut self, channel: ChannelId) {
        if let Some(r) = &mut self.relaying {
            if r.channels.remove(&channel).is_some() {
                r.relay.remove(channel);
            }
            return;
        }
        self.subs.retain(|s| s.channel != channel);
        self.forget_unused_claims();
    }

    /// The next subscription to check, if any.
    pub fn next_check(&mut self) -> Option<CheckJob> {
        while let Some(channel) = self.to_check.pop_front() {
            if let Some(s) = self.subs.iter().find(|s| s.channel == channel && !s.ready) {
                return Some(CheckJob {
                    channel,
                    generation: s.generation,
                    bindings: s.bindings.clone(),
                    claims: s.claims.clone(),
                });
            }
        }
        None
    }

    /// Puts a job back at the front (the checker lost its connection).
    pub fn retry_check(&mut self, job: &CheckJob) {
        self.to_check.push_front(job.channel);
    }

    /// Whether checks are waiting.
    pub fn has_checks(&self) -> bool {
        !self.to_check.is_empty()
    }

    /// The checker's verdict on `job`: ready (and told so if the stream is
    /// up), or refused with `error` sent as a `postgres_changes` system
    /// error and the subscription dropped. Ignored if the subscription
    /// left or changed meanwhile.
    pub fn finish_check(&mut self, job: &CheckJob, result: Result<(), String>) {
        let Some(i) = self
            .subs
            .iter()
            .position(|s| s.channel == job.channel && s.generation == job.generation)
        else {
            return;
        };
        match result {
            Ok(()) => {
                let streaming = self.streaming;
                let s = &mut self.subs[i];
                s.ready = true;
                if streaming && !s.told_ready {
                    tell(s, "ok", "Subscribed to PostgreSQL");
                    s.told_ready = true;
                }
            }
            Err(e) => {
                let s = self.subs.remove(i);
                tell(&s, "error", &e);
            }
        }
    }

    /// Whether the stream is up.
    pub fn is_streaming(&self) -> bool {
        self.streaming
    }

    /// The stream went up (tell every checked subscriber `Subscribed to
    /// PostgreSQL`) or down (tell those who were told it was up, with
    /// `reason`).
    pub fn set_streaming(&mut self, up: bool, reason: &str) {
        if up == self.streaming {
            return;
        }
        self.streaming = up;
        for s in &mut self.subs {
            if up && s.ready && !s.told_ready {
                tell(s, "ok", "Subscribed to PostgreSQL");
                s.told_ready = true;
            } else if !up && s.told_ready {
                tell(s, "error", reason);
                s.told_ready = false;
            }
        }
    }

    /// Sends every ready subscriber a `postgres_changes` system error
    /// without changing any state (e.g. the slot was recreated).
    pub fn tell_all(&self, status: &str, message: &str) {
        for s in self.subs.iter().filter(|s| s.ready) {
            tell(s, status, message);
        }
    }

    /// Whether any subscriber exists (the driver skips work otherwise).
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }
}

impl CdcRegistry {
    /// Makes this registry relay to the tenant's home shard (it is on
    /// another shard).
    pub fn set_relay(&mut self, relay: Box<dyn CdcRelay>) {
        self.relaying = Some(relay::Relaying {
            relay,
            channels: Default::default(),
        });
    }

    /// Hands a frame the home shard sent for `channel` to its socket;
    /// `false` if that channel is no longer subscribed here.
    pub fn relayed_push(&self, channel: ChannelId, frame: Bytes) -> bool {
        match self
            .relaying
            .as_ref()
            .and_then(|r| r.channels.get(&channel))
        {
            Some(out) => {
                out.push(frame);
                true
            }
            None => false,
        }
    }

    /// Closes the socket of a relayed channel with `code` (after what is
    /// queued); `false` if that channel is no longer subscribed here.
    pub fn relayed_close(&self, channel: ChannelId, code: u16) -> bool {
        match self
            .relaying
            .as_ref()
            .and_then(|r| r.channels.get(&channel))
        {
            Some(out) => {
                out.close(code);
                true
            }
            None => false,
        }
    }
}

/// Pushes a `postgres_changes` system message to `s`'s channel.
fn tell(s: &CdcSub, status: &str, message: &str) {
    s.out.push(frames::system(
        s.vsn,
        s.join_ref.as_ref(),
        &s.topic,
        "postgres_changes",
        status,
        message,
        true,
    ));
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
