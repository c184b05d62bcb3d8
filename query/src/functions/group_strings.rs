//! [`GroupStringsRule`]: grouping by tags and string fields on DataFusion's column-wise group
//! values instead of its row-format fallback.
//!
//! Mast hands tags and string fields to DataFusion as dictionary arrays (each block's dictionary,
//! keys per row). DataFusion 55 groups a dictionary column through `GroupValuesRows`, which
//! re-encodes every row of every key column into its row format before hashing. String views
//! have a column-wise path (`GroupValuesBytesView` for one key, `GroupValuesColumn` for several),
//! and a dictionary becomes a view array without copying a string: each view points into the
//! dictionary's values. So an aggregate grouped by dictionary-typed expressions groups by their
//! casts to `Utf8View`, and a projection above it casts the (few) group rows back, leaving the
//! aggregate's output schema — names, qualifiers and types — as it was.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result};
use datafusion::logical_expr::{Aggregate, Expr, ExprSchemable, LogicalPlan, Projection, cast};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct GroupStringsRule;

impl OptimizerRule for GroupStringsRule {
    fn name(&self) -> &str {
        "mast_group_strings"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        None
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up(|node| match &node {
            LogicalPlan::Aggregate(agg) => match group_by_views(agg)? {
                Some(plan) => Ok(Transformed::yes(plan)),
                None => Ok(Transformed::no(node)),
            },
            _ => Ok(Transformed::no(node)),
        })
    }
}

/// A dictionary of strings, the type Mast scans give tags and string fields.
fn is_string_dictionary(t: &DataType) -> bool {
    matches!(t, DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
}

/// `agg` grouping by `Utf8View` casts of its dictionary keys, under a projection restoring its
/// schema; `None` when no key is a string dictionary (or the grouping uses grouping sets).
fn group_by_views(agg: &Aggregate) -> Result<Option<LogicalPlan>> {
    if agg
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Ok(None);
    }
    let input_schema = agg.input.schema();
    let mut changed = false;
    let mut group_expr = Vec::with_capacity(agg.group_expr.len());
    for (i, e) in agg.group_expr.iter().enumerate() {
        let (qualifier, field) = agg.schema.qualified_field(i);
        if is_string_dictionary(&e.get_type(input_schema)?) {
            changed = true;
            let key = unalias(e).clone();
            group_expr.push(
                cast(key, DataType::Utf8View).alias_qualified(qualifier.cloned(), field.name()),
            );
        } else {
            group_expr.push(e.clone());
        }
    }
    if !changed {
        return Ok(None);
    }
    let grouped = LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::clone(&agg.input),
        group_expr,
        agg.aggr_expr.clone(),
    )?);
    // Every output column by name; group keys cast back to the type they had.
    let restore = agg
        .schema
        .iter()
        .map(|(qualifier, field)| {
            let col = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            if is_string_dictionary(field.data_type()) {
                cast(col, field.data_type().clone())
                    .alias_qualified(qualifier.cloned(), field.name())
            } else {
                col
            }
        })
        .collect();
    let plan = LogicalPlan::Projection(Projection::try_new(restore, Arc::new(grouped))?);
    // The aggregate's schema is what the plan above was built against: keep it exactly.
    let (before, after) = (agg.schema.as_ref(), plan.schema());
    if before.fields().len() != after.fields().len() || !before.iter().eq(after.iter()) {
        return Ok(None);
    }
    Ok(Some(plan))
}

/// The column a group key names, also when this rule has cast it to a view.
pub(super) fn key_column(e: &Expr) -> Option<&str> {
    match unalias(e) {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) if c.field.data_type() == &DataType::Utf8View => match c.expr.as_ref() {
            Expr::Column(col) => Some(col.name.as_str()),
            _ => None,
        },
        _ => None,
    }
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}
