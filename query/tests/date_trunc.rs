//! `date_trunc` over Mast's UTC `time` (truncated by arithmetic, see
//! `query/src/functions/date_trunc.rs`) against DataFusion's own `date_trunc`, which converts
//! each value through its time zone, on the same rows: every granularity, times before and
//! after the epoch, nulls from an outer join, and the result typed as the input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::batches;
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use mast_query::{QueryEngine, QueryLimits};
use mast_storage::{Durability, Store, StoreConfig, WriteBatch};

const GRANULARITIES: [&str; 10] = [
    "microsecond",
    "millisecond",
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "quarter",
    "year",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utc_truncation_equals_datafusions_zone_aware_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(StoreConfig::new(dir.path())).unwrap());
    let mut b = WriteBatch::new();
    let s = b.series("t", &[("device_id", "d")]);
    // irregular steps (7,919.123457 s) over ~3 years, from before the epoch to after it
    let step: i64 = 7_919_123_456_789;
    for i in 0..12_000i64 {
        b.row(s, -20_000_000_000_000_000 + i * step)
            .f64("v", i as f64);
    }
    store
        .submit(b, Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
    let engine = QueryEngine::new(Arc::clone(&store), QueryLimits::default()).unwrap();
    let rows = batches(&engine, "SELECT time, v FROM t ORDER BY time").await;
    let reference = SessionContext::new();
    let table = MemTable::try_new(rows[0].schema(), vec![rows]).unwrap();
    reference.register_table("t", Arc::new(table)).unwrap();
    for g in GRANULARITIES {
        let sql = format!(
            "SELECT time, date_trunc('{g}', time) AS d, date_trunc('{g}', CASE WHEN v > 6000 \
             THEN time END) AS n FROM t ORDER BY time"
        );
        let got = batches(&engine, &sql).await;
        let want = reference.sql(&sql).await.unwrap().collect().await.unwrap();
        let utc = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        assert_eq!(got[0].schema().field(1).data_type(), &utc, "{g}");
        let concat = |b: &[RecordBatch]| {
            datafusion::arrow::compute::concat_batches(&b[0].schema(), b).unwrap()
        };
        let (got, want) = (concat(&got), concat(&want));
        assert_eq!(got.num_rows(), 12_000, "{g}");
        assert!(got.column(2).null_count() > 0 && got.column(2).null_count() < 12_000);
        assert_eq!(got.columns(), want.columns(), "{g}");
    }
}
