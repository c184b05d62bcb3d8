//! Assembling scan output into Arrow record batches.

use std::sync::Arc;

use ahash::AHashMap;
use arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array, StringBuilder,
    StringDictionaryBuilder, TimestampNanosecondArray,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow::datatypes::{Int32Type, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::pieces::Key;
use super::{ScanRequest, Slot};
use crate::chunk::{Chunk, Column, Values};
use crate::error::ScanError;
use crate::schema::FieldType;

enum Buf {
    Time(Vec<i64>),
    Tag(StringDictionaryBuilder<Int32Type>),
    F64(Vec<f64>, Vec<bool>),
    I64(Vec<i64>, Vec<bool>),
    Bool(Vec<bool>, Vec<bool>),
    Str(StrBuf),
}

/// A string field's output: a dictionary array whose values are the distinct strings of the
/// batch, gathered from each chunk's block dictionary (one lookup per distinct value and chunk,
/// not per row).
#[derive(Default)]
struct StrBuf {
    values: StringBuilder,
    index: AHashMap<Arc<str>, i32>,
    keys: Vec<i32>,
    valid: Vec<bool>,
}

impl StrBuf {
    fn intern(&mut self, s: &Arc<str>) -> i32 {
        if let Some(&k) = self.index.get(s) {
            return k;
        }
        let k = self.index.len() as i32;
        self.values.append_value(&**s);
        self.index.insert(Arc::clone(s), k);
        k
    }

    fn extend(&mut self, col: Option<&Column>, n: usize) {
        let Some(
            c @ Column {
                values: Values::Str(x),
                ..
            },
        ) = col
        else {
            self.keys.resize(self.keys.len() + n, 0);
            self.valid.resize(self.valid.len() + n, false);
            return;
        };
        let dict = x.dict();
        let keys = x.keys();
        if c.valid.is_none() && dict.len() <= n && keys.len() >= n {
            // every row valid and the dictionary small beside the rows: map it whole, then
            // translate the keys in one pass (decoded keys are in range)
            if let [one] = dict.as_slice() {
                let m = self.intern(one);
                self.keys.resize(self.keys.len() + n, m);
            } else {
                let map: Vec<i32> = dict.iter().map(|s| self.intern(s)).collect();
                self.keys.extend(
                    keys[..n]
                        .iter()
                        .map(|&k| map.get(k as usize).copied().unwrap_or(0)),
                );
            }
            self.valid.resize(self.valid.len() + n, true);
            return;
        }
        // A sliced chunk may share a large dictionary it uses little of: then map lazily.
        let mut map: Vec<Option<i32>> = vec![None; dict.len()];
        if dict.len() <= n {
            for (m, s) in map.iter_mut().zip(dict.iter()) {
                *m = Some(self.intern(s));
            }
        }
        for (j, &k) in x.keys().iter().take(n).enumerate() {
            let ok = c.is_valid(j);
            let key = match (ok, map.get(k as usize)) {
                (true, Some(Some(m))) => *m,
                (true, Some(None)) => {
                    let m = dict.get(k as usize).map_or(0, |s| self.intern(s));
                    if let Some(slot) = map.get_mut(k as usize) {
                        *slot = Some(m);
                    }
                    m
                }
                _ => 0,
            };
            self.keys.push(key);
            self.valid.push(ok && (k as usize) < dict.len());
        }
    }

    fn finish(mut self) -> Result<ArrayRef, ArrowError> {
        let keys = Int32Array::new(ScalarBuffer::from(self.keys), nulls(self.valid));
        let values = Arc::new(self.values.finish());
        Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
            keys, values,
        )?))
    }
}

/// Collects rows and cuts them into record batches of about `batch_rows` rows, each handed to
/// the sink as it is cut.
pub(crate) struct Output<'s> {
    schema: SchemaRef,
    slots: Vec<Slot>,
    bufs: Vec<Buf>,
    rows: usize,
    batch_rows: usize,
    left: Option<usize>,
    sink: &'s mut dyn FnMut(RecordBatch) -> bool,
    stopped: bool,
}

impl std::fmt::Debug for Output<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output").field("rows", &self.rows).finish()
    }
}

fn new_bufs(slots: &[Slot]) -> Vec<Buf> {
    slots
        .iter()
        .map(|s| match s {
            Slot::Time => Buf::Time(Vec::new()),
            Slot::Tag(_) => Buf::Tag(StringDictionaryBuilder::new()),
            Slot::Field(_, FieldType::Float) => Buf::F64(Vec::new(), Vec::new()),
            Slot::Field(_, FieldType::Integer) => Buf::I64(Vec::new(), Vec::new()),
            Slot::Field(_, FieldType::Boolean) => Buf::Bool(Vec::new(), Vec::new()),
            Slot::Field(_, FieldType::String) => Buf::Str(StrBuf::default()),
        })
        .collect()
}

fn extend<T: Clone + Default>(
    vals: &mut Vec<T>,
    valid: &mut Vec<bool>,
    src: Option<(&[T], &Column)>,
    n: usize,
) {
    match src {
        Some((s, c)) => {
            vals.extend_from_slice(s.get(..n).unwrap_or(s));
            match &c.valid {
                Some(v) => valid.extend_from_slice(v.get(..n).unwrap_or(v)),
                None => valid.resize(valid.len() + n, true),
            }
        }
        None => {
            vals.resize(vals.len() + n, T::default());
            valid.resize(valid.len() + n, false);
        }
    }
}

fn nulls(valid: Vec<bool>) -> Option<NullBuffer> {
    if valid.iter().all(|v| *v) {
        None
    } else {
        Some(NullBuffer::from(valid))
    }
}

impl<'s> Output<'s> {
    pub(crate) fn new(
        schema: SchemaRef,
        slots: &[Slot],
        req: &ScanRequest,
        sink: &'s mut dyn FnMut(RecordBatch) -> bool,
    ) -> Output<'s> {
        Output {
            schema,
            slots: slots.to_vec(),
            bufs: new_bufs(slots),
            rows: 0,
            batch_rows: req.batch_rows.max(1),
            left: req.limit,
            sink,
            stopped: false,
        }
    }

    /// How many slots it returns (a scan's slots past them are read by conditions only).
    pub(crate) fn width(&self) -> usize {
        self.slots.len()
    }

    /// True once the limit is reached or the sink wants no more.
    pub(crate) fn full(&self) -> bool {
        self.stopped || self.left == Some(0)
    }

    /// Appends a series' rows (a normalized chunk keyed by slot).
    pub(crate) fn push(&mut self, key: &Key, chunk: Chunk) -> Result<(), ScanError> {
        let mut chunk = chunk;
        if let Some(left) = self.left {
            if chunk.len() > left {
                chunk = chunk.slice_rows(0, left);
            }
            self.left = Some(left - chunk.len());
        }
        let n = chunk.len();
        if n == 0 {
            return Ok(());
        }
        for (i, (slot, buf)) in self.slots.iter().zip(&mut self.bufs).enumerate() {
            let col = chunk.column(i as u32);
            match (slot, buf) {
                (Slot::Time, Buf::Time(v)) => v.extend_from_slice(&chunk.times),
                // One dictionary lookup per series chunk, not per row.
                (Slot::Tag(name), Buf::Tag(b)) => match key.iter().find(|(k, _)| **k == **name) {
                    Some((_, v)) => b.append_values(&**v, n),
                    None => b.append_nulls(n),
                },
                (Slot::Field(..), Buf::F64(v, ok)) => {
                    let src = col.and_then(|c| match &c.values {
                        Values::F64(x) => Some((x.as_slice(), c)),
                        _ => None,
                    });
                    extend(v, ok, src, n);
                }
                (Slot::Field(..), Buf::I64(v, ok)) => {
                    let src = col.and_then(|c| match &c.values {
                        Values::I64(x) => Some((x.as_slice(), c)),
                        _ => None,
                    });
                    extend(v, ok, src, n);
                }
                (Slot::Field(..), Buf::Bool(v, ok)) => {
                    let src = col.and_then(|c| match &c.values {
                        Values::Bool(x) => Some((x.as_slice(), c)),
                        _ => None,
                    });
                    extend(v, ok, src, n);
                }
                (Slot::Field(..), Buf::Str(b)) => b.extend(col, n),
                _ => {}
            }
        }
        self.rows += n;
        if self.rows >= self.batch_rows {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ScanError> {
        if self.rows == 0 {
            return Ok(());
        }
        let bufs = std::mem::replace(&mut self.bufs, new_bufs(&self.slots));
        let arrays = bufs
            .into_iter()
            .map(|b| -> Result<ArrayRef, ArrowError> {
                Ok(match b {
                    Buf::Time(v) => {
                        Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
                    }
                    Buf::Tag(mut b) => Arc::new(b.finish()),
                    Buf::F64(v, ok) => {
                        Arc::new(Float64Array::new(ScalarBuffer::from(v), nulls(ok)))
                    }
                    Buf::I64(v, ok) => Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls(ok))),
                    Buf::Bool(v, ok) => {
                        Arc::new(BooleanArray::new(BooleanBuffer::from(v), nulls(ok)))
                    }
                    Buf::Str(b) => b.finish()?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let opts = RecordBatchOptions::new().with_row_count(Some(self.rows));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &opts)?;
        self.rows = 0;
        if !(self.sink)(batch) {
            self.stopped = true;
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<(), ScanError> {
        if !self.stopped {
            self.flush()?;
        }
        Ok(())
    }
}
