//! A shard's scan split into parts (`ScanRequest::split`), as parallel readers use it: the parts
//! together hold every row of the whole scan exactly once, each part's rows stay in (series,
//! time) order, and a part holds about its share of the rows — over sealed and head pieces,
//! pieces that overlap (rewritten times) and pieces that do not, latest-row scans included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use arrow::array::AsArray;
use arrow::datatypes::TimestampNanosecondType;
use arrow::record_batch::RecordBatch;
use common::{rows, write};
use mast_storage::{ScanRequest, Store, StoreConfig, WriteBatch};
use proptest::prelude::*;

/// Writes (device, time, value, seal after) in batches of 9.
fn load(store: &Store, writes: &[(u8, u16, i16, bool)]) {
    for chunk in writes.chunks(9) {
        let mut b = WriteBatch::new();
        for &(dev, t, v, _) in chunk {
            let s = b.series("m", &[("device_id", &format!("d{dev}"))]);
            b.row(s, i64::from(t) * 1_000).i64("v", i64::from(v));
        }
        write(store, b, chunk.last().is_some_and(|w| w.3));
    }
}

/// (device_id, time) of each row, in scan order.
fn order(batches: &[RecordBatch]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for b in batches {
        let dev = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let dev = dev.as_string::<i32>();
        let time = b.column(1).as_primitive::<TimestampNanosecondType>();
        for r in 0..b.num_rows() {
            out.push((dev.value(r).to_string(), time.value(r)));
        }
    }
    out
}

fn check(store: &Store, latest: bool, parts: usize) -> Result<(), TestCaseError> {
    let mut req = ScanRequest::table("m").columns(&["device_id", "time", "v"]);
    req.latest = latest;
    req.batch_rows = 5;
    let snap = store.snapshot();
    let whole = snap.scan(&req).unwrap();
    let mut union = Vec::new();
    for shard in snap.shard_ids() {
        for k in 0..parts {
            let mut r = req.clone();
            r.shards = Some(vec![shard]);
            r.split = (k, parts);
            let got = snap.scan(&r).unwrap();
            let seq = order(&got);
            prop_assert!(
                seq.windows(2).all(|w| w[0] < w[1]),
                "part {}/{} of {:?} out of order: {:?}",
                k,
                parts,
                shard,
                seq
            );
            union.extend(got);
        }
    }
    prop_assert_eq!(rows(&union), rows(&whole));
    Ok(())
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.shards = 2;
    cfg.block_rows = 8;
    let store = Store::open(cfg).unwrap();
    (dir, store)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn parts_hold_every_row_once_in_order(
        writes in proptest::collection::vec(
            (0u8..4, 0u16..300, any::<i16>(), proptest::bool::weighted(0.05)),
            1..400,
        ),
        latest in any::<bool>(),
        parts in 1usize..5,
    ) {
        let (_dir, store) = store();
        load(&store, &writes);
        check(&store, latest, parts)?;
    }
}

/// One long series in order: each of three parts decodes about a third of it.
#[test]
fn one_series_splits_by_pieces() {
    let (_dir, store) = store();
    let writes: Vec<_> = (0..3000u16)
        .map(|t| (0u8, t, (t % 100) as i16, t % 1000 == 999))
        .collect();
    load(&store, &writes);
    let snap = store.snapshot();
    let shard = snap
        .shard_ids()
        .into_iter()
        .find(|s| {
            let mut r = ScanRequest::table("m");
            r.shards = Some(vec![*s]);
            snap.scan(&r)
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>()
                > 0
        })
        .unwrap();
    let mut sizes = Vec::new();
    for k in 0..3 {
        let mut r = ScanRequest::table("m").columns(&["device_id", "time", "v"]);
        r.shards = Some(vec![shard]);
        r.split = (k, 3);
        let (batches, m) = snap.scan_with_metrics(&r).unwrap();
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(
            u64::try_from(n).unwrap(),
            m.rows_decoded,
            "part {k} decoded only its rows"
        );
        sizes.push(n);
    }
    assert_eq!(sizes.iter().sum::<usize>(), 3000);
    assert!(sizes.iter().all(|n| (900..=1100).contains(n)), "{sizes:?}");
}
