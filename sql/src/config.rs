//! Every limit of the SQL layer, in one place, each with its unit in the name.

/// Bytes of SQL text one statement batch (a simple Query, or a Parse) may hold.
pub const MAX_SQL_TEXT_BYTES: usize = 1 << 20;
/// Statements one simple Query message may hold.
pub const MAX_STATEMENTS_PER_QUERY: usize = 1024;
/// Columns one table may have (PostgreSQL: 1600).
pub const MAX_COLUMNS_PER_TABLE: usize = 1600;
/// Bytes of an identifier (PostgreSQL truncates at 63; we refuse longer ones).
pub const MAX_IDENTIFIER_BYTES: usize = 63;
/// Rows one multi-row INSERT may carry.
pub const MAX_INSERT_ROWS: usize = 100_000;
/// Bytes of row data one statement may hold in memory (scanned rows, groups, sort
/// input, result). Beyond it the statement fails with 53200 rather than grow without
/// bound; spilling to disk comes with the planner work.
pub const MAX_STATEMENT_WORK_BYTES: usize = 256 << 20;
/// Rows a scan asks the storage for at once.
pub const SCAN_PAGE_ROWS: usize = 1024;
/// Bytes a scan asks the storage for at once.
pub const SCAN_PAGE_BYTES: usize = 1 << 20;
/// Bytes of one encoded row (key columns included). The node's value limit is
/// larger; this keeps one row well inside one storage value.
pub const MAX_ROW_BYTES: usize = 1 << 20;
/// Bytes of one stored primary key (the node's key limit is larger).
pub const MAX_KEY_BYTES: usize = 4096;
/// Nesting depth of expressions the binder follows (bounds recursion on input).
pub const MAX_EXPR_DEPTH: usize = 256;
/// Length limit of varchar(n)/char(n) (PostgreSQL: 10,485,760).
pub const MAX_CHAR_LENGTH: u64 = 10_485_760;
/// Times a statement re-reads the catalog when it changed under it before failing.
pub const CATALOG_RELOAD_ATTEMPTS: usize = 8;
