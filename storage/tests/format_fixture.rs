//! Files written by format version 1 (segments and WAL, committed under `tests/fixtures/v1/`) keep
//! opening and give back exactly what was written. Regenerate only when adding a new format
//! version, never to make this test pass: `cargo test -p mast-storage --test format_fixture --
//! --ignored regenerate`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Cell, f, table_rows};
use mast_storage::{Durability, FsyncPolicy, Store, StoreConfig, WriteBatch};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn cfg(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.shards = 1;
    c.fsync = FsyncPolicy::Always;
    c
}

fn write(store: &Store, from: i64, to: i64) {
    let mut b = WriteBatch::new();
    let s = b.series("weather", &[("device_id", "station-7"), ("site", "dock")]);
    for t in from..to {
        let mut w = b.row(s, 1_700_000_000_000_000_000 + t * 60_000_000_000);
        w.f64("temp", 20.0 + t as f64 / 10.0)
            .i64("count", t * 3)
            .bool("door", t % 2 == 0);
        if t % 5 == 0 {
            w.str("note", "service");
        }
    }
    store
        .submit(b, Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
}

#[test]
#[ignore = "writes the fixture; run by hand for a new format version only"]
fn regenerate() {
    let dir = fixture();
    let _ = std::fs::remove_dir_all(&dir);
    {
        let store = Store::open(cfg(&dir)).unwrap();
        write(&store, 0, 40);
        store.seal().unwrap();
        write(&store, 40, 50); // stays in the WAL
    }
    let _ = std::fs::remove_file(dir.join("LOCK"));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn version_1_segments_and_wal_open_and_read_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&fixture(), tmp.path());
    let store = Store::open(cfg(tmp.path())).unwrap();
    let segs = store.snapshot().segments();
    assert_eq!(segs.len(), 1, "the fixture holds one sealed segment");
    assert_eq!(segs[0].rows, 40);
    let rows = table_rows(&store, "weather");
    assert_eq!(rows.len(), 50);
    for (t, r) in rows.iter().enumerate() {
        let t = t as i64;
        assert_eq!(
            r["time"],
            Cell::T(1_700_000_000_000_000_000 + t * 60_000_000_000)
        );
        assert_eq!(r["device_id"], Cell::S("station-7".into()));
        assert_eq!(r["site"], Cell::S("dock".into()));
        assert_eq!(r["temp"], f(20.0 + t as f64 / 10.0));
        assert_eq!(r["count"], Cell::I(t * 3));
        assert_eq!(r["door"], Cell::B(t % 2 == 0));
        let note = if t % 5 == 0 {
            Cell::S("service".into())
        } else {
            Cell::Null
        };
        assert_eq!(r["note"], note);
    }
}
