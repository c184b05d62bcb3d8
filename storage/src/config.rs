//! Storage configuration with the engine's defaults.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::schema::Limits;
use crate::wal::FaultHook;

/// When the WAL is fsync'd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Group commit (the default): a group holding a [`Durability::Durable`](crate::Durability)
    /// write is fsync'd before any of its tickets resolve; buffered-only data is fsync'd at most
    /// `max_delay` after it was written.
    Batched {
        /// Longest time buffered data stays un-fsync'd.
        max_delay: Duration,
    },
    /// fsync every group, durable or not.
    Always,
    /// Never fsync: writes survive a process crash (they are in the OS page cache) but not power
    /// loss, and durable tickets resolve after the write. For tests and throwaway data only.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Batched {
            max_delay: Duration::from_millis(100),
        }
    }
}

/// How long data is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// TTL for tables without their own; `None` keeps data forever.
    pub default: Option<Duration>,
    /// Per-table TTLs.
    pub tables: HashMap<String, Duration>,
}

impl Retention {
    /// The TTL of a table.
    pub fn ttl(&self, table: &str) -> Option<Duration> {
        self.tables.get(table).copied().or(self.default)
    }
}

/// Everything the store needs to open.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Root directory (created when missing).
    pub data_dir: PathBuf,
    /// Number of shards; 0 = one per core. A data directory keeps the count it was created with.
    pub shards: usize,
    /// Batches each shard queue holds before `try_submit` reports it full.
    pub queue_capacity: usize,
    /// Most requests one WAL group takes from the queue.
    pub max_group_requests: usize,
    /// fsync policy.
    pub fsync: FsyncPolicy,
    /// Rows per encoded block.
    pub block_rows: usize,
    /// A shard seals its head into segments when it holds this many bytes.
    pub max_head_bytes: usize,
    /// ... or when its oldest unsealed write is this old.
    pub max_head_age: Duration,
    /// Width of the time partitions segments are split into (retention drops whole partitions).
    pub partition_duration: Duration,
    /// Data retention.
    pub retention: Retention,
    /// How often shards look for expired segments.
    pub retention_check_interval: Duration,
    /// Catalog limits.
    pub limits: Limits,
    /// Test hook: fault injection for the WAL (every shard).
    #[doc(hidden)]
    pub wal_fault: Option<Arc<dyn FaultHook>>,
}

impl StoreConfig {
    /// The defaults, storing under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            shards: 0,
            queue_capacity: 1024,
            max_group_requests: 1024,
            fsync: FsyncPolicy::default(),
            block_rows: 1024,
            max_head_bytes: 128 << 20,
            max_head_age: Duration::from_secs(600),
            partition_duration: Duration::from_secs(86_400),
            retention: Retention::default(),
            retention_check_interval: Duration::from_secs(60),
            limits: Limits::default(),
            wal_fault: None,
        }
    }

    pub(crate) fn partition_ns(&self) -> i64 {
        i64::try_from(self.partition_duration.as_nanos())
            .unwrap_or(i64::MAX)
            .max(1)
    }
}
