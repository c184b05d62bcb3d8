//! The per-shard write-ahead log: a directory of `{first_lsn:020}.wal` files holding checksummed,
//! LSN-numbered records whose payloads are opaque bytes (encoded write batches). The byte layout
//! and recovery rules are specified in `docs/formats/wal.md`.
//!
//! Durability contract, by level:
//! - [`Wal::append`] only encodes into an in-memory buffer: nothing survives any crash yet.
//! - [`Wal::flush`] hands the buffer to the OS with one `write`: *buffered* — survives a process
//!   crash (`kill -9`), not a power loss or kernel crash.
//! - [`Wal::sync`] flushes, then `fdatasync`s: *durable* — survives power loss. Acknowledge a
//!   write only after the `sync` covering its LSN returned `Ok`.
//!
//! After any failed write or fsync the log is *poisoned*: every later `append`, `flush`, `sync`
//! and `rotate` returns [`WalError::Poisoned`]. A failed fsync is never retried — the kernel may
//! already have dropped the dirty pages it could not write (PostgreSQL's "fsyncgate"), so a retry
//! that succeeds would prove nothing. Reopening runs recovery, which trusts only what is on disk.
//! Dropping a `Wal` does not flush: unflushed appends were never promised to anyone.
//!
//! What it is not: it does not interpret payloads, and it is not thread-safe by sharing — one shard
//! worker owns it.
//!
//! ```
//! use mast_storage::wal::{Wal, WalOptions};
//! use mast_storage::Lsn;
//!
//! use std::convert::Infallible;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (mut wal, _) =
//!     Wal::open(dir.path(), WalOptions::default(), |_, _| Ok::<_, Infallible>(())).unwrap();
//! assert_eq!(wal.append(b"batch one").unwrap(), Lsn(1));
//! assert_eq!(wal.append(b"batch two").unwrap(), Lsn(2));
//! wal.sync().unwrap(); // one fdatasync for the whole group
//! drop(wal);
//!
//! let mut seen = Vec::new();
//! let (wal, report) = Wal::open(dir.path(), WalOptions::default(), |lsn, payload| {
//!     seen.push((lsn, payload.to_vec()));
//!     Ok::<_, Infallible>(())
//! })
//! .unwrap();
//! assert_eq!(seen, [(Lsn(1), b"batch one".to_vec()), (Lsn(2), b"batch two".to_vec())]);
//! assert!(report.problems.is_empty());
//! assert_eq!(wal.next_lsn(), Lsn(3));
//! ```

mod error;
mod file;
mod options;
pub mod record;
mod recovery;

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{WalError, WalOpenError};
pub use options::{FaultHook, WalOptions};
pub use record::{
    DecodedRecord, RecordError, decode_record, decode_record_with_limit, encode_record,
};
pub use recovery::{ProblemKind, RecoveryProblem, RecoveryReport};

use crate::types::Lsn;
use recovery::LiveFile;

/// Append-buffer capacity kept after a flush; a larger buffer (after a huge record) is shrunk.
const KEEP_BUFFER_BYTES: usize = 4 << 20;

/// One shard's write-ahead log, open for appends (see the module doc for the durability levels).
pub struct Wal {
    dir: PathBuf,
    shard: u32,
    fault: Option<Arc<dyn FaultHook>>,
    max_record_bytes: usize,
    /// The file appends go to, its path, first LSN, and bytes written to it (header included).
    file: File,
    path: PathBuf,
    file_first_lsn: Lsn,
    file_bytes: u64,
    /// Earlier files, oldest first, with their sizes.
    older: VecDeque<LiveFile>,
    older_bytes: u64,
    /// Encoded records not yet written.
    buf: Vec<u8>,
    next_lsn: Lsn,
    unsynced: u64,
    poisoned: bool,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("shard", &self.shard)
            .field("file", &self.path)
            .field("files", &(self.older.len() + 1))
            .field("next_lsn", &self.next_lsn)
            .field("buffered", &self.buf.len())
            .field("unsynced", &self.unsynced)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens the log in `dir` (creating the directory if needed), replays every valid record in
    /// LSN order into `on_record`, truncates torn or corrupt tails (see [`RecoveryReport`]), and
    /// starts a fresh file for new appends, so a recovered file is never appended to.
    /// An error from `on_record` aborts the open.
    pub fn open<E>(
        dir: &Path,
        opts: WalOptions,
        on_record: impl FnMut(Lsn, &[u8]) -> Result<(), E>,
    ) -> Result<(Wal, RecoveryReport), WalOpenError<E>> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|source| WalError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                file::sync_dir(parent, opts.fault.as_deref())?;
            }
        }
        let rec = recovery::recover(dir, &opts, on_record)?;
        let (file, path) = file::create(dir, opts.shard, rec.next_lsn, opts.fault.as_deref())?;
        let older: VecDeque<LiveFile> = rec.files.into();
        let older_bytes = older.iter().map(|f| f.len).sum();
        tracing::info!(
            dir = %dir.display(),
            shard = opts.shard,
            files = rec.report.files,
            records = rec.report.records,
            problems = rec.report.problems.len(),
            next_lsn = %rec.next_lsn,
            "WAL opened"
        );
        let wal = Wal {
            dir: dir.to_path_buf(),
            shard: opts.shard,
            fault: opts.fault,
            max_record_bytes: opts.max_record_bytes.min(u32::MAX as usize),
            file,
            path,
            file_first_lsn: rec.next_lsn,
            file_bytes: file::HEADER_LEN as u64,
            older,
            older_bytes,
            buf: Vec::new(),
            next_lsn: rec.next_lsn,
            unsynced: 0,
            poisoned: false,
        };
        Ok((wal, rec.report))
    }

    /// The LSN the next [`append`](Wal::append) gets.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Encodes `payload` into the append buffer under the next LSN and returns that LSN. Nothing is
    /// written until [`flush`](Wal::flush) or [`sync`](Wal::sync).
    pub fn append(&mut self, payload: &[u8]) -> Result<Lsn, WalError> {
        self.check()?;
        let too_large = || WalError::RecordTooLarge {
            len: payload.len(),
            max: self.max_record_bytes,
        };
        if payload.len() > self.max_record_bytes {
            return Err(too_large());
        }
        let lsn = self.next_lsn;
        if lsn.0 == u64::MAX {
            return Err(WalError::LsnExhausted { lsn });
        }
        let before = self.buf.len();
        encode_record(lsn, payload, &mut self.buf).map_err(|_| too_large())?;
        self.unsynced += (self.buf.len() - before) as u64;
        self.next_lsn = lsn.next();
        Ok(lsn)
    }

    /// Writes the append buffer to the current file with one `write_all` (the *buffered* level).
    pub fn flush(&mut self) -> Result<(), WalError> {
        self.check()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let len = self.buf.len();
        let res = match &self.fault {
            Some(f) => f.before_write(len),
            None => Ok(()),
        }
        .and_then(|()| self.file.write_all(&self.buf));
        if let Err(source) = res {
            self.poisoned = true;
            return Err(WalError::Write {
                path: self.path.clone(),
                offset: self.file_bytes,
                len,
                source,
            });
        }
        self.file_bytes += len as u64;
        self.buf.clear();
        if self.buf.capacity() > KEEP_BUFFER_BYTES {
            self.buf.shrink_to(KEEP_BUFFER_BYTES);
        }
        Ok(())
    }

    /// Flushes, then `fdatasync`s the current file (the *durable* level). Every record appended so
    /// far is durable once this returns `Ok`.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.flush()?;
        if self.unsynced == 0 {
            return Ok(());
        }
        let res = match &self.fault {
            Some(f) => f.before_sync(),
            None => Ok(()),
        }
        .and_then(|()| self.file.sync_data());
        if let Err(source) = res {
            self.poisoned = true;
            return Err(WalError::Sync {
                path: self.path.clone(),
                source,
            });
        }
        self.unsynced = 0;
        Ok(())
    }

    /// Syncs the current file and starts a new one whose first LSN is [`next_lsn`](Wal::next_lsn).
    /// A no-op after the sync when the current file holds no records yet.
    pub fn rotate(&mut self) -> Result<(), WalError> {
        self.sync()?;
        if self.next_lsn == self.file_first_lsn {
            return Ok(());
        }
        let (file, path) =
            file::create(&self.dir, self.shard, self.next_lsn, self.fault.as_deref())
                .inspect_err(|_| self.poisoned = true)?;
        let old = LiveFile {
            first_lsn: self.file_first_lsn,
            path: std::mem::replace(&mut self.path, path),
            len: self.file_bytes,
        };
        self.older_bytes += old.len;
        self.older.push_back(old);
        self.file = file;
        self.file_first_lsn = self.next_lsn;
        self.file_bytes = file::HEADER_LEN as u64;
        Ok(())
    }

    /// Deletes every file all of whose records have LSN ≤ `lsn` — a file followed by one whose
    /// first LSN is ≤ `lsn + 1` — then fsyncs the directory. The current file is never removed.
    /// Returns how many files were removed.
    ///
    /// Failures here do not poison the log: they cannot lose a record that is not already durable
    /// elsewhere (a deletion that does not survive a crash only means those records are read, and
    /// skipped via [`WalOptions::first_lsn`], at the next open).
    pub fn remove_through(&mut self, lsn: Lsn) -> Result<usize, WalError> {
        let mut removed = 0;
        while let Some(oldest) = self.older.front() {
            let follower = self
                .older
                .get(1)
                .map_or(self.file_first_lsn, |f| f.first_lsn);
            if follower.0 > lsn.0.saturating_add(1) {
                break;
            }
            match std::fs::remove_file(&oldest.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(WalError::Remove {
                        path: oldest.path.clone(),
                        source,
                    });
                }
            }
            self.older_bytes -= oldest.len;
            self.older.pop_front();
            removed += 1;
        }
        if removed > 0 {
            file::sync_dir(&self.dir, self.fault.as_deref())?;
        }
        Ok(removed)
    }

    /// Whether an earlier write or fsync failed (every write-side call now fails).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Bytes appended (framing included) since the last successful [`sync`](Wal::sync), buffered or
    /// not — for "sync every N bytes" policies.
    pub fn unsynced_bytes(&self) -> u64 {
        self.unsynced
    }

    /// Total size of the live WAL files on disk (flushed bytes; the append buffer is not counted).
    pub fn disk_bytes(&self) -> u64 {
        self.older_bytes + self.file_bytes
    }

    fn check(&self) -> Result<(), WalError> {
        if self.poisoned {
            Err(WalError::Poisoned)
        } else {
            Ok(())
        }
    }
}
