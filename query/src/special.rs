//! Special tables: `system.*` and `iot.*`, tables whose rows Mast computes when asked rather than
//! stores as telemetry. Each is one struct implementing [`SpecialTable`]; the
//! [`SpecialTableProvider`] adapter makes it a DataFusion table.
//!
//! A table is asked for the rows of one [`Scan`]: the columns the query reads, its conditions
//! and its limit. It may use them to read less (`iot.devices WHERE device_id = 'x'` reads one
//! record, [`Scan::values_of`]); DataFusion applies every condition again, so a table never has
//! to. [`Rows`] builds the answer row by row, keeping only the projected columns. The scan runs
//! on a blocking thread of the runtime, not on an async worker: reading the metadata store or a
//! snapshot may block.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampNanosecondBuilder, UInt32Builder, UInt64Builder, make_builder,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

/// What a query asks of a special table.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// The columns it reads (indices into the table's schema); `None` = all.
    pub projection: Option<Vec<usize>>,
    /// Its conditions on the table (ANDed). A table may use them to read less; they are applied
    /// again afterwards.
    pub filters: Vec<Expr>,
    /// How many rows are needed at most, when DataFusion knows it (no condition left above).
    pub limit: Option<usize>,
}

impl Scan {
    /// The string values the conditions pin `column` to — `column = 'v'`, `column IN ('v', …)`,
    /// or an `OR` of those, in any one condition — or `None` when they do not.
    pub fn values_of(&self, column: &str) -> Option<Vec<String>> {
        self.filters.iter().find_map(|f| pinned(f, column))
    }

    /// Whether the query reads `column` of a table with `schema` (a table may skip computing
    /// a costly column nobody reads).
    pub fn reads(&self, schema: &SchemaRef, column: &str) -> bool {
        let Ok(i) = schema.index_of(column) else {
            return false;
        };
        self.projection.as_ref().is_none_or(|p| p.contains(&i))
    }

    /// A builder for this scan's rows of a table with `schema`.
    pub fn rows(&self, schema: &SchemaRef) -> Rows {
        Rows::new(schema, self.projection.as_deref())
    }
}

fn literal_string(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)), _)
        | Expr::Literal(ScalarValue::Utf8View(Some(s)), _) => Some(s.clone()),
        _ => None,
    }
}

fn is_column(e: &Expr, column: &str) -> bool {
    matches!(e, Expr::Column(c) if c.name == column)
}

fn pinned(e: &Expr, column: &str) -> Option<Vec<String>> {
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::Eq => {
            if is_column(&b.left, column) {
                literal_string(&b.right).map(|v| vec![v])
            } else if is_column(&b.right, column) {
                literal_string(&b.left).map(|v| vec![v])
            } else {
                None
            }
        }
        Expr::BinaryExpr(b) if b.op == Operator::Or => {
            let mut l = pinned(&b.left, column)?;
            l.extend(pinned(&b.right, column)?);
            Some(l)
        }
        Expr::BinaryExpr(b) if b.op == Operator::And => {
            pinned(&b.left, column).or_else(|| pinned(&b.right, column))
        }
        Expr::InList(l) if !l.negated && is_column(&l.expr, column) => {
            l.list.iter().map(literal_string).collect()
        }
        _ => None,
    }
}

/// Builds a special table's answer row by row: each [`Row`] sets the table's columns in schema
/// order; columns the scan does not read cost nothing.
pub struct Rows {
    schema: SchemaRef,
    /// Per column of the table: its builder's index, if projected.
    slot: Vec<Option<usize>>,
    builders: Vec<Box<dyn ArrayBuilder>>,
    len: usize,
    /// The first column given a value of the wrong type.
    bad: Option<usize>,
}

impl Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("schema", &self.schema)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Rows {
    /// Rows of a table with `schema`, keeping the `projection` columns (all when `None`).
    pub fn new(schema: &SchemaRef, projection: Option<&[usize]>) -> Rows {
        let n = schema.fields().len();
        let keep: Vec<usize> = projection.map_or_else(|| (0..n).collect(), <[usize]>::to_vec);
        let mut slot = vec![None; n];
        let mut builders = Vec::with_capacity(keep.len());
        for (i, &c) in keep.iter().enumerate() {
            if let Some(s) = slot.get_mut(c) {
                *s = Some(i);
            }
            builders.push(make_builder(schema.field(c).data_type(), 16));
        }
        let projected = schema
            .project(&keep)
            .map_or_else(|_| Arc::clone(schema), Arc::new);
        Rows {
            schema: projected,
            slot,
            builders,
            len: 0,
            bad: None,
        }
    }

    /// The next row: set every column, in schema order.
    pub fn row(&mut self) -> Row<'_> {
        self.len += 1;
        Row { rows: self, col: 0 }
    }

    /// The batch (of the projected columns).
    pub fn finish(mut self) -> Result<RecordBatch> {
        if let Some(c) = self.bad {
            return Err(DataFusionError::Internal(format!(
                "special table: column {c} was given a value of the wrong type"
            )));
        }
        let cols = self.builders.iter_mut().map(|b| b.finish()).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(self.len));
        Ok(RecordBatch::try_new_with_options(
            self.schema,
            cols,
            &options,
        )?)
    }
}

/// One row being set, column by column.
#[derive(Debug)]
pub struct Row<'a> {
    rows: &'a mut Rows,
    col: usize,
}

impl Row<'_> {
    fn put<B: ArrayBuilder>(mut self, f: impl FnOnce(&mut B)) -> Self {
        let c = self.col;
        self.col += 1;
        let Some(Some(i)) = self.rows.slot.get(c).copied() else {
            return self;
        };
        let b: &mut dyn Any = self.rows.builders[i].as_any_mut();
        match b.downcast_mut::<B>() {
            Some(b) => f(b),
            None => {
                self.rows.bad.get_or_insert(c);
            }
        }
        self
    }

    pub fn str(self, v: &str) -> Self {
        self.put(|b: &mut StringBuilder| b.append_value(v))
    }

    pub fn opt_str(self, v: Option<&str>) -> Self {
        self.put(|b: &mut StringBuilder| b.append_option(v))
    }

    pub fn bool(self, v: bool) -> Self {
        self.put(|b: &mut BooleanBuilder| b.append_value(v))
    }

    pub fn u32(self, v: u32) -> Self {
        self.put(|b: &mut UInt32Builder| b.append_value(v))
    }

    pub fn u64(self, v: u64) -> Self {
        self.put(|b: &mut UInt64Builder| b.append_value(v))
    }

    pub fn i64(self, v: i64) -> Self {
        self.put(|b: &mut Int64Builder| b.append_value(v))
    }

    pub fn opt_i64(self, v: Option<i64>) -> Self {
        self.put(|b: &mut Int64Builder| b.append_option(v))
    }

    pub fn f64(self, v: f64) -> Self {
        self.put(|b: &mut Float64Builder| b.append_value(v))
    }

    /// A list of strings (a `List(Utf8)` column).
    pub fn str_list<S: AsRef<str>>(self, v: &[S]) -> Self {
        self.put(|b: &mut ListBuilder<Box<dyn ArrayBuilder>>| {
            if let Some(s) = b.values().as_any_mut().downcast_mut::<StringBuilder>() {
                for x in v {
                    s.append_value(x.as_ref());
                }
            }
            b.append(true);
        })
    }

    /// A timestamp, ns since the epoch.
    pub fn ts(self, v: i64) -> Self {
        self.put(|b: &mut TimestampNanosecondBuilder| b.append_value(v))
    }

    pub fn opt_ts(self, v: Option<i64>) -> Self {
        self.put(|b: &mut TimestampNanosecondBuilder| b.append_option(v))
    }
}

/// A table computed on demand.
#[async_trait]
pub trait SpecialTable: Debug + Send + Sync + 'static {
    /// Its columns (fixed).
    fn schema(&self) -> SchemaRef;

    /// Its rows for `scan` (of the projected columns: build them with [`Scan::rows`]). It may
    /// leave out rows its conditions exclude. Runs on a blocking thread, so it may block.
    async fn scan(&self, scan: &Scan) -> Result<RecordBatch>;
}

/// Makes a [`SpecialTable`] a DataFusion table.
#[derive(Debug)]
pub struct SpecialTableProvider<T> {
    inner: Arc<T>,
}

impl<T: SpecialTable> SpecialTableProvider<T> {
    /// Wraps `table`.
    pub fn new(table: T) -> SpecialTableProvider<T> {
        SpecialTableProvider {
            inner: Arc::new(table),
        }
    }

    /// The wrapped table.
    pub fn table(&self) -> &T {
        &self.inner
    }
}

#[async_trait]
impl<T: SpecialTable> TableProvider for SpecialTableProvider<T> {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Every condition is handed to the table, and applied again above it.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scan = Scan {
            projection: projection.cloned(),
            filters: filters.to_vec(),
            limit,
        };
        let batch = match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let table = Arc::clone(&self.inner);
                tokio::task::spawn_blocking(move || handle.block_on(table.scan(&scan)))
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))??
            }
            // Not on a Tokio runtime (a test's own executor): nothing to keep free.
            Err(_) => self.inner.scan(&scan).await?,
        };
        let mem = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        mem.scan(state, None, &[], limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, StringArray, UInt64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::{col, lit};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::UInt64, false),
            Field::new("note", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn list_columns_and_what_a_scan_reads() {
        use datafusion::arrow::array::ListArray;
        let item = Arc::new(Field::new("item", DataType::Utf8, true));
        let s: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("groups", DataType::List(item), false),
        ]));
        let mut r = Rows::new(&s, None);
        r.row().str("a").str_list(&["x", "y"]);
        r.row().str("b").str_list::<&str>(&[]);
        let b = r.finish().unwrap();
        let l = b.column(1).as_any().downcast_ref::<ListArray>().unwrap();
        let first = l.value(0);
        let first = first.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((first.value(0), first.value(1)), ("x", "y"));
        assert_eq!(l.value(1).len(), 0);
        let scan = Scan {
            projection: Some(vec![0]),
            ..Scan::default()
        };
        assert!(scan.reads(&s, "id") && !scan.reads(&s, "groups") && !scan.reads(&s, "no"));
        assert!(Scan::default().reads(&s, "groups"));
    }

    #[test]
    fn rows_keep_the_projected_columns_and_count_rows_without_any() {
        let mut r = Rows::new(&schema(), Some(&[1, 0]));
        r.row().str("a").u64(1).opt_str(None);
        r.row().str("b").u64(2).opt_str(Some("x"));
        let b = r.finish().unwrap();
        assert_eq!(b.num_columns(), 2);
        assert_eq!(b.schema().field(0).name(), "n");
        let n = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
        assert_eq!(n.values(), &[1, 2]);
        let id = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(id.value(1), "b");

        let mut r = Rows::new(&schema(), Some(&[]));
        r.row().str("a").u64(1).opt_str(None);
        assert_eq!(r.finish().unwrap().num_rows(), 1, "count(*) needs the rows");

        let mut r = Rows::new(&schema(), None);
        r.row().u64(1);
        assert!(r.finish().is_err(), "a value of the wrong type is an error");
    }

    #[test]
    fn conditions_pin_values() {
        let scan = |filters: Vec<Expr>| Scan {
            filters,
            ..Scan::default()
        };
        assert_eq!(
            scan(vec![col("id").eq(lit("x"))]).values_of("id"),
            Some(vec!["x".into()])
        );
        assert_eq!(
            scan(vec![lit("y").eq(col("id")).or(col("id").eq(lit("z")))]).values_of("id"),
            Some(vec!["y".into(), "z".into()])
        );
        assert_eq!(
            scan(vec![col("id").in_list(vec![lit("p"), lit("q")], false)]).values_of("id"),
            Some(vec!["p".into(), "q".into()])
        );
        assert_eq!(
            scan(vec![col("n").gt(lit(3)).and(col("id").eq(lit("w")))]).values_of("id"),
            Some(vec!["w".into()])
        );
        assert_eq!(
            scan(vec![col("id").eq(lit("x")).or(col("n").eq(lit(1)))]).values_of("id"),
            None
        );
        assert_eq!(scan(vec![col("id").not_eq(lit("x"))]).values_of("id"), None);
        assert_eq!(scan(vec![col("note").eq(lit("x"))]).values_of("id"), None);
    }
}
