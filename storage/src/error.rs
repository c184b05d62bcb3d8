//! Errors of the storage engine, one enum per seam, one variant per cause.

use std::path::PathBuf;

use crate::batch::WriteBatch;
use crate::schema::FieldType;
use crate::types::ShardId;

/// Why one point (or one row) of a batch was rejected. The rest of the batch is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PointError {
    /// The field was first written with another type.
    #[error("column {column:?} of table {table:?} is {}, got {}", existing.name(), got.name())]
    TypeConflict {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
        /// The type the column has.
        existing: FieldType,
        /// The type of the rejected point.
        got: FieldType,
    },
    /// A field was written under a tag's name, or a tag under a field's.
    #[error("column {column:?} of table {table:?} is a {existing}")]
    KindConflict {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
        /// "tag" or "field".
        existing: &'static str,
    },
    /// The table already has the most columns allowed.
    #[error("table {table:?} has reached its limit of {limit} columns")]
    TooManyColumns {
        /// Table name.
        table: String,
        /// The limit.
        limit: usize,
    },
    /// The table already has the most series allowed.
    #[error("table {table:?} has reached its limit of {limit} series")]
    TooManySeries {
        /// Table name.
        table: String,
        /// The limit.
        limit: u64,
    },
    /// A name is empty, too long or has control characters.
    #[error("invalid {what} name {name:?}")]
    InvalidName {
        /// What the name names.
        what: &'static str,
        /// The name (first 64 characters).
        name: String,
    },
    /// A tag or field may not be called `time`.
    #[error("{name:?} is reserved for the timestamp column")]
    ReservedName {
        /// The name.
        name: String,
    },
}

/// A write that could not be applied (none of its points are stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The shard failed to write or fsync its WAL earlier and refuses writes until restarted.
    #[error("shard {shard} is poisoned after a WAL failure ({cause}); restart to recover")]
    Poisoned {
        /// The shard.
        shard: ShardId,
        /// The first failure.
        cause: String,
    },
    /// The store is shutting down.
    #[error("the store is shut down")]
    ShutDown,
}

/// A batch not accepted for submission; the batch is handed back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The shard's queue is full (backpressure): retry later, stop reading the producer meanwhile.
    #[error("shard {shard} queue is full")]
    Full {
        /// The shard whose queue is full.
        shard: ShardId,
        /// The batch, unchanged.
        batch: WriteBatch,
    },
    /// The store is shut down.
    #[error("the store is shut down")]
    ShutDown(WriteBatch),
}

/// Opening, sealing or maintaining the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The write-ahead log failed.
    #[error("WAL of shard {shard}: {message}")]
    Wal {
        /// The shard.
        shard: ShardId,
        /// What failed.
        message: String,
    },
    /// A segment file is unreadable or fails its checksum.
    #[error("segment {path}: {source}")]
    Segment {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: crate::segment::SegmentError,
    },
    /// The configuration is not usable.
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// Another process has the data directory open (its `LOCK` file is locked).
    #[error("{} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// A shard worker is gone.
    #[error("shard {0} is not running")]
    ShardDown(ShardId),
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// A scan could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// No such table.
    #[error("table {0:?} not found")]
    UnknownTable(String),
    /// No such column in the table.
    #[error("column {column:?} not found in table {table:?}")]
    UnknownColumn {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
    },
    /// Stored bytes failed a checksum or did not decode.
    #[error("corrupt data in {source_name}: {message}")]
    Corrupt {
        /// Segment path or "head".
        source_name: String,
        /// What failed.
        message: String,
    },
    /// Building the Arrow batch failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}
