//! The byte encoding of a [`WriteBatch`] inside a WAL record (see `docs/formats/wal.md`,
//! "Payload: write batch v1"). Decoding treats the bytes as untrusted: every count and index is
//! bounds-checked and allocation is bounded by the input length.

use super::{BatchRow, BatchSeries, Value, WriteBatch};
use crate::varint::{Reader, put_bytes, put_u64};

const VERSION: u8 = 1;
const T_F64: u8 = 1;
const T_I64: u8 = 2;
const T_BOOL: u8 = 3;
const T_STR: u8 = 4;

/// Why a batch payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BatchDecodeError {
    /// The payload's version byte is not one this build reads.
    #[error("unknown write batch version {0}")]
    Version(u8),
    /// The payload ended or contradicted itself at the given offset.
    #[error("corrupt write batch at byte {offset}: {what}")]
    Corrupt {
        /// Byte offset in the payload.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
}

/// Appends the encoding of `batch` to `out`.
pub(crate) fn encode(batch: &WriteBatch, out: &mut Vec<u8>) {
    out.push(VERSION);
    put_u64(out, batch.strings.len() as u64);
    for s in &batch.strings {
        put_bytes(out, s.as_bytes());
    }
    put_u64(out, batch.series.len() as u64);
    for s in &batch.series {
        put_u64(out, u64::from(s.table));
        put_u64(out, s.tags.len() as u64);
        for (k, v) in &s.tags {
            put_u64(out, u64::from(*k));
            put_u64(out, u64::from(*v));
        }
    }
    put_u64(out, batch.rows.len() as u64);
    for row in &batch.rows {
        put_u64(out, u64::from(row.series));
        out.extend_from_slice(&row.time.to_le_bytes());
        let fields = batch.row_fields(row);
        put_u64(out, fields.len() as u64);
        for (name, v) in fields {
            put_u64(out, u64::from(*name));
            match v {
                Value::F64(x) => {
                    out.push(T_F64);
                    out.extend_from_slice(&x.to_bits().to_le_bytes());
                }
                Value::I64(x) => {
                    out.push(T_I64);
                    out.extend_from_slice(&x.to_le_bytes());
                }
                Value::Bool(x) => out.extend_from_slice(&[T_BOOL, u8::from(*x)]),
                Value::Str(s) => {
                    out.push(T_STR);
                    put_u64(out, u64::from(*s));
                }
            }
        }
    }
}

/// Decodes a payload written by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<WriteBatch, BatchDecodeError> {
    let mut r = Reader::new(bytes);
    let bad = |r: &Reader<'_>, what: &'static str| BatchDecodeError::Corrupt {
        offset: r.position(),
        what,
    };
    let version = r.u8().ok_or_else(|| bad(&r, "empty payload"))?;
    if version != VERSION {
        return Err(BatchDecodeError::Version(version));
    }
    let mut b = WriteBatch::new();
    // every string takes at least one byte, so the count is bounded by what is left
    let n = r
        .var_len(r.remaining())
        .ok_or_else(|| bad(&r, "string count"))?;
    for _ in 0..n {
        let s = r.str().ok_or_else(|| bad(&r, "string"))?;
        let id = b.intern(s);
        if id as usize + 1 != b.strings.len() {
            return Err(bad(&r, "duplicate string"));
        }
    }
    let nstr = b.strings.len();
    let sym = |r: &mut Reader<'_>| -> Result<u32, BatchDecodeError> {
        match r.var_len(nstr.saturating_sub(1)) {
            Some(v) if nstr > 0 => Ok(v as u32),
            _ => Err(bad(r, "string index")),
        }
    };
    let n = r
        .var_len(r.remaining())
        .ok_or_else(|| bad(&r, "series count"))?;
    for i in 0..n {
        let table = sym(&mut r)?;
        let ntags = r
            .var_len(r.remaining() / 2)
            .ok_or_else(|| bad(&r, "tag count"))?;
        let mut tags = Vec::with_capacity(ntags);
        for _ in 0..ntags {
            let k = sym(&mut r)?;
            let v = sym(&mut r)?;
            tags.push((k, v));
        }
        let sref = b.add_series(BatchSeries { table, tags });
        if sref.0 as usize != i {
            return Err(bad(&r, "duplicate series"));
        }
    }
    let nseries = b.series.len();
    let nrows = r
        .var_len(r.remaining() / 10)
        .ok_or_else(|| bad(&r, "row count"))?;
    b.rows.reserve(nrows);
    for _ in 0..nrows {
        let series = r
            .var_len(nseries.saturating_sub(1))
            .filter(|_| nseries > 0)
            .ok_or_else(|| bad(&r, "series index"))? as u32;
        let time = r.u64_le().ok_or_else(|| bad(&r, "row time"))? as i64;
        let nf = r
            .var_len(r.remaining() / 3)
            .ok_or_else(|| bad(&r, "field count"))?;
        let start = b.fields.len() as u32;
        for _ in 0..nf {
            let name = sym(&mut r)?;
            let v = match r.u8() {
                Some(T_F64) => Value::F64(f64::from_bits(
                    r.u64_le().ok_or_else(|| bad(&r, "f64 value"))?,
                )),
                Some(T_I64) => Value::I64(r.u64_le().ok_or_else(|| bad(&r, "i64 value"))? as i64),
                Some(T_BOOL) => match r.u8() {
                    Some(0) => Value::Bool(false),
                    Some(1) => Value::Bool(true),
                    _ => return Err(bad(&r, "bool value")),
                },
                Some(T_STR) => Value::Str(sym(&mut r)?),
                _ => return Err(bad(&r, "value type")),
            };
            b.fields.push((name, v));
        }
        b.rows.push(BatchRow {
            series,
            time,
            fields_start: start,
            fields_end: b.fields.len() as u32,
        });
    }
    if r.remaining() != 0 {
        return Err(bad(&r, "trailing bytes"));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::FieldValue;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = (String, u8, f64, i64, bool, String)> {
        (
            "[a-c]{1,2}",
            0u8..4,
            any::<u64>().prop_map(f64::from_bits),
            any::<i64>(),
            any::<bool>(),
            "\\PC{0,6}",
        )
    }

    proptest! {
        #[test]
        fn round_trip(rows in proptest::collection::vec((0u8..4, any::<i64>(), proptest::collection::vec(value(), 0..5)), 0..20)) {
            let mut b = WriteBatch::new();
            for (dev, t, fields) in &rows {
                let s = b.series("tbl", &[("device_id", &format!("d{dev}")), ("k", "v")]);
                let mut w = b.row(s, *t);
                for (name, ty, f, i, bo, st) in fields {
                    let v = match ty { 0 => FieldValue::F64(*f), 1 => FieldValue::I64(*i), 2 => FieldValue::Bool(*bo), _ => FieldValue::Str(st) };
                    w.field(name, v);
                }
            }
            let mut out = Vec::new();
            encode(&b, &mut out);
            let d = decode(&out).unwrap();
            prop_assert_eq!(&d.strings, &b.strings);
            prop_assert_eq!(&d.series, &b.series);
            prop_assert_eq!(&d.rows, &b.rows);
            prop_assert_eq!(d.fields.len(), b.fields.len());
            for (x, y) in d.fields.iter().zip(&b.fields) {
                prop_assert_eq!(x.0, y.0);
                match (x.1, y.1) {
                    (Value::F64(a), Value::F64(c)) => prop_assert_eq!(a.to_bits(), c.to_bits()),
                    (a, c) => prop_assert_eq!(a, c),
                }
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let mut v = vec![VERSION];
            v.extend_from_slice(&bytes);
            let _ = decode(&v);
        }
    }
}
