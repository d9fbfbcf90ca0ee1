//! Routing of one connection's inbound messages: each is parsed into an
//! [`Event`] and handed to that event's handler in [`super::events`]. The
//! session's state lives in [`super::state`] (re-exported here), which the
//! handlers use without importing this router back.

use super::authz::{AuthAnswer, Pending};
use super::events::{self, Event};
use super::replay::{PendingReplay, ReplayAnswer};
use crate::proto::phoenix::Inbound;

pub use super::state::{
    lenient_bool, Channel, Channels, Env, Flow, Resumed, Session, Settings, Tally,
};

impl Session {
    /// Routes one decoded client message. Events other than a join, a
    /// heartbeat and a leave need a joined topic; on any other topic they
    /// are answered `unmatched topic`.
    pub fn handle(&mut self, env: &mut Env<'_>, msg: Inbound<'_>) -> Flow {
        let event = Event::parse(&msg.topic, &msg.event);
        if event.needs_channel() && !self.channels.contains_key(msg.topic.as_ref()) {
            self.push_unmatched(&msg);
            return Flow::Continue;
        }
        match event {
            Event::Join => events::phx_join::handle(self, env, msg),
            Event::Heartbeat => events::heartbeat::handle(self, msg),
            Event::Leave => events::phx_leave::handle(self, env, msg),
            Event::Broadcast => events::broadcast::handle(self, env, msg),
            Event::Presence => events::presence::handle(self, env, msg),
            Event::AccessToken => events::access_token::handle(self, env, msg),
            Event::Other => events::other(env),
        }
    }

    /// Hands the tenant database's answer to what asked for it (see
    /// [`Flow::Authorize`]).
    pub fn resume(&mut self, env: &mut Env<'_>, then: Pending, answer: AuthAnswer) -> Resumed {
        match then {
            Pending::Join(j) => events::phx_join::resume(self, env, *j, answer).into(),
            Pending::Broadcast { topic, channel } => {
                events::broadcast::resume(self, &topic, channel, answer)
            }
            Pending::Track {
                topic,
                channel,
                join_ref,
                msg_ref,
            } => events::presence::resume(self, env, &topic, channel, (join_ref, msg_ref), answer),
            Pending::AccessToken(t) => events::access_token::resume(self, env, *t, answer).into(),
        }
    }

    /// Hands a private join its stored messages (see [`Flow::Replay`]):
    /// the join completes with them, or is refused.
    pub fn replayed(&mut self, env: &mut Env<'_>, r: PendingReplay, answer: ReplayAnswer) -> Flow {
        events::phx_join::replayed(self, env, r, answer)
    }
}
