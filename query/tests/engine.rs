//! The query engine over a real store: catalog, pushdown, latest-row rewrite, system tables,
//! guard rails and every output format.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mast_query::{Encoder, Format, QueryEngine, QueryErrorKind, QueryLimits};
use mast_storage::{Durability, Store, StoreConfig, WriteBatch};

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

fn store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(StoreConfig::new(dir.path())).unwrap());
    let mut b = WriteBatch::new();
    for (dev, fleet) in [("t1", "South"), ("t2", "North"), ("t3", "South")] {
        let s = b.series("readings", &[("device_id", dev), ("fleet", fleet)]);
        for i in 0..100i64 {
            b.row(s, T0 + i * 10_000_000_000)
                .f64("velocity", (i % 7) as f64 * 10.0)
                .i64("status", i % 3);
        }
    }
    store
        .submit(b, Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
    store.seal().unwrap();
    // newer rows in the head, one of them rewriting the last sealed point of t1
    let mut b = WriteBatch::new();
    let s = b.series("readings", &[("device_id", "t1"), ("fleet", "South")]);
    b.row(s, T0 + 99 * 10_000_000_000)
        .f64("velocity", 123.0)
        .i64("status", 9);
    b.row(s, T0 + 100 * 10_000_000_000)
        .f64("velocity", 5.5)
        .i64("status", 1);
    store
        .submit(b, Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
    (dir, store)
}

async fn json(engine: &QueryEngine, sql: &str) -> serde_json::Value {
    let text = encode(engine, sql, Format::Json).await;
    serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&text)))
}

async fn encode(engine: &QueryEngine, sql: &str, format: Format) -> Vec<u8> {
    let mut stream = engine
        .run(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let (mut enc, mut out) = Encoder::new(format, stream.schema()).unwrap();
    while let Some(b) = stream.next().await {
        out.extend(enc.batch(&b.unwrap()).unwrap());
    }
    out.extend(enc.finish().unwrap());
    out
}

async fn plan(engine: &QueryEngine, sql: &str) -> String {
    let v = json(engine, &format!("EXPLAIN {sql}")).await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["plan"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_aggregates_and_formats() {
    let (_dir, store) = store();
    let engine = QueryEngine::new(store, QueryLimits::default()).unwrap();
    let v = json(&engine, "SELECT device_id, count(*) AS n, max(velocity) AS vmax FROM readings WHERE fleet = 'South' GROUP BY device_id ORDER BY device_id").await;
    assert_eq!(
        v,
        serde_json::json!([{"device_id":"t1","n":101,"vmax":123.0},{"device_id":"t3","n":100,"vmax":60.0}])
    );
    let v = json(&engine, "SELECT time, velocity FROM readings WHERE device_id = 't2' AND time >= '2026-01-01T00:00:10Z' AND time < '2026-01-01T00:00:30Z' ORDER BY time").await;
    assert_eq!(
        v,
        serde_json::json!([{"time":"2026-01-01T00:00:10Z","velocity":10.0},{"time":"2026-01-01T00:00:20Z","velocity":20.0}])
    );
    let p = plan(&engine, "SELECT velocity FROM readings WHERE device_id = 't2' AND time >= '2026-01-01T00:00:10Z' AND velocity > 30").await;
    assert!(p.contains("device_id in [\"t2\"]"), "{p}");
    assert!(p.contains("time=[1767225610000000000, "), "{p}");
    assert!(p.contains("velocity in [Some(F64(30.0)), None]"), "{p}");
    let csv = encode(
        &engine,
        "SELECT device_id, status FROM readings WHERE device_id = 't2' ORDER BY time LIMIT 2",
        Format::Csv,
    )
    .await;
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "device_id,status\nt2,0\nt2,1\n"
    );
    let jl = encode(
        &engine,
        "SELECT device_id, status FROM readings WHERE device_id = 't2' ORDER BY time LIMIT 2",
        Format::Jsonl,
    )
    .await;
    assert_eq!(
        String::from_utf8(jl).unwrap(),
        "{\"device_id\":\"t2\",\"status\":0}\n{\"device_id\":\"t2\",\"status\":1}\n"
    );
    let empty = encode(
        &engine,
        "SELECT device_id FROM readings WHERE device_id = 'nobody'",
        Format::Json,
    )
    .await;
    assert_eq!(String::from_utf8(empty).unwrap().trim(), "[]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_values_read_only_the_latest_rows() {
    let (_dir, store) = store();
    let engine = QueryEngine::new(store, QueryLimits::default()).unwrap();
    let sql = "SELECT device_id, last(velocity, time) AS v, max(time) AS t FROM readings GROUP BY device_id ORDER BY device_id";
    let p = plan(&engine, sql).await;
    assert!(p.contains("latest=true"), "{p}");
    let v = json(&engine, sql).await;
    assert_eq!(
        v,
        serde_json::json!([
        {"device_id":"t1","v":5.5,"t":"2026-01-01T00:16:40Z"},
        {"device_id":"t2","v":10.0,"t":"2026-01-01T00:16:30Z"},
        {"device_id":"t3","v":10.0,"t":"2026-01-01T00:16:30Z"}])
    );
    // a field filter may change which row is last: the scan applies it exactly, before it
    // picks each series' latest rows
    let sql = "SELECT device_id, last(velocity, time) AS v FROM readings WHERE velocity > 50 GROUP BY device_id ORDER BY device_id";
    let p = plan(&engine, sql).await;
    assert!(p.contains("velocity > F64(50.0), latest=true"), "{p}");
    assert!(!p.contains("latest_by"), "{p}");
    assert!(!p.contains("FilterExec"), "{p}");
    let v = json(&engine, sql).await;
    assert_eq!(
        v,
        serde_json::json!([{"device_id":"t1","v":123.0},{"device_id":"t2","v":60.0},{"device_id":"t3","v":60.0}])
    );
    let v = json(&engine, "SELECT first(velocity, time) AS f, time_bucket(INTERVAL '1 minute', time) AS b FROM readings WHERE device_id = 't1' GROUP BY b ORDER BY b LIMIT 2").await;
    assert_eq!(
        v,
        serde_json::json!([{"f":0.0,"b":"2026-01-01T00:00:00Z"},{"f":60.0,"b":"2026-01-01T00:01:00Z"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_tables_describe_the_store() {
    let (_dir, store) = store();
    let engine = QueryEngine::new(store, QueryLimits::default()).unwrap();
    // two shards: t1 and t3 in one, t2 in the other (by device id hash)
    let v = json(
        &engine,
        "SELECT table_name, tags, fields, segments, segment_rows FROM system.tables",
    )
    .await;
    assert_eq!(
        v,
        serde_json::json!([{"table_name":"readings","tags":2,"fields":2,"segments":2,"segment_rows":300}])
    );
    let v = json(
        &engine,
        "SELECT column_name, kind, data_type FROM system.columns ORDER BY ordinal",
    )
    .await;
    assert_eq!(
        v,
        serde_json::json!([
        {"column_name":"time","kind":"time","data_type":"timestamp"},
        {"column_name":"device_id","kind":"tag","data_type":"string"},
        {"column_name":"fleet","kind":"tag","data_type":"string"},
        {"column_name":"velocity","kind":"field","data_type":"float64"},
        {"column_name":"status","kind":"field","data_type":"int64"}])
    );
    let v = json(&engine, "SELECT table_name, sum(rows) AS rows, sum(series) AS series, min(min_time) AS min_time FROM system.segments GROUP BY table_name").await;
    assert_eq!(
        v,
        serde_json::json!([{"table_name":"readings","rows":300,"series":3,"min_time":"2026-01-01T00:00:00Z"}])
    );
    let v = json(
        &engine,
        "SELECT sql, state, rows FROM system.queries WHERE state <> 'running' ORDER BY query_id",
    )
    .await;
    assert_eq!(v[0]["state"], "done");
    assert_eq!(v[0]["rows"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_rails() {
    let (_dir, store) = store();
    let limits = QueryLimits {
        timeout: Duration::from_millis(300),
        memory_limit: 4 << 20,
        max_concurrent: 2,
        ..QueryLimits::default()
    };
    let engine = QueryEngine::new(store, limits).unwrap();
    let kind = |r: Result<mast_query::QueryStream, mast_query::QueryError>| r.err().map(|e| e.kind);
    assert_eq!(
        kind(engine.run("SELEC 1").await),
        Some(QueryErrorKind::BadSql)
    );
    assert_eq!(
        kind(engine.run("SELECT * FROM nope").await),
        Some(QueryErrorKind::TableNotFound)
    );
    assert_eq!(
        kind(engine.run("SELECT nope FROM readings").await),
        Some(QueryErrorKind::BadSql)
    );
    for sql in [
        "DROP TABLE readings",
        "INSERT INTO readings VALUES (1)",
        "CREATE TABLE x AS SELECT 1",
        "SET datafusion.execution.batch_size = 1",
        "COPY readings TO '/tmp/x.csv'",
        "DELETE FROM readings",
    ] {
        assert_eq!(
            kind(engine.run(sql).await),
            Some(QueryErrorKind::ReadOnly),
            "{sql}"
        );
    }
    assert_eq!(
        kind(engine.run("SELECT 1; SELECT 2").await),
        Some(QueryErrorKind::BadSql)
    );
    // a query needing more than 4 MiB fails alone
    let mut s = engine
        .run("SELECT array_agg(repeat('x', 1000)) FROM generate_series(1, 100000)")
        .await
        .unwrap();
    let mut err = None;
    while let Some(b) = s.next().await {
        if let Err(e) = b {
            err = Some(e.kind);
            break;
        }
    }
    assert_eq!(err, Some(QueryErrorKind::MemoryLimit));
    drop(s);
    // a slow query times out
    let mut s = engine
        .run("SELECT count(*) FROM generate_series(1, 1000000000)")
        .await
        .unwrap();
    let mut err = None;
    while let Some(b) = s.next().await {
        if let Err(e) = b {
            err = Some(e.kind);
            break;
        }
    }
    assert_eq!(err, Some(QueryErrorKind::Timeout));
    drop(s);
    let v = json(
        &engine,
        "SELECT state, error FROM system.queries WHERE sql LIKE '%1000000000%'",
    )
    .await;
    assert_eq!(v[0]["state"], "failed");
    // concurrency limit
    let a = engine.run("SELECT 1").await.unwrap();
    let b = engine.run("SELECT 1").await.unwrap();
    assert_eq!(
        kind(engine.run("SELECT 1").await),
        Some(QueryErrorKind::Busy)
    );
    drop((a, b));
    assert!(engine.run("SELECT 1").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_filling_with_locf_and_interpolate() {
    let (_dir, store) = store();
    let mut b = WriteBatch::new();
    let a = b.series("sparse", &[("device_id", "a")]);
    b.row(a, T0).f64("v", 1.0);
    b.row(a, T0 + 180_000_000_000 + 5).f64("v", 4.0);
    let d = b.series("sparse", &[("device_id", "b")]);
    b.row(d, T0 + 60_000_000_000).f64("v", 2.0);
    store
        .submit(b, Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
    let engine = QueryEngine::new(store, QueryLimits::default()).unwrap();
    let sql = "SELECT date_bin_gapfill(INTERVAL '1 minute', time) AS m, device_id, avg(v) AS raw, \
               locf(avg(v)) AS carried, interpolate(avg(v)) AS lin FROM sparse \
               WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-01T00:05:00Z' \
               GROUP BY m, device_id ORDER BY device_id, m";
    let v = json(&engine, sql).await;
    type Row = (String, String, Option<f64>, Option<f64>, Option<f64>);
    let got: Vec<Row> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["device_id"].as_str().unwrap().to_string(),
                r["m"].as_str().unwrap()[14..16].to_string(),
                r["raw"].as_f64(),
                r["carried"].as_f64(),
                r["lin"].as_f64(),
            )
        })
        .collect();
    let want = vec![
        ("a", "00", Some(1.0), Some(1.0), Some(1.0)),
        ("a", "01", None, Some(1.0), Some(2.0)),
        ("a", "02", None, Some(1.0), Some(3.0)),
        ("a", "03", Some(4.0), Some(4.0), Some(4.0)),
        ("a", "04", None, Some(4.0), None),
        ("b", "00", None, None, None),
        ("b", "01", Some(2.0), Some(2.0), Some(2.0)),
        ("b", "02", None, Some(2.0), None),
        ("b", "03", None, Some(2.0), None),
        ("b", "04", None, Some(2.0), None),
    ];
    let want: Vec<_> = want
        .into_iter()
        .map(|(d, m, a, b, c)| (d.to_string(), m.to_string(), a, b, c))
        .collect();
    assert_eq!(got, want);
    // without both bounds there is nothing to fill up to
    let err = engine
        .run("SELECT date_bin_gapfill(INTERVAL '1 minute', time) AS m, avg(v) FROM sparse WHERE time >= '2026-01-01T00:00:00Z' GROUP BY m")
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, QueryErrorKind::BadSql);
    assert!(
        err.message.contains("bounded on both sides"),
        "{}",
        err.message
    );
    // locf outside a gap-filled query is an error, not a silent no-op
    assert!(
        engine.run("SELECT locf(v) FROM sparse").await.is_err() || {
            let mut s = engine.run("SELECT locf(v) FROM sparse").await.unwrap();
            matches!(s.next().await, Some(Err(_)))
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_are_pruned_by_predicates_the_request_cannot_express() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.shards = 1;
    let store = Arc::new(Store::open(cfg).unwrap());
    // three sealed hours, one device per hour, values rising by hour
    for h in 0..3i64 {
        let mut b = WriteBatch::new();
        let s = b.series("m", &[("device_id", &format!("d{h}"))]);
        for i in 0..10i64 {
            b.row(s, T0 + h * 3_600_000_000_000 + i * 1_000_000_000)
                .f64("v", (h * 100 + i) as f64);
        }
        store
            .submit(b, Durability::Durable)
            .unwrap()
            .wait()
            .unwrap();
        store.seal().unwrap();
    }
    let engine = QueryEngine::new(store, QueryLimits::default()).unwrap();
    let cases = [
        // OR of two time ranges: the middle hour is pruned
        (
            "time < '2026-01-01T00:30:00Z' OR time >= '2026-01-01T02:00:00Z'",
            2,
            20,
        ),
        // an OR over tags
        ("device_id = 'd1' OR device_id = 'd2'", 2, 20),
        // field statistics, through arithmetic on the literal
        ("v >= 150 + 50", 1, 10),
        ("v < 0 OR v > 1000", 0, 0),
        ("NOT (device_id IN ('d0', 'd1'))", 1, 10),
    ];
    for (filter, segments, rows) in cases {
        let sql = format!("SELECT count(*) AS n FROM m WHERE {filter}");
        let p = plan(&engine, &sql).await;
        assert!(p.contains(&format!("segments={segments}")), "{filter}: {p}");
        let v = json(&engine, &sql).await;
        assert_eq!(v[0]["n"], rows, "{filter}");
    }
    // nothing to prune: no segment list at all
    let p = plan(&engine, "SELECT count(*) FROM m WHERE v >= 0").await;
    assert!(!p.contains("segments="), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_only_table_is_declared_sorted_by_device_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let single = Arc::new(Store::open(StoreConfig::new(dir.path())).unwrap());
    let mut b = WriteBatch::new();
    for d in ["b", "a", "c"] {
        let s = b.series("telemetry", &[("device_id", d)]);
        for t in (0..50i64).rev() {
            b.row(s, T0 + t).f64("v", t as f64);
        }
    }
    single
        .submit(b, Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
    let engine = QueryEngine::new(single, QueryLimits::default()).unwrap();
    let sql = "SELECT device_id, time, v FROM telemetry ORDER BY device_id, time";
    let p = plan(&engine, sql).await;
    // the shards' sorted streams are merged, not sorted again
    assert!(p.contains("SortPreservingMergeExec"), "{p}");
    assert!(!p.contains("SortExec"), "{p}");
    let v = json(&engine, sql).await;
    let got: Vec<(String, f64)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["device_id"].as_str().unwrap().to_string(),
                r["v"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut want = got.clone();
    want.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    assert_eq!(got.len(), 150);
    assert_eq!(got, want);
    // a table with more tags declares nothing (series order is not a column order there)
    let (_d2, store2) = store();
    let engine2 = QueryEngine::new(store2, QueryLimits::default()).unwrap();
    let p = plan(
        &engine2,
        "SELECT device_id, time FROM readings ORDER BY device_id, time",
    )
    .await;
    assert!(p.contains("SortExec"), "{p}");
}
