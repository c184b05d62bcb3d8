//! Reading back what a stopped server stored: the rows of a table in a form tests can compare
//! (`BTreeMap` of column name to [`Value`], sorted by device and time) and the presence records
//! of the metadata store. The store takes an exclusive lock on its directory, so the server must
//! have stopped (or been killed) first.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
use mast_storage::error::ScanError;
use mast_storage::{ScanRequest, Store, StoreConfig};
use rumqttc::v5::mqttbytes::v5::{PubAck, PubAckReason};

use crate::mqtt_support::v5;

/// One stored value, typed as the scan returned it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    F64(f64),
    I64(i64),
    Bool(bool),
    Str(String),
    /// The `time` column, ns since the epoch.
    Time(i64),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}

/// One row: column name → value; null columns are absent.
pub type Row = BTreeMap<String, Value>;

/// A row's `time`.
pub fn time(row: &Row) -> i64 {
    match row.get("time") {
        Some(Value::Time(t)) => *t,
        other => panic!("row without a time: {other:?} in {row:?}"),
    }
}

/// A row's tag or string field `col`.
pub fn text<'a>(row: &'a Row, col: &str) -> &'a str {
    match row.get(col) {
        Some(Value::Str(s)) => s,
        other => panic!("{col} is {other:?} in {row:?}"),
    }
}

/// A row's float field `col`.
pub fn float(row: &Row, col: &str) -> f64 {
    match row.get(col) {
        Some(Value::F64(v)) => *v,
        other => panic!("{col} is {other:?}, not a float, in {row:?}"),
    }
}

/// Sorts rows by (`device_id`, `time`), ties by their other values (so two series of one
/// device at one time come out in a fixed order).
pub fn sort_rows(rows: &mut [Row]) {
    rows.sort_by_cached_key(|r| {
        let dev = match r.get("device_id") {
            Some(Value::Str(s)) => s.clone(),
            _ => String::new(),
        };
        (dev, time(r), format!("{r:?}"))
    });
}

/// Builds a row from pairs, for comparisons.
pub fn row(pairs: &[(&str, Value)]) -> Row {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// A stopped server's data directory, opened for reading.
pub struct Stored {
    store: Store,
    meta: mast_meta::MetaStore,
}

impl Stored {
    /// Opens the store under `data_dir` (the server must not be running).
    pub fn open(data_dir: &Path) -> Stored {
        let store = Store::open(StoreConfig::new(data_dir))
            .unwrap_or_else(|e| panic!("opening the store at {}: {e}", data_dir.display()));
        let meta = mast_meta::MetaStore::open(&data_dir.join(mast_meta::FILE))
            .unwrap_or_else(|e| panic!("opening the metadata at {}: {e}", data_dir.display()));
        Stored { store, meta }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The Arrow batches of a scan; none for a table that does not exist.
    pub fn scan(&self, req: &ScanRequest) -> Vec<RecordBatch> {
        match self.store.snapshot().scan(req) {
            Ok(b) => b,
            Err(ScanError::UnknownTable(_)) => Vec::new(),
            Err(e) => panic!("scanning {}: {e}", req.table),
        }
    }

    /// Every row of `table`, sorted by (`device_id`, `time`); empty for an unknown table.
    pub fn rows(&self, table: &str) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .scan(&ScanRequest::table(table))
            .iter()
            .flat_map(batch_rows)
            .collect();
        sort_rows(&mut rows);
        rows
    }

    /// The rows of `table` whose `device_id` is `device`.
    pub fn device_rows(&self, table: &str, device: &str) -> Vec<Row> {
        self.rows(table)
            .into_iter()
            .filter(|r| r.get("device_id") == Some(&Value::str(device)))
            .collect()
    }

    /// How many rows `table` holds (0 for an unknown table).
    pub fn count(&self, table: &str) -> usize {
        self.scan(&ScanRequest::table(table).columns(&["time"]))
            .iter()
            .map(RecordBatch::num_rows)
            .sum()
    }

    /// The columns of `table` and their Arrow types, in output order; `None` for an unknown
    /// table.
    pub fn columns(&self, table: &str) -> Option<Vec<(String, DataType)>> {
        let schema = self.store.snapshot().schema(table)?;
        Some(
            schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect(),
        )
    }

    /// The metadata store's `devices` records (presence), by client id, as JSON.
    pub fn devices(&self) -> BTreeMap<String, serde_json::Value> {
        self.meta
            .scan_prefix(mast_meta::tables::DEVICES, b"")
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let key = String::from_utf8(k).expect("client id key is UTF-8");
                let rec = serde_json::from_slice(&v)
                    .unwrap_or_else(|e| panic!("device record {key:?} is not JSON: {e}"));
                (key, rec)
            })
            .collect()
    }

    /// Closes the store (waits for its shard threads).
    pub fn close(self) {
        self.store.close();
    }
}

/// Opens `data_dir`, reads `table`'s rows, and closes the store again.
pub fn read_rows(data_dir: &Path, table: &str) -> Vec<Row> {
    let s = Stored::open(data_dir);
    let rows = s.rows(table);
    s.close();
    rows
}

/// The rows of one record batch.
pub fn batch_rows(batch: &RecordBatch) -> Vec<Row> {
    let schema = batch.schema();
    let mut rows = vec![Row::new(); batch.num_rows()];
    for (field, col) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        for (i, row) in rows.iter_mut().enumerate() {
            if col.is_null(i) {
                continue;
            }
            let v = match col.data_type() {
                DataType::Timestamp(_, _) => {
                    Value::Time(col.as_primitive::<TimestampNanosecondType>().value(i))
                }
                DataType::Float64 => Value::F64(col.as_primitive::<Float64Type>().value(i)),
                DataType::Int64 => Value::I64(col.as_primitive::<Int64Type>().value(i)),
                DataType::Boolean => Value::Bool(col.as_boolean().value(i)),
                DataType::Utf8 => Value::Str(col.as_string::<i32>().value(i).to_owned()),
                DataType::Dictionary(_, _) => {
                    let dict = col.as_dictionary::<Int32Type>();
                    let key = usize::try_from(dict.keys().value(i)).expect("dictionary key");
                    Value::Str(dict.values().as_string::<i32>().value(key).to_owned())
                }
                other => panic!("column {name}: unexpected type {other}"),
            };
            row.insert(name.clone(), v);
        }
    }
    rows
}

/// 2023-11-14T22:13:20Z, in ms and ns: the time tests write their points at.
pub const T0_MS: i64 = 1_700_000_000_000;
pub const T0: i64 = T0_MS * 1_000_000;
pub const SEC: i64 = 1_000_000_000;

pub fn f(v: f64) -> Value {
    Value::F64(v)
}
pub fn int(v: i64) -> Value {
    Value::I64(v)
}
pub fn b(v: bool) -> Value {
    Value::Bool(v)
}
pub fn s(v: &str) -> Value {
    Value::str(v)
}
pub fn t(ns: i64) -> Value {
    Value::Time(ns)
}

/// `row` without the columns named in `drop` (for rows whose time or address is only known
/// within bounds).
pub fn without(row: &Row, drop: &[&str]) -> Row {
    let mut r = row.clone();
    for d in drop {
        r.remove(*d);
    }
    r
}

/// Publishes at QoS 1 and returns the whole PUBACK (reason code and Reason String).
pub fn publish_v5(c: &mut v5::Client, topic: &str, payload: &[u8]) -> PubAck {
    c.publish_nowait(topic, v5::QoS::AtLeastOnce, payload);
    match c.wait_packet(|p| matches!(p, v5::Packet::PubAck(_))) {
        v5::Packet::PubAck(a) => a,
        _ => unreachable!(),
    }
}

/// Publishes at QoS 1, asserting success.
pub fn publish_ok(c: &mut v5::Client, topic: &str, payload: &[u8]) {
    let a = publish_v5(c, topic, payload);
    assert_eq!(
        a.reason,
        PubAckReason::Success,
        "{topic} {}: {a:?}",
        String::from_utf8_lossy(payload)
    );
}

/// Publishes at QoS 1 and asserts the refusal `reason` with a Reason String; the packet id.
pub fn publish_refused(
    c: &mut v5::Client,
    topic: &str,
    payload: &[u8],
    reason: PubAckReason,
) -> u16 {
    let a = publish_v5(c, topic, payload);
    assert_eq!(
        a.reason,
        reason,
        "{topic} {}: {a:?}",
        String::from_utf8_lossy(payload)
    );
    let why = a.properties.and_then(|p| p.reason_string);
    assert!(
        why.is_some_and(|w| !w.is_empty()),
        "a refusal carries a Reason String"
    );
    a.pkid
}
