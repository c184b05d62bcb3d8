//! The `system` schema: what the store holds and what the server is doing.
//!
//! `system.tables`, `system.columns`, `system.segments` read the store's catalog and a snapshot;
//! `system.queries` reads the [`QueryLog`]. `system.connections` needs the MQTT broker, so the
//! engine crate supplies it (a [`SpecialTable`] like these).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use mast_storage::Store;
use mast_storage::schema::{ColumnKind, TIME_COLUMN};

use async_trait::async_trait;

use crate::special::{Scan, SpecialTable};

/// A timestamp column type (ns, UTC), as telemetry tables use.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// `system.tables`: one row per telemetry table.
#[derive(Debug)]
pub struct TablesTable {
    store: Arc<Store>,
    schema: SchemaRef,
}

impl TablesTable {
    /// Over `store`.
    pub fn new(store: Arc<Store>) -> TablesTable {
        let schema = schema(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("tags", DataType::UInt32, false),
            Field::new("fields", DataType::UInt32, false),
            Field::new("series", DataType::UInt64, false),
            Field::new("segments", DataType::UInt64, false),
            Field::new("segment_rows", DataType::UInt64, false),
            Field::new("segment_bytes", DataType::UInt64, false),
            Field::new("min_time", ts_type(), true),
            Field::new("max_time", ts_type(), true),
        ]);
        TablesTable { store, schema }
    }
}

#[async_trait]
impl SpecialTable for TablesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn scan(&self, scan: &Scan) -> Result<RecordBatch> {
        let snap = self.store.snapshot();
        // table -> (segments, rows, bytes, min time, max time)
        type Sums = (u64, u64, u64, Option<i64>, Option<i64>);
        let mut per: BTreeMap<String, Sums> = BTreeMap::new();
        for s in snap.segments() {
            let e = per.entry(s.table.to_string()).or_default();
            e.0 += 1;
            e.1 += s.rows;
            e.2 += s.bytes;
            e.3 = Some(e.3.map_or(s.min_time, |m| m.min(s.min_time)));
            e.4 = Some(e.4.map_or(s.max_time, |m| m.max(s.max_time)));
        }
        let mut tables = snap.tables();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        let mut rows = scan.rows(&self.schema);
        for t in tables {
            let ntags = t
                .columns
                .iter()
                .filter(|c| c.kind == ColumnKind::Tag)
                .count();
            let id = self.store.catalog().lookup(&t.name).map(|(id, _)| id);
            let s = per.get(&*t.name).copied().unwrap_or_default();
            rows.row()
                .str(&t.name)
                .u32(ntags as u32)
                .u32((t.columns.len() - ntags) as u32)
                .u64(id.map_or(0, |id| self.store.catalog().series_count(id)))
                .u64(s.0)
                .u64(s.1)
                .u64(s.2)
                .opt_ts(s.3)
                .opt_ts(s.4);
        }
        rows.finish()
    }
}

/// `system.columns`: one row per column of every telemetry table.
#[derive(Debug)]
pub struct ColumnsTable {
    store: Arc<Store>,
    schema: SchemaRef,
}

impl ColumnsTable {
    /// Over `store`.
    pub fn new(store: Arc<Store>) -> ColumnsTable {
        let schema = schema(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("column_name", DataType::Utf8, false),
            Field::new("ordinal", DataType::UInt32, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("data_type", DataType::Utf8, false),
        ]);
        ColumnsTable { store, schema }
    }
}

#[async_trait]
impl SpecialTable for ColumnsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn scan(&self, scan: &Scan) -> Result<RecordBatch> {
        let mut tables = self.store.catalog().tables();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        let mut rows = scan.rows(&self.schema);
        for table in tables {
            for (i, name) in table.output_columns().iter().enumerate() {
                let (kind, ty) = if &**name == TIME_COLUMN {
                    ("time", "timestamp".to_string())
                } else {
                    match table.column(name).map(|(_, c)| c.kind) {
                        Some(ColumnKind::Tag) => ("tag", "string".to_string()),
                        Some(ColumnKind::Field(f)) => ("field", f.name().to_string()),
                        None => ("field", "unknown".to_string()),
                    }
                };
                rows.row()
                    .str(&table.name)
                    .str(name)
                    .u32(i as u32)
                    .str(kind)
                    .str(&ty);
            }
        }
        rows.finish()
    }
}

/// `system.segments`: one row per sealed segment file.
#[derive(Debug)]
pub struct SegmentsTable {
    store: Arc<Store>,
    schema: SchemaRef,
}

impl SegmentsTable {
    /// Over `store`.
    pub fn new(store: Arc<Store>) -> SegmentsTable {
        let schema = schema(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("shard", DataType::UInt32, false),
            Field::new("segment_id", DataType::UInt64, false),
            Field::new("partition_start", ts_type(), false),
            Field::new("partition_end", ts_type(), false),
            Field::new("min_time", ts_type(), false),
            Field::new("max_time", ts_type(), false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new("series", DataType::UInt64, false),
            Field::new("blocks", DataType::UInt64, false),
            Field::new("float_gorilla_columns", DataType::UInt64, false),
            Field::new("float_alp_columns", DataType::UInt64, false),
            Field::new("path", DataType::Utf8, false),
        ]);
        SegmentsTable { store, schema }
    }
}

#[async_trait]
impl SpecialTable for SegmentsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn scan(&self, scan: &Scan) -> Result<RecordBatch> {
        let mut segs = self.store.snapshot().segments();
        segs.sort_by(|a, b| (&a.table, a.shard, a.id).cmp(&(&b.table, b.shard, b.id)));
        let mut rows = scan.rows(&self.schema);
        for s in &segs {
            rows.row()
                .str(&s.table)
                .u32(s.shard)
                .u64(s.id)
                .ts(s.partition.0)
                .ts(s.partition.1)
                .ts(s.min_time)
                .ts(s.max_time)
                .u64(s.rows)
                .u64(s.bytes)
                .u64(s.series as u64)
                .u64(s.blocks as u64)
                .u64(s.float_codecs.0)
                .u64(s.float_codecs.1)
                .str(&s.path.display().to_string());
        }
        rows.finish()
    }
}

/// One query, running or done.
#[derive(Debug, Clone)]
pub struct QueryRecord {
    /// Process-unique id.
    pub id: u64,
    /// The statement.
    pub sql: String,
    /// `running`, `done`, `failed`, `cancelled`.
    pub state: &'static str,
    /// Wall-clock start, ns since the epoch.
    pub started_ns: i64,
    /// Monotonic start.
    pub started: Instant,
    /// How long it ran (set when it ends).
    pub duration: Option<Duration>,
    /// Rows returned so far.
    pub rows: u64,
    /// The error of a failed query.
    pub error: Option<String>,
}

/// Totals over every query since start, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueryCounts {
    /// Running now.
    pub running: u64,
    /// Finished with all rows sent.
    pub done: u64,
    /// Failed (bad SQL, timeout, memory, ...).
    pub failed: u64,
    /// Dropped by the client before the end.
    pub cancelled: u64,
    /// Rows returned.
    pub rows: u64,
    /// Seconds spent, summed over finished queries.
    pub seconds: f64,
}

/// Running queries and the most recent finished ones (a bounded ring).
#[derive(Debug)]
pub struct QueryLog {
    totals: Mutex<QueryCounts>,
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, QueryRecord>>,
    recent: Mutex<VecDeque<QueryRecord>>,
    keep: usize,
}

impl QueryLog {
    /// A log that keeps the last `keep` finished queries.
    pub fn new(keep: usize) -> QueryLog {
        QueryLog {
            totals: Mutex::new(QueryCounts::default()),
            next: AtomicU64::new(1),
            running: Mutex::new(BTreeMap::new()),
            recent: Mutex::new(VecDeque::new()),
            keep,
        }
    }

    /// Records the start of a query; returns its id.
    pub fn start(&self, sql: &str) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let rec = QueryRecord {
            id,
            sql: sql.chars().take(4096).collect(),
            state: "running",
            started_ns: mast_storage::now_ns(),
            started: Instant::now(),
            duration: None,
            rows: 0,
            error: None,
        };
        lock(&self.running).insert(id, rec);
        id
    }

    /// Adds to a running query's row count.
    pub fn add_rows(&self, id: u64, rows: u64) {
        if let Some(r) = lock(&self.running).get_mut(&id) {
            r.rows += rows;
        }
    }

    /// Moves a query to the finished ring.
    pub fn finish(&self, id: u64, state: &'static str, error: Option<String>) {
        let Some(mut r) = lock(&self.running).remove(&id) else {
            return;
        };
        r.state = state;
        r.duration = Some(r.started.elapsed());
        r.error = error;
        {
            let mut t = lock(&self.totals);
            match state {
                "done" => t.done += 1,
                "cancelled" => t.cancelled += 1,
                _ => t.failed += 1,
            }
            t.rows += r.rows;
            t.seconds += r.started.elapsed().as_secs_f64();
        }
        let mut recent = lock(&self.recent);
        if recent.len() >= self.keep {
            recent.pop_front();
        }
        recent.push_back(r);
    }

    /// Running queries, then finished ones, oldest first.
    pub fn records(&self) -> Vec<QueryRecord> {
        let mut out: Vec<QueryRecord> = lock(&self.recent).iter().cloned().collect();
        out.extend(lock(&self.running).values().cloned());
        out
    }

    /// Totals since start.
    pub fn counts(&self) -> QueryCounts {
        let mut c = *lock(&self.totals);
        c.running = lock(&self.running).len() as u64;
        c
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `system.queries`.
#[derive(Debug)]
pub struct QueriesTable {
    log: Arc<QueryLog>,
    schema: SchemaRef,
}

impl QueriesTable {
    /// Over `log`.
    pub fn new(log: Arc<QueryLog>) -> QueriesTable {
        let schema = schema(vec![
            Field::new("query_id", DataType::UInt64, false),
            Field::new("sql", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("started", ts_type(), false),
            Field::new("duration_ms", DataType::Float64, false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("error", DataType::Utf8, true),
        ]);
        QueriesTable { log, schema }
    }
}

#[async_trait]
impl SpecialTable for QueriesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn scan(&self, scan: &Scan) -> Result<RecordBatch> {
        let mut rows = scan.rows(&self.schema);
        for r in self.log.records() {
            let d = r.duration.unwrap_or_else(|| r.started.elapsed());
            rows.row()
                .u64(r.id)
                .str(&r.sql)
                .str(r.state)
                .ts(r.started_ns)
                .f64(d.as_secs_f64() * 1e3)
                .u64(r.rows)
                .opt_str(r.error.as_deref());
        }
        rows.finish()
    }
}
