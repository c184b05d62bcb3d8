//! Helpers shared by the storage integration tests.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;
use mast_storage::{Durability, ScanRequest, Store, StoreConfig, WriteBatch};

/// A small-footprint config: 2 shards, no background fsync timer surprises.
pub fn config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.shards = 2;
    c
}

/// Submits `batch` buffered, waits for it, and seals the store after it when `seal`.
pub fn write(store: &Store, batch: WriteBatch, seal: bool) {
    store
        .submit(batch, Durability::Buffered)
        .unwrap()
        .wait()
        .unwrap();
    if seal {
        store.seal().unwrap();
    }
}

/// One cell of a scanned row, typed loosely for comparisons.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    F(u64),
    I(i64),
    B(bool),
    S(String),
    T(i64),
}

/// Rows of a scan as (column -> cell) maps, sorted by (device_id, time).
pub fn rows(batches: &[RecordBatch]) -> Vec<BTreeMap<String, Cell>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let mut row = BTreeMap::new();
            for (i, f) in b.schema().fields().iter().enumerate() {
                let a = b.column(i);
                let cell = if a.is_null(r) {
                    Cell::Null
                } else {
                    use arrow::datatypes::DataType::*;
                    match a.data_type() {
                        Float64 => Cell::F(a.as_primitive::<Float64Type>().value(r).to_bits()),
                        Int64 => Cell::I(a.as_primitive::<Int64Type>().value(r)),
                        Boolean => Cell::B(a.as_boolean().value(r)),
                        Utf8 => Cell::S(a.as_string::<i32>().value(r).to_string()),
                        Timestamp(..) => {
                            Cell::T(a.as_primitive::<TimestampNanosecondType>().value(r))
                        }
                        Dictionary(..) => {
                            let d = a.as_dictionary::<Int32Type>();
                            let k = d.keys().value(r) as usize;
                            Cell::S(d.values().as_string::<i32>().value(k).to_string())
                        }
                        other => panic!("unexpected type {other}"),
                    }
                };
                row.insert(f.name().clone(), cell);
            }
            out.push(row);
        }
    }
    out.sort_by(|a, b| {
        let k = |r: &BTreeMap<String, Cell>| {
            (
                format!("{:?}", r.get("device_id")),
                match r.get("time") {
                    Some(Cell::T(t)) => *t,
                    _ => 0,
                },
            )
        };
        k(a).cmp(&k(b))
    });
    out
}

/// Rows of a whole table.
pub fn table_rows(store: &Store, table: &str) -> Vec<BTreeMap<String, Cell>> {
    rows(&store.snapshot().scan(&ScanRequest::table(table)).unwrap())
}

/// Rows of a whole table in the store's current snapshot.
pub fn row_count(store: &Store, table: &str) -> usize {
    count(&store.snapshot().scan(&ScanRequest::table(table)).unwrap())
}

pub fn count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

pub fn f(x: f64) -> Cell {
    Cell::F(x.to_bits())
}
