//! Errors of the write-ahead log: one variant per cause, each with the path, offset or LSN needed to
//! act on it.
//!
//! Durability contract: a [`WalError`] from a write, sync, rotation or file creation poisons the
//! [`Wal`](super::Wal) — nothing appended after the last successful `sync` may be assumed durable,
//! and every later write-side call returns [`WalError::Poisoned`]. Reopening the log (which runs
//! recovery) is the only way back.

use std::io;
use std::path::PathBuf;

use crate::types::Lsn;

/// A failure of the write-ahead log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An earlier write or fsync failed; the log refuses all further writes until reopened.
    #[error("WAL is poisoned by an earlier write or fsync failure; reopen to recover")]
    Poisoned,
    /// A payload larger than `WalOptions::max_record_bytes` was appended.
    #[error("WAL record payload of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The payload length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The 64-bit LSN space is used up (reserved value `u64::MAX` reached).
    #[error("WAL LSN space exhausted at lsn {lsn}")]
    LsnExhausted {
        /// The LSN that would have been assigned.
        lsn: Lsn,
    },
    /// Creating the WAL directory failed.
    #[error("creating WAL directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Listing the WAL directory failed.
    #[error("listing WAL directory {path}: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Opening or creating a WAL file failed.
    #[error("opening WAL file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Reading a WAL file during recovery failed (an I/O error, not corrupt content).
    #[error("reading WAL file {path} at offset {offset}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Byte offset of the read.
        offset: u64,
        /// The OS error.
        source: io::Error,
    },
    /// Writing to a WAL file failed (or the fault hook refused the write).
    #[error("writing {len} bytes to WAL file {path} at offset {offset}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Byte offset the write started at.
        offset: u64,
        /// Bytes the write tried to write.
        len: usize,
        /// The OS error.
        source: io::Error,
    },
    /// `fdatasync`/`fsync` of a WAL file failed (or the fault hook refused it).
    #[error("fsync of WAL file {path} failed: {source}")]
    Sync {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `fsync` of the WAL directory failed (or the fault hook refused it).
    #[error("fsync of WAL directory {path} failed: {source}")]
    SyncDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Truncating a damaged tail during recovery failed.
    #[error("truncating WAL file {path} to {offset} bytes: {source}")]
    Truncate {
        /// The file.
        path: PathBuf,
        /// The length it was being cut to.
        offset: u64,
        /// The OS error.
        source: io::Error,
    },
    /// Renaming a freshly written WAL file into place failed.
    #[error("renaming WAL file {from} to {to}: {source}")]
    Rename {
        /// The temporary file.
        from: PathBuf,
        /// The final name.
        to: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Deleting a WAL file failed.
    #[error("removing WAL file {path}: {source}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A WAL file has an intact header of a format version this build cannot read.
    #[error("WAL file {path} has format version {version}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        version: u16,
        /// The version this build reads and writes.
        supported: u16,
    },
    /// A WAL file has an intact header that belongs to another shard (wrong directory).
    #[error("WAL file {path} belongs to shard {found}, expected shard {expected}")]
    ShardMismatch {
        /// The file.
        path: PathBuf,
        /// The shard being opened.
        expected: u32,
        /// The shard in the file's header.
        found: u32,
    },
}

/// A failure of [`Wal::open`](super::Wal::open): either the log itself, or the caller's record
/// consumer, which aborts recovery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalOpenError<E> {
    /// The log could not be opened or recovered.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// `on_record` rejected the record with this LSN; recovery stopped there.
    #[error("WAL replay stopped: the consumer rejected record {lsn}: {source}")]
    Consumer {
        /// The record the consumer rejected.
        lsn: Lsn,
        /// The consumer's error.
        source: E,
    },
}
