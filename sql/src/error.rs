//! Errors of SQL statements. Each carries the PostgreSQL SQLSTATE a client expects
//! for the same mistake (`sqlstate()`), and a message close to PostgreSQL's.

use thiserror::Error;

/// An error of the storage under the SQL layer (the node's shards, or a test's map).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct KvError(pub String);

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SqlError {
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    FeatureNotSupported(String),
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    #[error("column \"{0}\" does not exist")]
    UndefinedColumn(String),
    #[error("prepared statement \"{0}\" already exists")]
    DuplicatePrepared(String),
    #[error("prepared statement \"{0}\" does not exist")]
    UndefinedPrepared(String),
    #[error("cursor \"{0}\" already exists")]
    DuplicatePortal(String),
    #[error("portal \"{0}\" does not exist")]
    UndefinedPortal(String),
    #[error("LIMIT must not be negative")]
    NegativeLimit,
    #[error("OFFSET must not be negative")]
    NegativeOffset,
    #[error("{0}")]
    UndefinedColumnText(String),
    #[error("multiple assignments to same column \"{0}\"")]
    DuplicateColumnAssignment(String),
    #[error("missing FROM-clause entry for table \"{0}\"")]
    MissingFromEntry(String),
    #[error("{0}")]
    InvalidColumnReference(String),
    #[error("column \"{0}\" specified more than once")]
    DuplicateColumn(String),
    #[error("function {0} does not exist")]
    UndefinedFunction(String),
    #[error("{0}")]
    DatatypeMismatch(String),
    #[error("{0}")]
    InvalidTextRepresentation(String),
    #[error("{0}")]
    NumericOutOfRange(String),
    #[error("division by zero")]
    DivisionByZero,
    #[error("value too long for type {0}")]
    StringTooLong(String),
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation { constraint: String, detail: String },
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNullViolation {
        table: String,
        column: String,
        detail: String,
    },
    #[error("{0}")]
    Grouping(String),
    #[error("{0}")]
    InvalidTableDefinition(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    ProtocolViolation(String),
    #[error("{0}")]
    ProgramLimitExceeded(String),
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    #[error("storage: {0}")]
    Storage(#[from] KvError),
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl SqlError {
    /// The PostgreSQL SQLSTATE of this error (Appendix A of the PostgreSQL manual).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SqlError::Syntax(_) => "42601",
            SqlError::FeatureNotSupported(_) => "0A000",
            SqlError::UndefinedTable(_) => "42P01",
            SqlError::DuplicateTable(_) => "42P07",
            SqlError::UndefinedColumn(_) => "42703",
            SqlError::DuplicateColumn(_) => "42701",
            SqlError::UndefinedColumnText(_) => "42703",
            SqlError::NegativeLimit => "2201W",
            SqlError::DuplicatePrepared(_) => "42P05",
            SqlError::UndefinedPrepared(_) => "26000",
            SqlError::DuplicatePortal(_) => "42P03",
            SqlError::UndefinedPortal(_) => "34000",
            SqlError::NegativeOffset => "2201X",
            SqlError::DuplicateColumnAssignment(_) => "42601",
            SqlError::MissingFromEntry(_) => "42P01",
            SqlError::InvalidColumnReference(_) => "42P10",
            SqlError::UndefinedFunction(_) => "42883",
            SqlError::DatatypeMismatch(_) => "42804",
            SqlError::InvalidTextRepresentation(_) => "22P02",
            SqlError::NumericOutOfRange(_) => "22003",
            SqlError::DivisionByZero => "22012",
            SqlError::StringTooLong(_) => "22001",
            SqlError::UniqueViolation { .. } => "23505",
            SqlError::NotNullViolation { .. } => "23502",
            SqlError::Grouping(_) => "42803",
            SqlError::InvalidTableDefinition(_) => "42P16",
            SqlError::InvalidParameter(_) => "22023",
            SqlError::ProtocolViolation(_) => "08P01",
            SqlError::ProgramLimitExceeded(_) => "54000",
            SqlError::OutOfMemory(_) => "53200",
            SqlError::Storage(_) => "58000",
            SqlError::Corrupt(_) => "XX001",
        }
    }
}

impl SqlError {
    /// PostgreSQL's DETAIL line for the error, where it gives one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            SqlError::UniqueViolation { detail, .. }
            | SqlError::NotNullViolation { detail, .. } => Some(detail),
            _ => None,
        }
    }
}

pub type SqlResult<T> = Result<T, SqlError>;

/// Shorthand for "not supported yet" errors, which name the feature.
pub fn unsupported<T>(what: impl std::fmt::Display) -> SqlResult<T> {
    Err(SqlError::FeatureNotSupported(format!(
        "{what} is not supported yet"
    )))
}
