//! Concurrent writers and readers: a reader sees every acknowledged batch and never half a batch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow::array::AsArray;
use arrow::datatypes::{Int32Type, Int64Type};
use mast_storage::{Durability, ScanRequest, Store, WriteBatch};

const ROWS_PER_BATCH: i64 = 50;

#[test]
fn readers_never_see_half_a_batch_and_always_see_acknowledged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.block_rows = 128;
    cfg.max_head_bytes = 16 << 10; // seal often, so readers cross seals too
    let store = Arc::new(Store::open(cfg).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    // per writer: the highest batch id acknowledged
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());

    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let store = Arc::clone(&store);
            let acked = Arc::clone(&acked);
            std::thread::spawn(move || {
                for batch_id in 1..=150u64 {
                    let mut b = WriteBatch::new();
                    // two tables in one batch, one device: one shard, one atomic unit
                    let s = b.series("a", &[("device_id", &format!("w{w}"))]);
                    let s2 = b.series("b", &[("device_id", &format!("w{w}"))]);
                    for r in 0..ROWS_PER_BATCH {
                        let t = (batch_id as i64) * 1000 + r;
                        b.row(s, t).i64("batch", batch_id as i64);
                        b.row(s2, t).i64("batch", batch_id as i64);
                    }
                    let d = if batch_id % 2 == 0 {
                        Durability::Durable
                    } else {
                        Durability::Buffered
                    };
                    store.submit(b, d).unwrap().wait().unwrap();
                    acked[w as usize].store(batch_id, Ordering::SeqCst);
                }
            })
        })
        .collect();

    let readers: Vec<_> = (0..2)
        .map(|_| {
            let store = Arc::clone(&store);
            let acked = Arc::clone(&acked);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut scans = 0;
                while !stop.load(Ordering::SeqCst) || scans < 3 {
                    let floor: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
                    let snap = store.snapshot();
                    let mut per_table = Vec::new();
                    for table in ["a", "b"] {
                        let batches = match snap
                            .scan(&ScanRequest::table(table).columns(&["device_id", "batch"]))
                        {
                            Ok(b) => b,
                            // the first batch is still being resolved: names exist before data
                            Err(
                                mast_storage::ScanError::UnknownTable(_)
                                | mast_storage::ScanError::UnknownColumn { .. },
                            ) => Vec::new(),
                            Err(e) => panic!("{e}"),
                        };
                        let mut counts: HashMap<(String, i64), i64> = HashMap::new();
                        for b in &batches {
                            let dev = b.column(0).as_dictionary::<Int32Type>();
                            let vals = dev.values().as_string::<i32>();
                            let ids = b.column(1).as_primitive::<Int64Type>();
                            for r in 0..b.num_rows() {
                                let d = vals.value(dev.keys().value(r) as usize).to_string();
                                *counts.entry((d, ids.value(r))).or_default() += 1;
                            }
                        }
                        for ((d, id), n) in &counts {
                            assert_eq!(
                                *n, ROWS_PER_BATCH,
                                "torn read: {d} batch {id} has {n} rows in {table}"
                            );
                        }
                        for (w, f) in floor.iter().enumerate() {
                            for id in 1..=*f {
                                assert!(
                                    counts.contains_key(&(format!("w{w}"), id as i64)),
                                    "acknowledged batch {id} of w{w} missing from {table}"
                                );
                            }
                        }
                        per_table.push(counts.len());
                    }
                    // both tables of one batch are one unit
                    assert_eq!(
                        per_table[0], per_table[1],
                        "a batch was seen in one table only"
                    );
                    scans += 1;
                }
                scans
            })
        })
        .collect();

    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        assert!(r.join().unwrap() >= 3);
    }
    let n: usize = common::row_count(&store, "a");
    assert_eq!(n, 4 * 150 * ROWS_PER_BATCH as usize);
    assert!(store.stats().seals > 0, "the test meant to cross seals");
}
