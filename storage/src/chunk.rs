//! Decoded columnar rows of one series: the form head data is built in and every stored block is
//! decoded to. [`Chunk::normalize`] sorts by time and resolves duplicates (same series, same
//! timestamp) field by field, last write wins, so every later stage sees strictly increasing times.

mod strs;

use std::sync::Arc;

use crate::schema::FieldType;

pub(crate) use strs::StrValues;

/// The values of one column; a null slot holds a default value and is marked in the validity.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Values {
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    Str(StrValues),
}

impl Values {
    pub(crate) fn new(ty: FieldType) -> Values {
        match ty {
            FieldType::Float => Values::F64(Vec::new()),
            FieldType::Integer => Values::I64(Vec::new()),
            FieldType::Boolean => Values::Bool(Vec::new()),
            FieldType::String => Values::Str(StrValues::default()),
        }
    }

    pub(crate) fn field_type(&self) -> FieldType {
        match self {
            Values::F64(_) => FieldType::Float,
            Values::I64(_) => FieldType::Integer,
            Values::Bool(_) => FieldType::Boolean,
            Values::Str(_) => FieldType::String,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Values::F64(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Str(v) => v.len(),
        }
    }

    fn push_null(&mut self) {
        match self {
            Values::F64(v) => v.push(0.0),
            Values::I64(v) => v.push(0),
            Values::Bool(v) => v.push(false),
            Values::Str(v) => v.push_null(),
        }
    }

    /// Appends `src[i]`; both must be of the same type (they are: one column of one table).
    fn push_from(&mut self, src: &Values, i: usize) {
        match (self, src) {
            (Values::F64(d), Values::F64(s)) => d.push(s.get(i).copied().unwrap_or(0.0)),
            (Values::I64(d), Values::I64(s)) => d.push(s.get(i).copied().unwrap_or(0)),
            (Values::Bool(d), Values::Bool(s)) => d.push(s.get(i).copied().unwrap_or(false)),
            (Values::Str(d), Values::Str(s)) => d.push_from(s, i),
            (d, _) => d.push_null(),
        }
    }
}

/// One column of a chunk.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    pub(crate) values: Values,
    /// `None` when every slot is valid.
    pub(crate) valid: Option<Vec<bool>>,
}

impl Column {
    pub(crate) fn new(ty: FieldType) -> Column {
        Column {
            values: Values::new(ty),
            valid: None,
        }
    }

    pub(crate) fn is_valid(&self, i: usize) -> bool {
        self.valid
            .as_ref()
            .is_none_or(|v| v.get(i).copied().unwrap_or(false))
    }

    pub(crate) fn null_count(&self) -> usize {
        self.valid
            .as_ref()
            .map_or(0, |v| v.iter().filter(|b| !**b).count())
    }

    /// Pads with nulls up to `len` slots.
    pub(crate) fn pad_to(&mut self, len: usize) {
        let have = self.values.len();
        if have >= len {
            return;
        }
        let valid = self.valid.get_or_insert_with(|| vec![true; have]);
        for _ in have..len {
            self.values.push_null();
            valid.push(false);
        }
    }

    /// Drops the last slot.
    pub(crate) fn truncate_last(&mut self) {
        let n = self.values.len().saturating_sub(1);
        match &mut self.values {
            Values::F64(v) => v.truncate(n),
            Values::I64(v) => v.truncate(n),
            Values::Bool(v) => v.truncate(n),
            Values::Str(v) => v.truncate(n),
        }
        if let Some(v) = &mut self.valid {
            v.truncate(n);
        }
    }

    /// Slots `lo..hi` (`lo <= hi <= len`).
    pub(crate) fn slice(&self, lo: usize, hi: usize) -> Column {
        fn part<T: Clone>(v: &[T], lo: usize, hi: usize) -> Vec<T> {
            v.get(lo..hi).unwrap_or_default().to_vec()
        }
        let values = match &self.values {
            Values::F64(v) => Values::F64(part(v, lo, hi)),
            Values::I64(v) => Values::I64(part(v, lo, hi)),
            Values::Bool(v) => Values::Bool(part(v, lo, hi)),
            Values::Str(v) => Values::Str(v.slice(lo, hi)),
        };
        let valid = self
            .valid
            .as_ref()
            .map(|v| part(v, lo, hi))
            .filter(|v| v.iter().any(|ok| !ok));
        Column { values, valid }
    }

    /// The slots whose `keep` is set (`keep` as long as the column).
    pub(crate) fn filter(&self, keep: &[bool]) -> Column {
        let values = match &self.values {
            Values::F64(v) => Values::F64(kept(v, keep)),
            Values::I64(v) => Values::I64(kept(v, keep)),
            Values::Bool(v) => Values::Bool(kept(v, keep)),
            Values::Str(v) => Values::Str(v.filter(keep)),
        };
        let valid = self
            .valid
            .as_ref()
            .map(|v| kept(v, keep))
            .filter(|v| v.iter().any(|ok| !ok));
        Column { values, valid }
    }

    fn push_valid(&mut self) {
        if let Some(v) = &mut self.valid {
            v.push(true);
        }
    }

    pub(crate) fn push_f64(&mut self, x: f64) {
        if let Values::F64(v) = &mut self.values {
            v.push(x);
            self.push_valid();
        }
    }

    pub(crate) fn push_i64(&mut self, x: i64) {
        if let Values::I64(v) = &mut self.values {
            v.push(x);
            self.push_valid();
        }
    }

    pub(crate) fn push_bool(&mut self, x: bool) {
        if let Values::Bool(v) = &mut self.values {
            v.push(x);
            self.push_valid();
        }
    }

    pub(crate) fn push_str(&mut self, x: Arc<str>) {
        if let Values::Str(v) = &mut self.values {
            v.push(x);
            self.push_valid();
        }
    }

    /// Overwrites the last slot with `src[i]` when that is valid (used to merge duplicates).
    fn overwrite_last_from(&mut self, src: &Column, i: usize) {
        if !src.is_valid(i) {
            return;
        }
        let last = self.values.len().saturating_sub(1);
        match (&mut self.values, &src.values) {
            (Values::F64(d), Values::F64(s)) => set(d, last, s.get(i).copied()),
            (Values::I64(d), Values::I64(s)) => set(d, last, s.get(i).copied()),
            (Values::Bool(d), Values::Bool(s)) => set(d, last, s.get(i).copied()),
            (Values::Str(d), Values::Str(s)) => d.set_from(last, s, i),
            _ => return,
        }
        if let Some(slot) = self.valid.as_mut().and_then(|v| v.get_mut(last)) {
            *slot = true;
        }
    }

    fn push_from(&mut self, src: &Column, i: usize) {
        self.values.push_from(&src.values, i);
        if src.is_valid(i) {
            self.push_valid();
        } else {
            let have = self.values.len() - 1;
            self.valid
                .get_or_insert_with(|| vec![true; have])
                .push(false);
        }
    }
}

/// The elements of `v` whose `keep` is set.
fn kept<T: Copy>(v: &[T], keep: &[bool]) -> Vec<T> {
    let n = keep.iter().filter(|k| **k).count();
    let mut out = Vec::with_capacity(n);
    for (x, k) in v.iter().zip(keep) {
        if *k {
            out.push(*x);
        }
    }
    out
}

fn set<T>(d: &mut [T], i: usize, v: Option<T>) {
    if let (Some(slot), Some(v)) = (d.get_mut(i), v) {
        *slot = v;
    }
}

/// Rows of one series: a time column and columns keyed by a caller-chosen id (a `ColumnId` in the
/// head, an output slot in scans), sorted by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Chunk {
    pub(crate) times: Vec<i64>,
    pub(crate) columns: Vec<(u32, Column)>,
}

impl Chunk {
    pub(crate) fn len(&self) -> usize {
        self.times.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The column with `key`, created empty (all null so far) when missing.
    pub(crate) fn column_mut(&mut self, key: u32, ty: FieldType) -> &mut Column {
        let pos = match self.columns.binary_search_by_key(&key, |c| c.0) {
            Ok(p) => p,
            Err(p) => {
                let mut c = Column::new(ty);
                c.pad_to(self.times.len().saturating_sub(1));
                self.columns.insert(p, (key, c));
                p
            }
        };
        &mut self.columns[pos].1
    }

    pub(crate) fn column(&self, key: u32) -> Option<&Column> {
        self.columns
            .binary_search_by_key(&key, |c| c.0)
            .ok()
            .map(|p| &self.columns[p].1)
    }

    /// Pads every column to the row count.
    pub(crate) fn finish(&mut self) {
        let n = self.times.len();
        for (_, c) in &mut self.columns {
            c.pad_to(n);
        }
    }

    pub(crate) fn is_strictly_sorted(&self) -> bool {
        self.times.windows(2).all(|w| w[0] < w[1])
    }

    /// Sorts rows by time and merges rows with equal times: for each column the value of the
    /// latest row (in the current order) that has one wins.
    pub(crate) fn normalize(mut self) -> Chunk {
        self.finish();
        if self.is_strictly_sorted() {
            return self;
        }
        let mut order: Vec<u32> = (0..self.times.len() as u32).collect();
        order.sort_by_key(|&i| self.times[i as usize]);
        let mut out = Chunk {
            times: Vec::with_capacity(self.times.len()),
            columns: self
                .columns
                .iter()
                .map(|(k, c)| (*k, Column::new(c.values.field_type())))
                .collect(),
        };
        for &i in &order {
            let i = i as usize;
            let t = self.times[i];
            if out.times.last() == Some(&t) {
                for ((_, dst), (_, src)) in out.columns.iter_mut().zip(&self.columns) {
                    dst.overwrite_last_from(src, i);
                }
            } else {
                out.times.push(t);
                for ((_, dst), (_, src)) in out.columns.iter_mut().zip(&self.columns) {
                    dst.push_from(src, i);
                }
            }
        }
        out
    }

    /// Appends every row of `other` after this chunk's rows (column sets are unioned).
    pub(crate) fn append(&mut self, other: &Chunk) {
        let base = self.times.len();
        for (k, c) in &other.columns {
            let pos = match self.columns.binary_search_by_key(k, |c| c.0) {
                Ok(p) => p,
                Err(p) => {
                    self.columns
                        .insert(p, (*k, Column::new(c.values.field_type())));
                    p
                }
            };
            let dst = &mut self.columns[pos].1;
            dst.pad_to(base);
            for i in 0..other.times.len() {
                dst.push_from(c, i);
            }
        }
        self.times.extend_from_slice(&other.times);
        self.finish();
    }

    /// Merges pieces given in write order into one normalized chunk.
    pub(crate) fn merge(pieces: Vec<Chunk>) -> Chunk {
        let mut it = pieces.into_iter();
        let Some(mut acc) = it.next() else {
            return Chunk::default();
        };
        for p in it {
            acc.append(&p);
        }
        acc.normalize()
    }

    /// Keeps rows with `start <= time < end` (the chunk must be sorted).
    pub(crate) fn slice_time(self, start: i64, end: i64) -> Chunk {
        let lo = self.times.partition_point(|&t| t < start);
        let hi = self.times.partition_point(|&t| t < end);
        if lo == 0 && hi == self.times.len() {
            return self;
        }
        self.slice_rows(lo, hi)
    }

    pub(crate) fn slice_rows(self, lo: usize, hi: usize) -> Chunk {
        if lo == 0 && hi >= self.times.len() {
            return self;
        }
        self.rows(lo, hi)
    }

    /// The rows whose `keep` is set (`keep` as long as the chunk, every column padded).
    pub(crate) fn filter(self, keep: &[bool]) -> Chunk {
        if keep.iter().all(|k| *k) {
            return self;
        }
        Chunk {
            times: kept(&self.times, keep),
            columns: self
                .columns
                .iter()
                .map(|(k, c)| (*k, c.filter(keep)))
                .collect(),
        }
    }

    /// A copy of rows `lo..hi` (clamped).
    pub(crate) fn rows(&self, lo: usize, hi: usize) -> Chunk {
        let hi = hi.min(self.times.len());
        let lo = lo.min(hi);
        Chunk {
            times: self.times[lo..hi].to_vec(),
            columns: self
                .columns
                .iter()
                .map(|(k, c)| (*k, c.slice(lo, hi)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(rows: &[(i64, Option<f64>, Option<i64>)]) -> Chunk {
        let mut c = Chunk::default();
        for (t, a, b) in rows {
            c.times.push(*t);
            if let Some(a) = a {
                let n = c.times.len() - 1;
                c.column_mut(0, FieldType::Float).pad_to(n);
                c.column_mut(0, FieldType::Float).push_f64(*a);
            }
            if let Some(b) = b {
                let n = c.times.len() - 1;
                c.column_mut(1, FieldType::Integer).pad_to(n);
                c.column_mut(1, FieldType::Integer).push_i64(*b);
            }
        }
        c.finish();
        c
    }

    fn rows(c: &Chunk) -> Vec<(i64, Option<f64>, Option<i64>)> {
        (0..c.len())
            .map(|i| {
                let a = c
                    .column(0)
                    .filter(|x| x.is_valid(i))
                    .map(|x| match &x.values {
                        Values::F64(v) => v[i],
                        _ => unreachable!(),
                    });
                let b = c
                    .column(1)
                    .filter(|x| x.is_valid(i))
                    .map(|x| match &x.values {
                        Values::I64(v) => v[i],
                        _ => unreachable!(),
                    });
                (c.times[i], a, b)
            })
            .collect()
    }

    #[test]
    fn normalize_sorts_and_merges_duplicates_field_by_field() {
        let c = chunk(&[
            (3, Some(3.0), None),
            (1, Some(1.0), Some(10)),
            (3, None, Some(30)),
            (1, Some(1.5), None),
            (2, None, None),
        ]);
        let n = c.normalize();
        assert_eq!(
            rows(&n),
            vec![
                (1, Some(1.5), Some(10)),
                (2, None, None),
                (3, Some(3.0), Some(30))
            ]
        );
    }

    #[test]
    fn merge_prefers_later_pieces() {
        let a = chunk(&[(1, Some(1.0), None), (2, Some(2.0), None)]);
        let b = chunk(&[(2, Some(20.0), Some(7)), (5, None, Some(5))]);
        let m = Chunk::merge(vec![a, b]);
        assert_eq!(
            rows(&m),
            vec![
                (1, Some(1.0), None),
                (2, Some(20.0), Some(7)),
                (5, None, Some(5))
            ]
        );
        let s = m.slice_time(2, 5);
        assert_eq!(rows(&s), vec![(2, Some(20.0), Some(7))]);
    }
}
