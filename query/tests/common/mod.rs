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

/// A plain DataFusion session (no Mast rule, no pushdown) holding Mast's `SELECT * FROM
/// {table}` as a `MemTable` of two partitions: the reference answers are DataFusion's own over
/// the same rows. `None` when the table holds nothing.
pub(crate) async fn reference(
    engine: &QueryEngine,
    table: &str,
) -> Option<datafusion::prelude::SessionContext> {
    use datafusion::prelude::{SessionConfig, SessionContext};
    let all = batches(engine, &format!("SELECT * FROM {table}")).await;
    let first = all.first()?;
    let half = all.len() / 2;
    let parts = vec![all[..half].to_vec(), all[half..].to_vec()];
    let mem = datafusion::datasource::MemTable::try_new(first.schema(), parts).unwrap();
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    ctx.register_table(table, std::sync::Arc::new(mem)).unwrap();
    Some(ctx)
}

/// Runs `f` on a two-worker runtime (proptest bodies are not async).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// 2026-01-01T00:00:00Z in ns.
pub(crate) const T0: i64 = 1_767_225_600_000_000_000;
/// One second in ns.
pub(crate) const SEC: i64 = 1_000_000_000;

/// An empty store in a new directory, with small blocks.
pub(crate) fn open_store(
    block_rows: usize,
    shards: usize,
) -> (tempfile::TempDir, std::sync::Arc<mast_storage::Store>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = mast_storage::StoreConfig::new(dir.path());
    cfg.block_rows = block_rows;
    cfg.shards = shards;
    let store = std::sync::Arc::new(mast_storage::Store::open(cfg).unwrap());
    (dir, store)
}

/// Writes `batch` durably (nothing when it is empty).
pub(crate) fn write(store: &mast_storage::Store, batch: mast_storage::WriteBatch) {
    if batch.is_empty() {
        return;
    }
    store
        .submit(batch, mast_storage::Durability::Durable)
        .unwrap()
        .wait()
        .unwrap();
}
