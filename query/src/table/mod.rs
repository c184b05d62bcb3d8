//! The table provider over Mast's storage: one telemetry table, read from a snapshot.
//!
//! `scan` plans (takes the snapshot, turns pushed-down filters into a [`ScanRequest`], one
//! partition per shard); `execute` decodes, on a blocking thread per partition, handing each
//! batch to the stream as it is cut so a query holds a few batches per partition, not a table.

mod pruning;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::StreamExt;
use mast_storage::schema::{ColumnKind, FieldType, TIME_COLUMN, TableSchema};
use mast_storage::{
    Cmp, FieldRange, Predicate, ScanRequest, Snapshot, StatValue, Store, StringSet,
};

/// One telemetry table (or a telemetry-backed special table such as `iot.device_events`).
#[derive(Debug)]
pub struct MastTable {
    store: Arc<Store>,
    table: Arc<TableSchema>,
    schema: SchemaRef,
    /// Read only each series' latest rows (set by the latest-row rewrite): how many, and the
    /// non-tag columns that must be constant per series for that to stand (see
    /// [`ScanRequest::latest_by`]).
    latest: Option<(usize, Vec<String>)>,
}

impl MastTable {
    /// The table `name` as it is now, or `None` if the store has no such table.
    pub fn open(store: &Arc<Store>, name: &str) -> Option<MastTable> {
        let (_, table) = store.catalog().lookup(name)?;
        let schema = table.arrow_schema();
        Some(MastTable {
            store: Arc::clone(store),
            table,
            schema,
            latest: None,
        })
    }

    /// The same table, reading only each series' latest `rows` rows where the columns `by` hold
    /// one value over the series, and the whole series where they do not.
    pub fn latest_rows(&self, rows: usize, by: Vec<String>) -> MastTable {
        MastTable {
            store: Arc::clone(&self.store),
            table: Arc::clone(&self.table),
            schema: Arc::clone(&self.schema),
            latest: Some((rows, by)),
        }
    }

    /// Whether this provider reads only latest rows.
    pub fn is_latest(&self) -> bool {
        self.latest.is_some()
    }

    /// Whether `name` is one of the table's tags.
    pub fn is_tag(&self, name: &str) -> bool {
        is_tag(&self.table, name)
    }

    /// How a filter on this table is pushed down to storage: time and tag conditions, string
    /// fields against strings (`=`, `IN`, `IS NULL`, `OR` of those) and fields compared with a
    /// constant of their own type exactly (storage filters the rows); anything else inexactly
    /// (it still prunes segments and blocks by their statistics, and DataFusion applies it to
    /// the rows).
    pub fn pushdown(&self, e: &Expr) -> TableProviderFilterPushDown {
        match Pushed::of(&self.table, e) {
            Some(Pushed::Time(..) | Pushed::Tag(..) | Pushed::Strings(..))
            | Some(Pushed::Field(_, Some(_))) => TableProviderFilterPushDown::Exact,
            Some(Pushed::Field(_, None)) | None => TableProviderFilterPushDown::Inexact,
        }
    }
}

#[async_trait]
impl TableProvider for MastTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters.iter().map(|e| self.pushdown(e)).collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => Arc::clone(&self.schema),
        };
        let mut req = ScanRequest::table(&self.table.name);
        req.projection = Some(schema.fields().iter().map(|f| f.name().clone()).collect());
        if let Some((rows, by)) = &self.latest {
            req.latest = true;
            req.latest_rows = *rows;
            req.latest_by = by.clone();
        }
        req.batch_rows = state.config().batch_size().max(1);
        for f in filters {
            match Pushed::of(&self.table, f) {
                Some(Pushed::Time(lo, hi)) => {
                    req.time = (req.time.0.max(lo), req.time.1.min(hi));
                }
                Some(Pushed::Tag(name, values)) => req.tags.push((name, values)),
                Some(Pushed::Field(range, predicate)) => {
                    req.field_ranges.extend(range);
                    req.predicates.extend(predicate);
                }
                Some(Pushed::Strings(set)) => req.string_sets.push(set),
                None => {}
            }
        }
        // `limit` arrives only when every filter is exact.
        req.limit = limit;
        let snapshot = self.store.snapshot();
        if !filters.is_empty() {
            let stats = snapshot.segment_stats(&self.table.name);
            req.segments = pruning::keep(state, &self.schema, filters, stats);
        }
        let parts = if req.time.0 >= req.time.1 {
            Vec::new()
        } else {
            partitions(&snapshot, &req, state.config().target_partitions())
        };
        let ordered = single_tag(&self.table);
        Ok(Arc::new(MastScanExec::new(
            snapshot, req, schema, parts, ordered,
        )))
    }
}

/// Fewest rows worth a partition of their own.
const PART_ROWS: u64 = 1 << 16;

/// The scan's partitions, as (shard, part, parts of the shard): one per shard, and a shard
/// holding more than its share of the rows (more cores than shards, or a filter that leaves
/// one device) is split so that `target` partitions each decode about as many rows. A
/// latest-row scan reads little per series and is not split.
fn partitions(
    snapshot: &Snapshot,
    req: &ScanRequest,
    target: usize,
) -> Vec<(mast_storage::ShardId, usize, usize)> {
    let shards = snapshot.shard_ids();
    if req.latest || target <= 1 {
        return shards.into_iter().map(|s| (s, 0, 1)).collect();
    }
    // rows per shard: its head's, and its segments' that the request may read
    let mut rows: std::collections::BTreeMap<u32, u64> = snapshot
        .head_rows(&req.table)
        .into_iter()
        .map(|(s, n)| (s.0, n))
        .collect();
    for seg in snapshot.segment_stats(&req.table) {
        let wanted = seg.time.1 >= req.time.0
            && seg.time.0 < req.time.1
            && req
                .segments
                .as_ref()
                .is_none_or(|keep| keep.contains(&(seg.shard, seg.id)));
        if wanted {
            *rows.entry(seg.shard).or_default() += seg.rows;
        }
    }
    let total = rows.values().sum::<u64>().max(1);
    let mut out = Vec::new();
    for s in shards {
        let w = rows.get(&s.0).copied().unwrap_or(0);
        let fair = (u128::from(w) * target as u128 + u128::from(total) / 2) / u128::from(total);
        let n = (fair as usize)
            .min(usize::try_from(w / PART_ROWS).unwrap_or(usize::MAX))
            .clamp(1, target);
        out.extend((0..n).map(|k| (s, k, n)));
    }
    out
}

/// A filter storage can apply.
#[derive(Debug)]
enum Pushed {
    /// `[start, end)` in ns.
    Time(i64, i64),
    /// The tag is one of these values.
    Tag(String, Vec<String>),
    /// A comparison on a field: the statistics hint it gives, and the exact condition when
    /// storage can apply it (the column bare, the constant of its type).
    Field(Option<FieldRange>, Option<Predicate>),
    /// An exact condition on a string field (pruning by dictionaries, then filtering rows).
    Strings(StringSet),
}

impl Pushed {
    fn of(table: &TableSchema, e: &Expr) -> Option<Pushed> {
        match e {
            // `s = 'a' OR s = 'b'` on one tag or string field: a set, as `IN` is
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Or,
                right,
            }) => match (Pushed::of(table, left)?, Pushed::of(table, right)?) {
                (Pushed::Strings(mut a), Pushed::Strings(b)) if a.column == b.column => {
                    a.values.extend(b.values);
                    a.null |= b.null;
                    Some(Pushed::Strings(a))
                }
                (Pushed::Tag(a, mut va), Pushed::Tag(b, vb)) if a == b => {
                    va.extend(vb);
                    Some(Pushed::Tag(a, va))
                }
                _ => None,
            },
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                // column op literal, or literal op column (flipped)
                let (col, op, lit) = match (column_name(left), column_name(right)) {
                    (Some(c), None) => (c, *op, literal(right)?),
                    (None, Some(c)) => (c, op.swap()?, literal(left)?),
                    _ => return None,
                };
                let bare = if column_name(left).is_some() {
                    bare_column(left)
                } else {
                    bare_column(right)
                };
                Pushed::compare(table, &col, bare, op, &lit)
            }
            Expr::InList(list) if !list.negated => {
                let col = column_name(&list.expr)?;
                let bare = bare_column(&list.expr);
                let values = list
                    .list
                    .iter()
                    .map(|v| literal(v).and_then(|s| string_of(&s)))
                    .collect::<Option<Vec<_>>>()?;
                match table.column(&col)?.1.kind {
                    ColumnKind::Tag => Some(Pushed::Tag(col, values)),
                    ColumnKind::Field(FieldType::String) if bare => {
                        Some(Pushed::Strings(StringSet {
                            column: col,
                            values,
                            null: false,
                        }))
                    }
                    ColumnKind::Field(_) => None,
                }
            }
            // `WHERE ok` and `WHERE NOT ok` on a boolean field
            Expr::Column(c) => Pushed::flag(table, &c.name, true),
            Expr::Not(inner) => match inner.as_ref() {
                Expr::Column(c) => Pushed::flag(table, &c.name, false),
                _ => None,
            },
            // Not through casts: `try_cast(s AS …) IS NULL` holds for values too.
            Expr::IsNull(inner) => {
                let Expr::Column(c) = inner.as_ref() else {
                    return None;
                };
                let col = c.name.clone();
                match table.column(&col)?.1.kind {
                    ColumnKind::Field(FieldType::String) => Some(Pushed::Strings(StringSet {
                        column: col,
                        values: Vec::new(),
                        null: true,
                    })),
                    _ => None,
                }
            }
            Expr::Between(b) if !b.negated => {
                let col = column_name(&b.expr)?;
                if col != TIME_COLUMN {
                    return None;
                }
                let lo = timestamp_ns(&literal(&b.low)?)?;
                let hi = timestamp_ns(&literal(&b.high)?)?;
                Some(Pushed::Time(lo, hi.saturating_add(1)))
            }
            _ => None,
        }
    }

    /// Boolean field `col` is `value`.
    fn flag(table: &TableSchema, col: &str, value: bool) -> Option<Pushed> {
        let kind = table.column(col)?.1.kind;
        (kind == ColumnKind::Field(FieldType::Boolean)).then(|| {
            Pushed::compare(
                table,
                col,
                true,
                Operator::Eq,
                &ScalarValue::Boolean(Some(value)),
            )
        })?
    }

    /// `col op lit`; `bare` when the column was not cast on the way (or only to a string type).
    fn compare(
        table: &TableSchema,
        col: &str,
        bare: bool,
        op: Operator,
        lit: &ScalarValue,
    ) -> Option<Pushed> {
        if col == TIME_COLUMN {
            let t = timestamp_ns(lit)?;
            return Some(match op {
                Operator::Eq => Pushed::Time(t, t.saturating_add(1)),
                Operator::Gt => Pushed::Time(t.saturating_add(1), i64::MAX),
                Operator::GtEq => Pushed::Time(t, i64::MAX),
                Operator::Lt => Pushed::Time(i64::MIN, t),
                Operator::LtEq => Pushed::Time(i64::MIN, t.saturating_add(1)),
                _ => return None,
            });
        }
        let (_, def) = table.column(col)?;
        match def.kind {
            ColumnKind::Tag if op == Operator::Eq => {
                Some(Pushed::Tag(col.to_string(), vec![string_of(lit)?]))
            }
            ColumnKind::Tag => None,
            ColumnKind::Field(FieldType::String) if op == Operator::Eq && bare => {
                Some(Pushed::Strings(StringSet {
                    column: col.to_string(),
                    values: vec![string_of(lit)?],
                    null: false,
                }))
            }
            ColumnKind::Field(FieldType::String) => None,
            ColumnKind::Field(ty) => {
                let range = stat_of(ty, lit).and_then(|v| {
                    let (min, max) = match op {
                        Operator::Eq => (Some(v), Some(v)),
                        Operator::Gt | Operator::GtEq => (Some(v), None),
                        Operator::Lt | Operator::LtEq => (None, Some(v)),
                        _ => return None,
                    };
                    Some(FieldRange {
                        column: col.to_string(),
                        min,
                        max,
                    })
                });
                let predicate = bare
                    .then(|| exact_value(ty, lit))
                    .flatten()
                    .zip(cmp_of(op))
                    .map(|(value, cmp)| Predicate {
                        column: col.to_string(),
                        cmp,
                        value,
                    });
                if range.is_none() && predicate.is_none() {
                    return None;
                }
                Some(Pushed::Field(range, predicate))
            }
        }
    }
}

/// Whether the table's only tag is `device_id`: then each partition's rows come sorted by
/// `(device_id, time)` (series in key order, each in time order, duplicates resolved).
fn single_tag(table: &TableSchema) -> bool {
    let mut tags = table.columns.iter().filter(|c| c.kind == ColumnKind::Tag);
    matches!((tags.next(), tags.next()), (Some(t), None) if &*t.name == mast_storage::batch::DEVICE_TAG)
}

fn is_tag(table: &TableSchema, col: &str) -> bool {
    table
        .column(col)
        .is_some_and(|(_, c)| c.kind == ColumnKind::Tag)
}

/// The column a (possibly cast) column expression names.
fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(c) => column_name(&c.expr),
        Expr::TryCast(c) => column_name(&c.expr),
        _ => None,
    }
}

/// Whether a column expression reads the column's values unchanged: no cast, or casts to string
/// types only (a string field is a dictionary in Arrow, compared as Utf8 or Utf8View).
fn bare_column(e: &Expr) -> bool {
    use datafusion::arrow::datatypes::DataType;
    fn stringy(t: &DataType) -> bool {
        match t {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => true,
            DataType::Dictionary(_, v) => stringy(v),
            _ => false,
        }
    }
    match e {
        Expr::Column(_) => true,
        Expr::Cast(c) => stringy(c.field.data_type()) && bare_column(&c.expr),
        Expr::TryCast(c) => stringy(c.field.data_type()) && bare_column(&c.expr),
        _ => false,
    }
}

/// A constant as storage compares it with a field of type `ty`: only of the field's own type
/// (anything else reaches storage cast, which DataFusion applies).
fn exact_value(ty: FieldType, v: &ScalarValue) -> Option<StatValue> {
    match (ty, v) {
        (FieldType::Float, ScalarValue::Float64(Some(x))) => Some(StatValue::F64(*x)),
        (FieldType::Integer, ScalarValue::Int64(Some(x))) => Some(StatValue::I64(*x)),
        (FieldType::Boolean, ScalarValue::Boolean(Some(b))) => Some(StatValue::Bool(*b)),
        _ => None,
    }
}

fn cmp_of(op: Operator) -> Option<Cmp> {
    Some(match op {
        Operator::Eq => Cmp::Eq,
        Operator::NotEq => Cmp::NotEq,
        Operator::Lt => Cmp::Lt,
        Operator::LtEq => Cmp::LtEq,
        Operator::Gt => Cmp::Gt,
        Operator::GtEq => Cmp::GtEq,
        _ => return None,
    })
}

fn literal(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v.clone()),
        _ => None,
    }
}

/// The text of a string literal (dictionary-wrapped or not).
pub(crate) fn str_of(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s),
        ScalarValue::Dictionary(_, inner) => str_of(inner),
        _ => None,
    }
}

fn string_of(v: &ScalarValue) -> Option<String> {
    str_of(v).map(str::to_string)
}

/// A timestamp literal of any unit, in ns since the epoch.
pub(crate) fn timestamp_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampMicrosecond(Some(t), _) => t.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(t), _) => t.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000_000_000),
        _ => None,
    }
}

fn stat_of(ty: FieldType, v: &ScalarValue) -> Option<StatValue> {
    let f = match v {
        ScalarValue::Float64(Some(x)) => *x,
        ScalarValue::Float32(Some(x)) => f64::from(*x),
        ScalarValue::Int64(Some(x)) => return int_stat(ty, *x),
        ScalarValue::Int32(Some(x)) => return int_stat(ty, i64::from(*x)),
        ScalarValue::Int16(Some(x)) => return int_stat(ty, i64::from(*x)),
        ScalarValue::Int8(Some(x)) => return int_stat(ty, i64::from(*x)),
        ScalarValue::Boolean(Some(b)) if ty == FieldType::Boolean => {
            return Some(StatValue::Bool(*b));
        }
        _ => return None,
    };
    match ty {
        FieldType::Float if !f.is_nan() => Some(StatValue::F64(f)),
        _ => None,
    }
}

fn int_stat(ty: FieldType, x: i64) -> Option<StatValue> {
    match ty {
        FieldType::Integer => Some(StatValue::I64(x)),
        FieldType::Float => Some(StatValue::F64(x as f64)),
        _ => None,
    }
}

/// Reads one table from a snapshot: one partition per shard, or per part of a shard (see
/// [`partitions`]).
#[derive(Debug)]
pub struct MastScanExec {
    snapshot: Snapshot,
    req: ScanRequest,
    schema: SchemaRef,
    /// Per partition: (shard, part, parts of the shard).
    parts: Vec<(mast_storage::ShardId, usize, usize)>,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl MastScanExec {
    fn new(
        snapshot: Snapshot,
        req: ScanRequest,
        schema: SchemaRef,
        parts: Vec<(mast_storage::ShardId, usize, usize)>,
        single_tag: bool,
    ) -> MastScanExec {
        let asc = datafusion::arrow::compute::SortOptions {
            descending: false,
            nulls_first: false,
        };
        let sort_key = |name: &str| {
            schema.index_of(name).ok().map(|i| {
                datafusion::physical_expr::PhysicalSortExpr::new(
                    Arc::new(datafusion::physical_expr::expressions::Column::new(name, i)),
                    asc,
                )
            })
        };
        // (device_id, time) when both are read; (device_id) alone still holds without time.
        let ordering: Vec<_> = if single_tag {
            match (
                sort_key(mast_storage::batch::DEVICE_TAG),
                sort_key(TIME_COLUMN),
            ) {
                (Some(d), Some(t)) => vec![d, t],
                (Some(d), None) => vec![d],
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let eq = if ordering.is_empty() {
            EquivalenceProperties::new(Arc::clone(&schema))
        } else {
            EquivalenceProperties::new_with_orderings(Arc::clone(&schema), [ordering])
        };
        let props = PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(parts.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        MastScanExec {
            snapshot,
            req,
            schema,
            parts,
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The storage request this scan makes (per shard).
    pub fn request(&self) -> &ScanRequest {
        &self.req
    }
}

impl DisplayAs for MastScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.req;
        let mut shards: Vec<_> = self.parts.iter().map(|p| p.0).collect();
        shards.dedup();
        write!(
            f,
            "MastScanExec: table={}, shards={}",
            r.table,
            shards.len()
        )?;
        if self.parts.len() > shards.len() {
            write!(f, ", partitions={}", self.parts.len())?;
        }
        if r.time != (i64::MIN, i64::MAX) {
            write!(f, ", time=[{}, {})", r.time.0, r.time.1)?;
        }
        for (tag, values) in &r.tags {
            write!(f, ", {tag} in {values:?}")?;
        }
        for fr in &r.field_ranges {
            write!(f, ", {} in [{:?}, {:?}]", fr.column, fr.min, fr.max)?;
        }
        for p in &r.predicates {
            write!(f, ", {} {} {:?}", p.column, p.cmp, p.value)?;
        }
        if let Some(l) = r.limit {
            write!(f, ", limit={l}")?;
        }
        if let Some(s) = &r.segments {
            write!(f, ", segments={}", s.len())?;
        }
        if r.latest {
            write!(f, ", latest=true")?;
            if r.latest_rows > 1 {
                write!(f, ", latest_rows={}", r.latest_rows)?;
            }
            if !r.latest_by.is_empty() {
                write!(f, ", latest_by={:?}", r.latest_by)?;
            }
        }
        for set in &r.string_sets {
            write!(f, ", {} in {:?}", set.column, set.values)?;
            if set.null {
                write!(f, " or null")?;
            }
        }
        Ok(())
    }
}

/// What `EXPLAIN ANALYZE` shows of a scan, per partition (shard).
struct ScanExecMetrics {
    output_rows: Count,
    scan_time: Time,
    decode_time: Time,
    rows_decoded: Count,
    blocks_decoded: Count,
    blocks_pruned: Count,
    segments_scanned: Count,
    segments_pruned: Count,
    bytes_decoded: Count,
    series: Count,
    rows_filtered: Count,
    blocks_filtered: Count,
}

impl ScanExecMetrics {
    fn new(set: &ExecutionPlanMetricsSet, partition: usize) -> ScanExecMetrics {
        let count = |name: &'static str| MetricBuilder::new(set).counter(name, partition);
        ScanExecMetrics {
            output_rows: MetricBuilder::new(set).output_rows(partition),
            // time in storage: pruning, decoding and assembling Arrow, not waiting on the consumer
            scan_time: MetricBuilder::new(set).subset_time("scan_time", partition),
            // of which decoding blocks and head chunks
            decode_time: MetricBuilder::new(set).subset_time("decode_time", partition),
            rows_decoded: count("rows_decoded"),
            blocks_decoded: count("blocks_decoded"),
            blocks_pruned: count("blocks_pruned"),
            segments_scanned: count("segments_scanned"),
            segments_pruned: count("segments_pruned"),
            bytes_decoded: count("bytes_decoded"),
            series: count("series"),
            rows_filtered: count("rows_filtered"),
            blocks_filtered: count("blocks_filtered"),
        }
    }

    fn record(&self, m: &mast_storage::ScanMetrics) {
        let n = |x: u64| usize::try_from(x).unwrap_or(usize::MAX);
        self.decode_time
            .add_duration(std::time::Duration::from_nanos(m.decode_nanos));
        self.rows_decoded.add(n(m.rows_decoded));
        self.blocks_decoded.add(n(m.blocks_decoded));
        self.blocks_pruned.add(n(m.blocks_pruned));
        self.segments_scanned.add(n(m.segments_scanned));
        self.segments_pruned.add(n(m.segments_pruned));
        self.bytes_decoded.add(n(m.bytes_decoded));
        self.series.add(n(m.series));
        self.rows_filtered.add(n(m.rows_filtered));
        self.blocks_filtered.add(n(m.blocks_filtered));
    }
}

impl ExecutionPlan for MastScanExec {
    fn name(&self) -> &str {
        "MastScanExec"
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = Arc::clone(&self.schema);
        let Some((shard, part, parts)) = self.parts.get(partition).copied() else {
            // No shard can hold matching rows (an empty time range): an empty stream.
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        };
        let mut req = self.req.clone();
        req.shards = Some(vec![shard]);
        req.split = (part, parts);
        let snapshot = self.snapshot.clone();
        let metrics = ScanExecMetrics::new(&self.metrics, partition);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<_>>(2);
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut waited = std::time::Duration::ZERO;
            let result = snapshot.scan_each(&req, &mut |batch| {
                metrics.output_rows.add(batch.num_rows());
                let t = std::time::Instant::now();
                let sent = tx.blocking_send(Ok(batch)).is_ok();
                waited += t.elapsed();
                sent
            });
            metrics
                .scan_time
                .add_duration(started.elapsed().saturating_sub(waited));
            match result {
                Ok(m) => metrics.record(&m),
                Err(e) => {
                    let _ = tx.blocking_send(Err(DataFusionError::External(Box::new(e))));
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.boxed(),
        )))
    }
}
