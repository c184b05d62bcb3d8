//! Crash and corruption recovery of the write-ahead log, through its public API only: simulated
//! crashes at every byte, flipped bytes, rotation and truncation, and poisoning by injected faults.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mast_storage::Lsn;
use mast_storage::wal::{
    FaultHook, ProblemKind, RecoveryProblem, RecoveryReport, Wal, WalError, WalOpenError,
    WalOptions, decode_record, encode_record,
};

type Records = Vec<(Lsn, Vec<u8>)>;

const FILE_HEADER: u64 = 26;
const RECORD_HEADER: u64 = 16;

fn open_with(dir: &Path, opts: WalOptions) -> (Wal, RecoveryReport, Records) {
    let mut seen = Vec::new();
    let (wal, report) = Wal::open(dir, opts, |lsn, p| {
        seen.push((lsn, p.to_vec()));
        Ok::<_, Infallible>(())
    })
    .unwrap();
    (wal, report, seen)
}

fn open(dir: &Path) -> (Wal, RecoveryReport, Records) {
    open_with(dir, WalOptions::default())
}

/// Varied sizes, including empty payloads, with contents unique per record.
fn payload(i: u64) -> Vec<u8> {
    let len = (i * 37 % 61) as usize;
    (0..len).map(|j| (i as usize * 7 + j) as u8).collect()
}

fn append_all(wal: &mut Wal, ids: std::ops::Range<u64>) -> Records {
    ids.map(|i| {
        let p = payload(i);
        (wal.append(&p).unwrap(), p)
    })
    .collect()
}

fn wal_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    for f in wal_files(from) {
        fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
}

#[derive(Debug, Default)]
struct Faults {
    fail_writes: AtomicBool,
    fail_syncs: AtomicBool,
}

impl FaultHook for Faults {
    fn before_write(&self, _bytes: usize) -> io::Result<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected write failure"));
        }
        Ok(())
    }
    fn before_sync(&self) -> io::Result<()> {
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

#[test]
fn reopen_replays_every_synced_record_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, report, seen) = open(dir.path());
    assert!(seen.is_empty());
    assert_eq!(report.last_lsn, Lsn::ZERO);
    let written = append_all(&mut wal, 1..50);
    assert_eq!(written.first().unwrap().0, Lsn(1));
    wal.sync().unwrap();
    drop(wal);
    let (wal, report, seen) = open(dir.path());
    assert_eq!(seen, written);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.records, 49);
    assert_eq!(report.last_lsn, Lsn(49));
    assert_eq!(wal.next_lsn(), Lsn(50));
}

#[test]
fn crash_at_every_byte_of_the_last_file_recovers_exactly_the_complete_prefix() {
    let src = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(src.path());
    let written = append_all(&mut wal, 1..17);
    wal.sync().unwrap();
    drop(wal);
    let files = wal_files(src.path());
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_owned();
    let full = fs::metadata(&files[0]).unwrap().len();
    // End offset of each record.
    let mut ends = Vec::new();
    let mut end = FILE_HEADER;
    for (_, p) in &written {
        end += RECORD_HEADER + p.len() as u64;
        ends.push(end);
    }
    assert_eq!(end, full);

    for cut in 0..=full {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        let file = dir.path().join(&name);
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        let good_end = if complete == 0 {
            FILE_HEADER
        } else {
            ends[complete - 1]
        };

        let (mut wal, report, seen) = open(dir.path());
        assert_eq!(seen, written[..complete], "cut at {cut}");
        let expected_problems = if cut < FILE_HEADER {
            vec![RecoveryProblem {
                file: file.clone(),
                offset: 0,
                kind: ProblemKind::TornHeader,
                discarded_bytes: cut,
            }]
        } else if cut == good_end {
            vec![]
        } else {
            vec![RecoveryProblem {
                file: file.clone(),
                offset: good_end,
                kind: ProblemKind::TornRecord,
                discarded_bytes: cut - good_end,
            }]
        };
        assert_eq!(report.problems, expected_problems, "cut at {cut}");
        assert_eq!(report.last_lsn, Lsn(complete as u64), "cut at {cut}");
        if cut >= FILE_HEADER {
            assert_eq!(fs::metadata(&file).unwrap().len(), good_end, "cut at {cut}");
        }

        let mut after = written[..complete].to_vec();
        after.extend(append_all(&mut wal, 100..102));
        wal.sync().unwrap();
        drop(wal);
        let (_, report, seen) = open(dir.path());
        assert!(
            report.problems.is_empty(),
            "cut at {cut}: {:?}",
            report.problems
        );
        assert_eq!(seen, after, "cut at {cut}");
        let lsns: Vec<u64> = seen.iter().map(|(l, _)| l.0).collect();
        assert_eq!(lsns, (1..=after.len() as u64).collect::<Vec<_>>());
    }
}

#[test]
fn flipped_byte_mid_record_is_reported_truncated_and_reopen_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(dir.path());
    let written = append_all(&mut wal, 1..20);
    wal.sync().unwrap();
    drop(wal);
    let file = wal_files(dir.path()).remove(0);
    // Record 10 (index 9) starts after the header and nine records; flip a payload byte.
    let start: u64 = FILE_HEADER
        + written[..9]
            .iter()
            .map(|(_, p)| RECORD_HEADER + p.len() as u64)
            .sum::<u64>();
    assert!(written[9].1.len() > 2);
    let mut bytes = fs::read(&file).unwrap();
    let full = bytes.len() as u64;
    bytes[(start + RECORD_HEADER + 1) as usize] ^= 0x40;
    fs::write(&file, &bytes).unwrap();

    let (wal, report, seen) = open(dir.path());
    assert_eq!(seen, written[..9]);
    assert_eq!(
        report.problems,
        vec![RecoveryProblem {
            file: file.clone(),
            offset: start,
            kind: ProblemKind::ChecksumMismatch,
            discarded_bytes: full - start,
        }]
    );
    assert_eq!(fs::metadata(&file).unwrap().len(), start);
    assert_eq!(wal.next_lsn(), Lsn(10));
    drop(wal);

    let (_, report, seen) = open(dir.path());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(seen, written[..9]);
}

#[test]
fn well_formed_record_with_an_out_of_sequence_lsn_is_an_lsn_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(dir.path());
    let written = append_all(&mut wal, 1..10);
    wal.sync().unwrap();
    drop(wal);
    let file = wal_files(dir.path()).remove(0);
    // Re-encode record 5 (index 4) in place with LSN 6: same length, valid CRC, wrong LSN.
    let start = FILE_HEADER
        + written[..4]
            .iter()
            .map(|(_, p)| RECORD_HEADER + p.len() as u64)
            .sum::<u64>();
    let mut forged = Vec::new();
    encode_record(Lsn(6), &written[4].1, &mut forged).unwrap();
    assert_eq!(decode_record(&forged).unwrap().unwrap().0, Lsn(6));
    let mut bytes = fs::read(&file).unwrap();
    let full = bytes.len() as u64;
    bytes.splice(start as usize..start as usize + forged.len(), forged);
    assert_eq!(bytes.len() as u64, full);
    fs::write(&file, &bytes).unwrap();

    let (wal, report, seen) = open(dir.path());
    assert_eq!(seen, written[..4]);
    assert_eq!(
        report.problems,
        vec![RecoveryProblem {
            file,
            offset: start,
            kind: ProblemKind::LsnGap,
            discarded_bytes: full - start,
        }]
    );
    assert_eq!(wal.next_lsn(), Lsn(5));
}

#[test]
fn corruption_in_an_older_file_keeps_the_later_files() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(dir.path());
    let first = append_all(&mut wal, 1..11);
    wal.rotate().unwrap();
    let second = append_all(&mut wal, 11..21);
    wal.sync().unwrap();
    drop(wal);
    let files = wal_files(dir.path());
    assert_eq!(files.len(), 2);
    // Corrupt the length field of record 6 in the first file into an impossible value.
    let off: u64 = FILE_HEADER
        + first[..5]
            .iter()
            .map(|(_, p)| RECORD_HEADER + p.len() as u64)
            .sum::<u64>();
    let mut bytes = fs::read(&files[0]).unwrap();
    bytes[off as usize + 3] = 0xFF;
    fs::write(&files[0], &bytes).unwrap();

    let (_, report, seen) = open(dir.path());
    let kinds: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.file.clone(), p.offset, p.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (files[0].clone(), off, ProblemKind::BadLength),
            (files[1].clone(), 0, ProblemKind::LsnGap),
        ]
    );
    let mut expected = first[..5].to_vec();
    expected.extend(second);
    assert_eq!(seen, expected);
}

#[test]
fn torn_header_of_a_new_last_file_is_removed_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(dir.path());
    let mut written = append_all(&mut wal, 1..8);
    wal.rotate().unwrap();
    drop(wal);
    let files = wal_files(dir.path());
    assert_eq!(files.len(), 2);
    fs::write(&files[1], b"MASTWAL").unwrap();

    let (mut wal, report, seen) = open(dir.path());
    assert_eq!(seen, written);
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind, ProblemKind::TornHeader);
    assert_eq!(wal.next_lsn(), Lsn(8));
    written.extend(append_all(&mut wal, 8..12));
    wal.sync().unwrap();
    drop(wal);
    let (_, report, seen) = open(dir.path());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(seen, written);
}

#[test]
fn remove_through_removes_only_fully_covered_files() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(dir.path());
    append_all(&mut wal, 1..11); // file 1: LSN 1..=10
    wal.rotate().unwrap();
    append_all(&mut wal, 11..21); // file 11: LSN 11..=20
    wal.rotate().unwrap();
    wal.rotate().unwrap(); // no records since the last rotation: no new file
    let last = append_all(&mut wal, 21..26); // file 21: LSN 21..=25
    wal.sync().unwrap();
    assert_eq!(wal_files(dir.path()).len(), 3);
    let before = wal.disk_bytes();

    assert_eq!(wal.remove_through(Lsn(9)).unwrap(), 0);
    assert_eq!(wal.remove_through(Lsn(15)).unwrap(), 1);
    assert_eq!(wal_files(dir.path()).len(), 2);
    assert!(wal.disk_bytes() < before);
    assert_eq!(wal.remove_through(Lsn(19)).unwrap(), 0);
    assert_eq!(wal.remove_through(Lsn(20)).unwrap(), 1);
    assert_eq!(
        wal.remove_through(Lsn(1000)).unwrap(),
        0,
        "the current file stays"
    );
    let files = wal_files(dir.path());
    assert_eq!(files.len(), 1);
    assert_eq!(fs::metadata(&files[0]).unwrap().len(), wal.disk_bytes());
    drop(wal);

    let (wal, report, seen) = open(dir.path());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(seen, last);
    assert_eq!(wal.next_lsn(), Lsn(26));
}

#[test]
fn next_lsn_survives_removal_of_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(dir.path());
    append_all(&mut wal, 1..6);
    wal.rotate().unwrap();
    assert_eq!(wal.remove_through(Lsn(5)).unwrap(), 1);
    drop(wal);
    let (wal, report, seen) = open(dir.path());
    assert!(seen.is_empty());
    assert_eq!(report.last_lsn, Lsn(5));
    assert_eq!(wal.next_lsn(), Lsn(6));
}

#[test]
fn replay_from_skips_sealed_records_and_first_lsn_floors_next_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(dir.path());
    let written = append_all(&mut wal, 1..11);
    wal.sync().unwrap();
    drop(wal);
    // first_lsn alone floors the next LSN but still delivers everything on disk
    let opts = WalOptions {
        first_lsn: Lsn(7),
        ..WalOptions::default()
    };
    let (wal, _, seen) = open_with(dir.path(), opts);
    assert_eq!(seen, written);
    assert_eq!(wal.next_lsn(), Lsn(11));
    drop(wal);
    let opts = WalOptions {
        replay_from: Lsn(7),
        ..WalOptions::default()
    };
    let (wal, _, seen) = open_with(dir.path(), opts);
    assert_eq!(seen, written[6..]);
    assert_eq!(wal.next_lsn(), Lsn(11));
    drop(wal);
    let empty = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        first_lsn: Lsn(500),
        ..WalOptions::default()
    };
    let (mut wal, _, _) = open_with(empty.path(), opts);
    assert_eq!(wal.append(b"x").unwrap(), Lsn(500));
}

#[test]
fn failed_sync_poisons_and_keeps_what_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let opts = WalOptions {
        fault: Some(Arc::clone(&faults) as Arc<dyn FaultHook>),
        ..WalOptions::default()
    };
    let (mut wal, _, _) = open_with(dir.path(), opts);
    let mut all = append_all(&mut wal, 1..6);
    wal.sync().unwrap();
    all.extend(append_all(&mut wal, 6..9));
    faults.fail_syncs.store(true, Ordering::SeqCst);
    assert!(matches!(wal.sync(), Err(WalError::Sync { .. })));
    assert!(wal.is_poisoned());
    faults.fail_syncs.store(false, Ordering::SeqCst);
    assert!(matches!(wal.append(b"more"), Err(WalError::Poisoned)));
    assert!(matches!(wal.flush(), Err(WalError::Poisoned)));
    assert!(
        matches!(wal.sync(), Err(WalError::Poisoned)),
        "never retry an fsync"
    );
    assert!(matches!(wal.rotate(), Err(WalError::Poisoned)));
    drop(wal);

    let (_, _, seen) = open(dir.path());
    assert!(seen.len() >= 5, "synced records lost: {}", seen.len());
    assert_eq!(seen, all[..seen.len()]);
}

#[test]
fn failed_write_poisons_and_keeps_what_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let opts = WalOptions {
        fault: Some(Arc::clone(&faults) as Arc<dyn FaultHook>),
        ..WalOptions::default()
    };
    let (mut wal, _, _) = open_with(dir.path(), opts);
    let synced = append_all(&mut wal, 1..6);
    wal.sync().unwrap();
    append_all(&mut wal, 6..9);
    faults.fail_writes.store(true, Ordering::SeqCst);
    assert!(matches!(wal.sync(), Err(WalError::Write { .. })));
    faults.fail_writes.store(false, Ordering::SeqCst);
    assert!(wal.is_poisoned());
    assert!(matches!(wal.append(b"more"), Err(WalError::Poisoned)));
    assert!(matches!(wal.flush(), Err(WalError::Poisoned)));
    assert!(matches!(wal.sync(), Err(WalError::Poisoned)));
    assert!(matches!(wal.rotate(), Err(WalError::Poisoned)));
    drop(wal);

    let (wal, report, seen) = open(dir.path());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(seen, synced);
    assert_eq!(wal.next_lsn(), Lsn(6));
}

#[test]
fn failed_rotation_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let opts = WalOptions {
        fault: Some(Arc::clone(&faults) as Arc<dyn FaultHook>),
        ..WalOptions::default()
    };
    let (mut wal, _, _) = open_with(dir.path(), opts);
    let synced = append_all(&mut wal, 1..4);
    wal.sync().unwrap();
    faults.fail_writes.store(true, Ordering::SeqCst);
    assert!(wal.rotate().is_err());
    faults.fail_writes.store(false, Ordering::SeqCst);
    assert!(matches!(wal.append(b"x"), Err(WalError::Poisoned)));
    drop(wal);
    let (_, report, seen) = open(dir.path());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(seen, synced);
}

#[test]
fn oversized_append_is_rejected_without_poisoning() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        max_record_bytes: 100,
        ..WalOptions::default()
    };
    let (mut wal, _, _) = open_with(dir.path(), opts);
    assert!(matches!(
        wal.append(&[0u8; 101]),
        Err(WalError::RecordTooLarge { len: 101, max: 100 })
    ));
    assert!(!wal.is_poisoned());
    assert_eq!(wal.append(&[1u8; 100]).unwrap(), Lsn(1));
    wal.sync().unwrap();
}

#[test]
fn unsynced_and_disk_bytes_track_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(dir.path());
    assert_eq!(wal.disk_bytes(), FILE_HEADER);
    wal.append(b"12345").unwrap();
    wal.append(b"").unwrap();
    assert_eq!(wal.unsynced_bytes(), 2 * RECORD_HEADER + 5);
    assert_eq!(wal.disk_bytes(), FILE_HEADER, "append only buffers");
    wal.flush().unwrap();
    assert_eq!(wal.disk_bytes(), FILE_HEADER + 2 * RECORD_HEADER + 5);
    assert_eq!(wal.unsynced_bytes(), 2 * RECORD_HEADER + 5);
    wal.sync().unwrap();
    assert_eq!(wal.unsynced_bytes(), 0);
}

#[test]
fn another_shards_files_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(dir.path());
    append_all(&mut wal, 1..4);
    wal.sync().unwrap();
    drop(wal);
    let before: Vec<_> = wal_files(dir.path())
        .iter()
        .map(|f| fs::read(f).unwrap())
        .collect();
    let opts = WalOptions {
        shard: 9,
        ..WalOptions::default()
    };
    let res = Wal::open(dir.path(), opts, |_, _| Ok::<_, Infallible>(()));
    assert!(matches!(
        res,
        Err(WalOpenError::Wal(WalError::ShardMismatch {
            expected: 9,
            found: 0,
            ..
        }))
    ));
    let after: Vec<_> = wal_files(dir.path())
        .iter()
        .map(|f| fs::read(f).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn consumer_error_aborts_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(dir.path());
    append_all(&mut wal, 1..6);
    wal.sync().unwrap();
    drop(wal);
    let res = Wal::open(dir.path(), WalOptions::default(), |lsn, _| {
        if lsn == Lsn(3) {
            Err("bad batch")
        } else {
            Ok(())
        }
    });
    assert!(matches!(
        res,
        Err(WalOpenError::Consumer {
            lsn: Lsn(3),
            source: "bad batch"
        })
    ));
    let (_, _, seen) = open(dir.path());
    assert_eq!(seen.len(), 5);
}
