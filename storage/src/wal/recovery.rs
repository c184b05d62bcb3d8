//! Recovery: replays a WAL directory at open, in LSN order, and repairs damaged tails.
//!
//! Durability contract: every record that was durable (synced) before a crash, and sits before the
//! first damaged byte of its file, is delivered exactly once, in LSN order, to the caller's
//! consumer. At the first bad record of a file (torn, bad length, CRC mismatch, LSN out of
//! sequence) reading of that file stops, the file is cut back to the end of its last good record
//! and fsync'd, and a [`RecoveryProblem`] says what was discarded; the next file is then read from
//! its own header. A file with a torn or corrupt header is reported and skipped; if no valid file
//! follows it, it is deleted (a later file of the same name will be created for new appends).
//! Recovery never panics on file contents and holds one record in memory at a time.

use std::fs::File;
use std::io::{self, BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use super::WalOptions;
use super::error::{WalError, WalOpenError};
use super::file::{self, HEADER_LEN, HeaderDefect, TMP_SUFFIX, VERSION};
use super::record::{RECORD_HEADER_LEN, RecordError, RecordHeader, decode_record_with_limit};
use crate::types::Lsn;

/// What recovery found, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// WAL files examined (`*.wal` in the directory before the fresh file was created).
    pub files: usize,
    /// Records delivered to the consumer.
    pub records: u64,
    /// Bytes of the delivered records, framing included (16 + payload each).
    pub bytes: u64,
    /// The highest LSN the log holds or has handed out (`next_lsn - 1`; `Lsn::ZERO` for a new log).
    pub last_lsn: Lsn,
    /// Everything that was damaged, skipped or discarded, in the order found.
    pub problems: Vec<RecoveryProblem>,
}

/// One damaged spot found by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryProblem {
    /// The WAL file.
    pub file: PathBuf,
    /// Byte offset in the file where the damage starts (0 for file-level problems).
    pub offset: u64,
    /// What was wrong.
    pub kind: ProblemKind,
    /// Bytes dropped because of it (cut from the tail, or the whole skipped file).
    pub discarded_bytes: u64,
}

/// The kinds of damage recovery recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The file is shorter than its 26-byte header (a crash while it was being created).
    TornHeader,
    /// The file ends inside a record: the last write was cut short.
    TornRecord,
    /// A complete record whose CRC32C does not match.
    ChecksumMismatch,
    /// A record length above the payload limit.
    BadLength,
    /// A record or file whose LSN does not continue the sequence (records after it in the file are
    /// dropped; for a whole file that overlaps earlier ones, it is skipped; a file that starts
    /// later than expected is still replayed and reported with `discarded_bytes == 0`).
    LsnGap,
    /// A file header with the wrong magic, a bad checksum, or a first LSN that does not match the
    /// file name.
    BadFileHeader,
}

/// A WAL file that stays in the directory after recovery.
#[derive(Debug, Clone)]
pub(crate) struct LiveFile {
    pub(crate) first_lsn: Lsn,
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
}

/// The outcome of [`recover`].
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) report: RecoveryReport,
    /// The LSN for the next append.
    pub(crate) next_lsn: Lsn,
    /// The files kept, in LSN order.
    pub(crate) files: Vec<LiveFile>,
}

/// Replays `dir` into `on_record` (see the module doc). `dir` must exist.
pub(crate) fn recover<E>(
    dir: &Path,
    opts: &WalOptions,
    on_record: impl FnMut(Lsn, &[u8]) -> Result<(), E>,
) -> Result<Recovered, WalOpenError<E>> {
    let names = list(dir)?;
    let mut report = RecoveryReport {
        files: names.len(),
        ..RecoveryReport::default()
    };
    let mut replay = Replay {
        on_record,
        deliver_from: opts.replay_from,
        max: opts.max_record_bytes.min(u32::MAX as usize),
        payload: Vec::new(),
        records: 0,
        bytes: 0,
    };
    let mut kept: Vec<(LiveFile, bool)> = Vec::with_capacity(names.len());
    // The LSN the next record must carry, once a valid file has been read.
    let mut expected: Option<Lsn> = None;
    for (name_lsn, path) in names {
        let mut f = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| WalError::Open {
                path: path.clone(),
                source,
            })?;
        let file_len = f
            .metadata()
            .map_err(|source| read_err(&path, 0, source))?
            .len();
        let mut hbuf = [0u8; HEADER_LEN];
        let n = read_full(&mut f, &mut hbuf).map_err(|source| read_err(&path, 0, source))?;
        let header = match file::decode_header(hbuf.get(..n).unwrap_or_default()) {
            Err(HeaderDefect::Torn) => Err(ProblemKind::TornHeader),
            Err(HeaderDefect::Corrupt) => Err(ProblemKind::BadFileHeader),
            Ok(h) if h.version != VERSION => {
                return Err(WalError::UnsupportedVersion {
                    path,
                    version: h.version,
                    supported: VERSION,
                }
                .into());
            }
            Ok(h) if h.shard != opts.shard => {
                return Err(WalError::ShardMismatch {
                    path,
                    expected: opts.shard,
                    found: h.shard,
                }
                .into());
            }
            Ok(h) if h.first_lsn != name_lsn || h.first_lsn == Lsn::ZERO => {
                Err(ProblemKind::BadFileHeader)
            }
            Ok(h) if expected.is_some_and(|e| h.first_lsn < e) => Err(ProblemKind::LsnGap),
            Ok(h) => Ok(h),
        };
        let header = match header {
            Ok(h) => h,
            Err(kind) => {
                push_problem(&mut report, &path, kind, 0, file_len);
                let live = LiveFile {
                    first_lsn: name_lsn,
                    path: path.clone(),
                    len: file_len,
                };
                kept.push((live, false));
                continue;
            }
        };
        if expected.is_some_and(|e| e != header.first_lsn) {
            push_problem(&mut report, &path, ProblemKind::LsnGap, 0, 0);
        }
        let Scan {
            end: offset,
            next,
            damage,
        } = scan_records(&f, &path, header.first_lsn, &mut replay)?;
        if let Some(kind) = damage {
            push_problem(
                &mut report,
                &path,
                kind,
                offset,
                file_len.saturating_sub(offset),
            );
            tracing::warn!(file = %path.display(), offset, ?kind, "WAL recovery truncates a damaged tail");
            f.set_len(offset)
                .and_then(|()| f.sync_all())
                .map_err(|source| WalError::Truncate {
                    path: path.clone(),
                    offset,
                    source,
                })?;
        }
        expected = Some(next);
        let live = LiveFile {
            first_lsn: name_lsn,
            path,
            len: offset,
        };
        kept.push((live, true));
    }
    let next_lsn = match expected {
        Some(e) => e,
        None => kept
            .iter()
            .map(|(f, _)| f.first_lsn)
            .max()
            .unwrap_or(Lsn(1)),
    }
    .max(opts.first_lsn)
    .max(Lsn(1));
    // Files at or past `next_lsn` hold nothing readable (bad headers with no valid file after
    // them, or an empty valid file about to be replaced): drop them so new appends sort last.
    let mut files = Vec::with_capacity(kept.len());
    let mut removed = false;
    for (live, valid) in kept {
        if live.first_lsn < next_lsn {
            files.push(live);
        } else if !valid {
            std::fs::remove_file(&live.path).map_err(|source| WalError::Remove {
                path: live.path.clone(),
                source,
            })?;
            removed = true;
        }
    }
    if removed {
        file::sync_dir(dir, opts.fault.as_deref())?;
    }
    report.records = replay.records;
    report.bytes = replay.bytes;
    report.last_lsn = Lsn(next_lsn.0.saturating_sub(1));
    Ok(Recovered {
        report,
        next_lsn,
        files,
    })
}

/// The record consumer and the state recovery carries from file to file.
struct Replay<F> {
    on_record: F,
    /// Records below this LSN are validated but not delivered.
    deliver_from: Lsn,
    /// Payload length limit.
    max: usize,
    /// The one payload buffer, reused for every record.
    payload: Vec<u8>,
    records: u64,
    bytes: u64,
}

/// Where reading a file's records stopped.
struct Scan {
    /// Offset after the last good record.
    end: u64,
    /// The LSN the next record would have needed.
    next: Lsn,
    /// Why reading stopped early, if it did.
    damage: Option<ProblemKind>,
}

/// Reads the records that follow the header of `f`, delivering them to the consumer, up to the end
/// of the file or the first damaged record.
fn scan_records<E, F: FnMut(Lsn, &[u8]) -> Result<(), E>>(
    f: &File,
    path: &Path,
    first_lsn: Lsn,
    replay: &mut Replay<F>,
) -> Result<Scan, WalOpenError<E>> {
    let mut reader = BufReader::with_capacity(256 << 10, f);
    let mut offset = HEADER_LEN as u64;
    let mut next = first_lsn;
    let damage = loop {
        let mut prefix = [0u8; RECORD_HEADER_LEN];
        let n = read_full(&mut reader, &mut prefix).map_err(|e| read_err(path, offset, e))?;
        if n == 0 {
            break None;
        }
        let h = if n == RECORD_HEADER_LEN {
            RecordHeader::parse(&prefix, replay.max)
        } else {
            // Short prefix: a readable, out-of-bounds length is still corruption.
            match decode_record_with_limit(prefix.get(..n).unwrap_or_default(), replay.max) {
                Err(e) => Err(e),
                Ok(_) => break Some(ProblemKind::TornRecord),
            }
        };
        let h = match h {
            Ok(h) => h,
            Err(e) => break Some(kind_of(&e)),
        };
        let payload = &mut replay.payload;
        payload.clear();
        let want = u64::from(h.len);
        let got = (&mut reader)
            .take(want)
            .read_to_end(payload)
            .map_err(|e| read_err(path, offset, e))?;
        if (got as u64) < want {
            break Some(ProblemKind::TornRecord);
        }
        if let Err(e) = h.verify(payload) {
            break Some(kind_of(&e));
        }
        if h.lsn != next || h.lsn.0 == u64::MAX {
            break Some(ProblemKind::LsnGap);
        }
        let framed = (RECORD_HEADER_LEN + payload.len()) as u64;
        if h.lsn >= replay.deliver_from {
            (replay.on_record)(h.lsn, payload)
                .map_err(|source| WalOpenError::Consumer { lsn: h.lsn, source })?;
            replay.records += 1;
            replay.bytes += framed;
        }
        offset += framed;
        next = h.lsn.next();
    };
    Ok(Scan {
        end: offset,
        next,
        damage,
    })
}

/// The `*.wal` files of `dir`, sorted by the LSN in their name. Deletes leftover `*.wal.tmp`
/// files: they were never renamed into place, so they never held a record.
fn list(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, WalError> {
    let read_dir_err = |source| WalError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir_err)? {
        let entry = entry.map_err(read_dir_err)?;
        let name = entry.file_name();
        if let Some(lsn) = file::parse_file_name(&name) {
            out.push((lsn, entry.path()));
        } else if name.to_str().is_some_and(|n| n.ends_with(TMP_SUFFIX)) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|source| WalError::Remove { path, source })?;
        }
    }
    out.sort();
    Ok(out)
}

fn push_problem(
    report: &mut RecoveryReport,
    path: &Path,
    kind: ProblemKind,
    offset: u64,
    discarded_bytes: u64,
) {
    report.problems.push(RecoveryProblem {
        file: path.to_path_buf(),
        offset,
        kind,
        discarded_bytes,
    });
}

fn kind_of(e: &RecordError) -> ProblemKind {
    match e {
        RecordError::ChecksumMismatch { .. } => ProblemKind::ChecksumMismatch,
        _ => ProblemKind::BadLength,
    }
}

fn read_err(path: &Path, offset: u64, source: io::Error) -> WalError {
    WalError::Read {
        path: path.to_path_buf(),
        offset,
        source,
    }
}

/// Reads until `buf` is full or the end of the input; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
