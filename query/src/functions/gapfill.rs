//! Gap filling, as in InfluxDB 3:
//!
//! ```sql
//! SELECT date_bin_gapfill(INTERVAL '1 minute', time) AS minute, device_id,
//!        avg(temp), locf(avg(temp)), interpolate(avg(humidity))
//! FROM telemetry
//! WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-01T01:00:00Z'
//! GROUP BY minute, device_id
//! ```
//!
//! gives every minute of the range for every device, even minutes without rows: their
//! aggregates are null, `locf(x)` carries the last non-null value forward (within the device),
//! and `interpolate(x)` fills linearly between the neighbouring non-null values.
//!
//! How: the analyzer rule [`GapFillRule`] finds an aggregate grouped by `date_bin_gapfill`,
//! turns that into `date_bin`, takes the time range from the `WHERE` clause (both bounds are
//! required), and puts a [`GapFill`] node above the aggregate; `locf`/`interpolate` in the
//! projection above become fill strategies of that node. [`GapFillExec`] then sorts the
//! aggregate's rows by group and time and emits every bucket of the range.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, RecordBatch, TimestampNanosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::catalog::Session;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, Result, ScalarValue, exec_err, internal_err, plan_err};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, Extension, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
    Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

const GAPFILL: &str = "date_bin_gapfill";
const LOCF: &str = "locf";
const INTERPOLATE: &str = "interpolate";

/// Registers `date_bin_gapfill`, `locf` and `interpolate`.
pub fn register(state: &mut SessionState) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    state.register_udf(Arc::new(ScalarUDF::from(GapFillFn::new())))?;
    state.register_udf(Arc::new(ScalarUDF::from(FillFn::new(LOCF))))?;
    state.register_udf(Arc::new(ScalarUDF::from(FillFn::new(INTERPOLATE))))?;
    Ok(())
}

/// `date_bin_gapfill(stride, time[, origin])`: `date_bin`'s arguments and type; it only means
/// something in the GROUP BY the rule rewrites.
#[derive(Debug, PartialEq, Eq, Hash)]
struct GapFillFn {
    date_bin: Arc<ScalarUDF>,
}

impl GapFillFn {
    fn new() -> GapFillFn {
        GapFillFn {
            date_bin: datafusion::functions::datetime::date_bin(),
        }
    }
}

impl ScalarUDFImpl for GapFillFn {
    fn name(&self) -> &str {
        GAPFILL
    }

    fn signature(&self) -> &Signature {
        self.date_bin.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.date_bin.return_type(arg_types)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!(
            "date_bin_gapfill works only in the GROUP BY of an aggregate whose WHERE clause \
             bounds time on both sides (time >= ... AND time < ...)"
        )
    }
}

/// `locf(x)` / `interpolate(x)`: markers the rule turns into fill strategies.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FillFn {
    name: &'static str,
    signature: Signature,
}

impl FillFn {
    fn new(name: &'static str) -> FillFn {
        FillFn {
            name,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for FillFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] => Ok(t.clone()),
            _ => plan_err!("{}() takes one argument", self.name),
        }
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!(
            "{}() works only on an aggregate in a query grouped by date_bin_gapfill",
            self.name
        )
    }
}

/// How a gap-filled aggregate column is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum Fill {
    /// Nulls stay null.
    Null,
    /// The last non-null value of the group, carried forward.
    Locf,
    /// Linear between the neighbouring non-null values of the group.
    Interpolate,
}

/// The logical gap-fill node: the aggregate's columns (gaps as nulls), then one column per
/// `locf(...)`/`interpolate(...)` of the projection above, filled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GapFill {
    input: LogicalPlan,
    schema: DFSchemaRef,
    /// Input column index of the time bucket.
    time: usize,
    /// Input column indices of the other group columns.
    groups: Vec<usize>,
    /// Appended columns: (input column, how it is filled).
    fills: Vec<(usize, Fill)>,
    /// `[stride, origin, lower, upper]`.
    exprs: Vec<Expr>,
    /// Whether each bound includes its value.
    lower_inclusive: bool,
    upper_inclusive: bool,
}

impl PartialOrd for GapFill {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (&self.input, self.time, &self.groups, &self.exprs).partial_cmp(&(
            &other.input,
            other.time,
            &other.groups,
            &other.exprs,
        ))
    }
}

impl GapFill {
    /// The output schema: the input's columns, then `extra` (name, source column) appended.
    fn schema_with(input: &LogicalPlan, extra: &[(String, usize)]) -> Result<DFSchemaRef> {
        let s = input.schema();
        let mut fields: Vec<(
            Option<datafusion::common::TableReference>,
            Arc<datafusion::arrow::datatypes::Field>,
        )> = s.iter().map(|(q, f)| (q.cloned(), Arc::clone(f))).collect();
        for (name, src) in extra {
            let f = s.field(*src);
            fields.push((
                None,
                Arc::new(datafusion::arrow::datatypes::Field::new(
                    name,
                    f.data_type().clone(),
                    true,
                )),
            ));
        }
        Ok(Arc::new(datafusion::common::DFSchema::new_with_metadata(
            fields,
            s.metadata().clone(),
        )?))
    }
}

impl UserDefinedLogicalNodeCore for GapFill {
    fn name(&self) -> &str {
        "GapFill"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        self.exprs.clone()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let names = |i: usize| {
            self.input
                .schema()
                .fields()
                .get(i)
                .map_or("?".to_string(), |f| f.name().clone())
        };
        write!(
            f,
            "GapFill: time={}, groups=[{}], range={}{}, {}{}",
            names(self.time),
            self.groups
                .iter()
                .map(|g| names(*g))
                .collect::<Vec<_>>()
                .join(", "),
            if self.lower_inclusive { "[" } else { "(" },
            self.exprs.get(2).map_or(String::new(), |e| e.to_string()),
            self.exprs.get(3).map_or(String::new(), |e| e.to_string()),
            if self.upper_inclusive { "]" } else { ")" },
        )?;
        for (src, fill) in &self.fills {
            write!(f, ", {fill:?}({})", names(*src))?;
        }
        Ok(())
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        let Some(input) = inputs.into_iter().next() else {
            return internal_err!("GapFill has one input");
        };
        Ok(GapFill {
            input,
            exprs,
            ..self.clone()
        })
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct GapFillRule;

impl AnalyzerRule for GapFillRule {
    fn name(&self) -> &str {
        "mast_gap_fill"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up(|node| match node {
            LogicalPlan::Aggregate(_) => wrap_aggregate(node),
            LogicalPlan::Projection(_) => take_fills(node),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }
}

fn is_call(e: &Expr, name: &str) -> bool {
    matches!(e, Expr::ScalarFunction(f) if f.func.name() == name)
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        e => e,
    }
}

fn wrap_aggregate(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Aggregate(agg) = &node else {
        return Ok(Transformed::no(node));
    };
    let found: Vec<usize> = agg
        .group_expr
        .iter()
        .enumerate()
        .filter(|(_, g)| is_call(strip_alias(g), GAPFILL))
        .map(|(i, _)| i)
        .collect();
    let time_at = match found.as_slice() {
        [] => return Ok(Transformed::no(node)),
        [i] => *i,
        _ => return plan_err!("only one date_bin_gapfill per GROUP BY"),
    };
    let Expr::ScalarFunction(call) = strip_alias(&agg.group_expr[time_at]).clone() else {
        return internal_err!("date_bin_gapfill call expected");
    };
    let (stride, time_col, origin) = match call.args.as_slice() {
        [s, t] => (s.clone(), t.clone(), None),
        [s, t, o] => (s.clone(), t.clone(), Some(o.clone())),
        _ => return plan_err!("date_bin_gapfill(stride, time[, origin])"),
    };
    let Expr::Column(time_column) = &time_col else {
        return plan_err!("date_bin_gapfill needs a time column as its second argument");
    };
    let (lower, upper) = time_range(&agg.input, &time_column.name)?;
    let (Some(lower), Some(upper)) = (lower, upper) else {
        return plan_err!(
            "date_bin_gapfill needs the time range in WHERE, bounded on both sides: \
             WHERE {0} >= <start> AND {0} < <end>",
            time_column.name
        );
    };
    // date_bin in place of date_bin_gapfill, under the same output name.
    let name = agg.group_expr[time_at].schema_name().to_string();
    let mut new_agg = agg.clone();
    let mut args = vec![stride.clone(), time_col.clone()];
    if let Some(o) = &origin {
        args.push(o.clone());
    }
    new_agg.group_expr[time_at] = Expr::ScalarFunction(ScalarFunction::new_udf(
        datafusion::functions::datetime::date_bin(),
        args,
    ))
    .alias(name);
    let new_agg = datafusion::logical_expr::Aggregate::try_new(
        new_agg.input,
        new_agg.group_expr,
        new_agg.aggr_expr,
    )?;
    let groups = (0..new_agg.group_expr.len())
        .filter(|i| *i != time_at)
        .collect();
    let origin = origin.unwrap_or_else(|| {
        Expr::Literal(
            ScalarValue::TimestampNanosecond(Some(0), Some("UTC".into())),
            None,
        )
    });
    let input = LogicalPlan::Aggregate(new_agg);
    let node = GapFill {
        schema: GapFill::schema_with(&input, &[])?,
        input,
        time: time_at,
        groups,
        fills: Vec::new(),
        exprs: vec![stride, origin, lower.0, upper.0],
        lower_inclusive: lower.1,
        upper_inclusive: upper.1,
    };
    Ok(Transformed::yes(LogicalPlan::Extension(Extension {
        node: Arc::new(node),
    })))
}

type Bound = (Expr, bool);

/// The `WHERE` bounds on `time` found in the filters below an aggregate.
fn time_range(plan: &LogicalPlan, time: &str) -> Result<(Option<Bound>, Option<Bound>)> {
    let mut lower = None;
    let mut upper = None;
    plan.apply(|p| {
        match p {
            LogicalPlan::Filter(f) => {
                for c in split_and(&f.predicate) {
                    bound_of(c, time, &mut lower, &mut upper);
                }
            }
            LogicalPlan::TableScan(s) => {
                for f in &s.filters {
                    for c in split_and(f) {
                        bound_of(c, time, &mut lower, &mut upper);
                    }
                }
            }
            LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {}
            _ => return Ok(TreeNodeRecursion::Jump),
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok((lower, upper))
}

fn split_and(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            let mut v = split_and(left);
            v.extend(split_and(right));
            v
        }
        e => vec![e],
    }
}

fn is_time(e: &Expr, time: &str) -> bool {
    match e {
        Expr::Column(c) => c.name == time,
        Expr::Cast(c) => is_time(&c.expr, time),
        _ => false,
    }
}

fn bound_of(e: &Expr, time: &str, lower: &mut Option<Bound>, upper: &mut Option<Bound>) {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, value) = if is_time(left, time) {
                (*op, right.as_ref())
            } else if is_time(right, time) {
                match op.swap() {
                    Some(op) => (op, left.as_ref()),
                    None => return,
                }
            } else {
                return;
            };
            match op {
                Operator::Gt => *lower = Some((value.clone(), false)),
                Operator::GtEq => *lower = Some((value.clone(), true)),
                Operator::Lt => *upper = Some((value.clone(), false)),
                Operator::LtEq => *upper = Some((value.clone(), true)),
                _ => {}
            }
        }
        Expr::Between(b) if !b.negated && is_time(&b.expr, time) => {
            *lower = Some((b.low.as_ref().clone(), true));
            *upper = Some((b.high.as_ref().clone(), true));
        }
        _ => {}
    }
}

/// In a projection right above a [`GapFill`], `locf(col)` / `interpolate(col)` become the
/// column and a fill strategy on the node.
fn take_fills(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Projection(proj) = &node else {
        return Ok(Transformed::no(node));
    };
    let LogicalPlan::Extension(ext) = proj.input.as_ref() else {
        return Ok(Transformed::no(node));
    };
    // Only the projection right above the node (the first one seen) adds fills.
    let Some(gap) = ext
        .node
        .as_any()
        .downcast_ref::<GapFill>()
        .filter(|g| g.fills.is_empty())
    else {
        return Ok(Transformed::no(node));
    };
    let mut gap = gap.clone();
    let mut extra: Vec<(String, usize)> = Vec::new();
    let mut exprs = Vec::with_capacity(proj.expr.len());
    let mut changed = false;
    for e in &proj.expr {
        let name = e.schema_name().to_string();
        let rewritten = e.clone().transform_up(|x| {
            let Expr::ScalarFunction(f) = &x else {
                return Ok(Transformed::no(x));
            };
            let fill = match f.func.name() {
                LOCF => Fill::Locf,
                INTERPOLATE => Fill::Interpolate,
                _ => return Ok(Transformed::no(x)),
            };
            let Some(Expr::Column(c)) = f.args.first() else {
                return plan_err!("{}() takes an aggregate of the query", f.func.name());
            };
            let Ok(i) = gap.input.schema().index_of_column(c) else {
                return plan_err!("{}() takes an aggregate of the query", f.func.name());
            };
            if i == gap.time || gap.groups.contains(&i) {
                return plan_err!(
                    "{}() takes an aggregate, not a GROUP BY column",
                    f.func.name()
                );
            }
            let col_name = x.schema_name().to_string();
            if !extra.iter().any(|(n, _)| *n == col_name) {
                extra.push((col_name.clone(), i));
                gap.fills.push((i, fill));
            }
            Ok(Transformed::yes(Expr::Column(
                datafusion::common::Column::from_name(col_name),
            )))
        })?;
        changed |= rewritten.transformed;
        let data = rewritten.data;
        exprs.push(if data.schema_name().to_string() == name {
            data
        } else {
            data.alias(name)
        });
    }
    if !changed {
        return Ok(Transformed::no(node));
    }
    gap.schema = GapFill::schema_with(&gap.input, &extra)?;
    let input = Arc::new(LogicalPlan::Extension(Extension {
        node: Arc::new(gap),
    }));
    let proj = datafusion::logical_expr::Projection::try_new(exprs, input)?;
    Ok(Transformed::yes(LogicalPlan::Projection(proj)))
}

/// A query planner that knows [`GapFill`].
#[derive(Debug, Default)]
pub struct MastQueryPlanner;

#[async_trait]
impl QueryPlanner for MastQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(GapFillPlanner)])
            .create_physical_plan(logical_plan, session)
            .await
    }
}

#[derive(Debug)]
struct GapFillPlanner;

#[async_trait]
impl ExtensionPlanner for GapFillPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(gap) = node.as_any().downcast_ref::<GapFill>() else {
            return Ok(None);
        };
        let (Some(input), Some(logical)) = (physical_inputs.first(), logical_inputs.first()) else {
            return internal_err!("GapFill has one input");
        };
        let schema = logical.schema();
        let exprs = gap
            .exprs
            .iter()
            .map(|e| planner.create_physical_expr(e, schema, session, planning_ctx))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Arc::new(GapFillExec::new(
            gap,
            Arc::clone(input),
            exprs,
        ))))
    }
}

/// Emits every time bucket of the range for every group of its (aggregated) input.
#[derive(Debug)]
pub struct GapFillExec {
    input: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    time: usize,
    groups: Vec<usize>,
    fills: Vec<(usize, Fill)>,
    /// `[stride, origin, lower, upper]`, constants.
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    lower_inclusive: bool,
    upper_inclusive: bool,
    props: Arc<PlanProperties>,
}

impl GapFillExec {
    fn new(
        gap: &GapFill,
        input: Arc<dyn ExecutionPlan>,
        exprs: Vec<Arc<dyn PhysicalExpr>>,
    ) -> GapFillExec {
        let schema: SchemaRef = Arc::new(gap.schema.as_arrow().clone());
        let props = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        GapFillExec {
            input,
            schema,
            time: gap.time,
            groups: gap.groups.clone(),
            fills: gap.fills.clone(),
            exprs,
            lower_inclusive: gap.lower_inclusive,
            upper_inclusive: gap.upper_inclusive,
            props: Arc::new(props),
        }
    }

    fn with_input(&self, input: Arc<dyn ExecutionPlan>) -> GapFillExec {
        GapFillExec {
            input,
            schema: Arc::clone(&self.schema),
            time: self.time,
            groups: self.groups.clone(),
            fills: self.fills.clone(),
            exprs: self.exprs.clone(),
            lower_inclusive: self.lower_inclusive,
            upper_inclusive: self.upper_inclusive,
            props: Arc::clone(&self.props),
        }
    }
}

impl DisplayAs for GapFillExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GapFillExec: time={}, groups={:?}",
            self.time, self.groups
        )
    }
}

impl ExecutionPlan for GapFillExec {
    fn name(&self) -> &str {
        "GapFillExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        super::visit_exprs(&self.exprs, f)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(
            self.with_input(super::only_child(children, "GapFillExec")?),
        ))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("GapFillExec has one partition");
        }
        let in_schema = self.input.schema();
        let schema = Arc::clone(&self.schema);
        let mut input = self.input.execute(0, Arc::clone(&context))?;
        let consts = self
            .exprs
            .iter()
            .map(|e| constant(e, &in_schema))
            .collect::<Result<Vec<_>>>()?;
        let plan = Filler {
            in_schema,
            schema: Arc::clone(&schema),
            time: self.time,
            groups: self.groups.clone(),
            fills: self.fills.clone(),
            range: bucket_range(&consts, self.lower_inclusive, self.upper_inclusive)?,
            batch_size: context.session_config().batch_size(),
        };
        let reservation = MemoryConsumer::new("GapFillExec").register(context.memory_pool());
        let stream = futures::stream::once(async move {
            let mut batches = Vec::new();
            while let Some(b) = input.next().await {
                let b = b?;
                reservation.try_grow(b.get_array_memory_size())?;
                batches.push(b);
            }
            let out = plan.fill(&batches)?;
            drop(reservation);
            Ok::<_, datafusion::error::DataFusionError>(out)
        })
        .flat_map(|r| match r {
            Ok(batches) => futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Evaluates a constant expression.
fn constant(e: &Arc<dyn PhysicalExpr>, schema: &SchemaRef) -> Result<ScalarValue> {
    let batch = RecordBatch::new_empty(Arc::clone(schema));
    match e.evaluate(&batch)? {
        ColumnarValue::Scalar(s) => Ok(s),
        ColumnarValue::Array(a) if a.len() == 1 => ScalarValue::try_from_array(&a, 0),
        ColumnarValue::Array(_) => exec_err!("date_bin_gapfill bounds must be constants"),
    }
}

fn ns_of(v: &ScalarValue, what: &str) -> Result<i64> {
    match crate::table::timestamp_ns(v) {
        Some(ns) => Ok(ns),
        None => exec_err!("date_bin_gapfill: the {what} must be a timestamp, got {v:?}"),
    }
}

/// The first and last bucket start and the stride, in ns.
#[derive(Debug, Clone, Copy)]
struct Range {
    first: i64,
    last: i64,
    stride: i64,
}

/// Most buckets one group may be filled with: bounds a typo'd range (a year at 1 s).
const MAX_BUCKETS: i64 = 10_000_000;

fn bucket_range(consts: &[ScalarValue], lower_inc: bool, upper_inc: bool) -> Result<Range> {
    let [stride, origin, lower, upper] = consts else {
        return internal_err!("GapFillExec expects four constants");
    };
    let stride = match stride {
        ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano {
            months: 0,
            days,
            nanoseconds,
        })) => i64::from(*days) * 86_400_000_000_000 + nanoseconds,
        ScalarValue::IntervalDayTime(Some(v)) => {
            i64::from(v.days) * 86_400_000_000_000 + i64::from(v.milliseconds) * 1_000_000
        }
        ScalarValue::DurationNanosecond(Some(n)) => *n,
        other => {
            return exec_err!(
                "date_bin_gapfill needs a fixed stride (seconds to days, no months), got {other:?}"
            );
        }
    };
    if stride <= 0 {
        return exec_err!("date_bin_gapfill stride must be positive");
    }
    let origin = ns_of(origin, "origin")?;
    let lo = ns_of(lower, "lower bound")?;
    let hi = ns_of(upper, "upper bound")?;
    let lo = if lower_inc { lo } else { lo.saturating_add(1) };
    let hi = if upper_inc { hi } else { hi.saturating_sub(1) };
    let bin = |t: i64| origin + (t - origin).div_euclid(stride) * stride;
    let (first, last) = (bin(lo), bin(hi));
    if last < first {
        return Ok(Range {
            first: 0,
            last: -1,
            stride,
        });
    }
    if (last - first) / stride >= MAX_BUCKETS {
        return exec_err!(
            "date_bin_gapfill would make more than {MAX_BUCKETS} buckets per group; \
             narrow the time range or widen the stride"
        );
    }
    Ok(Range {
        first,
        last,
        stride,
    })
}

struct Filler {
    in_schema: SchemaRef,
    schema: SchemaRef,
    time: usize,
    groups: Vec<usize>,
    fills: Vec<(usize, Fill)>,
    range: Range,
    batch_size: usize,
}

impl Filler {
    fn fill(&self, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let input = concat_batches(&self.in_schema, batches)?;
        let Some(times) = input
            .column(self.time)
            .as_primitive_opt::<datafusion::arrow::datatypes::TimestampNanosecondType>(
        ) else {
            return exec_err!("date_bin_gapfill needs a nanosecond timestamp column");
        };
        let times = times.clone();
        // Rows per group (by the group columns' row encoding), each with its bucket.
        let group_cols: Vec<ArrayRef> = self
            .groups
            .iter()
            .map(|g| Arc::clone(input.column(*g)))
            .collect();
        let converter = RowConverter::new(
            group_cols
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect(),
        )?;
        let rows = converter.convert_columns(&group_cols)?;
        let mut by_group: BTreeMap<datafusion::arrow::row::Row<'_>, Vec<(i64, u32)>> =
            BTreeMap::new();
        for i in 0..input.num_rows() {
            if times.is_null(i) {
                continue;
            }
            by_group
                .entry(rows.row(i))
                .or_default()
                .push((times.value(i), i as u32));
        }
        // Output rows: per group, every bucket; the input row at that bucket or none.
        let mut src: Vec<Option<u32>> = Vec::new();
        let mut group_row: Vec<u32> = Vec::new();
        let mut bucket: Vec<i64> = Vec::new();
        let mut group_start: Vec<usize> = Vec::new();
        let Range {
            first,
            last,
            stride,
        } = self.range;
        for (_, mut members) in by_group {
            members.sort_unstable();
            group_start.push(src.len());
            let any = members[0].1;
            let mut m = members.iter().peekable();
            let mut t = first;
            while t <= last {
                while m.peek().is_some_and(|(mt, _)| *mt < t) {
                    m.next();
                }
                let hit = m.peek().filter(|(mt, _)| *mt == t).map(|(_, i)| *i);
                src.push(hit);
                group_row.push(any);
                bucket.push(t);
                t += stride;
            }
        }
        group_start.push(src.len());
        let n = src.len();
        let src_idx = UInt32Array::from(src.clone());
        let grp_idx = UInt32Array::from(group_row);
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (c, col) in input.columns().iter().enumerate() {
            let out = if c == self.time {
                let t = TimestampNanosecondArray::from(bucket.clone());
                let tz = match self.in_schema.field(c).data_type() {
                    DataType::Timestamp(TimeUnit::Nanosecond, tz) => tz.clone(),
                    _ => None,
                };
                Arc::new(t.with_timezone_opt(tz)) as ArrayRef
            } else if self.groups.contains(&c) {
                take(col.as_ref(), &grp_idx, None)?
            } else {
                take(col.as_ref(), &src_idx, None)?
            };
            cols.push(out);
        }
        for (c, fill) in &self.fills {
            let col = input.column(*c);
            cols.push(match fill {
                Fill::Null => take(col.as_ref(), &src_idx, None)?,
                Fill::Locf => {
                    let idx = locf_indices(&src, col.as_ref(), &group_start);
                    take(col.as_ref(), &UInt32Array::from(idx), None)?
                }
                Fill::Interpolate => interpolate(col, &src, &bucket, &group_start)?,
            });
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), cols)?;
        let size = self.batch_size.max(1);
        Ok((0..n)
            .step_by(size)
            .map(|o| batch.slice(o, size.min(n - o)))
            .collect())
    }
}

/// For each output row, the input row whose value it shows under LOCF: its own when non-null,
/// else the last non-null one before it in its group.
fn locf_indices(src: &[Option<u32>], col: &dyn Array, group_start: &[usize]) -> Vec<Option<u32>> {
    let mut out = vec![None; src.len()];
    for w in group_start.windows(2) {
        let mut carried = None;
        for r in w[0]..w[1] {
            if let Some(i) = src[r]
                && col.is_valid(i as usize)
            {
                carried = Some(i);
            }
            out[r] = carried;
        }
    }
    out
}

/// Linear interpolation (by time) between each group's non-null values; ends stay null.
fn interpolate(
    col: &ArrayRef,
    src: &[Option<u32>],
    bucket: &[i64],
    group_start: &[usize],
) -> Result<ArrayRef> {
    let ty = col.data_type().clone();
    if !ty.is_numeric() {
        return exec_err!("interpolate() needs a numeric aggregate, got {ty}");
    }
    let f = cast(col, &DataType::Float64)?;
    let f = f.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    let value = |r: usize| -> Option<f64> {
        let i = src[r]? as usize;
        f.is_valid(i).then(|| f.value(i))
    };
    let mut out: Vec<Option<f64>> = (0..src.len()).map(value).collect();
    for w in group_start.windows(2) {
        let mut prev: Option<usize> = None;
        for r in w[0]..w[1] {
            if out[r].is_none() {
                continue;
            }
            if let Some(p) = prev
                && r > p + 1
                && let (Some(a), Some(b)) = (out[p], out[r])
            {
                let (ta, tb) = (bucket[p] as f64, bucket[r] as f64);
                for m in p + 1..r {
                    let x = (bucket[m] as f64 - ta) / (tb - ta);
                    out[m] = Some(a + (b - a) * x);
                }
            }
            prev = Some(r);
        }
    }
    let arr: ArrayRef = Arc::new(Float64Array::from(out));
    if ty == DataType::Float64 {
        return Ok(arr);
    }
    let rounded: ArrayRef = if ty.is_integer() {
        let a = arr.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        Arc::new(a.unary::<_, datafusion::arrow::datatypes::Float64Type>(f64::round))
    } else {
        arr
    };
    Ok(cast(&rounded, &ty)?)
}
