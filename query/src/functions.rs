//! Time-series SQL on top of DataFusion's functions:
//!
//! - `time_bucket(stride, time[, origin])`: another name for `date_bin`, as in TimescaleDB.
//! - `first(value, time)` / `last(value, time)`: the value at the earliest / latest time of the
//!   group (nulls included, like `first_value`/`last_value`). They are rewritten into
//!   `first_value(value ORDER BY time)` / `last_value(value ORDER BY time)`, whose grouped
//!   accumulators are DataFusion's own.
//! - [`LatestRowRule`]: "the latest row per device" — `last(v, time)` grouped by device, a
//!   `row_number() OVER (PARTITION BY … ORDER BY time DESC) <= n`, `DISTINCT ON`, `ORDER BY
//!   time DESC LIMIT n` — read from each series' newest rows, so a "where is every truck now"
//!   query costs one block per series, not the history (see [`latest`]).
//! - [`GroupStringsRule`]: grouping by tags and string fields on string views, DataFusion's
//!   column-wise group values, not its row-format fallback for dictionaries.
//! - [`RunAggregateRule`]: partial aggregation that hashes one row per run of equal group keys
//!   (a series' tags, a time bucket), not every row (see [`runs`]).
//! - `date_trunc` on UTC timestamps by arithmetic, not per-value zone conversion (see
//!   `date_trunc.rs`).
//! - Gap filling: see [`gapfill`].
//! - JSON: `json_get(doc, 'a.b')` and its typed forms (see `json.rs`).

mod date_trunc;
pub mod gapfill;
mod group_strings;
mod json;
mod latest;
mod runs;

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err, plan_err};
use datafusion::execution::SessionStateBuilder;
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::logical_expr::function::{AccumulatorArgs, AggregateFunctionSimplification};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Signature, Volatility,
    expr::AggregateFunction,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;

pub use group_strings::GroupStringsRule;
pub use latest::LatestRowRule;
pub use runs::RunAggregateRule;

/// Adds Mast's functions and rules to a session being built.
pub fn install(builder: SessionStateBuilder) -> SessionStateBuilder {
    builder
        .with_optimizer_rule(Arc::new(LatestRowRule))
        // after LatestRowRule, which reads the group keys as plain columns
        .with_optimizer_rule(Arc::new(GroupStringsRule))
        .with_physical_optimizer_rule(Arc::new(RunAggregateRule))
        .with_analyzer_rule(Arc::new(gapfill::GapFillRule))
        .with_query_planner(Arc::new(gapfill::MastQueryPlanner))
}

/// Registers the functions (after the defaults) on a built state.
pub fn register(state: &mut datafusion::execution::SessionState) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    let date_bin = datafusion::functions::datetime::date_bin();
    let time_bucket = date_bin.as_ref().clone().with_aliases(["time_bucket"]);
    state.register_udf(Arc::new(time_bucket))?;
    // replaces DataFusion's own, to which it hands everything but UTC timestamps
    state.register_udf(Arc::new(
        datafusion::logical_expr::ScalarUDF::new_from_impl(date_trunc::DateTruncUtc::new()),
    ))?;
    state.register_udaf(Arc::new(AggregateUDF::from(FirstLast::first())))?;
    state.register_udaf(Arc::new(AggregateUDF::from(FirstLast::last())))?;
    gapfill::register(state)?;
    for f in json::all() {
        state.register_udf(Arc::new(f))?;
    }
    Ok(())
}

/// Calls `f` on each of `exprs` until it asks to stop: `ExecutionPlan::apply_expressions` for
/// Mast's operators.
pub(crate) fn visit_exprs<'a>(
    exprs: impl IntoIterator<Item = &'a Arc<dyn PhysicalExpr>>,
    f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
) -> Result<TreeNodeRecursion> {
    for e in exprs {
        if f(e)? == TreeNodeRecursion::Stop {
            return Ok(TreeNodeRecursion::Stop);
        }
    }
    Ok(TreeNodeRecursion::Continue)
}

/// The one child of a one-input operator being rebuilt (`ExecutionPlan::with_new_children`).
pub(crate) fn only_child(
    children: Vec<Arc<dyn ExecutionPlan>>,
    operator: &str,
) -> Result<Arc<dyn ExecutionPlan>> {
    match <[_; 1]>::try_from(children) {
        Ok([child]) => Ok(child),
        Err(_) => internal_err!("{operator} has one child"),
    }
}

/// `first(value, time)` or `last(value, time)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FirstLast {
    last: bool,
    signature: Signature,
}

impl FirstLast {
    fn first() -> FirstLast {
        FirstLast {
            last: false,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    fn last() -> FirstLast {
        FirstLast {
            last: true,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for FirstLast {
    fn name(&self) -> &str {
        if self.last { "last" } else { "first" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [value, _time] => Ok(value.clone()),
            _ => plan_err!("{}(value, time) takes two arguments", self.name()),
        }
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        plan_err!(
            "{}(value, time) is only supported as an aggregate (it becomes {}_value(value ORDER BY time))",
            self.name(),
            self.name()
        )
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        let last = self.last;
        Some(Box::new(move |f: AggregateFunction, _ctx| {
            let mut args = f.params.args.into_iter();
            let (Some(value), Some(time), None) = (args.next(), args.next(), args.next()) else {
                return plan_err!("first/last(value, time) takes two arguments");
            };
            let udaf = if last {
                last_value_udaf()
            } else {
                first_value_udaf()
            };
            Ok(Expr::AggregateFunction(AggregateFunction::new_udf(
                udaf,
                vec![value],
                f.params.distinct,
                f.params.filter,
                vec![time.sort(true, false)],
                f.params.null_treatment,
            )))
        }))
    }
}
