//! "The latest row per device" in plain SQL — ranking windows filtered to 1, `DISTINCT ON`,
//! `ORDER BY time DESC LIMIT 1`, `last_value` grouped by a string — read from each series' newest
//! rows, with the same answers as the same queries written so that no rewrite applies; and
//! filters on string fields pushed down to block dictionaries.
//!
//! The table is JSON-shaped: one tag (`device_id`), everything else fields, `name` and `fleet`
//! strings. Truck `t4` is renamed half-way (its `name` varies), so the latest row of `old-4` is
//! not that series' latest row: the scan must hand that series over whole.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use futures::StreamExt;
use mast_query::{Encoder, Format, QueryEngine, QueryLimits};
use mast_storage::{Durability, Store, StoreConfig, WriteBatch};

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const STEP: i64 = 10_000_000_000;

fn store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.block_rows = 32;
    let store = Arc::new(Store::open(cfg).unwrap());
    let write = |from: i64, to: i64| {
        let mut b = WriteBatch::new();
        for d in 0..6i64 {
            let s = b.series("trucks", &[("device_id", &format!("t{d}"))]);
            for i in from..to {
                let name = if d == 4 && i < 150 {
                    "old-4".to_string()
                } else {
                    format!("truck_{d}")
                };
                let fleet = if d % 2 == 0 { "South" } else { "North" };
                let state = ["idle", "moving", "fault"][((i + d) % 3) as usize];
                b.row(s, T0 + i * STEP)
                    .str("name", &name)
                    .str("fleet", fleet)
                    .str("state", state)
                    .f64("velocity", ((i * 7 + d) % 50) as f64)
                    .f64("latitude", 52.0 + (i + d) as f64 / 1000.0);
            }
        }
        store
            .submit(b, Durability::Durable)
            .unwrap()
            .wait()
            .unwrap();
    };
    write(0, 120);
    store.seal().unwrap();
    write(120, 200); // the rest stays in the head
    (dir, store)
}

fn engine() -> (tempfile::TempDir, QueryEngine) {
    let (dir, store) = store();
    (
        dir,
        QueryEngine::new(store, QueryLimits::default()).unwrap(),
    )
}

async fn rows(engine: &QueryEngine, sql: &str) -> Vec<serde_json::Value> {
    let mut stream = engine
        .run(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let (mut enc, mut out) = Encoder::new(Format::Json, stream.schema()).unwrap();
    while let Some(b) = stream.next().await {
        out.extend(enc.batch(&b.unwrap()).unwrap());
    }
    out.extend(enc.finish().unwrap());
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let mut rows = v.as_array().unwrap().clone();
    rows.sort_by_key(|r| r.to_string());
    rows
}

async fn plan(engine: &QueryEngine, sql: &str) -> String {
    rows(engine, &format!("EXPLAIN {sql}"))
        .await
        .iter()
        .map(|r| r["plan"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `fast` reads latest rows, `reference` does not, and both give the same rows.
async fn same_answer(engine: &QueryEngine, fast: &str, reference: &str) -> Vec<serde_json::Value> {
    let p = plan(engine, fast).await;
    assert!(p.contains("latest=true"), "{fast}\n{p}");
    let p = plan(engine, reference).await;
    assert!(!p.contains("latest=true"), "{reference}\n{p}");
    let got = rows(engine, fast).await;
    assert_eq!(got, rows(engine, reference).await, "{fast}");
    assert!(!got.is_empty());
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranking_windows_filtered_to_one() {
    let (_d, e) = engine();
    for rank in ["row_number()", "rank()", "dense_rank()"] {
        let q = |cond: &str| {
            format!(
                "SELECT name, latitude, velocity FROM (SELECT name, latitude, velocity, \
                 {rank} OVER (PARTITION BY name ORDER BY time DESC) AS rn FROM trucks \
                 WHERE fleet = 'South') AS r WHERE {cond}"
            )
        };
        let got = same_answer(&e, &q("rn = 1"), &q("rn < 1.5")).await;
        // t0, t2 and t4's two names
        assert_eq!(got.len(), 4, "{got:?}");
        let old = got.iter().find(|r| r["name"] == "old-4").unwrap();
        assert_eq!(old["latitude"].as_f64(), Some(52.0 + 153.0 / 1000.0));
        same_answer(
            &e,
            &q("1 >= rn AND velocity >= 0"),
            &q("rn < 1.5 AND velocity >= 0"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_on_last_value_and_limit_one() {
    let (_d, e) = engine();
    same_answer(
        &e,
        "SELECT DISTINCT ON (name) name, latitude FROM trucks ORDER BY name, time DESC",
        "SELECT DISTINCT ON (name) name, latitude FROM trucks \
         ORDER BY name, time + INTERVAL '0 seconds' DESC",
    )
    .await;
    same_answer(
        &e,
        "SELECT name, last_value(latitude ORDER BY time) AS lat, max(time) AS t \
         FROM trucks GROUP BY name",
        "SELECT name, last_value(latitude ORDER BY time) FILTER (WHERE velocity >= 0) AS lat, \
         max(time) AS t FROM trucks GROUP BY name",
    )
    .await;
    let got = same_answer(
        &e,
        "SELECT name, latitude, time FROM trucks WHERE name = 'truck_3' \
         ORDER BY time DESC LIMIT 1",
        "SELECT name, latitude, time FROM trucks WHERE name = 'truck_3' \
         ORDER BY time + INTERVAL '0 seconds' DESC LIMIT 1",
    )
    .await;
    assert_eq!(got[0]["time"], "2026-01-01T00:33:10Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_no_series_holds_constant_is_not_rewritten() {
    let (_d, e) = engine();
    // grouping by time, or filtering on it inexactly, needs the history
    for sql in [
        "SELECT time, last_value(latitude ORDER BY time) FROM trucks GROUP BY time",
        "SELECT name, last_value(latitude ORDER BY time) FROM trucks \
         WHERE extract(minute FROM time) = 3 GROUP BY name",
    ] {
        assert!(!plan(&e, sql).await.contains("latest=true"), "{sql}");
    }
    // a filter on a varying field: the rewrite stands, every series comes back whole
    let q = |cond: &str| {
        format!(
            "SELECT name, latitude FROM (SELECT name, latitude, row_number() OVER \
             (PARTITION BY name ORDER BY time DESC) AS rn FROM trucks \
             WHERE state = 'fault') AS r WHERE {cond}"
        )
    };
    let got = same_answer(&e, &q("rn = 1"), &q("rn < 1.5")).await;
    assert_eq!(got.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_filters_prune_blocks_and_show_in_the_plan() {
    let (_d, e) = engine();
    let sql = "SELECT count(*) AS n FROM trucks WHERE name IN ('truck_1', 'truck_5')";
    let p = plan(&e, sql).await;
    assert!(p.contains(r#"name in ["truck_1", "truck_5"]"#), "{p}");
    assert_eq!(rows(&e, sql).await[0]["n"], 400);
    let p = plan(&e, &format!("ANALYZE {sql}")).await;
    let pruned = p
        .split("blocks_pruned=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no blocks_pruned in {p}"));
    assert!(pruned >= 4 * 6, "{p}");
    assert!(
        p.contains("rows_decoded=") && p.contains("decode_time="),
        "{p}"
    );
    assert_eq!(
        rows(&e, "SELECT count(*) AS n FROM trucks WHERE state IS NULL").await[0]["n"],
        0
    );
    assert_eq!(
        rows(&e, "SELECT count(*) AS n FROM trucks WHERE state = 'fault'").await[0]["n"],
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouping_by_strings_groups_on_views_and_keeps_dictionary_types() {
    let (_d, e) = engine();
    // `x || ''` is a plain string, which DataFusion groups column-wise already: the reference
    let cases = [
        (
            "SELECT fleet, state, count(*) AS n, avg(velocity) AS v FROM trucks \
             GROUP BY fleet, state ORDER BY fleet, state",
            "SELECT fleet || '' AS fleet, state || '' AS state, count(*) AS n, \
             avg(velocity) AS v FROM trucks GROUP BY fleet || '', state || '' \
             ORDER BY fleet, state",
        ),
        (
            "SELECT device_id, date_bin(INTERVAL '10 minutes', time) AS b, max(latitude) AS m \
             FROM trucks GROUP BY device_id, b HAVING max(latitude) > 52.05",
            "SELECT device_id || '' AS device_id, date_bin(INTERVAL '10 minutes', time) AS b, \
             max(latitude) AS m FROM trucks GROUP BY device_id || '', b \
             HAVING max(latitude) > 52.05",
        ),
        (
            "SELECT name, count(*) AS n FROM trucks WHERE fleet = 'South' GROUP BY name",
            "SELECT name || '' AS name, count(*) AS n FROM trucks WHERE fleet = 'South' \
             GROUP BY name || ''",
        ),
    ];
    for (sql, reference) in cases {
        let p = plan(&e, sql).await;
        assert!(p.contains("AS Utf8View)"), "{sql}\n{p}");
        let got = rows(&e, sql).await;
        assert!(!got.is_empty(), "{sql}");
        assert_eq!(got, rows(&e, reference).await, "{sql}");
        // the group keys keep the type the scan gives them
        let schema = e.run(sql).await.unwrap().schema();
        let key = schema.field(0).data_type();
        assert!(
            matches!(key, datafusion::arrow::datatypes::DataType::Dictionary(..)),
            "{sql}: {key}"
        );
    }
    let got = rows(&e, "SELECT fleet, count(*) AS n FROM trucks GROUP BY fleet").await;
    assert_eq!(
        got,
        vec![
            serde_json::json!({"fleet": "North", "n": 600}),
            serde_json::json!({"fleet": "South", "n": 600}),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_n_rows_per_partition_and_overall() {
    let (_d, e) = engine();
    for (rank, partition) in [
        ("row_number()", "name"),
        ("rank()", "fleet"),
        ("dense_rank()", "device_id"),
    ] {
        let q = |cond: &str| {
            format!(
                "SELECT {partition}, time, latitude FROM (SELECT {partition}, time, latitude, \
                 {rank} OVER (PARTITION BY {partition} ORDER BY time DESC) AS rn FROM trucks) \
                 AS r WHERE {cond}"
            )
        };
        let p = plan(&e, &q("rn <= 3")).await;
        assert!(p.contains("latest_rows=3"), "{p}");
        let got = same_answer(&e, &q("rn <= 3"), &q("rn < 3.5")).await;
        let partitions = match partition {
            "name" => 7, // t4 under two names
            "fleet" => 2,
            _ => 6,
        };
        // rank() ties: the three trucks of a fleet write at the same times, so the newest
        // time ranks them all 1 and the next time 4
        let want = if rank == "rank()" { 6 } else { 3 * partitions };
        assert_eq!(got.len(), want, "{rank}: {got:?}");
        same_answer(&e, &q("rn < 5 AND rn > 1"), &q("rn < 4.5 AND rn > 1")).await;
    }
    let got = same_answer(
        &e,
        "SELECT name, time FROM trucks WHERE fleet = 'South' ORDER BY time DESC, name LIMIT 5",
        "SELECT name, time FROM trucks WHERE fleet = 'South' \
         ORDER BY time + INTERVAL '0 seconds' DESC, name LIMIT 5",
    )
    .await;
    assert_eq!(got.len(), 5);
    // past the cap the history is read
    let p = plan(&e, "SELECT time FROM trucks ORDER BY time DESC LIMIT 1001").await;
    assert!(!p.contains("latest=true"), "{p}");
}

/// A join of the table with its own `max(time)` per key reads latest rows on both sides when
/// both are filtered alike, and only on the aggregate's side otherwise; the answers are those
/// of the same question asked with a `max` window, which no rewrite touches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_with_the_latest_time_per_key() {
    let (_d, e) = engine();
    let reference = |filter: &str| {
        format!(
            "SELECT name, latitude, time FROM (SELECT name, latitude, time, \
             max(time) OVER (PARTITION BY name) AS mt FROM trucks {filter}) AS w \
             WHERE time = mt"
        )
    };
    let cases = [
        (
            "SELECT r.name, r.latitude, r.time FROM trucks r JOIN (SELECT name, max(time) AS t \
             FROM trucks GROUP BY name) m ON r.name = m.name AND r.time = m.t",
            "",
        ),
        (
            "SELECT r.name, r.latitude, r.time FROM (SELECT name, max(time) AS t FROM trucks \
             WHERE fleet = 'South' GROUP BY name) AS m JOIN trucks AS r \
             ON m.t = r.time AND m.name = r.name WHERE r.fleet = 'South'",
            "WHERE fleet = 'South'",
        ),
        (
            "SELECT r.name, r.latitude, r.time FROM trucks r JOIN (SELECT name, max(time) AS t \
             FROM trucks WHERE velocity > 10 GROUP BY name) m \
             ON r.name = m.name AND r.time = m.t WHERE r.velocity > 10",
            "WHERE velocity > 10",
        ),
    ];
    for (sql, filter) in cases {
        let p = plan(&e, sql).await;
        assert_eq!(p.matches("latest=true").count(), 2, "{sql}\n{p}");
        let got = rows(&e, sql).await;
        assert_eq!(got, rows(&e, &reference(filter)).await, "{sql}");
        // t4 is renamed half-way: both names have a latest row
        let names = if filter.contains("South") { 4 } else { 7 };
        assert_eq!(got.len(), names, "{sql}: {got:?}");
    }
    // filtered differently, or grouped finer than joined: only the aggregate's side is latest
    for sql in [
        "SELECT r.name, r.latitude FROM trucks r JOIN (SELECT name, max(time) AS t \
         FROM trucks WHERE fleet = 'South' GROUP BY name) m ON r.name = m.name AND r.time = m.t",
        "SELECT r.name, r.latitude FROM trucks r JOIN (SELECT name, state, max(time) AS t \
         FROM trucks GROUP BY name, state) m ON r.name = m.name AND r.time = m.t",
    ] {
        let p = plan(&e, sql).await;
        assert_eq!(p.matches("latest=true").count(), 1, "{sql}\n{p}");
    }
}
