//! The SQL layer of Mast: DataFusion table providers over `mast-storage` snapshots.
//!
//! What it is not: it owns no data and accepts no writes. Depends on `mast-storage` only.
//! The DataFusion catalog lands with issue 5; until then this crate only fixes its place in the
//! layering.

pub use mast_storage as storage;
