//! Private channels (PROTOCOL 4.3): what the tenant database's row level
//! security policies on `realtime.messages` let a channel read and write.
//!
//! The domain never waits for a database. A handler that needs an answer
//! returns [`Authorize`] (as `Flow::Authorize`): the question
//! ([`AuthRequest`]) and what waits for the answer ([`Pending`]). The
//! server runs the question on the tenant's database, reading nothing more
//! from that socket meanwhile (as a Phoenix socket waits for its channel's
//! join), and hands the answer back to `Session::resume`, which completes
//! or refuses the join, sends or drops the broadcast, tracks or refuses the
//! presence, keeps or shuts the channel.

use std::rc::Rc;

use super::auth::Claims;
use super::hub::ChannelId;
use super::join_config::JoinConfig;
use crate::proto::phoenix::Ref;

/// The session settings a check runs under: who asks about which topic.
#[derive(Debug)]
pub struct AuthContext {
    /// The sub-topic (`realtime.topic`), without `realtime:`.
    pub topic: Box<str>,
    /// `role` claim: the role the check runs as.
    pub role: Box<str>,
    /// Every claim as JSON text (`request.jwt.claims`).
    pub claims: Box<str>,
    /// `sub` claim (`request.jwt.claim.sub`).
    pub sub: Option<Box<str>>,
    /// The `x-*` headers of the WebSocket upgrade as a JSON object
    /// (`request.headers`).
    pub headers: Rc<str>,
}

impl AuthContext {
    /// The context of `claims` asking about `sub_topic`.
    pub fn new(sub_topic: &str, claims: &Claims, headers: Rc<str>) -> Rc<AuthContext> {
        Rc::new(AuthContext {
            topic: sub_topic.into(),
            role: claims.role.as_str().into(),
            claims: claims.json.clone(),
            sub: claims.sub.as_deref().map(Box::from),
            headers,
        })
    }
}

/// What a private channel may do; `None` is "not asked yet".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policies {
    /// Receive broadcasts.
    pub broadcast_read: Option<bool>,
    /// Receive presence.
    pub presence_read: Option<bool>,
    /// Send broadcasts.
    pub broadcast_write: Option<bool>,
    /// Track presence.
    pub presence_write: Option<bool>,
}

impl Policies {
    /// Takes every answer `answer` has, keeping the rest.
    pub fn merge(&mut self, answer: Policies) {
        let take = |mine: &mut Option<bool>, theirs: Option<bool>| {
            if theirs.is_some() {
                *mine = theirs;
            }
        };
        take(&mut self.broadcast_read, answer.broadcast_read);
        take(&mut self.presence_read, answer.presence_read);
        take(&mut self.broadcast_write, answer.broadcast_write);
        take(&mut self.presence_write, answer.presence_write);
    }

    /// A private join needs broadcast read or presence read.
    pub fn can_read(&self) -> bool {
        self.broadcast_read == Some(true) || self.presence_read == Some(true)
    }

    /// Whether a read granted before (`self`) is refused in `now`.
    pub fn read_revoked(&self, now: &Policies) -> bool {
        let lost = |was: Option<bool>, is: Option<bool>| was == Some(true) && is == Some(false);
        lost(self.broadcast_read, now.broadcast_read) || lost(self.presence_read, now.presence_read)
    }
}

/// Why a check decided nothing (the Elixir server's error atoms).
#[derive(Debug, Clone, PartialEq)]
pub enum AuthError {
    /// A policy (or the settings: an unknown role) raised: `rls_policy_error`.
    RlsPolicy(String),
    /// `query_canceled` (a statement timeout): the database's message.
    QueryCanceled(String),
    /// `check_violation` on `messages`: no partition for today.
    MissingPartition,
    /// The database could not be reached or stopped answering.
    DatabaseUnavailable(String),
    /// Every connection of the authorization pool stayed busy.
    IncreaseConnectionPool,
}

impl AuthError {
    /// The channel shutdown message when a token refresh's re-check fails
    /// (PROTOCOL 3.6), `topic` being the sub-topic.
    pub fn refresh_message(&self, topic: &str) -> String {
        match self {
            AuthError::RlsPolicy(_) => unauthorized(topic),
            AuthError::QueryCanceled(_) => "Query was cancelled, please try again".into(),
            AuthError::MissingPartition | AuthError::DatabaseUnavailable(_) => {
                "Realtime was unable to connect to the project database".into()
            }
            // The Elixir server inspects the atom it has no clause for.
            AuthError::IncreaseConnectionPool => ":increase_connection_pool".into(),
        }
    }
}

/// `You do not have permissions to read from this Channel topic: <topic>`.
pub fn unauthorized(topic: &str) -> String {
    format!("You do not have permissions to read from this Channel topic: {topic}")
}

/// `You no longer have permission to read from this Channel topic: <topic>`.
pub fn revoked(topic: &str) -> String {
    format!("You no longer have permission to read from this Channel topic: {topic}")
}

/// The question for the tenant database.
#[derive(Debug)]
pub struct AuthRequest {
    /// Who asks about which topic.
    pub ctx: Rc<AuthContext>,
    /// Run the read check: `Some(true)` probes presence besides broadcast.
    pub read: Option<bool>,
    /// Run the write check (broadcast and presence, as the Elixir server's
    /// default does).
    pub write: bool,
}

/// The database's answer: the policies it decided.
pub type AuthAnswer = Result<Policies, AuthError>;

/// An [`AuthRequest`] as plain owned data, to ask a tenant's home shard
/// (where its authorization pool is) from another one.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthQuestion {
    /// See [`AuthContext::topic`].
    pub topic: String,
    /// See [`AuthContext::role`].
    pub role: String,
    /// See [`AuthContext::claims`].
    pub claims: String,
    /// See [`AuthContext::sub`].
    pub sub: Option<String>,
    /// See [`AuthContext::headers`].
    pub headers: String,
    /// See [`AuthRequest::read`].
    pub read: Option<bool>,
    /// See [`AuthRequest::write`].
    pub write: bool,
}

impl From<&AuthRequest> for AuthQuestion {
    fn from(r: &AuthRequest) -> Self {
        AuthQuestion {
            topic: r.ctx.topic.to_string(),
            role: r.ctx.role.to_string(),
            claims: r.ctx.claims.to_string(),
            sub: r.ctx.sub.as_deref().map(str::to_owned),
            headers: r.ctx.headers.to_string(),
            read: r.read,
            write: r.write,
        }
    }
}

impl From<AuthQuestion> for AuthRequest {
    fn from(q: AuthQuestion) -> Self {
        AuthRequest {
            ctx: Rc::new(AuthContext {
                topic: q.topic.into(),
                role: q.role.into(),
                claims: q.claims.into(),
                sub: q.sub.map(Box::from),
                headers: q.headers.into(),
            }),
            read: q.read,
            write: q.write,
        }
    }
}

/// A join that passed every other check, waiting for its read policies.
#[derive(Debug)]
pub struct PendingJoin {
    /// `realtime:<name>` as the client sent it.
    pub topic: Box<str>,
    /// The join's ref.
    pub join_ref: Option<Ref>,
    /// The message ref the reply answers.
    pub msg_ref: Option<Ref>,
    /// Its config.
    pub cfg: JoinConfig,
    /// Its token and verified claims.
    pub token: Rc<str>,
    /// The verified claims.
    pub claims: Claims,
    /// The context checked (kept on the channel for later checks).
    pub ctx: Rc<AuthContext>,
}

/// A token refresh of a private channel, waiting for its re-check.
#[derive(Debug)]
pub struct PendingToken {
    /// The channel's topic.
    pub topic: Box<str>,
    /// The channel (a channel replaced meanwhile is not touched).
    pub channel: ChannelId,
    /// The new token and its claims.
    pub token: Rc<str>,
    /// The verified claims.
    pub claims: Claims,
    /// The context of the new claims.
    pub ctx: Rc<AuthContext>,
}

/// What waits for an answer.
#[derive(Debug)]
pub enum Pending {
    /// A private join.
    Join(Box<PendingJoin>),
    /// The first broadcast of a private channel: the message is handled
    /// again once the write policies are known.
    Broadcast {
        /// The channel's topic.
        topic: Box<str>,
        /// The channel.
        channel: ChannelId,
    },
    /// A track on a private channel whose presence write is not known.
    Track {
        /// The channel's topic.
        topic: Box<str>,
        /// The channel.
        channel: ChannelId,
        /// Refs of the refusal, should it be one.
        join_ref: Option<Ref>,
        /// The message ref.
        msg_ref: Option<Ref>,
    },
    /// A token refresh.
    AccessToken(Box<PendingToken>),
}

/// A handler's question and its continuation.
#[derive(Debug)]
pub struct Authorize {
    /// What to ask.
    pub request: AuthRequest,
    /// What the answer goes to.
    pub then: Pending,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_what_the_answer_does_not_decide() {
        let mut p = Policies {
            broadcast_read: Some(true),
            presence_read: None,
            ..Default::default()
        };
        p.merge(Policies {
            broadcast_write: Some(false),
            presence_write: Some(true),
            ..Default::default()
        });
        assert_eq!(p.broadcast_read, Some(true));
        assert_eq!(
            (p.broadcast_write, p.presence_write),
            (Some(false), Some(true))
        );
        assert!(p.can_read());
        assert!(!Policies::default().can_read());
    }

    #[test]
    fn a_question_crosses_shards_unchanged() {
        let q = AuthQuestion {
            topic: "room:1".into(),
            role: "authenticated".into(),
            claims: r#"{"role":"authenticated","sub":"u1"}"#.into(),
            sub: Some("u1".into()),
            headers: r#"{"x-a":"b"}"#.into(),
            read: Some(true),
            write: true,
        };
        let r = AuthRequest::from(q.clone());
        assert_eq!(AuthQuestion::from(&r), q);
    }

    #[test]
    fn revoked_only_from_true_to_false() {
        let yes = Some(true);
        let was = Policies {
            broadcast_read: yes,
            presence_read: None,
            ..Default::default()
        };
        let now = |b, p| Policies {
            broadcast_read: b,
            presence_read: p,
            ..Default::default()
        };
        assert!(was.read_revoked(&now(Some(false), yes)));
        assert!(!was.read_revoked(&now(yes, Some(false))));
        assert!(!was.read_revoked(&now(None, None)));
    }
}
