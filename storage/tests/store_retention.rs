//! Retention drops whole segment files once their newest point is past the table's TTL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use mast_storage::{Durability, ScanRequest, Store, WriteBatch};

const DAY: i64 = 86_400_000_000_000;

fn seg_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for shard in std::fs::read_dir(dir).unwrap() {
        let p = shard.unwrap().path().join("segments");
        if p.is_dir() {
            n += std::fs::read_dir(p)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "seg")
                })
                .count();
        }
    }
    n
}

#[test]
fn expired_partitions_are_deleted_as_files_and_vanish_from_scans() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.retention
        .tables
        .insert("short".into(), Duration::from_secs(2 * 86_400));
    cfg.retention_check_interval = Duration::from_secs(3600);
    let store = Store::open(cfg).unwrap();
    let now = 100 * DAY;
    for table in ["short", "forever"] {
        let mut b = WriteBatch::new();
        let s = b.series(table, &[("device_id", "d")]);
        // one point per day for 5 days: 5 partitions
        for day in 0..5 {
            b.row(s, now - day * DAY - 1).f64("v", day as f64);
        }
        store
            .submit(b, Durability::Durable)
            .unwrap()
            .wait()
            .unwrap();
    }
    store.seal().unwrap();
    assert_eq!(seg_files(dir.path()), 10);
    let dropped = store.enforce_retention(now).unwrap();
    // days 2, 3, 4 ago are past a 2-day TTL (day 2's point is 2 days + 1 ns old)
    assert_eq!(dropped, 3);
    assert_eq!(seg_files(dir.path()), 7);
    let snap = store.snapshot();
    let n = |t: &str| common::count(&snap.scan(&ScanRequest::table(t)).unwrap());
    assert_eq!(n("short"), 2);
    assert_eq!(n("forever"), 5);
    assert_eq!(store.stats().segments_dropped, 3);
}

#[test]
fn readers_holding_a_snapshot_keep_reading_dropped_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.retention.default = Some(Duration::from_secs(1));
    cfg.retention_check_interval = Duration::from_secs(3600);
    let store = Store::open(cfg).unwrap();
    let mut b = WriteBatch::new();
    let s = b.series("m", &[("device_id", "d")]);
    for i in 0..1000 {
        b.row(s, i).f64("v", i as f64);
    }
    store
        .submit(b, Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
    store.seal().unwrap();
    let old = store.snapshot();
    assert_eq!(store.enforce_retention(10 * DAY).unwrap(), 1);
    assert_eq!(seg_files(dir.path()), 0);
    let rows = common::count(&old.scan(&ScanRequest::table("m")).unwrap());
    assert_eq!(rows, 1000);
    let rows: usize = common::row_count(&store, "m");
    assert_eq!(rows, 0);
}
