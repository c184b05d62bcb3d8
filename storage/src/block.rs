//! Encoded blocks: up to a few thousand rows of one series, each column compressed with the codec
//! for its type. The head encodes blocks as series fill up; sealing writes the same bytes into a
//! segment, so a point is compressed once.

use std::sync::Arc;

use crate::chunk::{Chunk, Column, StrValues, Values};
use crate::codec::{self, CodecError};
use crate::schema::FieldType;

/// A min/max statistic value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatValue {
    /// Float statistic (never NaN).
    F64(f64),
    /// Integer statistic.
    I64(i64),
    /// Boolean statistic (false < true).
    Bool(bool),
}

/// One encoded column of a block, owned (head blocks).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EncodedColumn {
    pub(crate) key: u32,
    pub(crate) ty: FieldType,
    pub(crate) nulls: u32,
    /// Encoded validity bitmap (`codec::encode_bools`), empty when there are no nulls.
    pub(crate) validity: Vec<u8>,
    /// Encoded non-null values.
    pub(crate) data: Vec<u8>,
    pub(crate) min: Option<StatValue>,
    pub(crate) max: Option<StatValue>,
    /// For a string column, the [`string_bit`]s of its dictionary (a superset of the values
    /// present); 0 for other columns.
    pub(crate) signature: u64,
}

/// The bit a string sets in a block's string signature: a 64-bit one-hash Bloom filter, so a
/// block whose signature lacks every wanted value's bit holds none of them.
pub(crate) fn string_bit(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    s.hash(&mut h);
    1u64 << (h.finish() % 64)
}

/// What a string column holds over many pieces (a series' blocks and chunks), folded from their
/// signatures: enough to tell that none of its rows can equal a wanted value, before building
/// the series' key or looking at a piece.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StringSummary {
    pub(crate) rows: u64,
    pub(crate) nulls: u64,
    pub(crate) signature: u64,
}

impl StringSummary {
    /// Adds a piece of `rows` rows, `nulls` of them null, whose values have `signature`.
    pub(crate) fn add(&mut self, rows: u64, nulls: u64, signature: u64) {
        self.rows += rows;
        self.nulls += nulls;
        self.signature |= signature;
    }

    /// True when no row can hold a value whose bits are `bits`, nor a null if `null` is asked.
    pub(crate) fn excludes(&self, bits: u64, null: bool) -> bool {
        if null && self.nulls > 0 {
            return false;
        }
        self.nulls >= self.rows || self.signature & bits == 0
    }
}

/// Per string column (by key), the [`StringSummary`] of pieces added one by one; a column a
/// piece lacks counts as null over that piece's rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct StringSummaries {
    rows: u64,
    columns: Vec<(u32, StringSummary)>,
}

impl StringSummaries {
    /// Adds a piece of `rows` rows holding string `columns` as (key, nulls, signature).
    pub(crate) fn add(&mut self, rows: u64, columns: impl IntoIterator<Item = (u32, u64, u64)>) {
        let before = self.rows;
        self.rows += rows;
        let mut seen = vec![false; self.columns.len()];
        for (key, nulls, sig) in columns {
            match self.columns.iter().position(|(k, _)| *k == key) {
                Some(i) => {
                    self.columns[i].1.add(rows, nulls, sig);
                    if let Some(s) = seen.get_mut(i) {
                        *s = true;
                    }
                }
                None => {
                    // absent from the pieces before: null there
                    let mut s = StringSummary::default();
                    s.add(before, before, 0);
                    s.add(rows, nulls, sig);
                    self.columns.push((key, s));
                }
            }
        }
        for (i, _) in seen.iter().enumerate().filter(|(_, s)| !**s) {
            self.columns[i].1.add(rows, rows, 0);
        }
    }

    /// The summary of column `key` (a column no piece holds is null in every row).
    pub(crate) fn get(&self, key: u32) -> StringSummary {
        self.columns.iter().find(|(k, _)| *k == key).map_or(
            StringSummary {
                rows: self.rows,
                nulls: self.rows,
                signature: 0,
            },
            |(_, s)| *s,
        )
    }
}

/// The signature of a set of strings: the union of their [`string_bit`]s.
pub(crate) fn string_signature<'s>(values: impl IntoIterator<Item = &'s str>) -> u64 {
    values.into_iter().fold(0, |sig, s| sig | string_bit(s))
}

/// An encoded block, owned (head blocks).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Block {
    pub(crate) rows: u32,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) times: Vec<u8>,
    pub(crate) columns: Vec<EncodedColumn>,
}

/// A borrowed view of an encoded column (from a head block or a mapped segment).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColumnRef<'a> {
    pub(crate) ty: FieldType,
    pub(crate) nulls: u32,
    pub(crate) validity: &'a [u8],
    pub(crate) data: &'a [u8],
}

impl Block {
    /// Encodes a normalized chunk (strictly increasing times, columns padded).
    pub(crate) fn encode(chunk: &Chunk) -> Block {
        let mut times = Vec::new();
        codec::encode_timestamps(&chunk.times, &mut times);
        let columns = chunk
            .columns
            .iter()
            .map(|(k, c)| encode_column(*k, c))
            .collect();
        Block {
            rows: chunk.len() as u32,
            min_time: chunk.times.first().copied().unwrap_or(0),
            max_time: chunk.times.last().copied().unwrap_or(0),
            times,
            columns,
        }
    }

    /// Bytes of encoded data.
    pub(crate) fn bytes(&self) -> usize {
        self.times.len()
            + self
                .columns
                .iter()
                .map(|c| c.data.len() + c.validity.len() + 32)
                .sum::<usize>()
            + 48
    }

    /// Decodes every column (keys as stored).
    pub(crate) fn decode_all(&self) -> Result<Chunk, CodecError> {
        let times = decode_times(&self.times, self.rows)?;
        let mut columns = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let r = ColumnRef {
                ty: c.ty,
                nulls: c.nulls,
                validity: &c.validity,
                data: &c.data,
            };
            columns.push((c.key, decode_column(r, self.rows)?));
        }
        Ok(Chunk { times, columns })
    }

    pub(crate) fn column(&self, key: u32) -> Option<ColumnRef<'_>> {
        self.columns
            .iter()
            .find(|c| c.key == key)
            .map(|c| ColumnRef {
                ty: c.ty,
                nulls: c.nulls,
                validity: &c.validity,
                data: &c.data,
            })
    }
}

/// The values of the valid slots, in row order.
fn present<'a, T: 'a, U>(c: &Column, v: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    v.iter()
        .enumerate()
        .filter(|(i, _)| c.is_valid(*i))
        .map(|(_, x)| f(x))
        .collect()
}

/// Min and max of ordered values as statistics.
fn min_max<T: Ord + Copy>(
    vals: &[T],
    stat: impl Fn(T) -> StatValue,
) -> (Option<StatValue>, Option<StatValue>) {
    (
        vals.iter().min().map(|x| stat(*x)),
        vals.iter().max().map(|x| stat(*x)),
    )
}

fn encode_column(key: u32, c: &Column) -> EncodedColumn {
    let nulls = c.null_count();
    let mut validity = Vec::new();
    if nulls > 0
        && let Some(v) = &c.valid
    {
        codec::encode_bools(v, &mut validity);
    }
    let mut data = Vec::new();
    let mut signature = 0;
    let (min, max) = match &c.values {
        Values::F64(v) => {
            let vals = present(c, v, |x| *x);
            codec::encode_f64(&vals, &mut data);
            // statistics only without NaN, so pruning by them is always safe
            if vals.is_empty() || vals.iter().any(|x| x.is_nan()) {
                (None, None)
            } else {
                let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (Some(StatValue::F64(lo)), Some(StatValue::F64(hi)))
            }
        }
        Values::I64(v) => {
            let vals = present(c, v, |x| *x);
            codec::encode_i64(&vals, &mut data);
            min_max(&vals, StatValue::I64)
        }
        Values::Bool(v) => {
            let vals = present(c, v, |x| *x);
            codec::encode_bools(&vals, &mut data);
            min_max(&vals, StatValue::Bool)
        }
        Values::Str(v) => {
            let vals: Vec<&str> = (0..v.len())
                .filter(|&i| c.is_valid(i))
                .map(|i| v.get(i).map_or("", |s| &**s))
                .collect();
            codec::encode_strings(&vals, &mut data);
            signature = string_signature(v.dict().iter().map(|s| &**s));
            (None, None)
        }
    };
    EncodedColumn {
        key,
        ty: c.values.field_type(),
        nulls: nulls as u32,
        validity,
        data,
        min,
        max,
        signature,
    }
}

/// Decodes a time column that must hold exactly `rows` values.
pub(crate) fn decode_times(bytes: &[u8], rows: u32) -> Result<Vec<i64>, CodecError> {
    let mut out = Vec::with_capacity(rows as usize);
    codec::decode_timestamps(bytes, &mut out)?;
    if out.len() != rows as usize {
        return Err(CodecError::Corrupt("time column row count"));
    }
    Ok(out)
}

/// Decodes one column of a block of `rows` rows into a row-aligned [`Column`].
pub(crate) fn decode_column(c: ColumnRef<'_>, rows: u32) -> Result<Column, CodecError> {
    let rows = rows as usize;
    let valid = if c.nulls > 0 {
        let mut v = Vec::with_capacity(rows);
        codec::decode_bools(c.validity, &mut v)?;
        if v.len() != rows || v.iter().filter(|b| !**b).count() != c.nulls as usize {
            return Err(CodecError::Corrupt("validity bitmap"));
        }
        Some(v)
    } else {
        None
    };
    let present = rows - (c.nulls as usize).min(rows);
    let values = match c.ty {
        FieldType::Float => {
            let mut v = Vec::with_capacity(present);
            codec::decode_f64(c.data, &mut v)?;
            Values::F64(expand(v, present, valid.as_deref(), 0.0)?)
        }
        FieldType::Integer => {
            let mut v = Vec::with_capacity(present);
            codec::decode_i64(c.data, &mut v)?;
            Values::I64(expand(v, present, valid.as_deref(), 0)?)
        }
        FieldType::Boolean => {
            let mut v = Vec::with_capacity(present);
            codec::decode_bools(c.data, &mut v)?;
            Values::Bool(expand(v, present, valid.as_deref(), false)?)
        }
        FieldType::String => {
            let d = codec::decode_string_dictionary(c.data)?;
            let dict: Vec<Arc<str>> = d.values.into_iter().map(Arc::from).collect();
            let keys = expand(d.keys, present, valid.as_deref(), 0)?;
            Values::Str(StrValues::from_parts(dict, keys))
        }
    };
    Ok(Column { values, valid })
}

/// Spreads `present` decoded values over the valid slots.
fn expand<T: Clone>(
    vals: Vec<T>,
    present: usize,
    valid: Option<&[bool]>,
    null: T,
) -> Result<Vec<T>, CodecError> {
    if vals.len() != present {
        return Err(CodecError::Corrupt("value count"));
    }
    let Some(valid) = valid else {
        return Ok(vals);
    };
    let mut it = vals.into_iter();
    let mut out = Vec::with_capacity(valid.len());
    for v in valid {
        out.push(if *v {
            it.next().ok_or(CodecError::Corrupt("value count"))?
        } else {
            null.clone()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_round_trips_with_nulls_and_stats() {
        let mut c = Chunk::default();
        for i in 0..100i64 {
            c.times.push(i * 10);
            if i % 3 != 0 {
                let col = c.column_mut(0, FieldType::Float);
                col.pad_to(i as usize);
                col.push_f64(i as f64 * 0.5);
            }
            let col = c.column_mut(1, FieldType::String);
            col.pad_to(i as usize);
            col.push_str(Arc::from(if i % 2 == 0 { "idle" } else { "moving" }));
        }
        c.finish();
        let b = Block::encode(&c);
        assert_eq!((b.rows, b.min_time, b.max_time), (100, 0, 990));
        assert_eq!(b.columns[0].nulls, 34);
        assert_eq!(b.columns[0].min, Some(StatValue::F64(0.5)));
        assert_eq!(b.columns[0].max, Some(StatValue::F64(49.0)));
        let times = decode_times(&b.times, b.rows).unwrap();
        assert_eq!(times, c.times);
        for (k, orig) in &c.columns {
            let d = decode_column(b.column(*k).unwrap(), b.rows).unwrap();
            assert_eq!(&d, orig);
        }
        assert!(decode_times(&b.times, 99).is_err());
    }

    /// A piece for the summary property: per column key 0..3, `None` (the piece lacks the
    /// column) or its rows' values (`None` = null) from a small alphabet.
    type Piece = Vec<Option<Vec<Option<u8>>>>;

    fn pieces() -> impl proptest::strategy::Strategy<Value = (usize, Vec<Piece>)> {
        use proptest::prelude::*;
        (1usize..6).prop_flat_map(|rows| {
            let column = proptest::option::of(proptest::collection::vec(
                proptest::option::of(0u8..6),
                rows,
            ));
            let piece = proptest::collection::vec(column, 3);
            (Just(rows), proptest::collection::vec(piece, 0..5))
        })
    }

    proptest::proptest! {
        /// A summary that excludes a set (values and/or null) means no row of any piece holds
        /// one of them: absent columns count as null rows.
        #[test]
        fn summaries_exclude_only_what_no_row_holds(
            (rows, pieces) in pieces(),
            wanted in proptest::collection::vec(0u8..6, 0..3),
            null in proptest::prelude::any::<bool>(),
        ) {
            let text = |v: u8| format!("v{v}");
            let mut all = StringSummaries::default();
            for p in &pieces {
                all.add(rows as u64, p.iter().enumerate().filter_map(|(key, c)| {
                    let c = c.as_ref()?;
                    let nulls = c.iter().filter(|v| v.is_none()).count() as u64;
                    let sig = string_signature(c.iter().flatten().map(|v| text(*v)).collect::<Vec<_>>().iter().map(String::as_str));
                    Some((key as u32, nulls, sig))
                }));
            }
            let bits = string_signature(wanted.iter().map(|v| text(*v)).collect::<Vec<_>>().iter().map(String::as_str));
            for key in 0..4u32 {
                let held = pieces.iter().any(|p| match p.get(key as usize).and_then(|c| c.as_ref()) {
                    None => null,
                    Some(c) => c.iter().any(|v| match v {
                        None => null,
                        Some(v) => wanted.contains(v),
                    }),
                });
                let s = all.get(key);
                proptest::prop_assert_eq!(s.rows, (rows * pieces.len()) as u64);
                if s.excludes(bits, null) {
                    proptest::prop_assert!(!held, "key {key}: {s:?} excludes {wanted:?} null={null}");
                }
            }
        }
    }
}
