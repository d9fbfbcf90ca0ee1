//! Phoenix channel events: [`Event`] names them, and each has one file with
//! its handler: how the payload is read, what it does to the session and
//! tenant, and what is answered.

pub mod access_token;
pub mod broadcast;
pub mod heartbeat;
pub mod phx_join;
pub mod phx_leave;
pub mod presence;

use crate::realtime::state::{Env, Flow};

/// A client message's event, parsed once before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `phx_join` (any topic; non-`realtime:` topics are unmatched).
    Join,
    /// `heartbeat` on topic `phoenix`.
    Heartbeat,
    /// `phx_leave`.
    Leave,
    /// `broadcast` (also binary kinds 0 and 3).
    Broadcast,
    /// `presence` track / untrack.
    Presence,
    /// `access_token` refresh.
    AccessToken,
    /// Anything else, including `heartbeat` on a channel topic.
    Other,
}

impl Event {
    /// The event of a message on `topic` named `event`.
    pub fn parse(topic: &str, event: &str) -> Event {
        match event {
            "phx_join" => Event::Join,
            "heartbeat" if topic == "phoenix" => Event::Heartbeat,
            "phx_leave" => Event::Leave,
            "broadcast" => Event::Broadcast,
            "presence" => Event::Presence,
            "access_token" => Event::AccessToken,
            _ => Event::Other,
        }
    }

    /// Whether the event is only handled on a joined topic. Joins create
    /// the channel, heartbeats belong to the socket, and a leave of a topic
    /// not joined is still answered `ok`.
    pub fn needs_channel(self) -> bool {
        !matches!(self, Event::Join | Event::Heartbeat | Event::Leave)
    }
}

/// An unknown event on a joined topic counts against the tenant's event
/// rate and gets no reply, as in the Elixir channel's catch-all clause.
pub fn other(env: &mut Env<'_>) -> Flow {
    env.tenant.events.add(1, env.now_ms);
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::Event;

    #[test]
    fn events_parse_by_name_and_heartbeat_only_on_phoenix() {
        for (topic, name, want) in [
            ("realtime:a", "phx_join", Event::Join),
            ("other", "phx_join", Event::Join),
            ("phoenix", "heartbeat", Event::Heartbeat),
            ("realtime:a", "heartbeat", Event::Other),
            ("realtime:a", "phx_leave", Event::Leave),
            ("realtime:a", "broadcast", Event::Broadcast),
            ("realtime:a", "presence", Event::Presence),
            ("realtime:a", "access_token", Event::AccessToken),
            ("realtime:a", "Broadcast", Event::Other),
            ("realtime:a", "", Event::Other),
        ] {
            assert_eq!(Event::parse(topic, name), want, "{topic} {name}");
        }
        assert!(!Event::Join.needs_channel());
        assert!(!Event::Heartbeat.needs_channel());
        assert!(!Event::Leave.needs_channel());
        assert!(Event::Broadcast.needs_channel());
        assert!(Event::Other.needs_channel());
    }
}
