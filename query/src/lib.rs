//! The SQL layer of Mast: Apache DataFusion over `mast-storage` snapshots.
//!
//! - [`catalog`]: the default schema lists every telemetry table of the store (looked up per
//!   query, so new tables and columns need no restart); schemas `system` and `iot` hold special
//!   tables.
//! - [`table`]: the table provider. `scan` takes a snapshot, turns filters on `time` and tags
//!   into an exact storage request (field comparisons into statistics hints), and plans one
//!   partition per shard; `execute` decodes on a blocking thread and streams batches.
//! - [`special`]: the small trait behind `system.*` and `iot.*` tables, and its adapter.
//! - [`functions`]: `time_bucket`, `first`/`last` by time, gap filling (`date_bin_gapfill`,
//!   `locf`, `interpolate`) and the latest-row rewrite that keeps last-value queries off the
//!   history.
//! - [`format`]: streaming encoders for JSON, JSON lines, CSV, Arrow IPC and Parquet.
//! - [`engine`]: [`QueryEngine`], which runs one statement under the guard rails (read-only,
//!   timeout, memory limit) and keeps the `system.queries` log.
//!
//! What it is not: it owns no data and accepts no writes, and it speaks no HTTP (the engine
//! crate does). Depends on `mast-storage` only.

pub mod catalog;
pub mod engine;
pub mod error;
pub mod format;
pub mod functions;
pub mod special;
pub mod system;
pub mod table;

pub use async_trait::async_trait;
pub use engine::{QueryEngine, QueryLimits, QueryStream};
pub use error::{QueryError, QueryErrorKind};
pub use format::{Encoder, Format};
pub use special::{Scan, SpecialTable, SpecialTableProvider};

pub use datafusion;
pub use mast_storage as storage;
