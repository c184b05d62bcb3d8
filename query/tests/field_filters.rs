//! Exact field conditions applied by the scan (late materialisation: `storage/src/scan/filter.rs`)
//! against DataFusion's own filter over the same rows in a plain session (a `MemTable` of
//! `SELECT *`, no pushdown): floats with NaN, -0 and +0, integers, booleans, string fields with
//! nulls and `IN` / `OR` / `IS NULL`, columns that are not projected, `LIMIT`, and the latest-row
//! shapes that must pick each series' latest row among the passing ones; over sealed blocks and
//! the head, pieces that overlap (rewritten timestamps) and pieces that do not, one shard and two.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{SEC, T0, batches, block_on, open_store, reference, write};
use datafusion::arrow::array::RecordBatch;
use mast_query::{Encoder, Format, QueryEngine, QueryLimits};
use mast_storage::{Store, WriteBatch};
use proptest::prelude::*;

/// One write: device, second after T0, and the fields `v`, `n`, `ok`, `s` (each may be missing).
#[derive(Debug, Clone)]
struct Row {
    device: u8,
    at: u16,
    v: Option<f64>,
    n: Option<i8>,
    ok: Option<bool>,
    s: Option<u8>,
}

const STRINGS: [&str; 3] = ["a", "b", "c"];
const FLOATS: [f64; 7] = [f64::NAN, -0.0, 0.0, 1.5, 2.0, -3.25, 7.0];

/// A store holding `rows` in table `t`: the first `sealed` written and sealed, the rest in the
/// head, in two writes.
fn store(rows: &[Row], sealed: usize, shards: usize) -> (tempfile::TempDir, Arc<Store>) {
    let (dir, store) = open_store(16, shards);
    let put = |rows: &[Row]| {
        let mut b = WriteBatch::new();
        for r in rows {
            let s = b.series("t", &[("device_id", &format!("d{}", r.device))]);
            let mut w = b.row(s, T0 + i64::from(r.at) * SEC);
            if let Some(v) = r.v {
                w.f64("v", v);
            }
            if let Some(n) = r.n {
                w.i64("n", i64::from(n));
            }
            if let Some(ok) = r.ok {
                w.bool("ok", ok);
            }
            if let Some(s) = r.s {
                w.str("s", STRINGS[s as usize % 3]);
            }
        }
        write(&store, b);
    };
    put(&rows[..sealed]);
    store.seal().unwrap();
    let rest = &rows[sealed..];
    put(&rest[..rest.len() / 2]);
    put(&rest[rest.len() / 2..]);
    (dir, store)
}

/// Rows as JSON text (NaN and signed zeros spelled out), sorted.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let Some(first) = batches.first() else {
        return Vec::new();
    };
    let (mut enc, mut out) = Encoder::new(Format::Csv, first.schema()).unwrap();
    for b in batches {
        out.extend(enc.batch(b).unwrap());
    }
    out.extend(enc.finish().unwrap());
    let text = String::from_utf8(out).unwrap();
    let mut lines: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    lines.sort();
    lines
}

const QUERIES: [&str; 20] = [
    "SELECT * FROM t WHERE v > 1.5",
    "SELECT * FROM t WHERE v = 0.0",
    "SELECT * FROM t WHERE v <> 0.0",
    "SELECT * FROM t WHERE v <= -0.0",
    "SELECT * FROM t WHERE v = 'NaN'::double",
    "SELECT * FROM t WHERE v >= 'NaN'::double",
    "SELECT time, device_id FROM t WHERE n >= 3",
    "SELECT device_id, v FROM t WHERE n <> 0 AND v < 2",
    "SELECT * FROM t WHERE ok = true",
    "SELECT * FROM t WHERE ok <> false AND s = 'a'",
    "SELECT time, v FROM t WHERE s IN ('a', 'b')",
    "SELECT time, n FROM t WHERE s IS NULL",
    "SELECT * FROM t WHERE s = 'c' OR s IS NULL",
    "SELECT device_id, count(*) AS c, sum(n) AS sn FROM t WHERE v > -1 GROUP BY device_id",
    "SELECT count(*) AS c FROM t WHERE n < 0",
    "SELECT count(*) AS c FROM (SELECT * FROM t WHERE v > 0 LIMIT 7)",
    "SELECT device_id, time, v FROM (SELECT *, row_number() OVER (PARTITION BY device_id \
     ORDER BY time DESC) AS r FROM t WHERE v > 0) WHERE r = 1",
    "SELECT device_id, last_value(n ORDER BY time) AS n, max(time) AS t FROM t \
     WHERE s = 'b' GROUP BY device_id",
    "SELECT time, device_id, n FROM t WHERE ok = false ORDER BY time DESC, device_id LIMIT 3",
    "SELECT * FROM t WHERE time >= '2026-01-01T00:01:00Z' AND n > -3 AND s <> 'a'",
];

/// A row holding every field, so every table has every column.
const FULL: Row = Row {
    device: 2,
    at: 0,
    v: Some(1.0),
    n: Some(1),
    ok: Some(true),
    s: Some(0),
};

async fn check(rows_in: &[Row], sealed: usize, shards: usize) -> Result<(), TestCaseError> {
    let (_dir, store) = store(rows_in, sealed, shards);
    let engine = QueryEngine::new(store, QueryLimits::default()).unwrap();
    let Some(reference) = reference(&engine, "t").await else {
        return Ok(()); // nothing written: no table
    };
    for sql in QUERIES {
        let got = rows(&batches(&engine, sql).await);
        let want = rows(&reference.sql(sql).await.unwrap().collect().await.unwrap());
        prop_assert_eq!(got, want, "{}", sql);
    }
    Ok(())
}

fn row() -> impl Strategy<Value = Row> {
    (
        0u8..3,
        0u16..200,
        proptest::option::weighted(
            0.85,
            prop_oneof![
                (0usize..FLOATS.len()).prop_map(|i| FLOATS[i]),
                (-40i16..40).prop_map(|x| f64::from(x) / 4.0)
            ],
        ),
        proptest::option::weighted(0.8, -6i8..6),
        proptest::option::weighted(0.7, any::<bool>()),
        proptest::option::weighted(0.75, 0u8..3),
    )
        .prop_map(|(device, at, v, n, ok, s)| Row {
            device,
            at,
            v,
            n,
            ok,
            s,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random times: pieces overlap and rows are rewritten field by field.
    #[test]
    fn exact_filters_keep_what_datafusion_keeps(
        rows in proptest::collection::vec(row(), 1..400),
        sealed in 0usize..400,
        shards in 1usize..3,
    ) {
        let rows: Vec<Row> = std::iter::once(FULL).chain(rows).collect();
        let sealed = sealed.min(rows.len());
        block_on(check(&rows, sealed, shards))?;
    }

    /// Times increasing per device, no rewrites: pieces are disjoint and decoded late.
    #[test]
    fn exact_filters_on_disjoint_pieces(
        rows in proptest::collection::vec(row(), 1..400),
        sealed in 0usize..400,
        shards in 1usize..3,
    ) {
        let mut next = [0u16; 3];
        let rows: Vec<Row> = std::iter::once(FULL)
            .chain(rows)
            .map(|mut r| {
                r.at = next[r.device as usize];
                next[r.device as usize] += 1;
                r
            })
            .collect();
        let sealed = sealed.min(rows.len());
        block_on(check(&rows, sealed, shards))?;
    }
}

/// Exact conditions leave no `FilterExec`; the scan shows them and, in `EXPLAIN ANALYZE`, what
/// it skipped: blocks whose filtered column no row passes are not decoded further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_filters_replace_the_filter_and_skip_blocks() {
    // v rises with time: only the last blocks hold v > 90
    let written: Vec<Row> = (0..640u16)
        .map(|i| Row {
            device: (i % 2) as u8,
            at: i / 2,
            v: Some(f64::from(i) / 6.0),
            n: Some((i % 7) as i8),
            ok: Some(i % 3 == 0),
            s: Some((i % 3) as u8),
        })
        .collect();
    let (_dir, store) = store(&written, 400, 1);
    let engine = QueryEngine::new(store, QueryLimits::default()).unwrap();
    let p = plan(
        &engine,
        "SELECT avg(n) FROM t WHERE ok = true AND s IN ('a', 'b')",
    )
    .await;
    assert!(!p.contains("FilterExec"), "{p}");
    assert!(p.contains("ok = Bool(true)"), "{p}");
    // casts and other types stay with DataFusion
    let p = plan(&engine, "SELECT avg(n) FROM t WHERE CAST(v AS BIGINT) > 3").await;
    assert!(p.contains("FilterExec"), "{p}");
    // statistics skip the segment and head blocks that end below 90
    let p = plan(&engine, "SELECT count(s) FROM t WHERE v > 90").await;
    assert!(
        metric(&p, "segments_pruned") == 1 && metric(&p, "blocks_pruned") >= 8,
        "{p}"
    );
    let got = rows(&batches(&engine, "SELECT count(s) AS c FROM t WHERE v > 90").await);
    assert_eq!(got, ["99"]);
    // no row equals 50.1, but the statistics of the block around it cannot tell: its `v` is
    // decoded, no row passes, and its `s` is never decoded
    let p = plan(&engine, "SELECT count(s) FROM t WHERE v = 50.1").await;
    assert!(metric(&p, "blocks_filtered") >= 1, "{p}");
    let got = rows(&batches(&engine, "SELECT count(s) AS c FROM t WHERE v = 50.1").await);
    assert_eq!(got, ["0"]);
}

async fn plan(engine: &QueryEngine, sql: &str) -> String {
    rows(&batches(engine, &format!("EXPLAIN ANALYZE {sql}")).await).join("\n")
}

/// The value of metric `name` in an `EXPLAIN ANALYZE` text (0 when absent).
fn metric(plan: &str, name: &str) -> u64 {
    plan.split(&format!("{name}="))
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
        })
        .unwrap_or(0)
}
