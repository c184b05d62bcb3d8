//! The head's life: sealing by age, the WAL trimmed behind a seal, backpressure from a full queue,
//! and damaged segment files reported instead of trusted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mast_storage::wal::FaultHook;
use mast_storage::{Durability, ScanError, ScanRequest, Store, SubmitError, WriteBatch};

fn batch(dev: &str, from: i64, n: i64) -> WriteBatch {
    let mut b = WriteBatch::new();
    let s = b.series("m", &[("device_id", dev)]);
    for t in from..from + n {
        b.row(s, t).f64("v", t as f64 * 0.25);
    }
    b
}

fn files(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn an_old_head_is_sealed_by_age_and_the_wal_is_trimmed_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.shards = 1;
    cfg.max_head_age = Duration::from_millis(200);
    let store = Store::open(cfg).unwrap();
    store
        .submit(batch("d", 0, 500), Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
    let wal_before: u64 = files(dir.path(), "wal")
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.stats().seals == 0 {
        assert!(
            Instant::now() < deadline,
            "the head was never sealed by age"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(files(dir.path(), "seg").len(), 1);
    let wal_after: u64 = files(dir.path(), "wal")
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert!(
        wal_after < wal_before,
        "WAL not trimmed: {wal_before} -> {wal_after} bytes"
    );
    let rows: usize = common::row_count(&store, "m");
    assert_eq!(rows, 500);
}

/// Blocks every fsync until released, so the shard stops draining its queue.
#[derive(Debug, Default)]
struct Gate {
    closed: AtomicBool,
    lock: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        *self.lock.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

impl FaultHook for Gate {
    fn before_sync(&self) -> std::io::Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            let mut open = self.lock.lock().unwrap();
            while !*open {
                open = self.cv.wait(open).unwrap();
            }
        }
        Ok(())
    }
}

#[test]
fn a_full_queue_hands_the_batch_back_and_accepts_again_once_drained() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let mut cfg = common::config(dir.path());
    cfg.shards = 1;
    cfg.queue_capacity = 4;
    cfg.max_group_requests = 1;
    cfg.wal_fault = Some(Arc::clone(&gate) as Arc<dyn FaultHook>);
    let store = Store::open(cfg).unwrap();
    gate.closed.store(true, Ordering::SeqCst);
    let mut tickets = Vec::new();
    let mut returned = None;
    for i in 0..100 {
        match store.try_submit(batch("d", i * 10, 10), Durability::Durable) {
            Ok(t) => tickets.push(t),
            Err(SubmitError::Full { batch, .. }) => {
                returned = Some((i, batch));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let (i, back) = returned.expect("the queue never filled");
    // one request is held by the blocked worker, `queue_capacity` wait in the queue
    assert!(i <= 6, "queue of 4 accepted {i} batches");
    assert_eq!(
        (back.rows(), back.points()),
        (10, 10),
        "the batch comes back unchanged"
    );
    assert!(
        tickets.iter().all(|t| !t.is_resolved()),
        "nothing is acknowledged before its fsync"
    );
    gate.open();
    for t in tickets {
        t.wait().unwrap();
    }
    store
        .try_submit(back, Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
    let rows: usize = common::row_count(&store, "m");
    assert_eq!(rows, (i as usize + 1) * 10);
}

#[test]
fn a_damaged_segment_is_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.shards = 1;
    {
        let store = Store::open(cfg.clone()).unwrap();
        store
            .submit(batch("d", 0, 2000), Durability::Durable)
            .unwrap()
            .wait()
            .unwrap();
        store.seal().unwrap();
    }
    let seg = files(dir.path(), "seg").pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // a flipped bit in the data region (just after the 16-byte header): the chunk CRC catches it
    bytes[40] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    {
        let store = Store::open(cfg.clone()).unwrap();
        let err = store.snapshot().scan(&ScanRequest::table("m")).unwrap_err();
        assert!(matches!(err, ScanError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");
    }
    // a flipped bit in the footer: the file is set aside as *.seg.corrupt and the store opens
    bytes[40] ^= 0x10;
    let n = bytes.len();
    bytes[n - 30] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let store = Store::open(cfg).unwrap();
    assert_eq!(store.stats().quarantined_segments, 1);
    assert!(!seg.exists());
    assert!(seg.with_extension("seg.corrupt").exists());
    assert!(store.snapshot().segments().is_empty());
    store
        .submit(batch("d", 5000, 1), Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
}
