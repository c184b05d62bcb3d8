//! Special tables: `system.*` and `iot.*`, tables whose rows Mast computes when asked rather than
//! stores as telemetry. Each is one struct implementing [`SpecialTable`]; the
//! [`SpecialTableProvider`] adapter makes it a DataFusion table (projection, filters and limit
//! then work as on any in-memory table).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// A table computed on demand.
pub trait SpecialTable: Debug + Send + Sync + 'static {
    /// Its columns (fixed).
    fn schema(&self) -> SchemaRef;
    /// Its rows now.
    fn rows(&self) -> Result<RecordBatch>;
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

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.inner.rows()?;
        let mem = MemTable::try_new(self.inner.schema(), vec![vec![batch]])?;
        mem.scan(state, projection, filters, limit).await
    }
}
