//! Per-segment statistics of one table, for pruning by predicates the scan request cannot
//! express (the SQL layer runs DataFusion's `PruningPredicate` over them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::block::StatValue;
use crate::schema::{ColumnKind, FieldType};
use crate::segment::SegmentMeta;

/// What one sealed segment holds of a table, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentStats {
    /// Shard of the segment.
    pub shard: u32,
    /// Segment id within the shard.
    pub id: u64,
    /// Rows.
    pub rows: u64,
    /// Smallest and largest timestamp.
    pub time: (i64, i64),
    /// Per field: type, min, max (over the blocks that have statistics; `None` when any block
    /// lacks them) and null count (rows of blocks without the column included).
    pub fields: BTreeMap<Arc<str>, FieldStats>,
    /// Per tag: every value it takes in the segment (series without the tag are absent).
    pub tags: BTreeMap<Arc<str>, BTreeSet<Arc<str>>>,
    /// Series without a value for a tag exist: (tag) → true.
    pub tag_nulls: BTreeMap<Arc<str>, bool>,
}

/// One field's statistics in a segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldStats {
    /// Its type.
    pub ty: FieldType,
    /// Smallest value, when every block with values has statistics.
    pub min: Option<StatValue>,
    /// Largest value, likewise.
    pub max: Option<StatValue>,
    /// Null rows.
    pub nulls: u64,
}

fn lower(a: StatValue, b: StatValue) -> StatValue {
    match (a, b) {
        (StatValue::F64(x), StatValue::F64(y)) => StatValue::F64(x.min(y)),
        (StatValue::I64(x), StatValue::I64(y)) => StatValue::I64(x.min(y)),
        (StatValue::Bool(x), StatValue::Bool(y)) => StatValue::Bool(x & y),
        (a, _) => a,
    }
}

fn upper(a: StatValue, b: StatValue) -> StatValue {
    match (a, b) {
        (StatValue::F64(x), StatValue::F64(y)) => StatValue::F64(x.max(y)),
        (StatValue::I64(x), StatValue::I64(y)) => StatValue::I64(x.max(y)),
        (StatValue::Bool(x), StatValue::Bool(y)) => StatValue::Bool(x | y),
        (a, _) => a,
    }
}

pub(crate) fn of(meta: &SegmentMeta) -> SegmentStats {
    // (column index, name) of every tag, found once per segment
    let tag_cols: Vec<(u32, &Arc<str>)> = meta
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.kind == ColumnKind::Tag)
        .map(|(i, c)| (i as u32, &c.name))
        .collect();
    let mut tags: BTreeMap<Arc<str>, BTreeSet<Arc<str>>> = BTreeMap::new();
    let mut tag_nulls: BTreeMap<Arc<str>, bool> = BTreeMap::new();
    for s in &meta.series {
        for (col, name) in &tag_cols {
            match s.tags.iter().find(|(c, _)| c == col) {
                Some((_, v)) => {
                    tags.entry(Arc::clone(name))
                        .or_default()
                        .insert(Arc::clone(v));
                }
                None => {
                    tag_nulls.insert(Arc::clone(name), true);
                }
            }
        }
    }
    // per field column index: (type, min, max, stats complete, nulls)
    let mut acc: BTreeMap<usize, (FieldType, Option<StatValue>, Option<StatValue>, bool, u64)> =
        BTreeMap::new();
    for (i, c) in meta.columns.iter().enumerate() {
        if let ColumnKind::Field(ty) = c.kind {
            acc.insert(i, (ty, None, None, true, 0));
        }
    }
    for b in &meta.blocks {
        for (i, a) in acc.iter_mut() {
            match b.columns.iter().find(|c| c.column as usize == *i) {
                None => a.4 += u64::from(b.rows),
                Some(c) => {
                    a.4 += u64::from(c.nulls);
                    let has_values = c.nulls < b.rows;
                    match (c.min, c.max) {
                        (Some(lo), Some(hi)) => {
                            a.1 = Some(a.1.map_or(lo, |m| lower(m, lo)));
                            a.2 = Some(a.2.map_or(hi, |m| upper(m, hi)));
                        }
                        _ if has_values => a.3 = false,
                        _ => {}
                    }
                }
            }
        }
    }
    let fields = acc
        .into_iter()
        .filter_map(|(i, (ty, min, max, complete, nulls))| {
            let name = Arc::clone(&meta.columns.get(i)?.name);
            let (min, max) = if complete { (min, max) } else { (None, None) };
            Some((
                name,
                FieldStats {
                    ty,
                    min,
                    max,
                    nulls,
                },
            ))
        })
        .collect();
    SegmentStats {
        shard: meta.shard,
        id: meta.id,
        rows: meta.rows,
        time: (meta.min_time, meta.max_time),
        fields,
        tags,
        tag_nulls,
    }
}
