//! The errors a client is told when the server refuses it: a WebSocket
//! connect ([`ConnectError`], an HTTP status and `{"error": ...}`) and a
//! channel join ([`JoinError`], `{"reason":"<Code>: <message>"}`). Clients
//! match on these strings, so each text is spelled exactly once, here, and
//! the README's error tables are checked against these enums.

use super::auth::AuthError;

/// Why a `phx_join` was refused, in the Elixir server's order of checks.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinError {
    /// `realtime:` with an empty sub-topic.
    TopicNameRequired,
    /// The whole topic is longer than `max_topic_bytes`.
    TopicNameTooLong {
        /// The limit.
        max: u64,
    },
    /// `presence.key` is longer than `max_presence_meta_bytes`.
    PresenceKeyTooLong {
        /// The limit.
        max: u64,
    },
    /// The server is draining.
    RealtimeRestarting,
    /// The tenant is suspended.
    RealtimeDisabledForTenant,
    /// A public join on a private-only tenant.
    PrivateOnly,
    /// The tenant already has `max_concurrent_users` users.
    ConnectionRateLimitReached,
    /// Joins per second over the limit; the socket is closed after the reply.
    ClientJoinRateLimitReached,
    /// The socket already has `max_channels_per_client` channels.
    ChannelRateLimitReached,
    /// The channel token was refused.
    Token(AuthError),
    /// A private channel whose policies could not be read: the tenant has
    /// no database, or it could not be reached.
    UnableToConnectToProject,
    /// A private channel whose read policies allow neither broadcast nor
    /// presence, or raised (`RlsPolicyError`): holds the sub-topic.
    Unauthorized(Box<str>),
    /// The read check was cancelled (statement timeout): the database's
    /// message.
    QueryCanceled(String),
    /// The tenant's `realtime.messages` has no partition for today.
    MissingPartition,
    /// The tenant's authorization connections all stayed busy.
    IncreaseConnectionPool,
    /// `broadcast.replay` on a public channel.
    ReplayPublic,
    /// `broadcast.replay` with a `since` or `limit` that is not an integer.
    ReplayParamsInvalid,
    /// The replay query could not be run (no connection).
    ReplayFailed,
    /// The replay query failed in the database or took too long: the
    /// Elixir server has no clause for its database's error.
    UnknownErrorOnChannel,
}

impl JoinError {
    /// The code before the colon, or `None` for a token error the Elixir
    /// server answers without one (`Unknown Error on Channel`).
    pub fn code(&self) -> Option<&'static str> {
        Some(match self {
            JoinError::TopicNameRequired => "TopicNameRequired",
            JoinError::TopicNameTooLong { .. } => "TopicNameTooLong",
            JoinError::PresenceKeyTooLong { .. } => "PresenceKeyTooLong",
            JoinError::RealtimeRestarting => "RealtimeRestarting",
            JoinError::RealtimeDisabledForTenant => "RealtimeDisabledForTenant",
            JoinError::PrivateOnly => "PrivateOnly",
            JoinError::ConnectionRateLimitReached => "ConnectionRateLimitReached",
            JoinError::ClientJoinRateLimitReached => "ClientJoinRateLimitReached",
            JoinError::ChannelRateLimitReached => "ChannelRateLimitReached",
            JoinError::UnableToConnectToProject => "UnableToConnectToProject",
            JoinError::Unauthorized(_) => "Unauthorized",
            JoinError::QueryCanceled(_) => "QueryCanceled",
            JoinError::MissingPartition => "MissingPartition",
            JoinError::IncreaseConnectionPool => "IncreaseConnectionPool",
            JoinError::ReplayPublic | JoinError::ReplayParamsInvalid | JoinError::ReplayFailed => {
                "UnableToReplayMessages"
            }
            JoinError::UnknownErrorOnChannel => return None,
            JoinError::Token(e) => match e {
                AuthError::Expired { .. } | AuthError::MissingClaims | AuthError::ExpInvalid => {
                    "InvalidJWTToken"
                }
                AuthError::Malformed => "MalformedJWT",
                AuthError::BadSignature => "JwtSignatureError",
                AuthError::Signer | AuthError::SignerKid(_) => "JwtSignerError",
                _ => return None,
            },
        })
    }

    /// The text after the colon (the whole reason when there is no code).
    pub fn message(&self) -> String {
        match self {
            JoinError::TopicNameRequired => "You must provide a topic name".into(),
            JoinError::TopicNameTooLong { max } => format!("Topic must be at most {max} bytes"),
            JoinError::PresenceKeyTooLong { max } => {
                format!("Presence key must be at most {max} bytes")
            }
            JoinError::RealtimeRestarting => "Realtime is restarting, please standby".into(),
            JoinError::RealtimeDisabledForTenant => "Realtime disabled for this tenant".into(),
            JoinError::PrivateOnly => "This project only allows private channels".into(),
            JoinError::ConnectionRateLimitReached => "Too many connected users".into(),
            JoinError::ClientJoinRateLimitReached => "Too many joins per second".into(),
            JoinError::ChannelRateLimitReached => "Too many channels".into(),
            JoinError::UnableToConnectToProject => {
                "Realtime was unable to connect to the project database".into()
            }
            JoinError::Unauthorized(topic) => super::authz::unauthorized(topic),
            JoinError::QueryCanceled(m) => m.clone(),
            JoinError::MissingPartition => {
                "Realtime was unable to find the expected messages partition".into()
            }
            JoinError::IncreaseConnectionPool => "Please increase your connection pool size".into(),
            JoinError::ReplayPublic => "Replay is not allowed for public channels".into(),
            JoinError::ReplayParamsInvalid => "Replay params are not valid".into(),
            JoinError::ReplayFailed => "Realtime was unable to replay messages".into(),
            JoinError::UnknownErrorOnChannel => "Unknown Error on Channel".into(),
            JoinError::Token(e) => match self.code() {
                Some(_) => e.to_string(),
                None => "Unknown Error on Channel".into(),
            },
        }
    }

    /// The reply's `reason`: `<Code>: <message>`, or the bare message.
    pub fn reason(&self) -> String {
        match self.code() {
            Some(code) => format!("{code}: {}", self.message()),
            None => self.message(),
        }
    }

    /// The close code sent after the reply, when the refusal also ends the
    /// socket (Phoenix's `disconnect`, PROTOCOL 3.7).
    pub fn close(&self) -> Option<u16> {
        match self {
            JoinError::ClientJoinRateLimitReached => Some(1001),
            _ => None,
        }
    }
}

/// Why a WebSocket connect was refused (PROTOCOL 1.5).
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectError {
    /// The `vsn` parameter names a serializer this server does not speak.
    UnsupportedVsn,
    /// No `x-api-key` header and no `apikey` parameter.
    MissingApiKey,
    /// The host names no known tenant.
    TenantNotFound,
    /// The tenant is suspended.
    TenantSuspended,
    /// The socket token was refused.
    Token(AuthError),
    /// The tenant already has `max_concurrent_users` users.
    TooManyConnectedUsers,
    /// The tenant's joins per second are over the limit.
    TooManyJoinsPerSecond,
    /// Anything else, e.g. the control database could not be read.
    Internal,
}

impl ConnectError {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            ConnectError::UnsupportedVsn | ConnectError::TenantSuspended => 403,
            ConnectError::MissingApiKey => 401,
            ConnectError::TenantNotFound => 404,
            ConnectError::Token(e) => e.connect_error().0,
            ConnectError::TooManyConnectedUsers | ConnectError::TooManyJoinsPerSecond => 429,
            ConnectError::Internal => 500,
        }
    }

    /// The `error` text of the `{"error": ...}` body, after the connect
    /// backoff; `None` for an empty body sent at once (a bad `vsn` is a
    /// client bug, not an attempt worth slowing down).
    pub fn message(&self) -> Option<String> {
        Some(match self {
            ConnectError::UnsupportedVsn => return None,
            ConnectError::MissingApiKey => AuthError::MissingApiKey.to_string(),
            ConnectError::TenantNotFound => "Tenant not found".into(),
            ConnectError::TenantSuspended => "Realtime was disabled for this tenant".into(),
            ConnectError::Token(e) => e.connect_error().1,
            ConnectError::TooManyConnectedUsers => "Too many connected users".into(),
            ConnectError::TooManyJoinsPerSecond => "Too many joins per second".into(),
            ConnectError::Internal => "Error connecting to Realtime".into(),
        })
    }
}

#[cfg(test)]
#[path = "errors_tests.rs"]
mod tests;
