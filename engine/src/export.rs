//! `mast export`: the rows of a stopped server's data directory as JSON lines, one object per
//! row: `{"table": .., "time": <ns>, "device_id": .., <tags>, <fields>}` (fields without a value
//! in that row are left out). For backups to other tools, for inspection, and for tests in other
//! languages; SQL over HTTP is the way to query a running server.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use arrow::array::{
    Array, AsArray, BooleanArray, DictionaryArray, Float64Array, Int64Array, StringArray,
    TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Int32Type};
use mast_storage::{ScanRequest, Store, StoreConfig};
use serde_json::{Map, Value};

/// Writes every row of `table` (or of every table) as JSON lines, or with `count_only` one line
/// `<table> <rows>` per table; returns the number of rows.
pub fn export(
    data_dir: &Path,
    table: Option<&str>,
    count_only: bool,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    anyhow::ensure!(
        data_dir.join("STORE").exists(),
        "{} is not a Mast data directory",
        data_dir.display()
    );
    let store = Store::open(StoreConfig::new(data_dir)).with_context(|| {
        format!(
            "opening {} (is a server running on it?)",
            data_dir.display()
        )
    })?;
    let snap = store.snapshot();
    let mut names: Vec<String> = snap.tables().iter().map(|t| t.name.to_string()).collect();
    names.sort();
    if let Some(t) = table {
        anyhow::ensure!(names.iter().any(|n| n == t), "no table {t:?}");
        names.retain(|n| n == t);
    }
    let mut rows = 0u64;
    for name in names {
        if count_only {
            let req = ScanRequest::table(&name).columns(&["time"]);
            let n: usize = snap.scan(&req)?.iter().map(|b| b.num_rows()).sum();
            writeln!(out, "{name} {n}")?;
            rows += n as u64;
            continue;
        }
        for batch in snap.scan(&ScanRequest::table(&name))? {
            let schema = batch.schema();
            for r in 0..batch.num_rows() {
                let mut obj = Map::new();
                obj.insert("table".into(), Value::from(name.as_str()));
                for (field, col) in schema.fields().iter().zip(batch.columns()) {
                    if let Some(v) = value(col.as_ref(), r) {
                        obj.insert(field.name().clone(), v);
                    }
                }
                serde_json::to_writer(&mut *out, &Value::Object(obj))?;
                out.write_all(b"\n")?;
                rows += 1;
            }
        }
    }
    out.flush()?;
    drop(snap);
    store.close();
    Ok(rows)
}

/// One cell as JSON; `None` for a null.
fn value(col: &dyn Array, row: usize) -> Option<Value> {
    if col.is_null(row) {
        return None;
    }
    let any = col.as_any();
    Some(match col.data_type() {
        DataType::Timestamp(_, _) => {
            Value::from(any.downcast_ref::<TimestampNanosecondArray>()?.value(row))
        }
        DataType::Float64 => {
            let v = any.downcast_ref::<Float64Array>()?.value(row);
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
        }
        DataType::Int64 => Value::from(any.downcast_ref::<Int64Array>()?.value(row)),
        DataType::Boolean => Value::from(any.downcast_ref::<BooleanArray>()?.value(row)),
        DataType::Utf8 => Value::from(any.downcast_ref::<StringArray>()?.value(row)),
        DataType::Dictionary(_, _) => {
            let d: &DictionaryArray<Int32Type> = col.as_dictionary_opt()?;
            let key = usize::try_from(d.keys().value(row)).ok()?;
            Value::from(d.values().as_string_opt::<i32>()?.value(key))
        }
        other => Value::from(format!("<{other}>")),
    })
}
