//! [`WriteBatch`]: the unit of ingestion — rows of one or more tables, with every name and string
//! value interned once per batch so the shard worker resolves each distinct name once, not once
//! per point.
//!
//! A batch is built by a producer (the MQTT ingest path, a test, a benchmark), routed to the shard
//! that owns its devices, written to that shard's WAL in the encoding of [`codec`] and applied to
//! the head. All rows of one device land in one shard, so a batch of one device is applied
//! atomically: a reader sees all of it or none of it.
//!
//! ```
//! use mast_storage::WriteBatch;
//! let mut b = WriteBatch::new();
//! let truck = b.series("readings", &[("device_id", "truck_1"), ("fleet", "South")]);
//! b.row(truck, 1_700_000_000_000_000_000).f64("latitude", 52.1).f64("longitude", 4.3);
//! assert_eq!((b.rows(), b.points()), (1, 2));
//! ```

pub(crate) mod codec;

use std::collections::HashMap;

use crate::types::{ShardId, Timestamp};

/// The tag that names the device a series belongs to; it decides the shard.
pub const DEVICE_TAG: &str = "device_id";

/// Index of an interned string in a batch.
pub(crate) type Sym = u32;

/// A field value as a producer hands it in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// 64-bit float (JSON numbers, line-protocol floats).
    F64(f64),
    /// 64-bit signed integer (line-protocol `i`/`u` suffixes).
    I64(i64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    Str(&'a str),
}

/// A field value inside a batch; strings are interned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    F64(f64),
    I64(i64),
    Bool(bool),
    Str(Sym),
}

/// A series of a batch: its table and tag set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BatchSeries {
    pub(crate) table: Sym,
    /// (tag name, tag value), sorted by tag name text, names unique.
    pub(crate) tags: Vec<(Sym, Sym)>,
}

/// One row: a series at one timestamp with a run of fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchRow {
    pub(crate) series: u32,
    pub(crate) time: Timestamp,
    pub(crate) fields_start: u32,
    pub(crate) fields_end: u32,
}

/// One row of a batch as [`WriteBatch::row_views`] shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RowView<'a> {
    /// Table.
    pub table: &'a str,
    /// Tags (the device id included), sorted by name.
    pub tags: Vec<(&'a str, &'a str)>,
    /// Nanoseconds since the epoch.
    pub time: Timestamp,
    /// Fields in the order they were added.
    pub fields: Vec<(&'a str, FieldValue<'a>)>,
}

/// A handle to a series declared in one batch with [`WriteBatch::series`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesRef(u32);

/// Rows for one or more tables, ready to submit to the store.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub(crate) strings: Vec<Box<str>>,
    lookup: HashMap<Box<str>, Sym, ahash::RandomState>,
    pub(crate) series: Vec<BatchSeries>,
    series_lookup: HashMap<BatchSeries, u32, ahash::RandomState>,
    pub(crate) rows: Vec<BatchRow>,
    pub(crate) fields: Vec<(Sym, Value)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.lookup.get(s) {
            return id;
        }
        let id = self.strings.len() as Sym;
        self.strings.push(s.into());
        self.lookup.insert(s.into(), id);
        id
    }

    pub(crate) fn str(&self, sym: Sym) -> &str {
        self.strings.get(sym as usize).map_or("", |s| s)
    }

    /// Declares (or finds) the series `table` + `tags`. Tag order does not matter; a tag named twice
    /// keeps its last value.
    pub fn series(&mut self, table: &str, tags: &[(&str, &str)]) -> SeriesRef {
        let table = self.intern(table);
        let mut pairs: Vec<(Sym, Sym)> = Vec::with_capacity(tags.len());
        for (k, v) in tags {
            let k = self.intern(k);
            let v = self.intern(v);
            pairs.push((k, v));
        }
        // sort by name text; for equal names keep the last value
        pairs.reverse();
        pairs.sort_by(|a, b| self.str(a.0).cmp(self.str(b.0)));
        pairs.dedup_by_key(|p| p.0);
        self.add_series(BatchSeries { table, tags: pairs })
    }

    pub(crate) fn add_series(&mut self, s: BatchSeries) -> SeriesRef {
        if let Some(&id) = self.series_lookup.get(&s) {
            return SeriesRef(id);
        }
        let id = self.series.len() as u32;
        self.series_lookup.insert(s.clone(), id);
        self.series.push(s);
        SeriesRef(id)
    }

    /// Starts a row of `series` at `time` (ns since the epoch, UTC); add its fields on the writer.
    pub fn row(&mut self, series: SeriesRef, time: Timestamp) -> RowWriter<'_> {
        let start = self.fields.len() as u32;
        self.rows.push(BatchRow {
            series: series.0,
            time,
            fields_start: start,
            fields_end: start,
        });
        RowWriter { batch: self }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Number of points (field values).
    pub fn points(&self) -> usize {
        self.fields.len()
    }

    /// True when the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Approximate bytes this batch occupies in memory (for queue accounting).
    pub fn approx_bytes(&self) -> usize {
        self.strings.iter().map(|s| s.len() + 16).sum::<usize>()
            + self.rows.len() * std::mem::size_of::<BatchRow>()
            + self.fields.len() * std::mem::size_of::<(Sym, Value)>()
    }

    /// The rows as written, for inspection (tests, logs): table, tags sorted by name, time,
    /// fields in the order they were added.
    pub fn row_views(&self) -> Vec<RowView<'_>> {
        self.rows
            .iter()
            .map(|r| {
                let series = &self.series[r.series as usize];
                RowView {
                    table: self.str(series.table),
                    tags: series
                        .tags
                        .iter()
                        .map(|&(k, v)| (self.str(k), self.str(v)))
                        .collect(),
                    time: r.time,
                    fields: self
                        .row_fields(r)
                        .iter()
                        .map(|&(k, v)| {
                            let v = match v {
                                Value::F64(x) => FieldValue::F64(x),
                                Value::I64(x) => FieldValue::I64(x),
                                Value::Bool(x) => FieldValue::Bool(x),
                                Value::Str(sym) => FieldValue::Str(self.str(sym)),
                            };
                            (self.str(k), v)
                        })
                        .collect(),
                }
            })
            .collect()
    }

    pub(crate) fn row_fields(&self, row: &BatchRow) -> &[(Sym, Value)] {
        self.fields
            .get(row.fields_start as usize..row.fields_end as usize)
            .unwrap_or(&[])
    }

    /// The device id of a series (the value of its `device_id` tag), if it has one.
    pub(crate) fn device_of(&self, series: &BatchSeries) -> Option<&str> {
        series
            .tags
            .iter()
            .find(|(k, _)| self.str(*k) == DEVICE_TAG)
            .map(|(_, v)| self.str(*v))
    }

    /// The shard a series belongs to: by device id when it has one, else by its whole key. The
    /// hash is FNV-1a, stable across builds and restarts.
    pub(crate) fn shard_of_series(&self, series: &BatchSeries, shards: u32) -> ShardId {
        if let Some(d) = self.device_of(series) {
            return shard_of_device(d, shards);
        }
        let mut h = Fnv::new();
        h.write(self.str(series.table).as_bytes());
        for (k, v) in &series.tags {
            h.write(&[0]);
            h.write(self.str(*k).as_bytes());
            h.write(&[1]);
            h.write(self.str(*v).as_bytes());
        }
        ShardId((h.0 % u64::from(shards.max(1))) as u32)
    }

    /// Splits the batch by shard. A batch whose rows all belong to one shard comes back whole.
    /// The second element of each part maps its rows to row indices of `self`.
    pub(crate) fn split(self, shards: u32) -> Vec<(ShardId, WriteBatch, Option<Vec<u32>>)> {
        let of_series: Vec<ShardId> = self
            .series
            .iter()
            .map(|s| self.shard_of_series(s, shards))
            .collect();
        let first = of_series.first().copied().unwrap_or(ShardId(0));
        if of_series.iter().all(|s| *s == first) {
            return vec![(first, self, None)];
        }
        let mut parts: HashMap<ShardId, (WriteBatch, Vec<u32>, HashMap<u32, SeriesRef>)> =
            HashMap::new();
        for (i, row) in self.rows.iter().enumerate() {
            let shard = of_series.get(row.series as usize).copied().unwrap_or(first);
            let (part, origin, smap) = parts.entry(shard).or_default();
            let sref = match smap.get(&row.series) {
                Some(r) => *r,
                None => {
                    let Some(src) = self.series.get(row.series as usize) else {
                        continue;
                    };
                    let table = part.intern(self.str(src.table));
                    let tags = src
                        .tags
                        .iter()
                        .map(|(k, v)| (part.intern(self.str(*k)), part.intern(self.str(*v))))
                        .collect();
                    let r = part.add_series(BatchSeries { table, tags });
                    smap.insert(row.series, r);
                    r
                }
            };
            origin.push(i as u32);
            let fields: Vec<(Sym, Value)> = self
                .row_fields(row)
                .iter()
                .map(|(name, v)| {
                    let v = match *v {
                        Value::Str(s) => Value::Str(part.intern(self.str(s))),
                        other => other,
                    };
                    (part.intern(self.str(*name)), v)
                })
                .collect();
            let start = part.fields.len() as u32;
            part.fields.extend(fields);
            part.rows.push(BatchRow {
                series: sref.0,
                time: row.time,
                fields_start: start,
                fields_end: part.fields.len() as u32,
            });
        }
        let mut out: Vec<_> = parts
            .into_iter()
            .map(|(shard, (b, origin, _))| (shard, b, Some(origin)))
            .collect();
        out.sort_by_key(|p| p.0);
        out
    }
}

/// Adds fields to the row just started with [`WriteBatch::row`].
#[derive(Debug)]
pub struct RowWriter<'a> {
    batch: &'a mut WriteBatch,
}

impl RowWriter<'_> {
    /// Adds a field of any type.
    pub fn field(&mut self, name: &str, value: FieldValue<'_>) -> &mut Self {
        let name = self.batch.intern(name);
        let v = match value {
            FieldValue::F64(v) => Value::F64(v),
            FieldValue::I64(v) => Value::I64(v),
            FieldValue::Bool(v) => Value::Bool(v),
            FieldValue::Str(s) => Value::Str(self.batch.intern(s)),
        };
        self.batch.fields.push((name, v));
        if let Some(row) = self.batch.rows.last_mut() {
            row.fields_end = self.batch.fields.len() as u32;
        }
        self
    }

    /// Adds a float field.
    pub fn f64(&mut self, name: &str, v: f64) -> &mut Self {
        self.field(name, FieldValue::F64(v))
    }

    /// Adds an integer field.
    pub fn i64(&mut self, name: &str, v: i64) -> &mut Self {
        self.field(name, FieldValue::I64(v))
    }

    /// Adds a boolean field.
    pub fn bool(&mut self, name: &str, v: bool) -> &mut Self {
        self.field(name, FieldValue::Bool(v))
    }

    /// Adds a string field.
    pub fn str(&mut self, name: &str, v: &str) -> &mut Self {
        self.field(name, FieldValue::Str(v))
    }
}

/// The shard that owns a device's rows among `shards` shards.
pub(crate) fn shard_of_device(device: &str, shards: u32) -> ShardId {
    let mut h = Fnv::new();
    h.write(device.as_bytes());
    ShardId((h.0 % u64::from(shards.max(1))) as u32)
}

/// 64-bit FNV-1a.
#[derive(Debug)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_deduplicated_and_tags_sorted() {
        let mut b = WriteBatch::new();
        let a = b.series("t", &[("z", "1"), ("device_id", "d1")]);
        let c = b.series("t", &[("device_id", "d1"), ("z", "1")]);
        assert_eq!(a, c);
        let s = &b.series[0];
        assert_eq!(b.str(s.tags[0].0), "device_id");
        assert_eq!(b.str(s.tags[1].0), "z");
    }

    #[test]
    fn split_keeps_one_device_together_and_maps_rows_back() {
        let mut b = WriteBatch::new();
        for d in 0..32 {
            let s = b.series("t", &[("device_id", &format!("dev{d}"))]);
            b.row(s, d).f64("v", d as f64).str("state", "ok");
        }
        let parts = b.split(4);
        assert!(parts.len() > 1);
        let mut seen = 0;
        for (shard, part, origin) in &parts {
            let origin = origin.as_ref().unwrap();
            assert_eq!(origin.len(), part.rows());
            for (row, o) in part.rows.iter().zip(origin) {
                assert_eq!(row.time, i64::from(*o));
                let s = &part.series[row.series as usize];
                assert_eq!(part.shard_of_series(s, 4), *shard);
                let f = part.row_fields(row);
                assert_eq!(f[0].1, Value::F64(f64::from(*o)));
                assert!(matches!(f[1].1, Value::Str(x) if part.str(x) == "ok"));
            }
            seen += part.rows();
        }
        assert_eq!(seen, 32);
    }

    #[test]
    fn single_shard_batch_is_not_copied() {
        let mut b = WriteBatch::new();
        let s = b.series("t", &[("device_id", "d")]);
        b.row(s, 1).f64("v", 1.0);
        b.row(s, 2).f64("v", 2.0);
        let parts = b.split(8);
        assert_eq!(parts.len(), 1);
        assert!(parts[0].2.is_none());
    }
}
