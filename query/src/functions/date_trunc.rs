//! `date_trunc` on UTC timestamps by arithmetic.
//!
//! Mast's `time` is `Timestamp(Nanosecond, "UTC")`. DataFusion 55's `date_trunc` takes its
//! arithmetic fast path for hours and days only when a timestamp has no time zone; with one —
//! even UTC — it converts every value through chrono's zone machinery, 80 ms for a million
//! rows, which makes `GROUP BY date_trunc('day', time)` cost more than the rest of the query.
//! UTC has no offsets and no daylight saving, so truncating a UTC timestamp equals truncating
//! the same instants without a zone: this wrapper drops the zone label (no values change),
//! lets DataFusion's own function run its zone-free path, and puts the label back. Every other
//! input goes to DataFusion's function unchanged.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, make_array};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// DataFusion's `date_trunc`, with UTC timestamps truncated as zone-free ones.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct DateTruncUtc {
    inner: Arc<ScalarUDF>,
}

impl DateTruncUtc {
    pub(super) fn new() -> DateTruncUtc {
        DateTruncUtc {
            inner: datafusion::functions::datetime::date_trunc(),
        }
    }
}

/// Zone names that mean UTC.
fn is_utc(tz: &str) -> bool {
    matches!(
        tz,
        "UTC" | "utc" | "Z" | "+00:00" | "+0000" | "+00" | "Etc/UTC" | "GMT"
    )
}

/// The same values under another timestamp type (zone labels only: no value changes).
fn relabel(a: &ArrayRef, ty: &DataType) -> Result<ArrayRef> {
    let data = a.to_data().into_builder().data_type(ty.clone()).build()?;
    Ok(make_array(data))
}

fn with_type(f: &FieldRef, ty: &DataType) -> FieldRef {
    Arc::new(f.as_ref().clone().with_data_type(ty.clone()))
}

impl ScalarUDFImpl for DateTruncUtc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let zoned = match args.args.get(1) {
            Some(ColumnarValue::Array(a)) => match a.data_type() {
                ty @ DataType::Timestamp(unit, Some(tz)) if is_utc(tz) => {
                    Some((ty.clone(), DataType::Timestamp(*unit, None)))
                }
                _ => None,
            },
            _ => None,
        };
        let Some((utc, naive)) = zoned else {
            return self.inner.invoke_with_args(args);
        };
        if let Some(ColumnarValue::Array(a)) = args.args.get_mut(1) {
            *a = relabel(a, &naive)?;
        }
        if let Some(f) = args.arg_fields.get_mut(1) {
            *f = with_type(f, &naive);
        }
        args.return_field = with_type(&args.return_field, &naive);
        match self.inner.invoke_with_args(args)? {
            ColumnarValue::Array(a) if a.data_type() == &naive => {
                Ok(ColumnarValue::Array(relabel(&a, &utc)?))
            }
            other => other.cast_to(&utc, None),
        }
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
