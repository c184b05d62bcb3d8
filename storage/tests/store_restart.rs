//! Restarting a store: sealed segments plus WAL replay give back exactly the acknowledged data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{Cell, config, f, table_rows};
use mast_storage::{Durability, FsyncPolicy, Store, WriteBatch};

fn write_device(store: &Store, dev: usize, from: i64, n: i64) {
    let mut b = WriteBatch::new();
    let s = b.series(
        "readings",
        &[("device_id", &format!("truck_{dev}")), ("fleet", "South")],
    );
    for t in from..from + n {
        b.row(s, t * 10_000_000_000)
            .f64("lat", 52.0 + t as f64 / 1000.0)
            .i64("seq", t);
    }
    store
        .submit(b, Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
}

fn expected(devs: usize, n: i64) -> Vec<BTreeMap<String, Cell>> {
    let mut out = Vec::new();
    for d in 0..devs {
        for t in 0..n {
            let mut r = BTreeMap::new();
            r.insert("time".into(), Cell::T(t * 10_000_000_000));
            r.insert("device_id".into(), Cell::S(format!("truck_{d}")));
            r.insert("fleet".into(), Cell::S("South".into()));
            r.insert("lat".into(), f(52.0 + t as f64 / 1000.0));
            r.insert("seq".into(), Cell::I(t));
            out.push(r);
        }
    }
    out.sort_by(|a, b| {
        (
            format!("{:?}", a.get("device_id")),
            format!("{:?}", a["time"]),
        )
            .cmp(&(
                format!("{:?}", b.get("device_id")),
                format!("{:?}", b["time"]),
            ))
    });
    out
}

fn sorted(mut v: Vec<BTreeMap<String, Cell>>) -> Vec<BTreeMap<String, Cell>> {
    v.sort_by(|a, b| {
        (
            format!("{:?}", a.get("device_id")),
            format!("{:?}", a["time"]),
        )
            .cmp(&(
                format!("{:?}", b.get("device_id")),
                format!("{:?}", b["time"]),
            ))
    });
    v
}

#[test]
fn restart_with_segments_and_wal_returns_exactly_the_acknowledged_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.block_rows = 64;
    {
        let store = Store::open(cfg.clone()).unwrap();
        for d in 0..6 {
            write_device(&store, d, 0, 300);
        }
        store.seal().unwrap();
        for d in 0..6 {
            write_device(&store, d, 300, 200);
        }
        // not sealed: lives in the WAL only
        let before = sorted(table_rows(&store, "readings"));
        assert_eq!(before, expected(6, 500));
        // no clean shutdown: leak the store as a crash would (threads die with the process; here
        // we just drop without sealing, which is what a restart after kill -9 sees on disk)
    }
    let store = Store::open(cfg.clone()).unwrap();
    assert_eq!(sorted(table_rows(&store, "readings")), expected(6, 500));
    assert!(!store.snapshot().segments().is_empty());
    // and again, after sealing what was replayed
    store.seal().unwrap();
    drop(store);
    let store = Store::open(cfg).unwrap();
    assert_eq!(sorted(table_rows(&store, "readings")), expected(6, 500));
    // replaying twice must not duplicate anything
    let segs = store.snapshot().segments();
    let rows: u64 = segs.iter().map(|s| s.rows).sum();
    assert_eq!(rows, 6 * 500);
}

#[test]
fn buffered_writes_survive_a_process_restart_with_fsync_never() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.fsync = FsyncPolicy::Never;
    {
        let store = Store::open(cfg.clone()).unwrap();
        let mut b = WriteBatch::new();
        let s = b.series("m", &[("device_id", "x")]);
        b.row(s, 1).str("state", "on");
        store
            .submit(b, Durability::Buffered)
            .unwrap()
            .wait()
            .unwrap();
    }
    let store = Store::open(cfg).unwrap();
    let got = table_rows(&store, "m");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["state"], Cell::S("on".into()));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _a = Store::open(config(dir.path())).unwrap();
    let err = Store::open(config(dir.path())).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn the_shard_count_of_a_data_directory_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(config(dir.path())).unwrap();
        write_device(&store, 1, 0, 10);
    }
    let mut cfg = config(dir.path());
    cfg.shards = 5;
    let store = Store::open(cfg).unwrap();
    assert_eq!(store.shards(), 2);
    assert_eq!(table_rows(&store, "readings").len(), 10);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_seal_interrupted_between_segments_loses_nothing() {
    // Simulate a crash in the middle of a seal: one of the seal's segments reached its final name,
    // the other did not, and the WAL was not trimmed yet.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.shards = 1;
    let wal = dir.path().join("shard-0/wal");
    let saved = tempfile::tempdir().unwrap();
    {
        let store = Store::open(cfg.clone()).unwrap();
        for table in ["alpha", "beta"] {
            let mut b = WriteBatch::new();
            let s = b.series(table, &[("device_id", "d")]);
            for t in 0..100 {
                b.row(s, t).i64("v", t);
            }
            store
                .submit(b, Durability::Durable)
                .unwrap()
                .wait()
                .unwrap();
        }
        copy_dir(&wal, saved.path());
        store.seal().unwrap();
    }
    let segs = dir.path().join("shard-0/segments");
    let mut files: Vec<_> = std::fs::read_dir(&segs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2);
    std::fs::remove_file(&files[1]).unwrap();
    for e in std::fs::read_dir(&wal).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    copy_dir(saved.path(), &wal);

    let store = Store::open(cfg).unwrap();
    assert_eq!(table_rows(&store, "alpha").len(), 100);
    assert_eq!(table_rows(&store, "beta").len(), 100);
    // new writes after the recovery keep going and survive another restart
    let mut b = WriteBatch::new();
    let s = b.series("beta", &[("device_id", "d")]);
    b.row(s, 1000).i64("v", 1000);
    store
        .submit(b, Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
    let cfg2 = store.config().clone();
    drop(store);
    let store = Store::open(cfg2).unwrap();
    assert_eq!(table_rows(&store, "beta").len(), 101);
    assert_eq!(table_rows(&store, "alpha").len(), 100);
}
