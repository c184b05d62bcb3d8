//! The metadata store: an embedded transactional key-value store (redb) under the data directory,
//! for data that is not a time series — the device registry, shadows, firmware, jobs. Every
//! committed transaction is durable (redb fsyncs on commit).
//!
//! Domain code gets byte-keyed tables by name and atomic multi-table transactions; redb itself is
//! reachable through [`MetaStore::database`] for anything richer.
//!
//! This crate is a leaf: it knows neither telemetry nor MQTT, so the broker can keep its sessions
//! here without seeing the storage engine, and the storage engine never sees it.

pub mod tables;
mod writer;

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

pub use tables::Table;
pub use writer::{Committed, Op, Seq, Writer};

/// A failure of the metadata store (the file, a transaction, or the caller's own abort).
#[derive(Debug, thiserror::Error)]
#[error("metadata store: {0}")]
pub struct MetaError(String);

impl MetaError {
    /// An error with this message, for a caller that aborts a [`MetaStore::write`].
    pub fn new(message: impl Into<String>) -> MetaError {
        MetaError(message.into())
    }
}

/// A key and its value, as a scan returns them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The store's file name inside a data directory.
pub const FILE: &str = "meta.redb";

fn err(e: impl std::fmt::Display) -> MetaError {
    MetaError(e.to_string())
}

fn def(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(table.name())
}

/// Unreadable records kept for `system.unreadable_records` (the count goes on).
const MAX_UNREADABLE: usize = 1000;

/// A record that could not be decoded: reported, never silently skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub table: Table,
    pub key: Vec<u8>,
    pub reason: String,
    /// When it was found (ms since the epoch).
    pub found_at_ms: u64,
}

/// The metadata store.
#[derive(Debug)]
pub struct MetaStore {
    db: Database,
    unreadable: Mutex<Vec<Unreadable>>,
    unreadable_total: AtomicU64,
}

/// A write transaction over any number of tables; nothing is visible until it commits.
pub struct MetaTxn {
    txn: redb::WriteTransaction,
}

impl std::fmt::Debug for MetaTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetaTxn")
    }
}

impl MetaTxn {
    /// Inserts or replaces `key` in `table`.
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), MetaError> {
        let mut t = self.txn.open_table(def(table)).map_err(err)?;
        t.insert(key, value).map_err(err)?;
        Ok(())
    }

    /// Removes `key`; true when it was there.
    pub fn remove(&mut self, table: Table, key: &[u8]) -> Result<bool, MetaError> {
        let mut t = self.txn.open_table(def(table)).map_err(err)?;
        let had = t.remove(key).map_err(err)?.is_some();
        Ok(had)
    }

    /// Removes every key that starts with `prefix`; returns how many.
    pub fn remove_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<usize, MetaError> {
        let mut t = self.txn.open_table(def(table)).map_err(err)?;
        let mut keys = Vec::new();
        for item in t.range(prefix..).map_err(err)? {
            let (k, _) = item.map_err(err)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            keys.push(k.value().to_vec());
        }
        for k in &keys {
            t.remove(k.as_slice()).map_err(err)?;
        }
        Ok(keys.len())
    }

    /// Reads `key` as this transaction sees it.
    pub fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        let t = self.txn.open_table(def(table)).map_err(err)?;
        let v = t.get(key).map_err(err)?.map(|v| v.value().to_vec());
        Ok(v)
    }
}

impl MetaStore {
    /// Opens or creates the store file.
    pub fn open(path: &Path) -> Result<MetaStore, MetaError> {
        let db = Database::create(path).map_err(err)?;
        Ok(MetaStore {
            db,
            unreadable: Mutex::new(Vec::new()),
            unreadable_total: AtomicU64::new(0),
        })
    }

    /// Reports a record that does not decode: logged, counted, and listed (the first 1,000,
    /// once per table and key) for `system.unreadable_records`. The record stays as it is.
    pub fn report_unreadable(&self, table: Table, key: &[u8], reason: impl Into<String>) {
        let reason = reason.into();
        tracing::warn!(table = table.name(), key = %String::from_utf8_lossy(key), %reason, "unreadable metadata record");
        let mut list = self.unreadable.lock().unwrap_or_else(|e| e.into_inner());
        if list.iter().any(|u| u.table == table && u.key == key) {
            return;
        }
        self.unreadable_total.fetch_add(1, Ordering::Relaxed);
        if list.len() < MAX_UNREADABLE {
            let found_at_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            list.push(Unreadable {
                table,
                key: key.to_vec(),
                reason,
                found_at_ms,
            });
        }
    }

    /// The unreadable records reported so far.
    pub fn unreadable(&self) -> Vec<Unreadable> {
        self.unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many distinct unreadable records were reported.
    pub fn unreadable_total(&self) -> u64 {
        self.unreadable_total.load(Ordering::Relaxed)
    }

    /// The underlying redb database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs `f` in one write transaction and commits it (durably) if `f` succeeds. While the
    /// server runs, writes go through the [`Writer`] instead.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut MetaTxn) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        let mut txn = MetaTxn {
            txn: self.db.begin_write().map_err(err)?,
        };
        let out = f(&mut txn)?;
        txn.txn.commit().map_err(err)?;
        Ok(out)
    }

    /// Inserts or replaces one key, durably (tests).
    #[cfg(test)]
    pub(crate) fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), MetaError> {
        self.write(|t| t.put(table, key, value))
    }

    /// Reads one key.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = match txn.open_table(def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let v = t.get(key).map_err(err)?.map(|v| v.value().to_vec());
        Ok(v)
    }

    /// Every (key, value) whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, table: Table, prefix: &[u8]) -> Result<Vec<Entry>, MetaError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = match txn.open_table(def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        let mut out = Vec::new();
        for item in t.range(prefix..).map_err(err)? {
            let (k, v) = item.map_err(err)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Up to `limit` (key, value) pairs in key order, starting after `after` (from the first
    /// key when `None`): a page of a table.
    pub fn scan_after(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, MetaError> {
        use std::ops::Bound;
        let txn = self.db.begin_read().map_err(err)?;
        let t = match txn.open_table(def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        let range: (Bound<&[u8]>, Bound<&[u8]>) = match after {
            Some(a) => (Bound::Excluded(a), Bound::Unbounded),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        let mut out = Vec::new();
        for item in t.range::<&[u8]>(range).map_err(err)?.take(limit) {
            let (k, v) = item.map_err(err)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::DEVICES;

    const SHADOWS: Table = Table::test("shadows");
    const NOTHING: Table = Table::test("nothing");
    const Q: Table = Table::test("q");

    #[test]
    fn committed_writes_survive_reopen_and_failed_transactions_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let m = MetaStore::open(&path).unwrap();
            m.put(DEVICES, b"d1", b"one").unwrap();
            m.write(|t| {
                t.put(DEVICES, b"d2", b"two")?;
                t.put(SHADOWS, b"d2", b"{}")
            })
            .unwrap();
            let r: Result<(), _> = m.write(|t| {
                t.put(DEVICES, b"d3", b"three")?;
                Err(MetaError::new("abort"))
            });
            assert!(r.is_err());
        }
        let m = MetaStore::open(&path).unwrap();
        assert_eq!(m.get(DEVICES, b"d1").unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(m.get(DEVICES, b"d3").unwrap(), None);
        assert_eq!(m.get(NOTHING, b"x").unwrap(), None);
        let all = m.scan_prefix(DEVICES, b"d").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(m.get(SHADOWS, b"d2").unwrap().as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn remove_prefix_removes_only_that_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaStore::open(&dir.path().join("meta.redb")).unwrap();
        m.write(|t| {
            for k in [&b"a\x00\x01"[..], b"a\x00\x02", b"a\x01", b"ab", b"b"] {
                t.put(Q, k, b"v")?;
            }
            Ok(())
        })
        .unwrap();
        let n = m.write(|t| t.remove_prefix(Q, b"a\x00")).unwrap();
        assert_eq!(n, 2);
        let left: Vec<Vec<u8>> = m
            .scan_prefix(Q, b"")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(left, [b"a\x01".to_vec(), b"ab".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn scan_after_pages_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaStore::open(&dir.path().join("meta.redb")).unwrap();
        m.write(|t| {
            for k in ["d3", "d1", "d5", "d2", "d4"] {
                t.put(Q, k.as_bytes(), b"v")?;
            }
            Ok(())
        })
        .unwrap();
        let keys = |after: Option<&[u8]>, n| -> Vec<String> {
            m.scan_after(Q, after, n)
                .unwrap()
                .into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect()
        };
        assert_eq!(keys(None, 2), ["d1", "d2"]);
        assert_eq!(keys(Some(b"d2"), 2), ["d3", "d4"]);
        assert_eq!(keys(Some(b"d25"), 10), ["d3", "d4", "d5"]);
        assert!(keys(Some(b"d5"), 10).is_empty());
        assert!(m.scan_after(NOTHING, None, 10).unwrap().is_empty());
    }
}
