//! Helpers shared by the query crate's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use datafusion::arrow::array::RecordBatch;
use futures::StreamExt;
use mast_query::QueryEngine;

/// Runs `sql` on `engine` and collects its batches, panicking with the query on an error.
pub(crate) async fn batches(engine: &QueryEngine, sql: &str) -> Vec<RecordBatch> {
    let mut s = engine
        .run(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.push(b.unwrap());
    }
    out
}
