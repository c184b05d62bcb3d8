//! Options of a [`Wal`](super::Wal) and the fault-injection seam used by crash and poisoning tests.
//!
//! Durability contract of the seam: an `Err` from a [`FaultHook`] method is handled exactly like
//! the same error from the operating system — the write or fsync counts as failed and the WAL is
//! poisoned. Hooks run before every write (records and file headers) and every fsync (files and
//! the directory), on the shard's worker thread.

use std::sync::Arc;

use super::record::DEFAULT_MAX_RECORD_BYTES;
use crate::types::Lsn;

/// Fault injection for tests: called before each write and each fsync the WAL issues.
pub trait FaultHook: Send + Sync + std::fmt::Debug {
    /// Called before writing `bytes` bytes; an `Err` fails the write.
    fn before_write(&self, bytes: usize) -> std::io::Result<()> {
        let _ = bytes;
        Ok(())
    }

    /// Called before an fsync/fdatasync of a WAL file or the WAL directory; an `Err` fails it.
    fn before_sync(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How a [`Wal`](super::Wal) is opened.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// The shard this log belongs to; written into, and checked against, every file header.
    pub shard: u32,
    /// Fault injection (tests only); `None` in production.
    pub fault: Option<Arc<dyn FaultHook>>,
    /// Largest payload `append` accepts and recovery trusts (default 64 MiB, at most `u32::MAX`).
    pub max_record_bytes: usize,
    /// Floor for the next LSN (default 1): after recovery the next append gets at least this, so
    /// LSNs keep growing past what sealed segments already cover even when no WAL file is left.
    pub first_lsn: Lsn,
    /// Lowest LSN delivered to the consumer during recovery (default 1). Records below it that are
    /// still on disk are validated but not delivered. The store keeps this at 1: a seal that was
    /// interrupted between two segments leaves WAL records that only some segments cover, and
    /// replaying them is the only way to get the rest back.
    pub replay_from: Lsn,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            shard: 0,
            fault: None,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            first_lsn: Lsn(1),
            replay_from: Lsn(1),
        }
    }
}
