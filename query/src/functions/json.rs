//! JSON in SQL: read a value out of a JSON text column (`iot.shadows.reported`, a string field
//! holding JSON), by the names DataFusion's JSON function crates use.
//!
//! - `json_get(doc, path)`: the value at `path` as text — a string as itself, anything else as
//!   JSON (`json_get(reported, 'fw.version')` → `2.1`);
//! - `json_get_str`, `json_get_int`, `json_get_float`, `json_get_bool`: the value only if it has
//!   that type (an integer reads as a float too; a float is not an int);
//! - `json_get_json`: the value as JSON text (a string with its quotes);
//! - `json_contains(doc, path)`: whether there is a value there.
//!
//! A path is one argument with keys joined by `.` (`'a.b.0'`: an array index is a number), or
//! several arguments, one key each (`json_get(doc, 'a.b', 'c')` for a key with a dot in it). A
//! document that is not JSON, a missing key, or a null gives NULL (`json_contains`: false).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::common::cast::as_string_array;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Text,
    Str,
    Int,
    Float,
    Bool,
    Json,
    Contains,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonGet {
    name: &'static str,
    kind: Kind,
    signature: Signature,
}

/// Every JSON function, to register.
pub(super) fn all() -> Vec<ScalarUDF> {
    [
        ("json_get", Kind::Text),
        ("json_get_str", Kind::Str),
        ("json_get_int", Kind::Int),
        ("json_get_float", Kind::Float),
        ("json_get_bool", Kind::Bool),
        ("json_get_json", Kind::Json),
        ("json_contains", Kind::Contains),
    ]
    .into_iter()
    .map(|(name, kind)| {
        ScalarUDF::new_from_impl(JsonGet {
            name,
            kind,
            // a document and at least one key, every argument as text
            signature: Signature::one_of(
                (2..=8)
                    .map(|n| TypeSignature::Uniform(n, vec![DataType::Utf8]))
                    .collect(),
                Volatility::Immutable,
            ),
        })
    })
    .collect()
}

/// The value at `keys` in `doc`.
fn lookup<'a>(doc: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(doc, |v, k| match v {
        Value::Object(m) => m.get(*k),
        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

impl ScalarUDFImpl for JsonGet {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::Text | Kind::Str | Kind::Json => DataType::Utf8,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Bool | Kind::Contains => DataType::Boolean,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays: Vec<ArrayRef> = ColumnarValue::values_to_arrays(&args.args)?
            .into_iter()
            .map(|a| cast(&a, &DataType::Utf8))
            .collect::<std::result::Result<_, _>>()?;
        let docs = as_string_array(&arrays[0])?;
        let paths = arrays[1..]
            .iter()
            .map(|a| as_string_array(a))
            .collect::<Result<Vec<_>>>()?;
        let one_path = paths.len() == 1;
        let value_at = |row: usize, f: &mut dyn FnMut(Option<&Value>)| {
            if docs.is_null(row) || paths.iter().any(|p| p.is_null(row)) {
                return f(None);
            }
            let Ok(doc) = serde_json::from_str::<Value>(docs.value(row)) else {
                return f(None);
            };
            let keys: Vec<&str> = if one_path {
                let p = paths[0].value(row);
                if p.is_empty() {
                    Vec::new()
                } else {
                    p.split('.').collect()
                }
            } else {
                paths.iter().map(|p| p.value(row)).collect()
            };
            f(lookup(&doc, &keys).filter(|v| !v.is_null()))
        };
        let out: ArrayRef = match self.kind {
            Kind::Text | Kind::Str | Kind::Json => {
                let mut b = StringBuilder::with_capacity(n, n * 8);
                for row in 0..n {
                    value_at(row, &mut |v| match (self.kind, v) {
                        (Kind::Text | Kind::Str, Some(Value::String(s))) => b.append_value(s),
                        (Kind::Text | Kind::Json, Some(v)) => b.append_value(v.to_string()),
                        _ => b.append_null(),
                    });
                }
                Arc::new(b.finish())
            }
            Kind::Int => {
                let mut b = Int64Builder::with_capacity(n);
                for row in 0..n {
                    value_at(row, &mut |v| b.append_option(v.and_then(Value::as_i64)));
                }
                Arc::new(b.finish())
            }
            Kind::Float => {
                let mut b = Float64Builder::with_capacity(n);
                for row in 0..n {
                    value_at(row, &mut |v| b.append_option(v.and_then(Value::as_f64)));
                }
                Arc::new(b.finish())
            }
            Kind::Bool | Kind::Contains => {
                let mut b = BooleanBuilder::with_capacity(n);
                for row in 0..n {
                    value_at(row, &mut |v| match self.kind {
                        Kind::Contains => b.append_value(v.is_some()),
                        _ => b.append_option(v.and_then(Value::as_bool)),
                    });
                }
                Arc::new(b.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_nested_keys_and_array_elements() {
        let doc = json!({"fw": {"version": "2.1", "build": 7}, "a": [1, {"b": true}], "n": null});
        assert_eq!(lookup(&doc, &["fw", "version"]), Some(&json!("2.1")));
        assert_eq!(lookup(&doc, &["a", "1", "b"]), Some(&json!(true)));
        assert_eq!(lookup(&doc, &["a", "9"]), None);
        assert_eq!(lookup(&doc, &["fw", "version", "x"]), None);
        assert_eq!(lookup(&doc, &[]), Some(&doc));
        assert_eq!(lookup(&doc, &["n"]), Some(&Value::Null));
    }
}
