//! `[query]`: limits every SQL query runs under, mapped onto [`mast_query::QueryLimits`].

use std::time::Duration;

use mast_query::QueryLimits;
use serde::{Deserialize, Serialize};

use super::Invalid;

/// SQL queries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Longest a query may run (planning and streaming the result), milliseconds; then it
    /// fails with 408.
    pub timeout_ms: u64,
    /// Most memory one query's sorts, joins and aggregations may hold, MiB; past it the query
    /// fails with 413 (nothing spills to disk).
    pub memory_limit_mb: usize,
    /// Queries at once; more are refused with 429.
    pub max_concurrent: usize,
    /// Threads that run queries (and HTTP); 0 = one per core. Ingest has its own threads.
    pub threads: usize,
    /// Finished queries `system.queries` keeps.
    pub history: usize,
    /// Nice value of the query threads (0 = normal priority, up to 19): with the default 10 the
    /// scheduler gives ingest about nine times the CPU of queries when both want it all.
    pub nice: i32,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout_ms: 60_000,
            memory_limit_mb: 1024,
            max_concurrent: 16,
            threads: 0,
            history: 100,
            nice: 10,
        }
    }
}

impl QueryConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        if self.timeout_ms == 0 {
            return Err(Invalid::new(
                "query.timeout_ms",
                "query.timeout_ms must be > 0",
            ));
        }
        if self.memory_limit_mb == 0 {
            return Err(Invalid::new(
                "query.memory_limit_mb",
                "query.memory_limit_mb must be > 0",
            ));
        }
        if !(0..=19).contains(&self.nice) {
            return Err(Invalid::new(
                "query.nice",
                "query.nice must be between 0 and 19",
            ));
        }
        if self.max_concurrent == 0 {
            return Err(Invalid::new(
                "query.max_concurrent",
                "query.max_concurrent must be > 0",
            ));
        }
        Ok(())
    }

    /// Threads to run, resolving 0 to the core count.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// The limits for the query engine.
    pub fn limits(&self) -> QueryLimits {
        QueryLimits {
            timeout: Duration::from_millis(self.timeout_ms),
            memory_limit: self.memory_limit_mb.saturating_mul(1 << 20),
            max_concurrent: self.max_concurrent,
            target_partitions: self.threads(),
            keep_finished: self.history.max(1),
        }
    }
}
