//! [`QueryEngine`]: runs one SQL statement under Mast's guard rails.
//!
//! - Read-only: only queries (`SELECT`, `WITH`, `VALUES`, `EXPLAIN` of those) are planned; DDL,
//!   DML, `COPY` and `SET` are refused with [`QueryErrorKind::ReadOnly`] before planning.
//! - A per-query memory pool (`memory_limit` bytes, no spilling): a query that needs more fails
//!   alone with [`QueryErrorKind::MemoryLimit`].
//! - A per-query deadline covering planning and every batch: past it the query is dropped
//!   (its scans stop at their next batch) and fails with [`QueryErrorKind::Timeout`].
//! - At most `max_concurrent` queries at once; more fail fast with [`QueryErrorKind::Busy`].
//! - Every query is in `system.queries` while it runs and among the recent ones after.

use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SendableRecordBatchStream, SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::{Stream, StreamExt};
use mast_storage::Store;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::catalog::MastSchema;
use crate::error::{QueryError, QueryErrorKind, classify};
use crate::special::{SpecialTable, SpecialTableProvider};
use crate::system::{ColumnsTable, QueriesTable, QueryLog, SegmentsTable, TablesTable};

/// Start of the message of a refused write statement.
pub(crate) const READ_ONLY_PREFIX: &str = "SQL over HTTP is read-only";

/// The catalog name (`mast.public.readings`).
pub const CATALOG: &str = "mast";

/// Limits every query runs under.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Longest a query may run, planning and streaming included.
    pub timeout: Duration,
    /// Most memory one query's operators may hold (bytes).
    pub memory_limit: usize,
    /// Queries at once; more are refused.
    pub max_concurrent: usize,
    /// Partitions DataFusion plans for (threads a query may keep busy).
    pub target_partitions: usize,
    /// Finished queries `system.queries` keeps.
    pub keep_finished: usize,
}

impl Default for QueryLimits {
    fn default() -> QueryLimits {
        QueryLimits {
            timeout: Duration::from_secs(60),
            memory_limit: 1 << 30,
            max_concurrent: 16,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            keep_finished: 100,
        }
    }
}

/// SQL over a store.
#[derive(Debug)]
pub struct QueryEngine {
    base: SessionState,
    limits: QueryLimits,
    log: Arc<QueryLog>,
    slots: Arc<Semaphore>,
    system: Arc<MastSchema>,
    iot: Arc<MastSchema>,
}

impl QueryEngine {
    /// An engine over `store`.
    pub fn new(store: Arc<Store>, limits: QueryLimits) -> Result<QueryEngine, QueryError> {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_target_partitions(limits.target_partitions.max(1))
            .with_batch_size(8192);
        // now(), current_date() and friends in UTC, like every timestamp Mast stores.
        config.options_mut().execution.time_zone = Some("UTC".to_string());
        let builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        let mut base = crate::functions::install(builder).build();
        crate::functions::register(&mut base)?;

        let catalog = MemoryCatalogProvider::new();
        let public = Arc::new(MastSchema::telemetry(Arc::clone(&store)));
        let system = Arc::new(MastSchema::specials(Arc::clone(&store)));
        let iot = Arc::new(MastSchema::prefixed(Arc::clone(&store), "iot."));
        catalog.register_schema("public", public)?;
        catalog.register_schema("system", Arc::clone(&system) as _)?;
        catalog.register_schema("iot", Arc::clone(&iot) as _)?;
        base.catalog_list()
            .register_catalog(CATALOG.to_string(), Arc::new(catalog));

        let log = Arc::new(QueryLog::new(limits.keep_finished.max(1)));
        let engine = QueryEngine {
            base,
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            limits,
            log: Arc::clone(&log),
            system,
            iot,
        };
        engine.add_system_table("tables", TablesTable::new(Arc::clone(&store)));
        engine.add_system_table("columns", ColumnsTable::new(Arc::clone(&store)));
        engine.add_system_table("segments", SegmentsTable::new(Arc::clone(&store)));
        engine.add_system_table("queries", QueriesTable::new(log));
        Ok(engine)
    }

    /// Adds a table to the `system` schema.
    pub fn add_system_table<T: SpecialTable>(&self, name: &str, table: T) {
        self.system
            .add(name, Arc::new(SpecialTableProvider::new(table)));
    }

    /// Adds a table to the `iot` schema.
    pub fn add_iot_table<T: SpecialTable>(&self, name: &str, table: T) {
        self.iot
            .add(name, Arc::new(SpecialTableProvider::new(table)));
    }

    /// The query log behind `system.queries`.
    pub fn log(&self) -> &Arc<QueryLog> {
        &self.log
    }

    /// The limits queries run under.
    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Plans and starts one statement; the rows come from the returned stream.
    pub async fn run(&self, sql: &str) -> Result<QueryStream, QueryError> {
        let permit = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            QueryError::new(
                QueryErrorKind::Busy,
                format!(
                    "{} queries are running, the most allowed at once (query.max_concurrent)",
                    self.limits.max_concurrent
                ),
            )
        })?;
        let id = self.log.start(sql);
        let deadline = Instant::now() + self.limits.timeout;
        let started = tokio::time::timeout_at(deadline, self.start(sql)).await;
        let stream = match started {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.log.finish(id, "failed", Some(e.message.clone()));
                return Err(e);
            }
            Err(_) => {
                let e = self.timeout_error();
                self.log.finish(id, "failed", Some(e.message.clone()));
                return Err(e);
            }
        };
        Ok(QueryStream {
            schema: stream.schema(),
            inner: stream,
            id,
            log: Arc::clone(&self.log),
            deadline,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            timeout: self.limits.timeout,
            ended: false,
            _permit: permit,
        })
    }

    /// Plans `sql` (read-only) and starts executing it.
    async fn start(&self, sql: &str) -> Result<SendableRecordBatchStream, QueryError> {
        let state = self.session();
        let plan = self.plan(&state, sql).await?;
        let physical = state.create_physical_plan(&plan).await?;
        let task = datafusion::execution::TaskContext::from(&state).with_runtime(self.runtime()?);
        Ok(datafusion::physical_plan::execute_stream(
            physical,
            Arc::new(task),
        )?)
    }

    /// The logical plan of a read-only statement.
    pub async fn plan(&self, state: &SessionState, sql: &str) -> Result<LogicalPlan, QueryError> {
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect)?;
        if !read_only(&statement) {
            return Err(QueryError::new(
                QueryErrorKind::ReadOnly,
                format!(
                    "{READ_ONLY_PREFIX}: only SELECT, WITH, VALUES and EXPLAIN are allowed \
                     (devices write over MQTT)"
                ),
            ));
        }
        let plan = state.statement_to_plan(statement).await?;
        datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| {
                let mut q = classify(&e);
                q.kind = QueryErrorKind::ReadOnly;
                q
            })?;
        Ok(plan)
    }

    /// A session for planning one query: the shared catalog, functions and rules, with `now()`
    /// fixed. A clone of the base state, not a rebuild (rebuilding registers every function
    /// again: a tenth of a millisecond per query). It plans; it runs nothing, so it needs no
    /// memory pool of its own — the query's is on the task context (see [`Self::runtime`]).
    pub fn session(&self) -> SessionState {
        let mut state = self.base.clone();
        // Fixes now() for this query (what SessionContext::sql does).
        state.mark_start_execution();
        state
    }

    /// This query's runtime: its own memory pool (`query.memory_limit`), no spilling to disk.
    fn runtime(&self) -> Result<Arc<RuntimeEnv>, QueryError> {
        let pool = TrackConsumersPool::new(
            GreedyMemoryPool::new(self.limits.memory_limit.max(1 << 20)),
            NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        );
        Ok(RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()?)
    }

    fn timeout_error(&self) -> QueryError {
        QueryError::new(
            QueryErrorKind::Timeout,
            format!(
                "query ran longer than {:?} (query.timeout_ms) and was stopped",
                self.limits.timeout
            ),
        )
    }
}

fn read_only(s: &Statement) -> bool {
    match s {
        Statement::Statement(s) => match s.as_ref() {
            SqlStatement::Query(_) => true,
            SqlStatement::Explain { statement, .. } => {
                matches!(statement.as_ref(), SqlStatement::Query(_))
            }
            _ => false,
        },
        Statement::Explain(e) => read_only(&e.statement),
        _ => false,
    }
}

/// A running query's rows. Dropping it cancels the query.
pub struct QueryStream {
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    id: u64,
    log: Arc<QueryLog>,
    deadline: Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    ended: bool,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("id", &self.id)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl QueryStream {
    /// The result's schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The query's id in `system.queries`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records the query as failed for a reason outside it (the result could not be encoded).
    pub fn fail(&mut self, message: &str) {
        self.end("failed", Some(message.to_string()));
    }

    fn end(&mut self, state: &'static str, error: Option<String>) {
        if !self.ended {
            self.ended = true;
            self.log.finish(self.id, state, error);
        }
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            let e = QueryError::new(
                QueryErrorKind::Timeout,
                format!(
                    "query ran longer than {:?} (query.timeout_ms) and was stopped",
                    self.timeout
                ),
            );
            self.end("failed", Some(e.message.clone()));
            return Poll::Ready(Some(Err(e)));
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.end("done", None);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(b))) => {
                self.log.add_rows(self.id, b.num_rows() as u64);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e = classify(&e);
                self.end("failed", Some(e.message.clone()));
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        self.end("cancelled", None);
    }
}
