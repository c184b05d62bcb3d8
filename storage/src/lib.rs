//! Mast's storage engine.

pub mod types;

pub use types::{Lsn, ShardId, Timestamp};
