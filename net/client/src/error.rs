//! The client's typed errors.

use nextdb_proto::{ErrorCode, ProtoError};
use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    /// The socket failed (connect, read or write).
    #[error("I/O error: {0}")]
    Io(#[source] std::io::Error),
    /// No answer within `request_timeout` (or the handshake within `connect_timeout`,
    /// or no pooled connection became free within `request_timeout`).
    #[error("timed out")]
    Timeout,
    /// The server answered with an error response. `code` is `None` for a code this
    /// build does not know (a newer server); `raw_code` is always the number sent.
    #[error("server error {}: {message}", code_text(.code, *.raw_code))]
    Server {
        code: Option<ErrorCode>,
        raw_code: u16,
        message: String,
    },
    /// The server sent bytes that do not decode as protocol v1.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtoError),
    /// Authentication failed: wrong credentials (the server's AUTH_FAILED), a server
    /// that could not prove it knows the password, or credentials missing.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// A well-formed response that does not answer the request (wrong kind or id).
    #[error("unexpected response: {0}")]
    UnexpectedResponse(String),
    /// Rejected before sending: a field exceeds a protocol limit or the configuration is
    /// unusable. Checked locally because the server answers most such frames by closing
    /// the connection.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The server closed the connection (or it was closed after an earlier failure).
    #[error("connection closed")]
    Closed,
    /// TLS failed: unusable CA PEM or server name, a failed handshake (certificate not
    /// signed by a trusted CA, not valid for the server name, protocol mismatch) or a
    /// TLS error on an established connection. Not retryable.
    #[error("TLS error: {0}")]
    Tls(String),
}

/// An I/O error that carries a rustls error (as rustls and tokio-rustls report TLS
/// failures) becomes [`Error::Tls`].
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => Error::Tls(tls.to_string()),
            None => Error::Io(e),
        }
    }
}

fn code_text(code: &Option<ErrorCode>, raw: u16) -> String {
    match code {
        Some(c) => c.to_string(),
        None => format!("unknown ({raw})"),
    }
}

impl Error {
    /// Builds `Error::Server` from the fields of `Response::Error`.
    pub fn server(raw_code: u16, message: impl Into<String>) -> Error {
        Error::Server {
            code: ErrorCode::from_u16(raw_code),
            raw_code,
            message: message.into(),
        }
    }

    /// The server's error code, if this is a server error of a known code.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server { code, .. } => *code,
            _ => None,
        }
    }

    /// Whether the same request may succeed if sent again, possibly on a new connection.
    /// Whether it is *safe* to resend also depends on the request: after a lost
    /// connection a non-idempotent request may already have been applied. The client's
    /// retry loop combines both.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Server { code, .. } => code.is_some_and(ErrorCode::is_retryable),
            Error::Timeout | Error::Closed => true,
            Error::Io(e) => is_connection_error(e),
            Error::Protocol(_)
            | Error::Auth(_)
            | Error::UnexpectedResponse(_)
            | Error::InvalidArgument(_)
            | Error::Tls(_) => false,
        }
    }
}

/// I/O errors that a fresh connection (to the same or another node) may not hit.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | BrokenPipe
            | UnexpectedEof
            | TimedOut
            | WouldBlock
            | Interrupted
            | AddrNotAvailable
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
    )
}

impl From<nextdb_proto::scram::ScramError> for Error {
    fn from(e: nextdb_proto::scram::ScramError) -> Error {
        Error::Auth(e.to_string())
    }
}
