//! Segment pruning with DataFusion's `PruningPredicate` over Mast's segment statistics: time
//! range, per-field min/max and null counts, and each tag's value set (`tag = 'x'`,
//! `tag IN (...)`). It catches what the storage request cannot say: `OR`s, `NOT`, arithmetic on
//! literals, comparisons the request only hints at.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, TimestampNanosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::conjunction;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use mast_storage::schema::TIME_COLUMN;
use mast_storage::{FieldType, SegmentStats, StatValue};

/// The segments `filters` may match, as (shard, id); `None` when nothing can be pruned.
pub(crate) fn keep(
    state: &dyn Session,
    schema: &SchemaRef,
    filters: &[Expr],
    stats: Vec<Arc<SegmentStats>>,
) -> Option<BTreeSet<(u32, u64)>> {
    if stats.is_empty() {
        return None;
    }
    let predicate = conjunction(filters.iter().cloned())?;
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).ok()?;
    let physical = state.create_physical_expr(predicate, &df_schema).ok()?;
    let pruning = PruningPredicateBuilder::new()
        .with_file_schema(Arc::clone(schema))
        .build(physical)?;
    let segments = Segments(stats);
    let verdict = pruning.prune(&segments).ok()?;
    if verdict.iter().all(|k| *k) {
        return None;
    }
    Some(
        segments
            .0
            .iter()
            .zip(verdict)
            .filter(|(_, k)| *k)
            .map(|(s, _)| (s.shard, s.id))
            .collect(),
    )
}

struct Segments(Vec<Arc<SegmentStats>>);

impl Segments {
    fn bound(&self, column: &Column, max: bool) -> Option<ArrayRef> {
        if column.name == TIME_COLUMN {
            let v: Vec<i64> = self
                .0
                .iter()
                .map(|s| if max { s.time.1 } else { s.time.0 })
                .collect();
            return Some(Arc::new(
                TimestampNanosecondArray::from(v).with_timezone("UTC"),
            ));
        }
        let ty = self
            .0
            .iter()
            .find_map(|s| s.fields.get(column.name.as_str()).map(|f| f.ty))?;
        let pick = |s: &SegmentStats| {
            let f = s.fields.get(column.name.as_str())?;
            if max { f.max } else { f.min }
        };
        Some(match ty {
            FieldType::Float => Arc::new(Float64Array::from(
                self.0
                    .iter()
                    .map(|s| match pick(s) {
                        Some(StatValue::F64(x)) => Some(x),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )),
            FieldType::Integer => Arc::new(Int64Array::from(
                self.0
                    .iter()
                    .map(|s| match pick(s) {
                        Some(StatValue::I64(x)) => Some(x),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )),
            FieldType::Boolean => Arc::new(BooleanArray::from(
                self.0
                    .iter()
                    .map(|s| match pick(s) {
                        Some(StatValue::Bool(x)) => Some(x),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )),
            _ => return None,
        })
    }
}

impl PruningStatistics for Segments {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, false)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, true)
    }

    fn num_containers(&self) -> usize {
        self.0.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        if column.name == TIME_COLUMN {
            return Some(Arc::new(UInt64Array::from(vec![0u64; self.0.len()])));
        }
        let is_field = self
            .0
            .iter()
            .any(|s| s.fields.contains_key(column.name.as_str()));
        if !is_field {
            return None;
        }
        let v: Vec<u64> = self
            .0
            .iter()
            .map(|s| match s.fields.get(column.name.as_str()) {
                Some(f) => f.nulls,
                // a field the segment does not have: all null there
                None => s.rows,
            })
            .collect();
        Some(Arc::new(UInt64Array::from(v)))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from(
            self.0.iter().map(|s| s.rows).collect::<Vec<_>>(),
        )))
    }

    #[allow(clippy::mutable_key_type)] // the trait's signature
    fn contained(&self, column: &Column, values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        let wanted: Vec<&str> = values
            .iter()
            .map(super::str_of)
            .collect::<Option<Vec<_>>>()?;
        let is_tag = self
            .0
            .iter()
            .any(|s| s.tags.contains_key(column.name.as_str()));
        if !is_tag {
            return None;
        }
        Some(BooleanArray::from(
            self.0
                .iter()
                .map(|s| {
                    let has_nulls = s
                        .tag_nulls
                        .get(column.name.as_str())
                        .copied()
                        .unwrap_or(false);
                    let Some(set) = s.tags.get(column.name.as_str()) else {
                        // no series of the segment has the tag: every value is null
                        return Some(false);
                    };
                    let hits = set.iter().filter(|v| wanted.contains(&&***v)).count();
                    if hits == 0 {
                        Some(false)
                    } else if hits == set.len() && !has_nulls {
                        Some(true)
                    } else {
                        None
                    }
                })
                .collect::<Vec<_>>(),
        ))
    }
}
