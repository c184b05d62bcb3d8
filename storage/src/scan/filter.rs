//! Exact row filters: the request's [`Predicate`]s and [`StringSet`]s evaluated on decoded
//! columns, so a scan can decode the columns it filters on first and the others only for the
//! pieces where some row passes (late materialisation), and return only the rows that pass.

use std::cmp::Ordering;

use super::{ScanRequest, StringSet};
use crate::block::StatValue;
use crate::chunk::{Column, Values};

/// A comparison of a field with a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

impl std::fmt::Display for Cmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cmp::Eq => "=",
            Cmp::NotEq => "<>",
            Cmp::Lt => "<",
            Cmp::LtEq => "<=",
            Cmp::Gt => ">",
            Cmp::GtEq => ">=",
        })
    }
}

/// Rows pass when field `column` compares with `value` as `cmp` says. Exact: the scan returns
/// only passing rows. A null never passes. Floats compare as DataFusion's filters do: in IEEE
/// 754 total order (NaN above every number and equal to itself) with -0 equal to +0; the value
/// must be of the column's type (F64 for floats, I64 for integers, Bool for booleans, false
/// below true), or no row passes.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    /// Field column name.
    pub column: String,
    /// The comparison.
    pub cmp: Cmp,
    /// The constant compared with.
    pub value: StatValue,
}

/// What a scan filters rows by: per condition, the output slot of its column.
pub(super) struct Filters<'a> {
    predicates: Vec<(&'a Predicate, usize)>,
    sets: Vec<(&'a StringSet, usize)>,
}

impl<'a> Filters<'a> {
    /// The request's exact conditions; `slot_of` finds the slot of a column (every condition's
    /// column has one: the scan adds unprojected ones as hidden slots).
    pub(super) fn new(req: &'a ScanRequest, slot_of: impl Fn(&str) -> Option<usize>) -> Self {
        Filters {
            predicates: req
                .predicates
                .iter()
                .filter_map(|p| Some((p, slot_of(&p.column)?)))
                .collect(),
            sets: req
                .string_sets
                .iter()
                .filter_map(|s| Some((s, slot_of(&s.column)?)))
                .collect(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.predicates.is_empty() && self.sets.is_empty()
    }

    /// Whether output slot `slot` is read by a condition.
    pub(super) fn reads(&self, slot: usize) -> bool {
        self.predicates.iter().any(|(_, s)| *s == slot) || self.sets.iter().any(|(_, s)| *s == slot)
    }

    /// Clears `keep[i]` for each row that fails a condition; `column(slot)` gives a decoded
    /// column by slot (`None`: the piece lacks it, so every row is null there).
    pub(super) fn apply<'c>(
        &self,
        keep: &mut [bool],
        column: impl Fn(usize) -> Option<&'c Column>,
    ) {
        for (p, slot) in &self.predicates {
            compare(column(*slot), p, keep);
        }
        for (set, slot) in &self.sets {
            within(column(*slot), set, keep);
        }
    }
}

fn compare(col: Option<&Column>, p: &Predicate, keep: &mut [bool]) {
    fn each<T: Copy>(v: &[T], col: &Column, keep: &mut [bool], pass: impl Fn(T) -> bool) {
        match &col.valid {
            None => {
                for (k, x) in keep.iter_mut().zip(v) {
                    *k &= pass(*x);
                }
                // slots past the values (never, once padded) are null
                keep.iter_mut().skip(v.len()).for_each(|k| *k = false);
            }
            Some(valid) => {
                for (i, k) in keep.iter_mut().enumerate() {
                    if *k {
                        *k = valid.get(i).copied().unwrap_or(false)
                            && v.get(i).is_some_and(|x| pass(*x));
                    }
                }
            }
        }
    }
    let Some(col) = col else {
        keep.fill(false);
        return;
    };
    // one loop per comparison, the comparison fixed in it
    fn by<T: Copy>(
        v: &[T],
        col: &Column,
        keep: &mut [bool],
        cmp: Cmp,
        ord: impl Fn(T) -> Ordering,
    ) {
        match cmp {
            Cmp::Eq => each(v, col, keep, |a| ord(a).is_eq()),
            Cmp::NotEq => each(v, col, keep, |a| ord(a).is_ne()),
            Cmp::Lt => each(v, col, keep, |a| ord(a).is_lt()),
            Cmp::LtEq => each(v, col, keep, |a| ord(a).is_le()),
            Cmp::Gt => each(v, col, keep, |a| ord(a).is_gt()),
            Cmp::GtEq => each(v, col, keep, |a| ord(a).is_ge()),
        }
    }
    match (&col.values, p.value) {
        (Values::F64(v), StatValue::F64(x)) => {
            let x = canonical(x);
            by(v, col, keep, p.cmp, |a| canonical(a).total_cmp(&x))
        }
        (Values::I64(v), StatValue::I64(x)) => by(v, col, keep, p.cmp, |a| a.cmp(&x)),
        (Values::Bool(v), StatValue::Bool(x)) => by(v, col, keep, p.cmp, |a| a.cmp(&x)),
        _ => keep.fill(false),
    }
}

/// One zero and one NaN: what total order then tells apart is what SQL does.
fn canonical(x: f64) -> f64 {
    if x.is_nan() {
        f64::NAN
    } else {
        // -0 + 0 = +0; every other value is unchanged
        x + 0.0
    }
}

fn within(col: Option<&Column>, set: &StringSet, keep: &mut [bool]) {
    let Some(col) = col else {
        if !set.null {
            keep.fill(false);
        }
        return;
    };
    let Values::Str(s) = &col.values else {
        keep.fill(false);
        return;
    };
    // one test per dictionary entry, then one lookup per row
    let wanted: Vec<bool> = s
        .dict()
        .iter()
        .map(|d| set.values.iter().any(|v| **v == **d))
        .collect();
    for (i, k) in keep.iter_mut().enumerate() {
        if *k {
            *k = if col.is_valid(i) {
                s.keys()
                    .get(i)
                    .and_then(|&key| wanted.get(key as usize))
                    .copied()
                    .unwrap_or(false)
            } else {
                set.null
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::FieldType;

    fn floats(v: &[Option<f64>]) -> Column {
        let mut c = Column::new(FieldType::Float);
        for x in v {
            match x {
                Some(x) => c.push_f64(*x),
                None => {
                    c.pad_to(c.values.len() + 1);
                }
            }
        }
        c
    }

    #[test]
    fn floats_compare_in_total_order_with_one_zero_and_nulls_never_pass() {
        let col = floats(&[
            Some(1.0),
            None,
            Some(f64::NAN),
            Some(-0.0),
            Some(0.0),
            Some(2.5),
        ]);
        let run = |cmp, x| {
            let p = Predicate {
                column: "v".into(),
                cmp,
                value: StatValue::F64(x),
            };
            let mut keep = vec![true; 6];
            compare(Some(&col), &p, &mut keep);
            keep
        };
        assert_eq!(run(Cmp::Gt, 1.0), [false, false, true, false, false, true]);
        assert_eq!(run(Cmp::Eq, 0.0), [false, false, false, true, true, false]);
        assert_eq!(run(Cmp::Eq, -0.0), [false, false, false, true, true, false]);
        assert_eq!(
            run(Cmp::NotEq, 0.0),
            [true, false, true, false, false, true]
        );
        assert_eq!(
            run(Cmp::LtEq, 0.0),
            [false, false, false, true, true, false]
        );
        assert_eq!(
            run(Cmp::Eq, f64::NAN),
            [false, false, true, false, false, false]
        );
    }

    #[test]
    fn an_absent_column_passes_only_a_set_that_wants_nulls() {
        let set = |null| StringSet {
            column: "s".into(),
            values: vec!["a".into()],
            null,
        };
        let mut keep = vec![true, false, true];
        within(None, &set(true), &mut keep);
        assert_eq!(keep, [true, false, true]);
        within(None, &set(false), &mut keep);
        assert_eq!(keep, [false, false, false]);
    }
}
