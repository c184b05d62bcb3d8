//! Sealing writes each row once: a point written twice (a QoS 1 retransmit, a replayed batch)
//! or rows arriving out of order leave overlapping head blocks, which the seal merges, so the
//! segments' row counts (`system.segments`) equal the rows a scan returns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{config, rows};
use mast_storage::{Durability, ScanRequest, Store, WriteBatch};

#[test]
fn rewritten_and_late_rows_are_stored_once_after_a_seal() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.block_rows = 64;
    let store = Store::open(cfg).unwrap();
    let write = |times: &mut dyn Iterator<Item = i64>, v: i64| {
        let mut b = WriteBatch::new();
        let s = b.series("m", &[("device_id", "d1")]);
        for t in times {
            b.row(s, t).i64("v", v).str("state", "ok");
        }
        store
            .submit(b, Durability::Durable)
            .unwrap()
            .wait()
            .unwrap();
    };
    write(&mut (0..500), 1);
    // the same points again (a retransmit), then late rows in between
    write(&mut (0..500), 2);
    write(&mut (0..500).map(|t| t * 2 + 1000), 3);
    write(&mut (0..500).map(|t| t * 2 + 1001), 4);
    let before = rows(&store.snapshot().scan(&ScanRequest::table("m")).unwrap());
    store.seal().unwrap();
    let snap = store.snapshot();
    let after = rows(&snap.scan(&ScanRequest::table("m")).unwrap());
    assert_eq!(after, before);
    assert_eq!(after.len(), 1500);
    let stored: u64 = snap.segments().iter().map(|s| s.rows).sum();
    assert_eq!(stored, 1500, "each row once in the segments");
}
