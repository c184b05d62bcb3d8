//! Partial aggregation over runs of equal keys (`query/src/functions/runs.rs`) against
//! DataFusion's own hash aggregation of the same rows in a plain session (a `MemTable` of
//! `SELECT *`, no Mast rule): tags and string fields as keys, string fields that change every
//! row (runs of one) and that change once (a renamed truck), time buckets, booleans, nulls in
//! keys and values, `FILTER`, `CASE` arguments, aggregates reduced per run (`avg`, `sum`,
//! `count`) and aggregates DataFusion accumulates per row (`min`, `max`, `stddev`), with
//! filters under the aggregate, over sealed blocks and the head, on one shard and on two.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{SEC, T0, batches, block_on, open_store, reference, write};
use datafusion::arrow::array::RecordBatch;
use mast_query::{Encoder, Format, QueryEngine, QueryLimits};
use mast_storage::{Store, WriteBatch};
use proptest::prelude::*;

/// One row: device, seconds after T0 (per device increasing), the string field `state`, `v`,
/// `n`, `ok` (each may be missing).
#[derive(Debug, Clone)]
struct Row {
    device: u8,
    state: Option<u8>,
    v: Option<i16>,
    n: Option<i16>,
    ok: Option<bool>,
}

const STATES: [&str; 3] = ["idle", "moving", "fault"];

/// A store holding `rows` in table `t` (the first `sealed` of them sealed, the rest in the
/// head): devices `d0`.., `name` = `truck_N` but `old_N` for device 1's first 40 rows, `fleet`
/// by device parity, one row per device every 7 s.
fn store(rows: &[Row], sealed: usize, shards: usize) -> (tempfile::TempDir, Arc<Store>) {
    let (dir, store) = open_store(32, shards);
    let mut seen = [0i64; 256];
    let mut put = |rows: &[Row]| {
        let mut b = WriteBatch::new();
        for r in rows {
            let d = r.device;
            let s = b.series("t", &[("device_id", &format!("d{d}"))]);
            let i = seen[d as usize];
            seen[d as usize] += 1;
            let name = if d == 1 && i < 40 {
                format!("old_{d}")
            } else {
                format!("truck_{d}")
            };
            let mut w = b.row(s, T0 + i * 7 * SEC);
            w.str("name", &name)
                .str("fleet", if d % 2 == 0 { "South" } else { "North" });
            if let Some(x) = r.state {
                w.str("state", STATES[x as usize % 3]);
            }
            if let Some(v) = r.v {
                w.f64("v", f64::from(v) / 4.0);
            }
            if let Some(n) = r.n {
                w.i64("n", i64::from(n));
            }
            if let Some(ok) = r.ok {
                w.bool("ok", ok);
            }
        }
        write(&store, b);
    };
    put(&rows[..sealed]);
    store.seal().unwrap();
    put(&rows[sealed..]);
    (dir, store)
}

/// Rows as JSON values, floats rounded to 9 significant digits (sums in another order), sorted.
fn json(batches: &[RecordBatch]) -> Vec<String> {
    let Some(first) = batches.first() else {
        return Vec::new();
    };
    let (mut enc, mut out) = Encoder::new(Format::Json, first.schema()).unwrap();
    for b in batches {
        out.extend(enc.batch(b).unwrap());
    }
    out.extend(enc.finish().unwrap());
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    fn round(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().unwrap();
                serde_json::json!(format!("{x:.9e}"))
            }
            serde_json::Value::Number(n) => {
                serde_json::json!(format!("{:.9e}", n.as_f64().unwrap()))
            }
            serde_json::Value::Object(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), round(v))).collect())
            }
            other => other.clone(),
        }
    }
    let mut rows: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| round(r).to_string())
        .collect();
    rows.sort();
    rows
}

const QUERIES: [&str; 8] = [
    "SELECT name, state, avg(v) AS a, sum(v) AS s, count(v) AS c, count(*) AS r, min(v) AS lo, \
     max(v) AS hi, sum(n) AS sn, avg(n) AS an FROM t GROUP BY name, state",
    "SELECT device_id, date_bin(INTERVAL '1 minute', time) AS m, avg(v) AS a, count(*) AS r \
     FROM t GROUP BY device_id, m",
    "SELECT fleet, name, date_trunc('hour', time) AS h, \
     avg(CASE WHEN v > 0 THEN 1.0 ELSE 0.0 END) AS up, sum(n) AS sn \
     FROM t WHERE state = 'moving' GROUP BY fleet, name, h",
    "SELECT ok, state, count(*) FILTER (WHERE v > 10) AS big, avg(v) AS a, stddev(v) AS sd \
     FROM t WHERE v > -50 GROUP BY ok, state",
    "SELECT name, avg(v) AS a FROM t \
     WHERE time >= '2026-01-01T00:02:00Z' AND time < '2026-01-01T00:20:00Z' \
     GROUP BY name HAVING count(*) > 1",
    "SELECT fleet, date_bin(INTERVAL '10 minutes', time) AS m, count(state) AS cs, \
     sum(v) AS s FROM t WHERE n IS NOT NULL GROUP BY fleet, m",
    "SELECT name, sum(v) AS s, count(DISTINCT state) AS ds FROM t GROUP BY name",
    "SELECT v > 0 AS up, name, count(*) AS r, avg(CAST(n AS DOUBLE)) AS an FROM t GROUP BY up, name",
];

async fn check(rows: &[Row], sealed: usize, shards: usize) -> Result<(), TestCaseError> {
    let (_dir, store) = store(rows, sealed, shards);
    let engine = QueryEngine::new(store, QueryLimits::default()).unwrap();
    let Some(reference) = reference(&engine, "t").await else {
        return Ok(()); // nothing written: no table
    };
    for sql in QUERIES {
        let got = json(&batches(&engine, sql).await);
        let want = json(&reference.sql(sql).await.unwrap().collect().await.unwrap());
        prop_assert_eq!(got, want, "{}", sql);
    }
    Ok(())
}

fn row() -> impl Strategy<Value = Row> {
    (
        0u8..4,
        proptest::option::weighted(0.9, 0u8..3),
        proptest::option::weighted(0.85, -400i16..400),
        proptest::option::weighted(0.8, -50i16..50),
        proptest::option::weighted(0.7, any::<bool>()),
    )
        .prop_map(|(device, state, v, n, ok)| Row {
            device,
            state,
            v,
            n,
            ok,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn runs_aggregate_as_datafusion_does(
        rows in proptest::collection::vec(row(), 1..600),
        sealed in 0usize..600,
        shards in 1usize..3,
    ) {
        // The queries name every column: the first row has them all, so that no column is
        // missing from the table when a few generated rows happen to leave one out.
        let mut rows = rows;
        let first = &mut rows[0];
        first.state.get_or_insert(0);
        first.v.get_or_insert(1);
        first.n.get_or_insert(1);
        first.ok.get_or_insert(true);
        let sealed = sealed.min(rows.len());
        block_on(check(&rows, sealed, shards))?;
    }
}

/// Long runs (a state held for 50 rows) with nulls, one shard and two: the plan runs on
/// `RunAggregateExec`, and the answers are DataFusion's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_runs_take_the_run_path() {
    let rows: Vec<Row> = (0..4000u32)
        .map(|i| Row {
            device: (i % 4) as u8,
            state: (i % 97 != 0).then_some(((i / 200) % 3) as u8),
            v: (i % 13 != 0).then_some(((i * 37) % 800) as i16 - 400),
            n: (i % 11 != 0).then_some(((i * 7) % 100) as i16 - 50),
            ok: Some((i / 400) % 2 == 0),
        })
        .collect();
    for shards in [1, 2] {
        check(&rows, 2500, shards).await.unwrap();
        let (_dir, store) = store(&rows, 2500, shards);
        let engine = QueryEngine::new(store, QueryLimits::default()).unwrap();
        for sql in &QUERIES[..6] {
            let plan = json(&batches(&engine, &format!("EXPLAIN {sql}")).await).join("\n");
            assert!(
                plan.contains("RunAggregateExec"),
                "{shards} shards: {sql}\n{plan}"
            );
        }
        // keys that change every row are not taken: grouping by a timestamp or a float
        for sql in [
            "SELECT time, count(*) AS r FROM t GROUP BY time",
            "SELECT v, count(*) AS r FROM t GROUP BY v",
        ] {
            let plan = json(&batches(&engine, &format!("EXPLAIN {sql}")).await).join("\n");
            assert!(!plan.contains("RunAggregateExec"), "{sql}\n{plan}");
        }
    }
}
