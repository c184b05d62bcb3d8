//! The latest-row scan (`ScanRequest::latest`) against the full scan it stands in for: for any
//! history of writes, rewrites and seals and any time range, each series' latest row (latest
//! `latest_rows` rows) equals the last row(s) the full scan returns for it. Also the streaming
//! sink stopping a scan early.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{Cell, config, rows, write};
use mast_storage::{Durability, ScanRequest, Store, WriteBatch};
use proptest::prelude::*;

fn latest_by_full_scan(
    store: &Store,
    req: &ScanRequest,
) -> BTreeMap<String, BTreeMap<String, Cell>> {
    let mut full = req.clone();
    full.latest = false;
    let mut out = BTreeMap::new();
    for r in rows(&store.snapshot().scan(&full).unwrap()) {
        let Cell::S(dev) = r["device_id"].clone() else {
            panic!("device_id")
        };
        out.insert(dev, r); // rows of a series come in time order: the last one stays
    }
    out
}

fn latest_scan(store: &Store, req: &ScanRequest) -> BTreeMap<String, BTreeMap<String, Cell>> {
    let mut out = BTreeMap::new();
    for r in rows(&store.snapshot().scan(req).unwrap()) {
        let Cell::S(dev) = r["device_id"].clone() else {
            panic!("device_id")
        };
        assert!(out.insert(dev, r).is_none(), "one row per series");
    }
    out
}

/// (device, time, value, seal after) writes, `per_batch` to a batch; the whole-table request and
/// one limited to `range`.
fn load(
    store: &Store,
    writes: &[(u8, i64, i64, bool)],
    per_batch: usize,
    range: (i64, i64),
) -> [ScanRequest; 2] {
    for chunk in writes.chunks(per_batch) {
        let mut b = WriteBatch::new();
        for (dev, t, v, _) in chunk {
            let s = b.series("m", &[("device_id", &format!("d{dev}"))]);
            b.row(s, *t * 1_000).i64("v", *v);
        }
        write(store, b, chunk.last().is_some_and(|w| w.3));
    }
    let (a, b) = (
        range.0.min(range.1) * 1_000,
        range.0.max(range.1) * 1_000 + 1,
    );
    [
        ScanRequest::table("m"),
        ScanRequest::table("m").time_range(a, b),
    ]
}

/// Each series' last `n` rows, in time order.
type Tails = BTreeMap<String, Vec<BTreeMap<String, Cell>>>;

fn tails(store: &Store, req: &ScanRequest, n: usize) -> Tails {
    let mut out: Tails = BTreeMap::new();
    for r in rows(&store.snapshot().scan(req).unwrap()) {
        let Cell::S(dev) = r["device_id"].clone() else {
            panic!("device_id")
        };
        out.entry(dev).or_default().push(r);
    }
    for rows in out.values_mut() {
        let keep = rows.len().saturating_sub(n);
        rows.drain(..keep);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn latest_row_matches_the_full_scan(
        writes in prop::collection::vec((0u8..3, 0i64..400, -50i64..50, any::<bool>()), 1..120),
        range in (0i64..450, 0i64..450),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(config(dir.path())).unwrap();
        for req in load(&store, &writes, 9, range) {
            let mut latest = req.clone();
            latest.latest = true;
            prop_assert_eq!(latest_scan(&store, &latest), latest_by_full_scan(&store, &req));
        }
    }

    #[test]
    fn latest_n_rows_match_the_full_scans_last_n(
        writes in prop::collection::vec((0u8..3, 0i64..400, -50i64..50, any::<bool>()), 1..120),
        range in (0i64..450, 0i64..450),
        n in 1usize..12,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.block_rows = 16;
        let store = Store::open(cfg).unwrap();
        for req in load(&store, &writes, 5, range) {
            let mut latest = req.clone();
            latest.latest = true;
            latest.latest_rows = n;
            prop_assert_eq!(tails(&store, &latest, usize::MAX), tails(&store, &req, n));
        }
    }
}

#[test]
fn a_sink_that_says_stop_ends_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut b = WriteBatch::new();
    for d in 0..50 {
        let s = b.series("m", &[("device_id", &format!("d{d}"))]);
        for t in 0..100 {
            b.row(s, t).f64("v", t as f64);
        }
    }
    store
        .submit(b, Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
    let mut req = ScanRequest::table("m");
    req.batch_rows = 100;
    let mut seen = Vec::new();
    store
        .snapshot()
        .scan_each(&req, &mut |batch| {
            seen.push(batch.num_rows());
            seen.len() < 3
        })
        .unwrap();
    assert_eq!(seen, vec![100, 100, 100]);
}
