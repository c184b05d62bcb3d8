//! Mast's storage engine: the write-ahead log, the sharded write path, compressed columnar
//! segments and Arrow reads. The metadata store is the sibling crate `mast-meta`.
//!
//! What it is not: it speaks no network protocol and no SQL (those are `mast-protocol` and
//! `mast-query`), and it depends on no other Mast crate. It is synchronous: one worker thread owns
//! each shard, producers wait on [`Ticket`]s, readers take [`Snapshot`]s.
//!
//! The path of a point: [`WriteBatch`] → [`Store::submit`] → the shard's bounded queue → one WAL
//! group (fsync'd once) → the head (per-series blocks, encoded as they fill) → a sealed, mmapped
//! segment → [`Snapshot::scan`] → Arrow `RecordBatch`.
//!
//! ```
//! use mast_storage::{Durability, ScanRequest, Store, StoreConfig, WriteBatch};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(StoreConfig::new(dir.path())).unwrap();
//! let mut batch = WriteBatch::new();
//! let truck = batch.series("readings", &[("device_id", "truck_1"), ("fleet", "South")]);
//! batch.row(truck, 1_700_000_000_000_000_000).f64("latitude", 52.1).f64("longitude", 4.3);
//! let receipt = store.submit(batch, Durability::Durable).unwrap().wait().unwrap();
//! assert_eq!(receipt.points, 2);
//!
//! let rows = store
//!     .snapshot()
//!     .scan(&ScanRequest::table("readings").columns(&["time", "device_id", "latitude"]))
//!     .unwrap();
//! assert_eq!(rows[0].num_rows(), 1);
//! ```

// A rejected batch is handed back by value (the shape of crossbeam's `TrySendError::Full(T)`), so
// results carrying a `WriteBatch` are large on purpose.
#![allow(clippy::result_large_err)]
// Nested collection types in local bookkeeping read better spelled out than aliased.
#![allow(clippy::type_complexity)]

pub mod batch;
mod block;
mod chunk;
pub mod codec;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
mod head;
mod mmap;
pub mod scan;
pub mod schema;
pub mod segment;
mod shard;
pub mod store;
pub mod ticket;
pub mod types;
mod varint;
pub mod wal;

pub use batch::{FieldValue, RowView, RowWriter, SeriesRef, WriteBatch};
pub use block::StatValue;
pub use config::{FsyncPolicy, Retention, StoreConfig};
pub use error::{PointError, ScanError, StoreError, SubmitError, WriteError};
pub use scan::{
    Cmp, FieldRange, FieldStats, Predicate, ScanMetrics, ScanRequest, SegmentStats, Snapshot,
    StringSet,
};
pub use schema::{Catalog, ColumnDef, ColumnKind, FieldType, Limits, TableSchema};
pub use segment::SegmentInfo;
pub use store::{Store, StoreStats};
pub use ticket::{Durability, Notify, Rejected, Ticket, WriteReceipt};
pub use types::{Lsn, ShardId, Timestamp};

/// Now, in ns since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
