//! Writing and reading back through the public API: types, timestamps, type conflicts, limits,
//! duplicates and out-of-order points, projections, filters and pruning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Cell, config, count, f, rows, table_rows};
use mast_storage::{
    Durability, FieldRange, Limits, PointError, ScanError, ScanRequest, StatValue, Store,
    WriteBatch,
};

fn one(store: &Store, b: WriteBatch) -> mast_storage::WriteReceipt {
    store
        .submit(b, Durability::Durable)
        .unwrap()
        .wait()
        .unwrap()
}

#[test]
fn every_field_type_round_trips_with_tags_and_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut b = WriteBatch::new();
    let s = b.series("telemetry", &[("device_id", "d1"), ("site", "north")]);
    b.row(s, 1_000)
        .f64("temp", 21.5)
        .i64("count", -3)
        .bool("ok", true)
        .str("state", "idle");
    b.row(s, 2_000).f64("temp", f64::NAN).str("state", "moving");
    b.row(s, 3_000).f64("temp", -0.0).i64("count", i64::MAX);
    let r = one(&store, b);
    assert_eq!((r.rows, r.points, r.rejected.len()), (3, 8, 0));

    let got = table_rows(&store, "telemetry");
    assert_eq!(got.len(), 3);
    assert_eq!(got[0]["time"], Cell::T(1_000));
    assert_eq!(got[0]["device_id"], Cell::S("d1".into()));
    assert_eq!(got[0]["site"], Cell::S("north".into()));
    assert_eq!(got[0]["temp"], f(21.5));
    assert_eq!(got[0]["count"], Cell::I(-3));
    assert_eq!(got[0]["ok"], Cell::B(true));
    assert_eq!(got[0]["state"], Cell::S("idle".into()));
    assert_eq!(got[1]["temp"], f(f64::NAN));
    assert_eq!(got[1]["count"], Cell::Null);
    assert_eq!(got[1]["ok"], Cell::Null);
    assert_eq!(got[2]["temp"], f(-0.0));
    assert_eq!(got[2]["count"], Cell::I(i64::MAX));
    assert_eq!(got[2]["state"], Cell::Null);

    // the schema follows the contract: time, device_id, other tags, fields
    let schema = store.snapshot().schema("telemetry").unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["time", "device_id", "site", "temp", "count", "ok", "state"]
    );
}

#[test]
fn a_type_conflict_rejects_that_point_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut b = WriteBatch::new();
    let s = b.series("m", &[("device_id", "d1")]);
    b.row(s, 1).f64("temp", 1.0);
    one(&store, b);

    let mut b = WriteBatch::new();
    let s = b.series("m", &[("device_id", "d1")]);
    b.row(s, 2).str("temp", "hot").f64("hum", 40.0);
    b.row(s, 3).f64("temp", 3.0);
    let r = one(&store, b);
    assert_eq!((r.rows, r.points), (2, 2));
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].row, 0);
    assert_eq!(r.rejected[0].field.as_deref(), Some("temp"));
    assert!(matches!(
        &r.rejected[0].error,
        PointError::TypeConflict { column, .. } if column == "temp"
    ));
    let got = table_rows(&store, "m");
    assert_eq!(got.len(), 3);
    assert_eq!(got[1]["temp"], Cell::Null);
    assert_eq!(got[1]["hum"], f(40.0));
    assert_eq!(got[2]["temp"], f(3.0));
}

#[test]
fn duplicates_resolve_last_write_wins_field_by_field_in_head_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let write = |t: i64, a: Option<f64>, b: Option<f64>| {
        let mut batch = WriteBatch::new();
        let s = batch.series("m", &[("device_id", "d")]);
        let mut w = batch.row(s, t);
        if let Some(a) = a {
            w.f64("a", a);
        }
        if let Some(b) = b {
            w.f64("b", b);
        }
        one(&store, batch);
    };
    write(10, Some(1.0), Some(1.0));
    write(20, Some(2.0), None);
    store.seal().unwrap();
    // overwrite t=10 field a in the head, and t=20 in a second segment
    write(10, Some(100.0), None);
    write(5, Some(0.5), None); // late point, before everything
    store.seal().unwrap();
    write(20, None, Some(22.0));
    write(20, Some(200.0), None);
    let got = table_rows(&store, "m");
    let flat: Vec<(Cell, Cell, Cell)> = got
        .iter()
        .map(|r| (r["time"].clone(), r["a"].clone(), r["b"].clone()))
        .collect();
    assert_eq!(
        flat,
        vec![
            (Cell::T(5), f(0.5), Cell::Null),
            (Cell::T(10), f(100.0), f(1.0)),
            (Cell::T(20), f(200.0), f(22.0)),
        ]
    );
}

#[test]
fn out_of_order_points_come_back_sorted_per_series() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.block_rows = 16;
    let store = Store::open(cfg).unwrap();
    let mut b = WriteBatch::new();
    let s = b.series("m", &[("device_id", "d")]);
    let mut times: Vec<i64> = (0..200).map(|i| (i * 7919) % 200).collect();
    times.dedup();
    for t in &times {
        b.row(s, *t).i64("v", *t * 2);
    }
    one(&store, b);
    let got = table_rows(&store, "m");
    assert_eq!(got.len(), 200);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r["time"], Cell::T(i as i64));
        assert_eq!(r["v"], Cell::I(i as i64 * 2));
    }
}

#[test]
fn projection_time_range_tag_filter_and_limit_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.block_rows = 100;
    let store = Store::open(cfg).unwrap();
    for d in 0..4 {
        let mut b = WriteBatch::new();
        let s = b.series(
            "m",
            &[
                ("device_id", &format!("d{d}")),
                ("fleet", if d % 2 == 0 { "east" } else { "west" }),
            ],
        );
        for t in 0..1000 {
            b.row(s, t * 10).f64("v", (d * 1000 + t) as f64).i64("n", t);
        }
        one(&store, b);
    }
    store.seal().unwrap();
    let snap = store.snapshot();
    let req = ScanRequest::table("m")
        .columns(&["device_id", "v"])
        .time_range(1000, 2000)
        .tag("fleet", "west");
    let (batches, m) = snap.scan_with_metrics(&req).unwrap();
    let got = rows(&batches);
    assert_eq!(got.len(), 2 * 100);
    assert!(got.iter().all(|r| r.len() == 2));
    assert_eq!(got[0]["device_id"], Cell::S("d1".into()));
    assert_eq!(got[0]["v"], f(1100.0));
    // blocks of 100 rows: a 100-row range touches at most 2 blocks per matching series
    assert!(m.blocks_decoded <= 4, "{m:?}");
    assert!(m.blocks_pruned >= 16, "{m:?}");
    assert_eq!(m.series, 2);

    let limited = snap.scan(&ScanRequest::table("m").limit(7)).unwrap();
    assert_eq!(count(&limited), 7);

    // statistics prune blocks whose values cannot match
    let mut req = ScanRequest::table("m").columns(&["time", "v"]);
    req.field_ranges.push(FieldRange {
        column: "v".into(),
        min: Some(StatValue::F64(3950.0)),
        max: None,
    });
    let (batches, m) = snap.scan_with_metrics(&req).unwrap();
    assert_eq!(m.blocks_decoded, 1, "{m:?}");
    let got = rows(&batches);
    assert!(got.iter().any(|r| r["v"] == f(3999.0)));

    // an empty projection still counts rows
    let n = snap
        .scan(&ScanRequest::table("m").columns::<&str>(&[]))
        .unwrap();
    assert_eq!(count(&n), 4000);

    assert!(matches!(
        snap.scan(&ScanRequest::table("nope")),
        Err(ScanError::UnknownTable(t)) if t == "nope"
    ));
    assert!(matches!(
        snap.scan(&ScanRequest::table("m").columns(&["zzz"])),
        Err(ScanError::UnknownColumn { .. })
    ));
}

#[test]
fn series_and_column_limits_reject_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits = Limits {
        max_series_per_table: 3,
        max_columns_per_table: 4,
        ..Limits::default()
    };
    let store = Store::open(cfg).unwrap();
    let mut b = WriteBatch::new();
    for d in 0..5 {
        let s = b.series("m", &[("device_id", &format!("d{d}"))]);
        b.row(s, 1).f64("v", 1.0);
    }
    let r = one(&store, b);
    assert_eq!(r.rows, 3);
    assert_eq!(r.rejected.len(), 2);
    assert!(r.rejected.iter().all(
        |x| x.field.is_none() && matches!(x.error, PointError::TooManySeries { limit: 3, .. })
    ));

    let mut b = WriteBatch::new();
    let s = b.series("m", &[("device_id", "d0")]);
    b.row(s, 2).f64("a", 1.0).f64("b", 2.0).f64("c", 3.0);
    let r = one(&store, b);
    // device_id + v + a + b = 4 columns; c is one too many
    assert_eq!(r.points, 2);
    assert!(matches!(
        r.rejected[0].error,
        PointError::TooManyColumns { limit: 4, .. }
    ));
    assert!(
        r.rejected[0]
            .error
            .to_string()
            .contains("limit of 4 columns")
    );
}

/// Counts notifications; checks the ticket is resolved by the time it is told.
#[derive(Debug, Default)]
struct Told(std::sync::atomic::AtomicUsize);

impl mast_storage::Notify for Told {
    fn notify(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_notified_ticket_is_resolved_when_told_once_per_shard_part() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.shards = 4;
    let store = Store::open(cfg).unwrap();
    let told = std::sync::Arc::new(Told::default());
    // One device: one shard, one part, one notification.
    let mut b = WriteBatch::new();
    let s = b.series("t", &[("device_id", "d1")]);
    b.row(s, 1).f64("v", 1.0);
    let t = store
        .try_submit_notify(b, Durability::Durable, std::sync::Arc::<Told>::clone(&told))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while told.0.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "never told");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(t.is_resolved());
    assert_eq!(t.wait().unwrap().points, 1);
    assert_eq!(told.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Devices on several shards: one notification per part.
    let mut b = WriteBatch::new();
    for d in 0..32 {
        let s = b.series("t", &[("device_id", &format!("d{d}"))]);
        b.row(s, 2).f64("v", 2.0);
    }
    let parts: std::collections::HashSet<_> = (0..32)
        .map(|d| store.shard_of_device(&format!("d{d}")))
        .collect();
    let t = store
        .try_submit_notify(
            b,
            Durability::Buffered,
            std::sync::Arc::<Told>::clone(&told),
        )
        .unwrap();
    assert_eq!(t.wait().unwrap().points, 32);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while told.0.load(std::sync::atomic::Ordering::SeqCst) < 1 + parts.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "not told for every part"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(
        told.0.load(std::sync::atomic::Ordering::SeqCst),
        1 + parts.len()
    );
}

#[test]
fn a_series_counts_once_against_the_limit_across_seals_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let mut cfg = config(dir.path());
        cfg.limits = Limits {
            max_series_per_table: 3,
            ..Limits::default()
        };
        Store::open(cfg).unwrap()
    };
    let write = |store: &Store, t: i64| {
        let mut b = WriteBatch::new();
        for d in 0..3 {
            let s = b.series("m", &[("device_id", &format!("d{d}"))]);
            b.row(s, t).f64("v", 1.0);
        }
        one(store, b)
    };
    let store = open();
    for round in 0..3 {
        // the same three series, taken up again by a fresh head after each seal
        let r = write(&store, round);
        assert_eq!((r.rows, r.rejected.len()), (3, 0), "round {round}");
        store.seal().unwrap();
    }
    let (table, _) = store.catalog().lookup("m").unwrap();
    assert_eq!(store.catalog().series_count(table), 3);
    store.close();

    let store = open();
    let (table, _) = store.catalog().lookup("m").unwrap();
    assert_eq!(store.catalog().series_count(table), 3, "after restart");
    let r = write(&store, 10);
    assert_eq!((r.rows, r.rejected.len()), (3, 0));
    let mut b = WriteBatch::new();
    let s = b.series("m", &[("device_id", "d3")]);
    b.row(s, 11).f64("v", 1.0);
    let r = one(&store, b);
    assert!(matches!(
        r.rejected[0].error,
        PointError::TooManySeries { limit: 3, .. }
    ));
}
