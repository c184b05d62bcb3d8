//! Query errors, each with the kind that decides its HTTP status and `code`.

use datafusion::error::DataFusionError;

/// What went wrong, coarsely: enough to pick an HTTP status and a stable `code` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// The SQL does not parse or plan (400, `bad_sql`).
    BadSql,
    /// A table the statement names does not exist (404, `table_not_found`).
    TableNotFound,
    /// The statement would change something; SQL here is read-only (403, `read_only`).
    ReadOnly,
    /// The query ran past its time limit (408, `timeout`).
    Timeout,
    /// The query needed more memory than its limit (413, `memory_limit`).
    MemoryLimit,
    /// Too many queries at once (429, `too_many_queries`).
    Busy,
    /// Anything else: a bug or a storage failure (500, `internal`).
    Internal,
}

impl QueryErrorKind {
    /// The HTTP status for this kind.
    pub fn status(self) -> u16 {
        match self {
            QueryErrorKind::BadSql => 400,
            QueryErrorKind::TableNotFound => 404,
            QueryErrorKind::ReadOnly => 403,
            QueryErrorKind::Timeout => 408,
            QueryErrorKind::MemoryLimit => 413,
            QueryErrorKind::Busy => 429,
            QueryErrorKind::Internal => 500,
        }
    }

    /// The machine-readable `code` of the JSON error.
    pub fn code(self) -> &'static str {
        match self {
            QueryErrorKind::BadSql => "bad_sql",
            QueryErrorKind::TableNotFound => "table_not_found",
            QueryErrorKind::ReadOnly => "read_only",
            QueryErrorKind::Timeout => "timeout",
            QueryErrorKind::MemoryLimit => "memory_limit",
            QueryErrorKind::Busy => "too_many_queries",
            QueryErrorKind::Internal => "internal",
        }
    }
}

/// A failed query.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// What kind of failure.
    pub kind: QueryErrorKind,
    /// For the user: what happened, in one line.
    pub message: String,
}

impl QueryError {
    /// An error of `kind` with `message`.
    pub fn new(kind: QueryErrorKind, message: impl Into<String>) -> QueryError {
        QueryError {
            kind,
            message: message.into(),
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> QueryError {
        classify(&e)
    }
}

/// Maps a DataFusion error onto a kind; the message drops DataFusion's internal prefixes where
/// they only add noise for a user.
pub(crate) fn classify(e: &DataFusionError) -> QueryError {
    let root = e.find_root();
    let text = root.to_string();
    let mut message = text.as_str();
    for prefix in [
        "Error during planning: ",
        "SQL error: ",
        "Execution error: ",
        "This feature is not implemented: ",
        "Schema error: ",
        "Arrow error: ",
        "Resources exhausted: ",
    ] {
        message = message.strip_prefix(prefix).unwrap_or(message);
    }
    let kind = match root {
        DataFusionError::ResourcesExhausted(_) => QueryErrorKind::MemoryLimit,
        _ if message.starts_with(crate::engine::READ_ONLY_PREFIX) => QueryErrorKind::ReadOnly,
        _ if message.contains("table '") && message.contains("' not found") => {
            QueryErrorKind::TableNotFound
        }
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Execution(_)
        | DataFusionError::ArrowError(..) => QueryErrorKind::BadSql,
        _ => QueryErrorKind::Internal,
    };
    QueryError::new(kind, message.trim().to_string())
}
