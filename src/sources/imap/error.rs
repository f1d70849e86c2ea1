//! What can go wrong talking to an IMAP server, and the health `kind` each failure is counted as.

use std::io;

use crate::sources::SinkError;

/// A failure of one connection or sync round. Every variant but [`Error::Insecure`] and
/// [`Error::EngineStopped`] is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TCP connect (or name resolution) failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// TLS setup, handshake or certificate verification failed, or STARTTLS is not offered.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The server refused the credentials.
    #[error("login refused: {0}")]
    Auth(String),
    /// No OAuth2 access token could be had (the token endpoint refused or is unreachable).
    #[error("no access token: {0}")]
    Token(String),
    /// The server did not answer within the configured timeout.
    #[error("no answer within {seconds:.1} s while {what}")]
    Timeout { what: &'static str, seconds: f64 },
    /// The server answered something we cannot use (NO/BAD to a command, missing data).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection broke or the server closed it (`* BYE`, EOF).
    #[error("connection lost: {0}")]
    Io(String),
    /// Plain IMAP to a non-loopback host without `allow_insecure`: never retried.
    #[error(
        "refusing unencrypted IMAP to non-loopback address {0} (set allow_insecure to permit it)"
    )]
    Insecure(String),
    /// The engine could not commit a batch; the batch is re-read after reconnecting.
    #[error("the engine could not commit a batch: {0}")]
    Commit(String),
    /// The engine is gone: the source stops.
    #[error("the engine has stopped")]
    EngineStopped,
}

impl Error {
    /// The `kind` label under which the failure is counted in `source_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Connect { .. } => "connect",
            Error::Tls(_) | Error::Insecure(_) => "tls",
            Error::Auth(_) | Error::Token(_) => "auth",
            Error::Timeout { .. } => "timeout",
            Error::Protocol(_) => "protocol",
            Error::Io(_) => "io",
            Error::Commit(_) | Error::EngineStopped => "commit",
        }
    }

    /// Whether retrying can help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::Insecure(_) | Error::EngineStopped)
    }

    /// Classifies an I/O error: the socket timeouts surface as `TimedOut`.
    pub fn from_io(what: &'static str, timeout: std::time::Duration, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::TimedOut {
            Error::Timeout {
                what,
                seconds: timeout.as_secs_f64(),
            }
        } else {
            Error::Io(format!("{what}: {e}"))
        }
    }

    /// Classifies an async-imap error met while doing `what`.
    pub fn from_imap(
        what: &'static str,
        timeout: std::time::Duration,
        e: async_imap::error::Error,
    ) -> Error {
        use async_imap::error::Error as E;
        match e {
            E::Io(e) => Error::from_io(what, timeout, e),
            E::ConnectionLost => Error::Io(format!("{what}: connection closed by the server")),
            E::No(m) | E::Bad(m) => Error::Protocol(format!("{what}: {m}")),
            other => Error::Protocol(format!("{what}: {other}")),
        }
    }
}

impl From<SinkError> for Error {
    fn from(e: SinkError) -> Error {
        match e {
            SinkError::EngineStopped => Error::EngineStopped,
            SinkError::CommitFailed(m) => Error::Commit(m),
        }
    }
}
