//! The errors of a tenant database connection. A leaf of its own because
//! both the connection (`pgconn`) and its TLS setup (`tls`) produce them,
//! and `pgconn` drives `tls`.

/// What went wrong, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// Socket trouble: retry with backoff.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered an error (`code` is the SQLSTATE).
    #[error("{severity} {code}: {message}")]
    Db {
        /// ERROR, FATAL, PANIC.
        severity: String,
        /// SQLSTATE.
        code: String,
        /// Human text.
        message: String,
    },
    /// The server asked for an authentication method we do not speak.
    #[error("unsupported authentication method: {0}")]
    UnsupportedAuth(&'static str),
    /// TLS could not be set up as the mode demands (not retryable without
    /// a configuration or server change).
    #[error("tls: {0}")]
    Tls(String),
    /// The server broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A statement or parameter that cannot be sent (a NUL byte, too many
    /// parameters); nothing was sent and the connection is still usable.
    #[error("cannot send: {0}")]
    Param(String),
    /// The database did not answer within the deadline; the connection is
    /// unusable (a reply may still be in flight) and must be reopened.
    #[error("timeout: {0}")]
    Timeout(String),
}

impl PgError {
    /// SQLSTATE of a server error.
    pub fn code(&self) -> Option<&str> {
        match self {
            PgError::Db { code, .. } => Some(code),
            _ => None,
        }
    }
}
