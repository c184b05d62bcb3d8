//! `[storage]`: the storage engine's knobs, mapped onto [`mast_storage::StoreConfig`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use mast_storage::{FsyncPolicy, Limits, Retention, StoreConfig};
use serde::{Deserialize, Serialize};

use super::Invalid;

/// When the WAL is fsync'd (`storage.fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    /// Group commit: a WAL group holding a QoS 1/2 write is fsync'd before it is acknowledged;
    /// other data is fsync'd at most `fsync_interval_ms` after it was written.
    Batched,
    /// fsync every WAL group.
    Always,
    /// Never fsync (data survives a process crash, not power loss). For tests and throwaway data.
    Never,
}

/// The storage engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Shards (one writer thread each); 0 = one per core. A data directory keeps the count it
    /// was created with.
    pub shards: usize,
    /// Write batches each shard queue holds before ingest waits (backpressure).
    pub queue_capacity: usize,
    /// Most queued requests one WAL group takes.
    pub max_group_requests: usize,
    /// fsync policy.
    pub fsync: FsyncMode,
    /// With `fsync = "batched"`: the longest time data not needing durability (QoS 0) stays
    /// un-fsync'd, milliseconds.
    pub fsync_interval_ms: u64,
    /// Rows per encoded block.
    pub block_rows: usize,
    /// A shard seals its in-memory head into segments when it holds this many bytes ...
    pub max_head_bytes: usize,
    /// ... or when its oldest unsealed write is this old, seconds.
    pub max_head_age_secs: u64,
    /// Width of the time partitions segments are split into, seconds (retention drops whole
    /// partitions).
    pub partition_secs: u64,
    /// How long data is kept, seconds; 0 = forever.
    pub retention_secs: u64,
    /// How often shards look for expired partitions, seconds.
    pub retention_check_interval_secs: u64,
    /// Per-table retention, seconds (> 0), overriding `retention_secs`.
    pub retention_tables: BTreeMap<String, u64>,
    /// Most series (distinct tag sets) one table may hold.
    pub max_series_per_table: u64,
    /// Most columns (tags and fields) one table may hold.
    pub max_columns_per_table: usize,
    /// Most bytes in a table, column or tag name.
    pub max_name_bytes: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            shards: 0,
            queue_capacity: 1024,
            max_group_requests: 1024,
            fsync: FsyncMode::Batched,
            fsync_interval_ms: 100,
            block_rows: 1024,
            max_head_bytes: 128 << 20,
            max_head_age_secs: 600,
            partition_secs: 86_400,
            retention_secs: 0,
            retention_check_interval_secs: 60,
            retention_tables: BTreeMap::new(),
            max_series_per_table: 1_000_000,
            max_columns_per_table: 1024,
            max_name_bytes: 255,
        }
    }
}

/// Bounds on `storage.block_rows`.
/// Fewest columns a table may be limited to: the limit applies to Mast's own tables too.
const MIN_COLUMNS: usize = 16;
const BLOCK_ROWS: std::ops::RangeInclusive<usize> = 16..=65_536;
/// Bounds on `storage.fsync_interval_ms`.
const FSYNC_INTERVAL_MS: std::ops::RangeInclusive<u64> = 1..=60_000;
/// Most shards (each is a thread with its own WAL).
const MAX_SHARDS: usize = 1024;

impl StorageConfig {
    /// The store's configuration for data under `data_dir`.
    pub fn store_config(&self, data_dir: &Path) -> StoreConfig {
        let mut c = StoreConfig::new(data_dir);
        c.shards = self.shards;
        c.queue_capacity = self.queue_capacity;
        c.max_group_requests = self.max_group_requests;
        c.fsync = match self.fsync {
            FsyncMode::Batched => FsyncPolicy::Batched {
                max_delay: Duration::from_millis(self.fsync_interval_ms),
            },
            FsyncMode::Always => FsyncPolicy::Always,
            FsyncMode::Never => FsyncPolicy::Never,
        };
        c.block_rows = self.block_rows;
        c.max_head_bytes = self.max_head_bytes;
        c.max_head_age = Duration::from_secs(self.max_head_age_secs);
        c.partition_duration = Duration::from_secs(self.partition_secs);
        c.retention = Retention {
            default: (self.retention_secs > 0).then(|| Duration::from_secs(self.retention_secs)),
            tables: self
                .retention_tables
                .iter()
                .map(|(t, s)| (t.clone(), Duration::from_secs(*s)))
                .collect(),
        };
        c.retention_check_interval = Duration::from_secs(self.retention_check_interval_secs);
        c.limits = Limits {
            max_series_per_table: self.max_series_per_table,
            max_columns_per_table: self.max_columns_per_table,
            max_name_bytes: self.max_name_bytes,
        };
        c
    }

    pub(super) fn check(&self) -> Result<(), Invalid> {
        let positive = [
            ("storage.queue_capacity", self.queue_capacity as u64),
            ("storage.max_group_requests", self.max_group_requests as u64),
            ("storage.max_head_bytes", self.max_head_bytes as u64),
            ("storage.max_head_age_secs", self.max_head_age_secs),
            ("storage.partition_secs", self.partition_secs),
            (
                "storage.retention_check_interval_secs",
                self.retention_check_interval_secs,
            ),
            ("storage.max_series_per_table", self.max_series_per_table),
            (
                "storage.max_columns_per_table",
                self.max_columns_per_table as u64,
            ),
            ("storage.max_name_bytes", self.max_name_bytes as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(Invalid::new(key, format!("{key} must be > 0")));
            }
        }
        if self.max_columns_per_table < MIN_COLUMNS {
            return Err(Invalid::new(
                "storage.max_columns_per_table",
                format!(
                    "storage.max_columns_per_table must be at least {MIN_COLUMNS}: Mast's own tables (iot.device_events) need 9, not {}",
                    self.max_columns_per_table
                ),
            ));
        }
        if self.shards > MAX_SHARDS {
            return Err(Invalid::new(
                "storage.shards",
                format!(
                    "storage.shards must be at most {MAX_SHARDS} (0 = one per core), not {}",
                    self.shards
                ),
            ));
        }
        if !FSYNC_INTERVAL_MS.contains(&self.fsync_interval_ms) {
            return Err(Invalid::new(
                "storage.fsync_interval_ms",
                format!(
                    "storage.fsync_interval_ms must be between {} and {}, not {}",
                    FSYNC_INTERVAL_MS.start(),
                    FSYNC_INTERVAL_MS.end(),
                    self.fsync_interval_ms
                ),
            ));
        }
        if !BLOCK_ROWS.contains(&self.block_rows) {
            return Err(Invalid::new(
                "storage.block_rows",
                format!(
                    "storage.block_rows must be between {} and {}, not {}",
                    BLOCK_ROWS.start(),
                    BLOCK_ROWS.end(),
                    self.block_rows
                ),
            ));
        }
        for (table, secs) in &self.retention_tables {
            if table.is_empty() || *secs == 0 {
                return Err(Invalid::new(
                    "storage.retention_tables",
                    format!(
                        "storage.retention_tables: {table:?} = {secs}: needs a table name and \
                         seconds > 0 (leave a table out to use retention_secs)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_defaults_are_the_stores_defaults() {
        let dir = Path::new("/data");
        assert_eq!(
            format!("{:?}", StorageConfig::default().store_config(dir)),
            format!("{:?}", StoreConfig::new(dir))
        );
    }

    #[test]
    fn every_key_reaches_the_store() {
        let s = StorageConfig {
            shards: 3,
            queue_capacity: 7,
            max_group_requests: 9,
            fsync: FsyncMode::Batched,
            fsync_interval_ms: 250,
            block_rows: 512,
            max_head_bytes: 1 << 20,
            max_head_age_secs: 30,
            partition_secs: 3600,
            retention_secs: 7 * 86_400,
            retention_check_interval_secs: 5,
            retention_tables: BTreeMap::from([("telemetry".to_owned(), 86_400)]),
            max_series_per_table: 10,
            max_columns_per_table: 20,
            max_name_bytes: 30,
        };
        let c = s.store_config(Path::new("/d"));
        assert_eq!(c.data_dir, Path::new("/d"));
        assert_eq!(
            (c.shards, c.queue_capacity, c.max_group_requests),
            (3, 7, 9)
        );
        assert_eq!(
            c.fsync,
            FsyncPolicy::Batched {
                max_delay: Duration::from_millis(250)
            }
        );
        assert_eq!((c.block_rows, c.max_head_bytes), (512, 1 << 20));
        assert_eq!(c.max_head_age, Duration::from_secs(30));
        assert_eq!(c.partition_duration, Duration::from_secs(3600));
        assert_eq!(
            c.retention.ttl("other"),
            Some(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(
            c.retention.ttl("telemetry"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(c.retention_check_interval, Duration::from_secs(5));
        assert_eq!(
            c.limits,
            Limits {
                max_series_per_table: 10,
                max_columns_per_table: 20,
                max_name_bytes: 30
            }
        );
        let never = StorageConfig {
            fsync: FsyncMode::Never,
            ..StorageConfig::default()
        };
        assert_eq!(
            never.store_config(Path::new("/d")).fsync,
            FsyncPolicy::Never
        );
        let always = StorageConfig {
            fsync: FsyncMode::Always,
            ..StorageConfig::default()
        };
        assert_eq!(
            always.store_config(Path::new("/d")).fsync,
            FsyncPolicy::Always
        );
        assert_eq!(
            StorageConfig::default()
                .store_config(Path::new("/d"))
                .retention
                .ttl("t"),
            None
        );
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let bad = |f: fn(&mut StorageConfig)| {
            let mut s = StorageConfig::default();
            f(&mut s);
            let e = s.check().unwrap_err();
            (e.keys.concat(), e.msg)
        };
        assert_eq!(
            bad(|s| s.fsync_interval_ms = 0),
            (
                "storage.fsync_interval_ms".into(),
                "storage.fsync_interval_ms must be between 1 and 60000, not 0".into()
            )
        );
        assert_eq!(
            bad(|s| s.fsync_interval_ms = 60_001).0,
            "storage.fsync_interval_ms"
        );
        assert_eq!(
            bad(|s| s.block_rows = 8).1,
            "storage.block_rows must be between 16 and 65536, not 8"
        );
        assert_eq!(
            bad(|s| s.queue_capacity = 0).1,
            "storage.queue_capacity must be > 0"
        );
        assert_eq!(bad(|s| s.partition_secs = 0).0, "storage.partition_secs");
        assert_eq!(bad(|s| s.max_name_bytes = 0).0, "storage.max_name_bytes");
        assert_eq!(bad(|s| s.shards = 5000).0, "storage.shards");
        assert_eq!(
            bad(|s| {
                s.retention_tables.insert("t".into(), 0);
            })
            .0,
            "storage.retention_tables"
        );
        let ok = StorageConfig {
            fsync_interval_ms: 60_000,
            block_rows: 16,
            retention_tables: BTreeMap::from([("t".to_owned(), 1)]),
            ..StorageConfig::default()
        };
        assert_eq!(ok.check().map_err(|e| e.msg), Ok(()));
    }
}
