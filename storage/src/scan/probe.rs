//! What one column of a piece holds, told from its statistics or its string dictionary without
//! decoding the block: whether every row has the same value (a latest-row scan needs that of the
//! columns it partitions by), and whether any row can equal one of a set of strings (pruning
//! `=`, `IN` and `IS NULL` on string fields).

use std::sync::Arc;

use super::StringSet;
use crate::block::{ColumnRef, StatValue};
use crate::chunk::{Column, Values};
use crate::codec;
use crate::schema::FieldType;

/// A piece's column, as far as it can be read without decoding the block.
#[derive(Debug, Clone, Copy)]
pub(super) enum Held<'a> {
    /// An encoded block column with its statistics.
    Encoded {
        col: ColumnRef<'a>,
        rows: u32,
        min: Option<StatValue>,
        max: Option<StatValue>,
    },
    /// A head chunk's column, not yet encoded.
    Raw(&'a Column),
    /// The piece has no such column: every row is null there.
    Absent,
    /// The column's bytes cannot be read (decoding will report why): nothing is claimed.
    Unknown,
}

/// The one value every row of a piece has.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Constant {
    Null,
    Str(Arc<str>),
    Num(StatValue),
}

impl Held<'_> {
    /// The value every row holds, or `None` when rows differ (or it cannot be told cheaply).
    pub(super) fn constant(&self) -> Option<Constant> {
        match *self {
            Held::Unknown => None,
            Held::Absent => Some(Constant::Null),
            Held::Encoded { col, rows, .. } if col.nulls >= rows => Some(Constant::Null),
            Held::Encoded { col, .. } if col.nulls > 0 => None,
            Held::Encoded { col, .. } if col.ty == FieldType::String => {
                let mut first = None;
                let distinct = codec::visit_distinct_strings(col.data, |s| {
                    first = Some(Arc::from(s));
                    false
                })
                .ok()?;
                match (distinct, first) {
                    (1, Some(one)) => Some(Constant::Str(one)),
                    _ => None,
                }
            }
            Held::Encoded { min, max, .. } => match (min, max) {
                (Some(lo), Some(hi)) if lo == hi => Some(Constant::Num(lo)),
                _ => None,
            },
            Held::Raw(c) => raw_constant(c),
        }
    }

    /// False when no row can hold one of `set`'s values (or a null, if it asks for nulls).
    pub(super) fn may_hold(&self, set: &StringSet) -> bool {
        let wanted = |s: &str| set.values.iter().any(|v| v == s);
        match *self {
            Held::Unknown => true,
            Held::Absent => set.null,
            Held::Encoded { col, .. } if col.ty != FieldType::String => true,
            Held::Encoded { col, rows, .. } => {
                if col.nulls > 0 && set.null {
                    return true;
                }
                if col.nulls >= rows {
                    return false;
                }
                let mut found = false;
                match codec::visit_distinct_strings(col.data, |s| {
                    found = wanted(s);
                    !found
                }) {
                    Ok(_) => found,
                    // a damaged block: let the decode report it
                    Err(_) => true,
                }
            }
            Held::Raw(c) => match &c.values {
                Values::Str(v) => {
                    // which dictionary entries are wanted, then one integer test per row
                    let hit: Vec<bool> = v.dict().iter().map(|s| wanted(s)).collect();
                    if !set.null && !hit.contains(&true) {
                        return false;
                    }
                    v.keys().iter().enumerate().any(|(i, &k)| {
                        if c.is_valid(i) {
                            hit.get(k as usize).copied().unwrap_or(false)
                        } else {
                            set.null
                        }
                    })
                }
                _ => true,
            },
        }
    }
}

fn raw_constant(c: &Column) -> Option<Constant> {
    let n = c.values.len();
    let valid = (0..n).filter(|&i| c.is_valid(i)).count();
    if valid == 0 {
        return Some(Constant::Null);
    }
    if valid < n {
        return None;
    }
    match &c.values {
        Values::Str(v) => {
            let first = v.get(0)?;
            (1..n)
                .all(|i| v.get(i) == Some(first))
                .then(|| Constant::Str(Arc::clone(first)))
        }
        Values::F64(v) => {
            let first = *v.first()?;
            (!first.is_nan() && v.iter().all(|x| *x == first))
                .then_some(Constant::Num(StatValue::F64(first)))
        }
        Values::I64(v) => {
            let first = *v.first()?;
            v.iter()
                .all(|x| *x == first)
                .then_some(Constant::Num(StatValue::I64(first)))
        }
        Values::Bool(v) => {
            let first = *v.first()?;
            v.iter()
                .all(|x| *x == first)
                .then_some(Constant::Num(StatValue::Bool(first)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(values: &[Option<&str>]) -> Column {
        let mut c = Column::new(FieldType::String);
        for (i, v) in values.iter().enumerate() {
            c.pad_to(i);
            if let Some(v) = v {
                c.push_str(Arc::from(*v));
            }
        }
        c.pad_to(values.len());
        c
    }

    fn set(values: &[&str], null: bool) -> StringSet {
        StringSet {
            column: "s".into(),
            values: values.iter().map(|v| v.to_string()).collect(),
            null,
        }
    }

    #[test]
    fn constants_are_told_apart_from_varying_columns() {
        let same = raw(&[Some("a"), Some("a")]);
        assert_eq!(
            Held::Raw(&same).constant(),
            Some(Constant::Str(Arc::from("a")))
        );
        assert_eq!(Held::Raw(&raw(&[Some("a"), Some("b")])).constant(), None);
        assert_eq!(Held::Raw(&raw(&[Some("a"), None])).constant(), None);
        assert_eq!(
            Held::Raw(&raw(&[None, None])).constant(),
            Some(Constant::Null)
        );
        assert_eq!(Held::Absent.constant(), Some(Constant::Null));
    }

    #[test]
    fn string_sets_prune_only_what_cannot_match() {
        let c = raw(&[Some("a"), None, Some("b")]);
        assert!(Held::Raw(&c).may_hold(&set(&["b"], false)));
        assert!(!Held::Raw(&c).may_hold(&set(&["c"], false)));
        assert!(Held::Raw(&c).may_hold(&set(&["c"], true)));
        assert!(!Held::Absent.may_hold(&set(&["a"], false)));
        assert!(Held::Absent.may_hold(&set(&[], true)));
    }
}
