//! Reads: a [`Snapshot`] of every shard, and scans of one table into Arrow `RecordBatch`es.
//!
//! A scan prunes segments and blocks by time range, tag filters and (for blocks that overlap no
//! other block of their series) min/max statistics, decodes only the projected columns, resolves
//! duplicates last-write-wins and assembles Arrow arrays. Rows come out grouped by series, each
//! series in time order. Exact field conditions ([`Predicate`], [`StringSet`]) are applied to
//! rows, their columns decoded first and the rest only for pieces where some row passes.

mod filter;
mod output;
mod pieces;
mod probe;
mod stats;

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::block::StatValue;
use crate::error::ScanError;
use crate::schema::{Catalog, ColumnKind, FieldType, TIME_COLUMN, TableSchema};
use crate::segment::SegmentInfo;
use crate::shard::ShardVersion;
use crate::types::ShardId;

pub use filter::{Cmp, Predicate};
pub use pieces::ScanMetrics;
pub(crate) use stats::of as stats_of;
pub use stats::{FieldStats, SegmentStats};

/// Rows of interest must have a value within `[min, max]` in `column` (either bound optional).
/// Used to skip blocks by their statistics; rows are not filtered by it, so apply the predicate
/// to the results as well.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRange {
    /// Field column name.
    pub column: String,
    /// Inclusive lower bound.
    pub min: Option<StatValue>,
    /// Inclusive upper bound.
    pub max: Option<StatValue>,
}

/// Rows pass when string field `column` holds one of `values` (or a null, if `null`). Exact:
/// the scan returns only passing rows, and skips series and blocks whose summaries and
/// dictionaries hold none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringSet {
    /// String field column name.
    pub column: String,
    /// Wanted values.
    pub values: Vec<String>,
    /// Whether nulls are wanted too.
    pub null: bool,
}

/// What to read.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanRequest {
    /// Table name.
    pub table: String,
    /// Columns to return, in this order (`None`: all, in the table's output order).
    pub projection: Option<Vec<String>>,
    /// Time range `[start, end)` in ns; exact.
    pub time: (i64, i64),
    /// Tag filters, all of which must hold: the tag's value is one of the listed values. Exact.
    pub tags: Vec<(String, Vec<String>)>,
    /// Pruning hints on fields (not exact, see [`FieldRange`]).
    pub field_ranges: Vec<FieldRange>,
    /// Conditions on string fields, all of which must hold (exact, see [`StringSet`]).
    pub string_sets: Vec<StringSet>,
    /// Conditions on other fields, all of which must hold (exact, see [`Predicate`]).
    pub predicates: Vec<Predicate>,
    /// Stop after this many rows.
    pub limit: Option<usize>,
    /// Only these shards (`None`: all).
    pub shards: Option<Vec<ShardId>>,
    /// Target rows per returned batch.
    pub batch_rows: usize,
    /// Only these sealed segments, as (shard, segment id); the head is always read. `None`:
    /// every segment (that the other conditions do not prune). A segment whose time range
    /// overlaps another's or the head's is read all the same: its rows may be rewritten
    /// field by field elsewhere, and the merged rows need them.
    pub segments: Option<std::collections::BTreeSet<(u32, u64)>>,
    /// Only the latest row (`latest_rows` rows) of each series within the time range: what a
    /// last-value query needs, found by decoding only the newest piece(s) of each series
    /// instead of its history.
    pub latest: bool,
    /// With `latest`: fields that must hold one value over a series' rows for its latest row to
    /// stand for the series (the non-tag columns a caller partitions, groups or filters by). A
    /// series in which one of them varies, or is null in some rows only, comes back whole: a
    /// per-value latest computed over the output is then still right.
    pub latest_by: Vec<String>,
    /// With `latest`: how many of each series' latest rows (0 counts as 1).
    pub latest_rows: usize,
    /// `(k, n)`: read only part `k` of `n` of each shard's rows, so `n` readers can decode one
    /// shard in parallel. Parts hold contiguous runs of series, or of the pieces of one series
    /// whose pieces do not overlap, of about equal rows; each part's rows are in (series, time)
    /// order, and the `n` parts together hold every row once. `(0, 1)`: everything.
    pub split: (usize, usize),
}

impl ScanRequest {
    /// Every row and column of `table`.
    pub fn table(name: &str) -> ScanRequest {
        ScanRequest {
            table: name.to_string(),
            projection: None,
            time: (i64::MIN, i64::MAX),
            tags: Vec::new(),
            field_ranges: Vec::new(),
            string_sets: Vec::new(),
            predicates: Vec::new(),
            limit: None,
            shards: None,
            batch_rows: 8192,
            segments: None,
            latest: false,
            latest_by: Vec::new(),
            latest_rows: 1,
            split: (0, 1),
        }
    }

    /// Only these columns.
    pub fn columns<S: AsRef<str>>(mut self, cols: &[S]) -> Self {
        self.projection = Some(cols.iter().map(|c| c.as_ref().to_string()).collect());
        self
    }

    /// Only rows with `start <= time < end`.
    pub fn time_range(mut self, start: i64, end: i64) -> Self {
        self.time = (start, end);
        self
    }

    /// Only rows whose tag `name` equals `value`.
    pub fn tag(mut self, name: &str, value: &str) -> Self {
        self.tags.push((name.to_string(), vec![value.to_string()]));
        self
    }

    /// At most `n` rows.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }
}

/// A consistent read view of the store.
#[derive(Debug, Clone)]
pub struct Snapshot {
    catalog: Arc<Catalog>,
    shards: Vec<(ShardId, Arc<ShardVersion>)>,
}

/// What one output column is.
#[derive(Debug, Clone)]
pub(crate) enum Slot {
    Time,
    Tag(Arc<str>),
    Field(Arc<str>, FieldType),
}

impl Snapshot {
    pub(crate) fn new(catalog: Arc<Catalog>, shards: Vec<(ShardId, Arc<ShardVersion>)>) -> Self {
        Snapshot { catalog, shards }
    }

    /// Every table's schema.
    pub fn tables(&self) -> Vec<Arc<TableSchema>> {
        self.catalog.tables()
    }

    /// The Arrow schema of a table (all columns, output order).
    pub fn schema(&self, table: &str) -> Option<SchemaRef> {
        self.catalog.lookup(table).map(|(_, s)| s.arrow_schema())
    }

    /// Shards in this snapshot.
    pub fn shard_ids(&self) -> Vec<ShardId> {
        self.shards.iter().map(|(id, _)| *id).collect()
    }

    /// Statistics of every sealed segment of `table` (see [`SegmentStats`]).
    pub fn segment_stats(&self, table: &str) -> Vec<Arc<SegmentStats>> {
        self.shards
            .iter()
            .flat_map(|(_, v)| v.segments.iter())
            .filter(|s| *s.meta.table == *table)
            .map(|s| s.stats())
            .collect()
    }

    /// Per shard, the rows of `table` in its head (not yet sealed).
    pub fn head_rows(&self, table: &str) -> Vec<(ShardId, u64)> {
        let Some((id, _)) = self.catalog.lookup(table) else {
            return Vec::new();
        };
        self.shards
            .iter()
            .map(|(shard, v)| {
                let rows = v.head.tables.get(&id).map_or(0, |t| {
                    t.series
                        .iter()
                        .map(|s| {
                            let blocks: u64 = s.blocks.iter().map(|b| u64::from(b.rows)).sum();
                            let raw: u64 = s.frozen.iter().map(|c| c.len() as u64).sum();
                            blocks + raw
                        })
                        .sum()
                });
                (*shard, rows)
            })
            .collect()
    }

    /// Every sealed segment.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.shards
            .iter()
            .flat_map(|(_, v)| v.segments.iter().map(|s| s.info()))
            .collect()
    }

    /// Scans one table.
    pub fn scan(&self, req: &ScanRequest) -> Result<Vec<RecordBatch>, ScanError> {
        self.scan_with_metrics(req).map(|(b, _)| b)
    }

    /// Scans one table and reports how much was pruned and decoded.
    pub fn scan_with_metrics(
        &self,
        req: &ScanRequest,
    ) -> Result<(Vec<RecordBatch>, ScanMetrics), ScanError> {
        let mut batches = Vec::new();
        let metrics = self.scan_each(req, &mut |b| {
            batches.push(b);
            true
        })?;
        Ok((batches, metrics))
    }

    /// Scans one table, handing each batch to `sink` as soon as it is cut (about
    /// `req.batch_rows` rows), so a reader holds one batch at a time rather than the result.
    /// The scan stops early when `sink` returns false.
    pub fn scan_each(
        &self,
        req: &ScanRequest,
        sink: &mut dyn FnMut(RecordBatch) -> bool,
    ) -> Result<ScanMetrics, ScanError> {
        let (table_id, schema) = self
            .catalog
            .lookup(&req.table)
            .ok_or_else(|| ScanError::UnknownTable(req.table.clone()))?;
        let names: Vec<Arc<str>> = match &req.projection {
            Some(p) => p.iter().map(|s| Arc::from(s.as_str())).collect(),
            None => schema.output_columns(),
        };
        let mut slots = Vec::with_capacity(names.len());
        for n in &names {
            if &**n == TIME_COLUMN {
                slots.push(Slot::Time);
                continue;
            }
            match schema.column(n).map(|(_, c)| c.kind) {
                Some(ColumnKind::Tag) => slots.push(Slot::Tag(Arc::clone(n))),
                Some(ColumnKind::Field(t)) => slots.push(Slot::Field(Arc::clone(n), t)),
                None => {
                    return Err(ScanError::UnknownColumn {
                        table: req.table.clone(),
                        column: n.to_string(),
                    });
                }
            }
        }
        let arrow_fields: Vec<_> = names.iter().filter_map(|n| schema.arrow_field(n)).collect();
        let out_schema = Arc::new(Schema::new(arrow_fields));
        let mut out = output::Output::new(Arc::clone(&out_schema), &slots, req, sink);
        // Columns that only conditions read: decoded, filtered on, not returned.
        let filtered = req
            .predicates
            .iter()
            .map(|p| &p.column)
            .chain(req.string_sets.iter().map(|s| &s.column));
        for name in filtered {
            if slots
                .iter()
                .any(|s| matches!(s, Slot::Field(n, _) if **n == **name))
            {
                continue;
            }
            match schema.column(name).map(|(_, c)| c.kind) {
                Some(ColumnKind::Field(t)) => slots.push(Slot::Field(Arc::from(name.as_str()), t)),
                _ => {
                    return Err(ScanError::UnknownColumn {
                        table: req.table.clone(),
                        column: name.clone(),
                    });
                }
            }
        }
        let mut metrics = ScanMetrics::default();
        for (id, version) in &self.shards {
            if req.shards.as_ref().is_some_and(|s| !s.contains(id)) {
                continue;
            }
            pieces::scan_shard(
                version,
                table_id,
                &schema,
                &slots,
                req,
                &mut out,
                &mut metrics,
            )?;
            if out.full() {
                break;
            }
        }
        out.finish()?;
        Ok(metrics)
    }
}
