//! Stable error codes of the native protocol and the decoder's typed errors.

use thiserror::Error;

/// A stable numeric error code, carried in every error response. Never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The frame or body could not be decoded; the server closes the connection.
    Malformed = 1,
    /// The frame's length exceeds the maximum; the server closes the connection.
    FrameTooLarge = 2,
    /// The opcode is not one this version knows; the connection stays open.
    UnknownOp = 3,
    /// No protocol version in common; the server closes the connection.
    UnsupportedVersion = 4,
    /// A request other than HELLO/AUTH arrived before authentication; closes.
    AuthRequired = 5,
    /// Authentication failed (unknown user, bad proof, unsupported mechanism); closes.
    AuthFailed = 6,
    /// A field is out of range (key too long, TTL too large, limit zero...).
    InvalidArgument = 7,
    /// INCR on a value that is not a decimal 64-bit integer, or the result overflows.
    NotAnInteger = 8,
    /// An atomic BATCH touches more than one partition.
    CrossPartition = 9,
    /// The node is overloaded (queue full, too many requests in flight). Retryable.
    Busy = 10,
    /// The node is shutting down. Retryable on another node or after restart.
    ShuttingDown = 11,
    /// The storage engine failed (I/O error, corruption); the request did not apply.
    Storage = 12,
    /// The request took longer than the server's limit.
    Timeout = 13,
    /// The node refuses more connections. Retryable.
    TooManyConnections = 14,
    /// A bug: the server reached a state it should not.
    Internal = 15,
    /// A HELLO was sent twice, or AUTH without a pending exchange; closes.
    ProtocolViolation = 16,
    /// The response would exceed `MAX_RESPONSE_BYTES` (a BATCH reading too many or
    /// too large values); split the request. The connection stays open.
    ResponseTooLarge = 17,
    /// CONFIG named a setting the node does not have (a bad or out-of-range value
    /// is INVALID_ARGUMENT). The connection stays open.
    UnknownSetting = 18,
}

impl ErrorCode {
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match v {
            1 => Malformed,
            2 => FrameTooLarge,
            3 => UnknownOp,
            4 => UnsupportedVersion,
            5 => AuthRequired,
            6 => AuthFailed,
            7 => InvalidArgument,
            8 => NotAnInteger,
            9 => CrossPartition,
            10 => Busy,
            11 => ShuttingDown,
            12 => Storage,
            13 => Timeout,
            14 => TooManyConnections,
            15 => Internal,
            16 => ProtocolViolation,
            17 => ResponseTooLarge,
            18 => UnknownSetting,
            _ => return None,
        })
    }

    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Busy
                | ErrorCode::ShuttingDown
                | ErrorCode::Timeout
                | ErrorCode::TooManyConnections
        )
    }

    /// Whether the server closes the connection after sending this error.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::Malformed
                | ErrorCode::FrameTooLarge
                | ErrorCode::UnsupportedVersion
                | ErrorCode::AuthRequired
                | ErrorCode::AuthFailed
                | ErrorCode::ShuttingDown
                | ErrorCode::TooManyConnections
                | ErrorCode::ProtocolViolation
        )
    }

    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Malformed => "MALFORMED",
            FrameTooLarge => "FRAME_TOO_LARGE",
            UnknownOp => "UNKNOWN_OP",
            UnsupportedVersion => "UNSUPPORTED_VERSION",
            AuthRequired => "AUTH_REQUIRED",
            AuthFailed => "AUTH_FAILED",
            InvalidArgument => "INVALID_ARGUMENT",
            NotAnInteger => "NOT_AN_INTEGER",
            CrossPartition => "CROSS_PARTITION",
            Busy => "BUSY",
            ShuttingDown => "SHUTTING_DOWN",
            Storage => "STORAGE",
            Timeout => "TIMEOUT",
            TooManyConnections => "TOO_MANY_CONNECTIONS",
            Internal => "INTERNAL",
            ProtocolViolation => "PROTOCOL_VIOLATION",
            ResponseTooLarge => "RESPONSE_TOO_LARGE",
            UnknownSetting => "UNKNOWN_SETTING",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), *self as u16)
    }
}

/// Why a frame or body could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("{what} is {len} bytes, the limit is {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame length {0} is shorter than the header")]
    FrameTooShort(u32),
    #[error("{0} is not UTF-8")]
    BadUtf8(&'static str),
    #[error("{0} trailing bytes after the body")]
    TrailingBytes(usize),
    #[error("unknown opcode 0x{0:02x}")]
    UnknownOp(u8),
    #[error("invalid {what}: {value}")]
    BadValue { what: &'static str, value: u64 },
    #[error("bad magic in HELLO")]
    BadMagic,
}

impl ProtoError {
    /// The error code a server answers this decode failure with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtoError::UnknownOp(_) => ErrorCode::UnknownOp,
            // The frame boundary is intact: the connection can go on.
            ProtoError::TooLong { .. } | ProtoError::BadValue { .. } => ErrorCode::InvalidArgument,
            _ => ErrorCode::Malformed,
        }
    }
}
