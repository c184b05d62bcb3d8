//! Fuzzes the WAL's two readers of bytes from disk: `decode_record`, and recovery in `Wal::open`.
//!
//! Checks: neither panics; recovery delivers strictly increasing LSNs; when the input is placed
//! behind a valid file header, recovery delivers exactly the records a plain decode loop finds
//! (up to the first incomplete, corrupt or out-of-sequence record); and a second open after
//! recovery is clean and replays the same records (repair is idempotent).
#![no_main]

use std::convert::Infallible;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mast_storage::Lsn;
use mast_storage::wal::{Wal, WalOptions, decode_record};

/// A valid version-1 header for shard 0 starting at LSN 1 (see docs/formats/wal.md).
fn header() -> Vec<u8> {
    let mut h = Vec::with_capacity(26);
    h.extend_from_slice(b"MASTWAL\0");
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// Records a decode loop accepts from `bytes`, stopping at the first incomplete/bad one, or (when
/// `contiguous_from` is set) at the first LSN out of sequence.
fn decode_all(mut bytes: &[u8], contiguous_from: Option<u64>) -> Vec<(Lsn, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = contiguous_from;
    while let Ok(Some((lsn, payload, used))) = decode_record(bytes) {
        assert!(used >= 16 && used <= bytes.len());
        assert_eq!(used, 16 + payload.len());
        if let Some(n) = next {
            if lsn.0 != n || n == u64::MAX {
                break;
            }
            next = Some(n + 1);
        }
        out.push((lsn, payload.to_vec()));
        bytes = &bytes[used..];
    }
    out
}

fn replay(dir: &Path) -> Option<(Vec<(Lsn, Vec<u8>)>, usize)> {
    let mut seen: Vec<(Lsn, Vec<u8>)> = Vec::new();
    let res = Wal::open(dir, WalOptions::default(), |lsn, p| {
        if let Some((last, _)) = seen.last() {
            assert!(lsn > *last, "LSNs must increase: {last} then {lsn}");
        }
        seen.push((lsn, p.to_vec()));
        Ok::<_, Infallible>(())
    });
    // Errors (e.g. another shard's header, an unknown version) are fine; panics are not.
    let (_wal, report) = res.ok()?;
    Some((seen, report.problems.len()))
}

fuzz_target!(|data: &[u8]| {
    decode_all(data, None);

    // First byte: mode. Odd: the rest goes behind a valid header; even: the rest is the whole file.
    let Some((mode, body)) = data.split_first() else {
        return;
    };
    let with_header = mode & 1 == 1;
    let mut file = if with_header { header() } else { Vec::new() };
    file.extend_from_slice(body);

    let base = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    };
    let Ok(dir) = base else { return };
    if std::fs::write(dir.path().join("00000000000000000001.wal"), &file).is_err() {
        return;
    }
    let Some((first, _)) = replay(dir.path()) else {
        assert!(!with_header, "open failed on a valid header");
        return;
    };
    if with_header {
        assert_eq!(first, decode_all(body, Some(1)));
    }
    let (second, problems) = replay(dir.path()).expect("reopen after recovery failed");
    assert_eq!(problems, 0, "recovery did not leave a clean log");
    assert_eq!(first, second);
});
