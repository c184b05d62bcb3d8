//! After a failed WAL write or fsync the shard refuses writes (poisoned) instead of acknowledging
//! what it cannot keep; what was acknowledged before survives a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mast_storage::wal::FaultHook;
use mast_storage::{Durability, Store, WriteBatch, WriteError};

#[derive(Debug, Default)]
struct FailSync(AtomicBool);

impl FaultHook for FailSync {
    fn before_sync(&self) -> std::io::Result<()> {
        if self.0.load(Ordering::SeqCst) {
            Err(std::io::Error::other("injected fsync failure"))
        } else {
            Ok(())
        }
    }
}

fn batch(dev: &str, t: i64) -> WriteBatch {
    let mut b = WriteBatch::new();
    let s = b.series("m", &[("device_id", dev)]);
    b.row(s, t).f64("v", t as f64);
    b
}

#[test]
fn a_failed_fsync_poisons_the_shard_and_nothing_unsynced_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(FailSync::default());
    let mut cfg = common::config(dir.path());
    cfg.shards = 1;
    cfg.wal_fault = Some(Arc::clone(&hook) as Arc<dyn FaultHook>);
    {
        let store = Store::open(cfg.clone()).unwrap();
        store
            .submit(batch("d", 1), Durability::Durable)
            .unwrap()
            .wait()
            .unwrap();
        hook.0.store(true, Ordering::SeqCst);
        let err = store
            .submit(batch("d", 2), Durability::Durable)
            .unwrap()
            .wait()
            .unwrap_err();
        assert!(matches!(err, WriteError::Poisoned { .. }), "{err}");
        assert!(err.to_string().contains("injected fsync failure"), "{err}");
        // even after the disk "recovers", the shard stays poisoned
        hook.0.store(false, Ordering::SeqCst);
        let err = store
            .submit(batch("d", 3), Durability::Buffered)
            .unwrap()
            .wait()
            .unwrap_err();
        assert!(matches!(err, WriteError::Poisoned { .. }));
        assert_eq!(store.stats().poisoned_shards, 1);
    }
    cfg.wal_fault = None;
    let store = Store::open(cfg).unwrap();
    let rows = common::table_rows(&store, "m");
    // point 1 was acknowledged and must be there; 3 was never written
    assert!(rows.iter().any(|r| r["time"] == common::Cell::T(1)));
    assert!(!rows.iter().any(|r| r["time"] == common::Cell::T(3)));
    // the store accepts writes again after the restart
    store
        .submit(batch("d", 4), Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
}
