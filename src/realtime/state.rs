//! One WebSocket connection's protocol state: its joined channels, and what
//! every event handler is given. The router ([`super::session`]) and the
//! handlers ([`super::events`]) both build on this module, which imports
//! neither, so no module imports one that imports it back.

use std::rc::Rc;

use bytes::Bytes;

use super::authz::{AuthContext, Authorize, Policies};
use super::frames;
use super::hub::{ChannelId, Outbound, Outgoing, TopicKey};
use super::presence::{ClientPresenceLimiter, Diff};
use super::replay::PendingReplay;
use super::tenant::Tenant;
use crate::proto::phoenix::{Inbound, Ref, Vsn};

/// Server-wide switches the handlers need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Delay before a join error reply (`CHANNEL_ERROR_BACKOFF_MS`).
    pub channel_error_backoff_ms: u64,
    /// How long a `broadcast.replication_ready` channel waits for the
    /// messages stream before it is shut down
    /// (`REPLICATION_READY_TIMEOUT_MS`).
    pub replication_ready_timeout_ms: u64,
}

/// Counters a handler bumps; the server folds them into its shard stats.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Successful joins.
    pub joins: u64,
    /// Change in the number of joined channels.
    pub channels: i64,
    /// Frames queued to subscribers by fan-out.
    pub deliveries: u64,
    /// Channels joined with `broadcast.replication_ready` still waiting
    /// for the messages stream (the server then asks
    /// [`Session::replication_ready`] until none waits).
    pub replication_waits: u64,
}

/// Everything a handler may touch besides the session itself.
pub struct Env<'a> {
    /// The session's tenant (state on its home shard).
    pub tenant: &'a mut Tenant,
    /// Monotonic milliseconds, for rate limits.
    pub now_ms: u64,
    /// Wall-clock Unix seconds, for JWT expiry.
    pub now_unix: i64,
    /// Server switches.
    pub settings: &'a Settings,
    /// Source of channel ids, unique on this shard.
    pub next_channel_id: &'a mut ChannelId,
    /// The server is draining: joins are refused.
    pub shutting_down: bool,
    /// Counters for the shard stats.
    pub tally: &'a mut Tally,
}

/// What the connection driver must do after a handler returns.
#[derive(Debug)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Stop reading for `ms`, then queue `frames`, then (if set) close the
    /// socket with that code. This is how join errors are delayed: the
    /// Elixir server also blocks the socket while a join sleeps.
    Delay {
        /// How long to wait.
        ms: u64,
        /// Frames to queue after the wait.
        frames: Vec<Bytes>,
        /// Close code to send afterwards.
        close: Option<u16>,
    },
    /// Stop reading, ask the tenant database what the policies allow,
    /// then hand the answer to [`Session::resume`] (see `authz`).
    Authorize(Box<Authorize>),
    /// Stop reading, fetch the stored messages a private join asked to
    /// replay, then hand them to `Session::replayed` (see `replay`).
    Replay(Box<PendingReplay>),
}

/// What the driver does once an answer was handed to [`Session::resume`].
#[derive(Debug)]
pub struct Resumed {
    /// As after any message.
    pub flow: Flow,
    /// Handle the message that asked once more: its channel now knows the
    /// policies it needed.
    pub redispatch: bool,
}

impl From<Flow> for Resumed {
    fn from(flow: Flow) -> Self {
        Resumed {
            flow,
            redispatch: false,
        }
    }
}

/// The shutdown message of a channel whose messages stream did not come up
/// in time.
pub const REPLICATION_NOT_READY: &str = "Replication connection was not established in time";

/// A joined channel.
pub struct Channel {
    /// Unique on the shard; owner id for presence.
    pub id: ChannelId,
    /// `realtime:<name>` as the client sent it.
    pub topic: Box<str>,
    /// The join's ref, echoed on every push of this channel.
    pub join_ref: Option<Ref>,
    /// `config.broadcast.self`.
    pub broadcast_self: bool,
    /// `config.broadcast.ack`.
    pub broadcast_ack: bool,
    /// Presence was enabled at join (or auto-enabled by a track).
    pub presence_enabled: bool,
    /// Key this channel tracks presence under: the client's, or `None`
    /// until the first track generates one (most channels never track, and
    /// a generated key is only ever seen once tracked).
    pub presence_key: Option<Box<str>>,
    /// Whether this channel currently tracks a presence.
    pub tracking: bool,
    /// Bytes its tracked presence holds (compact meta JSON plus key; 0 when
    /// not tracking), summed per connection against
    /// `max_presence_bytes_per_client`.
    pub presence_bytes: u64,
    /// Per-channel presence call limiter.
    pub presence_limiter: ClientPresenceLimiter,
    /// The channel's token (join `access_token`, or the socket's, shared).
    pub token: Rc<str>,
    /// `exp` of its verified claims. The rest of the claims is only needed
    /// by Postgres Changes, which keeps its own copy (`cdc::SubClaims`),
    /// and by a private channel's checks (`auth`).
    pub exp: i64,
    /// `config.private`: the channel is on the private topic and its
    /// reads and writes are what the RLS policies allow.
    pub private: bool,
    /// `broadcast.replication_ready` and not yet told: the monotonic
    /// millisecond by which the messages stream must be up (0: not
    /// waiting).
    pub replication_wait_until: u64,
    /// What its policies allowed so far (private channels only).
    pub policies: Policies,
    /// The settings its later checks run under (private channels only:
    /// public channels keep nothing here).
    pub auth: Option<Rc<AuthContext>>,
}

impl Channel {
    /// The key this channel tracks presence under, generated on first use.
    pub fn presence_key(&mut self) -> &str {
        self.presence_key
            .get_or_insert_with(|| super::presence::new_presence_key().into_boxed_str())
    }

    /// The topic without the `realtime:` prefix.
    pub fn sub_topic(&self) -> &str {
        self.topic.strip_prefix("realtime:").unwrap_or(&self.topic)
    }

    /// The hub topic it is on: public or private.
    pub fn key(&self) -> TopicKey<'_> {
        TopicKey {
            topic: &self.topic,
            private: self.private,
        }
    }

    /// What its subscription may receive: (broadcasts, presence diffs).
    pub fn reads(&self) -> (bool, bool) {
        if !self.private {
            return (true, true);
        }
        (
            self.policies.broadcast_read == Some(true),
            self.policies.presence_read == Some(true),
        )
    }
}

/// A socket's joined channels by topic. A socket joins a handful of
/// channels (at most `max_channels_per_client`, 100 by default), so a
/// vector searched by topic is both faster and far smaller than a hash map:
/// an idle socket with one channel holds one slot, not a table of four.
#[derive(Default)]
pub struct Channels(Vec<Channel>);

impl Channels {
    /// Whether `topic` is joined.
    pub fn contains_key(&self, topic: &str) -> bool {
        self.get(topic).is_some()
    }

    /// The channel joined on `topic`.
    pub fn get(&self, topic: &str) -> Option<&Channel> {
        self.0.iter().find(|c| &*c.topic == topic)
    }

    /// The channel joined on `topic`, mutably.
    pub fn get_mut(&mut self, topic: &str) -> Option<&mut Channel> {
        self.0.iter_mut().find(|c| &*c.topic == topic)
    }

    /// Adds `ch` under its topic, returning the channel it replaces.
    pub fn insert(&mut self, ch: Channel) -> Option<Channel> {
        match self.0.iter().position(|c| c.topic == ch.topic) {
            Some(i) => Some(std::mem::replace(&mut self.0[i], ch)),
            None => {
                if self.0.len() < 4 {
                    // Grow one slot at a time while small: a plain push
                    // reserves four 100-byte-plus slots for the first
                    // channel, and most sockets join one.
                    self.0.reserve_exact(1);
                }
                self.0.push(ch);
                None
            }
        }
    }

    /// Removes the channel joined on `topic`.
    pub fn remove(&mut self, topic: &str) -> Option<Channel> {
        let i = self.0.iter().position(|c| &*c.topic == topic)?;
        let ch = self.0.swap_remove(i);
        if self.0.is_empty() {
            // An idle socket keeps no slots.
            self.0 = Vec::new();
        }
        Some(ch)
    }

    /// Topics joined.
    pub fn keys(&self) -> impl Iterator<Item = &Box<str>> {
        self.0.iter().map(|c| &c.topic)
    }

    /// Joined channels.
    pub fn values(&self) -> impl Iterator<Item = &Channel> {
        self.0.iter()
    }

    /// (topic, channel) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&Box<str>, &Channel)> {
        self.0.iter().map(|c| (&c.topic, c))
    }

    /// Presence bytes all channels hold together.
    pub fn presence_bytes(&self) -> u64 {
        self.0.iter().map(|c| c.presence_bytes).sum()
    }

    /// Number of joined channels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no channel is joined.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One connection's protocol state.
pub struct Session {
    /// Connection id, unique on the shard.
    pub id: u64,
    /// Serializer negotiated at connect.
    pub vsn: Vsn,
    /// The connection's write queue.
    pub out: Rc<dyn Outbound>,
    /// Token the socket connected with (fallback channel token).
    pub socket_token: Rc<str>,
    /// Joined channels by topic.
    pub channels: Channels,
    /// Counted in the tenant's connected users.
    pub counted_user: bool,
    /// A join was attempted; such a connection left with no channel is
    /// swept after `NO_CHANNEL_TIMEOUT_IN_MS` (connections that never join
    /// are not).
    pub attempted_join: bool,
    /// When the client last sent data, on the shard's millisecond clock
    /// truncated to 32 bits (compare with `wrapping_sub`). The shard's idle
    /// sweep closes sockets silent for `WEBSOCKET_IDLE_TIMEOUT_MS`; a field
    /// here (it fits in padding) instead of a timer per socket.
    pub last_inbound_ms: u32,
    /// The `x-*` headers of the upgrade request as a JSON object, for the
    /// RLS checks of private channels (`request.headers`); `None`: none.
    pub x_headers: Option<Rc<str>>,
}

impl Session {
    /// A session with no channels.
    pub fn new(id: u64, vsn: Vsn, out: Rc<dyn Outbound>, socket_token: Rc<str>) -> Self {
        Self {
            id,
            vsn,
            out,
            socket_token,
            channels: Channels::default(),
            counted_user: false,
            attempted_join: false,
            last_inbound_ms: 0,
            x_headers: None,
        }
    }

    /// [`Session::x_headers`] as the JSON text a check sets.
    pub fn headers_json(&self) -> Rc<str> {
        self.x_headers.clone().unwrap_or_else(|| Rc::from("{}"))
    }

    /// `[null, ref, topic, "phx_reply", {"status":"error","response":{"reason":"unmatched topic"}}]`
    pub fn push_unmatched(&self, msg: &Inbound<'_>) {
        self.out.push(frames::error_reply(
            self.vsn,
            None,
            msg.msg_ref.as_ref(),
            &msg.topic,
            "unmatched topic",
        ));
    }

    /// Queues a reply on this session's socket.
    pub fn reply(
        &self,
        join_ref: Option<&Ref>,
        msg_ref: Option<&Ref>,
        topic: &str,
        status: &str,
        response: &[u8],
    ) {
        self.out.push(frames::reply(
            self.vsn, join_ref, msg_ref, topic, status, response,
        ));
    }

    /// Removes a channel: unsubscribes it, leaves its presence (fanning the
    /// diff out) and updates counts. No frame goes to this session.
    pub fn remove_channel(&mut self, env: &mut Env<'_>, topic: &str) -> Option<Channel> {
        let ch = self.channels.remove(topic)?;
        env.tenant.hub.unsubscribe(ch.key(), ch.id);
        env.tenant.cdc.remove(ch.id);
        if ch.tracking {
            leave_presence(env, ch.key(), ch.id);
        }
        env.tally.channels -= 1;
        Some(ch)
    }

    /// Server-side channel shutdown: `system` error, then `phx_close`.
    pub fn shutdown_channel(&mut self, env: &mut Env<'_>, topic: &str, message: &str) {
        let Some(ch) = self.remove_channel(env, topic) else {
            return;
        };
        self.out.push(frames::system(
            self.vsn,
            ch.join_ref.as_ref(),
            &ch.topic,
            "system",
            "error",
            message,
            true,
        ));
        self.push_close(&ch);
    }

    /// `[join_ref, join_ref, topic, "phx_close", {}]`.
    pub fn push_close(&self, ch: &Channel) {
        self.out.push(frames::message(
            self.vsn,
            ch.join_ref.as_ref(),
            ch.join_ref.as_ref(),
            &ch.topic,
            "phx_close",
            b"{}",
        ));
    }

    /// Channels joined with `broadcast.replication_ready` (PROTOCOL 3.5):
    /// once the tenant's messages stream is up each gets the `system`
    /// message `Replication connection established` (once); one still
    /// waiting at its deadline is shut down with `Replication connection
    /// was not established in time`. Whether any still waits.
    pub fn replication_ready(&mut self, env: &mut Env<'_>) -> bool {
        let ready = env.tenant.messages_streaming();
        let now = env.now_ms;
        let due: Vec<Box<str>> = self
            .channels
            .iter()
            .filter(|(_, c)| {
                c.replication_wait_until != 0 && (ready || c.replication_wait_until <= now)
            })
            .map(|(t, _)| t.clone())
            .collect();
        for topic in due {
            if !ready {
                self.shutdown_channel(env, &topic, REPLICATION_NOT_READY);
                continue;
            }
            let Some(ch) = self.channels.get_mut(&topic) else {
                continue;
            };
            ch.replication_wait_until = 0;
            self.out.push(frames::system(
                self.vsn,
                ch.join_ref.as_ref(),
                &ch.topic,
                "system",
                "ok",
                "Replication connection established",
                true,
            ));
        }
        self.channels
            .values()
            .any(|c| c.replication_wait_until != 0)
    }

    /// Earliest token expiry among the channels, if any.
    pub fn earliest_expiry(&self) -> Option<i64> {
        self.channels.values().map(|c| c.exp).min()
    }

    /// Re-validates the token of every channel whose `exp` has passed at
    /// `env.now_unix` and shuts those channels down with the reason
    /// (normally `Token has expired N seconds ago`).
    pub fn expire_tokens(&mut self, env: &mut Env<'_>) {
        let now = env.now_unix;
        let due: Vec<(Box<str>, Rc<str>)> = self
            .channels
            .iter()
            .filter(|(_, c)| c.exp <= now)
            .map(|(t, c)| (t.clone(), c.token.clone()))
            .collect();
        let cfg = env.tenant.config.clone();
        for (topic, token) in due {
            let msg = match super::auth::verify_channel(&token, &cfg.jwt, &cfg.validators, now) {
                Err(e) => e.shutdown_message(),
                Ok(_) => continue,
            };
            self.shutdown_channel(env, &topic, &msg);
        }
    }

    /// The socket is gone: leave every channel and release the user slot.
    pub fn close(&mut self, env: &mut Env<'_>) {
        let topics: Vec<Box<str>> = self.channels.keys().cloned().collect();
        for t in topics {
            self.remove_channel(env, &t);
        }
        if self.counted_user {
            env.tenant.users.remove();
            self.counted_user = false;
        }
    }

    /// Tenant-wide disconnect: the fan-out `system` message without a
    /// `channel` key on every channel (PROTOCOL 3.5); the caller closes the
    /// socket with 1012.
    pub fn push_server_disconnect(&self) {
        for ch in self.channels.values() {
            self.out.push(frames::system(
                self.vsn,
                None,
                &ch.topic,
                "system",
                "ok",
                "Server requested disconnect",
                false,
            ));
        }
    }
}

/// A JSON value read leniently as a boolean: JSON booleans, or the strings
/// "true"/"false" in any case. Anything else is `None` (caller's default).
pub fn lenient_bool(v: Option<&serde_json::Value>) -> Option<bool> {
    match v? {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A channel left (leave, shutdown, socket gone): drop its presence and
/// tell the topic.
fn leave_presence(env: &mut Env<'_>, topic: TopicKey<'_>, owner: ChannelId) {
    let diff = env.tenant.hub.topic_mut(topic).presence.leave(owner);
    if let Some(d) = diff {
        fan_presence_diff(env, topic, &d, owner);
    }
    // Drop the topic entry again if the leave emptied it.
    env.tenant.hub.unsubscribe(topic, owner);
}

/// Fans a `presence_diff` out to every subscriber of `topic` that may
/// read presence, after `owner`'s entry changed; other nodes with
/// subscribers of the topic, and a spread tenant's other shards, get the
/// change itself too (see `Hub::replicate_presence`).
pub fn fan_presence_diff(env: &mut Env<'_>, topic: TopicKey<'_>, diff: &Diff, owner: ChannelId) {
    let spread = env.tenant.config.placement == super::tenant::Placement::Spread;
    env.tenant.hub.replicate_presence(topic, owner, spread);
    let mut body = Vec::with_capacity(128);
    diff.to_json(&mut body);
    let n = env.tenant.hub.fanout(
        topic,
        &Outgoing::Json {
            event: "presence_diff",
            payload: &body,
        },
        None,
    );
    env.tally.deliveries += n;
}
