//! Time-series SQL on top of DataFusion's functions:
//!
//! - `time_bucket(stride, time[, origin])`: another name for `date_bin`, as in TimescaleDB.
//! - `first(value, time)` / `last(value, time)`: the value at the earliest / latest time of the
//!   group (nulls included, like `first_value`/`last_value`). They are rewritten into
//!   `first_value(value ORDER BY time)` / `last_value(value ORDER BY time)`, whose grouped
//!   accumulators are DataFusion's own.
//! - [`LatestRowRule`]: an aggregate that only asks for each group's last values (`last`,
//!   `last_value … ORDER BY time`, `max(time)`), grouped by tags, over a telemetry table with
//!   only exact (time and tag) filters, gives the same answer from each series' latest row. The
//!   rule swaps the scan for one that decodes only the newest piece of each series, so a
//!   "where is every truck now" query costs one block per series, not the history.
//! - Gap filling: see [`gapfill`].

pub mod gapfill;

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::default_table_source::{provider_as_source, source_as_provider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, plan_err};
use datafusion::execution::SessionStateBuilder;
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::functions_aggregate::min_max::max_udaf;
use datafusion::logical_expr::function::{AccumulatorArgs, AggregateFunctionSimplification};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, LogicalPlan, Signature, TableScan,
    Volatility, expr::AggregateFunction,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use mast_storage::schema::TIME_COLUMN;

use crate::table::MastTable;

/// Adds Mast's functions and rules to a session being built.
pub fn install(builder: SessionStateBuilder) -> SessionStateBuilder {
    builder
        .with_optimizer_rule(Arc::new(LatestRowRule))
        .with_analyzer_rule(Arc::new(gapfill::GapFillRule))
        .with_query_planner(Arc::new(gapfill::MastQueryPlanner))
}

/// Registers the functions (after the defaults) on a built state.
pub fn register(state: &mut datafusion::execution::SessionState) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    let date_bin = datafusion::functions::datetime::date_bin();
    let time_bucket = date_bin.as_ref().clone().with_aliases(["time_bucket"]);
    state.register_udf(Arc::new(time_bucket))?;
    state.register_udaf(Arc::new(AggregateUDF::from(FirstLast::first())))?;
    state.register_udaf(Arc::new(AggregateUDF::from(FirstLast::last())))?;
    gapfill::register(state)?;
    Ok(())
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

/// See the module documentation.
#[derive(Debug, Default)]
pub struct LatestRowRule;

impl OptimizerRule for LatestRowRule {
    fn name(&self) -> &str {
        "mast_latest_row"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        None
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_down(|node| {
            let LogicalPlan::Aggregate(agg) = &node else {
                return Ok(Transformed::no(node));
            };
            let LogicalPlan::TableScan(scan) = agg.input.as_ref() else {
                return Ok(Transformed::no(node));
            };
            let Some(latest) = latest_scan(scan) else {
                return Ok(Transformed::no(node));
            };
            let tags_only = agg.group_expr.iter().all(|g| match g {
                Expr::Column(c) => table_tag(&latest, &c.name),
                _ => false,
            });
            if !tags_only || !agg.aggr_expr.iter().all(asks_latest) {
                return Ok(Transformed::no(node));
            }
            let mut agg = agg.clone();
            let mut scan = scan.clone();
            scan.source = provider_as_source(Arc::new(latest));
            agg.input = Arc::new(LogicalPlan::TableScan(scan));
            Ok(Transformed::yes(LogicalPlan::Aggregate(agg)))
        })
    }
}

/// The latest-row variant of a scan over a Mast table whose filters storage applies exactly.
fn latest_scan(scan: &TableScan) -> Option<MastTable> {
    let provider = source_as_provider(&scan.source).ok()?;
    let table = provider.downcast_ref::<MastTable>()?;
    if table.is_latest() || scan.fetch.is_some() {
        return None;
    }
    let exact = scan
        .filters
        .iter()
        .all(|f| table.pushdown(f) == datafusion::logical_expr::TableProviderFilterPushDown::Exact);
    exact.then(|| table.latest_rows())
}

fn table_tag(table: &MastTable, name: &str) -> bool {
    use datafusion::datasource::TableProvider;
    table
        .schema()
        .field_with_name(name)
        .is_ok_and(|f| matches!(f.data_type(), DataType::Dictionary(..)))
}

/// True for `last_value(x ORDER BY time ASC)` and `max(time)`, aliased or not, with no
/// DISTINCT or FILTER.
fn asks_latest(e: &Expr) -> bool {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::AggregateFunction(f) = e else {
        return false;
    };
    let p = &f.params;
    if p.distinct || p.filter.is_some() {
        return false;
    }
    let is_time = |e: &Expr| matches!(e, Expr::Column(c) if c.name == TIME_COLUMN);
    // By name: these are DataFusion's built-ins, which Mast does not override.
    if f.func.name() == max_udaf().name() {
        return p.args.len() == 1 && is_time(&p.args[0]);
    }
    if f.func.name() == last_value_udaf().name() {
        let ignore_nulls = matches!(
            p.null_treatment,
            Some(datafusion::logical_expr::expr::NullTreatment::IgnoreNulls)
        );
        return !ignore_nulls && matches!(p.order_by.as_slice(), [s] if s.asc && is_time(&s.expr));
    }
    false
}
