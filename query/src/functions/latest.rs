//! [`LatestRowRule`]: "the latest row per device" in whichever way SQL says it, answered from each
//! series' newest rows instead of its history.
//!
//! Recognised shapes, over a Mast table, with nothing but plain column projections and filters
//! between the operator and the scan:
//! - an aggregate grouped by columns whose aggregates only ask for each group's latest values:
//!   `last(v, time)`, `last_value(v ORDER BY time)`, `first_value(v ORDER BY time DESC)` (what
//!   `DISTINCT ON (…) … ORDER BY …, time DESC` becomes), `max(time)`;
//! - a ranking window (`row_number()`, `rank()`, `dense_rank()`) `PARTITION BY` columns
//!   `ORDER BY time DESC`, filtered to the first ranks (`= n`, `<= n`, `< n + 1`) above it;
//! - `ORDER BY time DESC LIMIT n`;
//! - a join of the table with its own `max(time)` per key (`JOIN (SELECT k, max(time) AS t
//!   FROM … GROUP BY k) m ON r.k = m.k AND r.time = m.t`), both sides filtered alike: the
//!   table's side reads latest rows too (the aggregate's side is the first shape).
//!
//! Each series' latest row stands for the series when every column the query partitions, groups
//! or filters by holds one value over the series: always for tags, and for other columns (a
//! `name` or `fleet` sent as a JSON string) when block statistics and dictionaries say so. The
//! scan checks that per series and returns a series whole when a column varies in it, so the
//! operator above, which still runs, always sees every candidate row: the rewrite changes speed,
//! never answers.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::catalog::default_table_source::{provider_as_source, source_as_provider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::functions_aggregate::min_max::max_udaf;
use datafusion::logical_expr::expr::{NullTreatment, Sort};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, LogicalPlan, Operator, TableProviderFilterPushDown,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use mast_storage::schema::TIME_COLUMN;

use crate::table::MastTable;

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
            let rewritten = match &node {
                LogicalPlan::Aggregate(agg) => aggregate(agg)?,
                LogicalPlan::Filter(f) => ranked(f)?,
                LogicalPlan::Sort(s) => newest(s)?,
                LogicalPlan::Join(j) => joined(j)?,
                _ => None,
            };
            Ok(match rewritten {
                Some(plan) => Transformed::yes(plan),
                None => Transformed::no(node),
            })
        })
    }
}

/// The chain from an operator down to a Mast table scan: the table, and the columns that the
/// filters on the way (and the scan's inexact filters) read.
struct Chain {
    provider: Arc<dyn TableProvider>,
    filter_columns: BTreeSet<String>,
}

/// Follows plain projections and filters down to a Mast scan that reads every row.
fn chain(plan: &LogicalPlan) -> Option<Chain> {
    let mut filter_columns = BTreeSet::new();
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
                node = p.input.as_ref();
            }
            LogicalPlan::Filter(f) => {
                columns_of(&f.predicate, &mut filter_columns);
                node = f.input.as_ref();
            }
            LogicalPlan::TableScan(scan) => {
                let provider = source_as_provider(&scan.source).ok()?;
                let table = provider.downcast_ref::<MastTable>()?;
                if table.is_latest() || scan.fetch.is_some() {
                    return None;
                }
                for f in &scan.filters {
                    if table.pushdown(f) != TableProviderFilterPushDown::Exact {
                        columns_of(f, &mut filter_columns);
                    }
                }
                return Some(Chain {
                    provider,
                    filter_columns,
                });
            }
            _ => return None,
        }
    }
}

impl Chain {
    /// The latest-row scan, required constant over each series in `keys` and the filter
    /// columns (tags need no check); `None` when one of them is `time`, which no series holds
    /// constant.
    fn latest(&self, keys: &[&str], rows: usize) -> Option<MastTable> {
        let mut by: BTreeSet<String> = self.filter_columns.clone();
        by.extend(keys.iter().map(|k| k.to_string()));
        if by.contains(TIME_COLUMN) {
            return None;
        }
        let table = self.provider.downcast_ref::<MastTable>()?;
        let by = by.into_iter().filter(|c| !table.is_tag(c)).collect();
        Some(table.latest_rows(rows, by))
    }

    /// `plan` with this chain's scan reading latest rows.
    fn swap(&self, plan: &LogicalPlan, keys: &[&str], rows: usize) -> Result<Option<LogicalPlan>> {
        let Some(latest) = self.latest(keys, rows) else {
            return Ok(None);
        };
        let source = provider_as_source(Arc::new(latest));
        swap_scan(plan, &source).map(Some)
    }
}

/// Replaces the one table scan at the bottom of a chain of single-input nodes.
fn swap_scan(
    plan: &LogicalPlan,
    source: &Arc<dyn datafusion::logical_expr::TableSource>,
) -> Result<LogicalPlan> {
    if let LogicalPlan::TableScan(scan) = plan {
        let mut scan = scan.clone();
        scan.source = Arc::clone(source);
        return Ok(LogicalPlan::TableScan(scan));
    }
    let inputs = plan.inputs();
    let children = inputs
        .into_iter()
        .map(|c| swap_scan(c, source))
        .collect::<Result<Vec<_>>>()?;
    plan.with_new_exprs(plan.expressions(), children)
}

fn columns_of(e: &Expr, out: &mut BTreeSet<String>) {
    for c in e.column_refs() {
        out.insert(c.name.clone());
    }
}

fn is_time(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == TIME_COLUMN)
}

fn column(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

/// The names of `exprs` if every one is a plain column.
fn columns(exprs: &[Expr]) -> Option<Vec<&str>> {
    exprs.iter().map(column).collect()
}

/// True when `order` is `[keys…,] time` in the given direction: the leading sort keys that are
/// grouping or partition columns are constant within a group and change nothing.
fn orders_by_time(order: &[Sort], keys: &[&str], descending: bool) -> bool {
    let mut rest = order
        .iter()
        .skip_while(|s| column(&s.expr).is_some_and(|c| keys.contains(&c)));
    rest.next()
        .is_some_and(|s| is_time(&s.expr) && s.asc != descending)
}

fn aggregate(agg: &datafusion::logical_expr::Aggregate) -> Result<Option<LogicalPlan>> {
    let keys: Option<Vec<&str>> = agg
        .group_expr
        .iter()
        .map(super::group_strings::key_column)
        .collect();
    let Some(keys) = keys else {
        return Ok(None);
    };
    if !agg.aggr_expr.iter().all(|e| asks_latest(e, &keys)) {
        return Ok(None);
    }
    let Some(chain) = chain(&agg.input) else {
        return Ok(None);
    };
    let plan = LogicalPlan::Aggregate(agg.clone());
    chain.swap(&plan, &keys, 1)
}

/// True for `last_value(x ORDER BY time)`, `first_value(x ORDER BY time DESC)` and
/// `max(time)`, aliased or not, with no DISTINCT, FILTER or IGNORE NULLS.
fn asks_latest(e: &Expr, keys: &[&str]) -> bool {
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
    // By name: these are DataFusion's built-ins, which Mast does not override.
    let name = f.func.name();
    if name == max_udaf().name() {
        return p.args.len() == 1 && is_time(&p.args[0]);
    }
    let respects_nulls = !matches!(p.null_treatment, Some(NullTreatment::IgnoreNulls));
    if name == last_value_udaf().name() {
        return respects_nulls && orders_by_time(&p.order_by, keys, false);
    }
    if name == first_value_udaf().name() {
        return respects_nulls && orders_by_time(&p.order_by, keys, true);
    }
    false
}

/// A filter keeping the first ranks of a ranking window over a Mast scan.
fn ranked(filter: &datafusion::logical_expr::Filter) -> Result<Option<LogicalPlan>> {
    // The columns the filter bounds to the first ranks, followed down through plain
    // projections and aliases to the window that computes them.
    let bounds: Vec<(String, usize)> = split_conjunction(&filter.predicate)
        .into_iter()
        .filter_map(rank_bound)
        .collect();
    // a bound on any one ranking suffices (they share partition and order, checked below);
    // the tightest one is how many rows of each series can be among the kept ones
    let Some(rows) = bounds.iter().map(|(_, n)| *n).min() else {
        return Ok(None);
    };
    let mut names: Vec<String> = bounds.into_iter().map(|(c, _)| c).collect();
    let mut node = filter.input.as_ref();
    let window = loop {
        match node {
            LogicalPlan::Projection(p) => {
                let mut next = Vec::new();
                for n in &names {
                    let Some(e) = p.expr.iter().find(|e| e.schema_name().to_string() == *n) else {
                        continue;
                    };
                    let inner = match e {
                        Expr::Alias(a) => a.expr.as_ref(),
                        e => e,
                    };
                    if let Expr::Column(c) = inner {
                        next.push(c.name.clone());
                    }
                }
                names = next;
                node = p.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            LogicalPlan::Window(w) => break w,
            _ => return Ok(None),
        }
    };
    let outputs = window.schema.fields().len() - window.window_expr.len();
    let pinned = window.window_expr.iter().enumerate().any(|(i, _)| {
        let name = window.schema.field(outputs + i).name();
        names.iter().any(|n| n == name)
    });
    if !pinned {
        return Ok(None);
    }
    // Every window expression a ranking with one and the same PARTITION BY columns and ORDER
    // BY time DESC: then a row ranked n or better in its partition has fewer than n rows of
    // the partition strictly newer, so fewer than n of its own series: it is among its
    // series' latest n rows.
    let mut partition: Option<Vec<&str>> = None;
    for e in &window.window_expr {
        let e = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        let Expr::WindowFunction(f) = e else {
            return Ok(None);
        };
        if !matches!(f.fun.name(), "row_number" | "rank" | "dense_rank")
            || !f.params.args.is_empty()
            || f.params.filter.is_some()
        {
            return Ok(None);
        }
        let Some(keys) = columns(&f.params.partition_by) else {
            return Ok(None);
        };
        if !orders_by_time(&f.params.order_by, &keys, true) {
            return Ok(None);
        }
        match &partition {
            Some(p) if *p != keys => return Ok(None),
            _ => partition = Some(keys),
        }
    }
    let keys = partition.unwrap_or_default();
    let Some(chain) = chain(&window.input) else {
        return Ok(None);
    };
    let plan = LogicalPlan::Filter(filter.clone());
    chain.swap(&plan, &keys, rows)
}

/// Most rows per series a latest-row rewrite reads: past it the history is as cheap.
const MAX_LATEST_ROWS: i128 = 1000;

/// The column a conjunct bounds to the first `n` ranks, and `n`: `c = n`, `c <= n`, `c < n + 1`
/// (either side), `n` from 1 to [`MAX_LATEST_ROWS`].
fn rank_bound(e: &Expr) -> Option<(String, usize)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    let (col, op, lit) = match (rank_column(left), rank_column(right)) {
        (Some(c), None) => (c, *op, int_literal(right)?),
        (None, Some(c)) => (c, op.swap()?, int_literal(left)?),
        _ => return None,
    };
    let n = match op {
        Operator::Eq | Operator::LtEq => lit,
        Operator::Lt => lit - 1,
        _ => return None,
    };
    (1..=MAX_LATEST_ROWS)
        .contains(&n)
        .then_some((col, n as usize))
}

fn rank_column(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(c) => rank_column(&c.expr),
        _ => None,
    }
}

fn int_literal(e: &Expr) -> Option<i128> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Int8(Some(x)) => Some(i128::from(*x)),
            ScalarValue::Int16(Some(x)) => Some(i128::from(*x)),
            ScalarValue::Int32(Some(x)) => Some(i128::from(*x)),
            ScalarValue::Int64(Some(x)) => Some(i128::from(*x)),
            ScalarValue::UInt8(Some(x)) => Some(i128::from(*x)),
            ScalarValue::UInt16(Some(x)) => Some(i128::from(*x)),
            ScalarValue::UInt32(Some(x)) => Some(i128::from(*x)),
            ScalarValue::UInt64(Some(x)) => Some(i128::from(*x)),
            _ => None,
        },
        Expr::Cast(c) => int_literal(&c.expr),
        _ => None,
    }
}

/// `ORDER BY time DESC LIMIT n` over a Mast scan: the newest `n` rows overall are among each
/// series' latest `n`.
fn newest(sort: &datafusion::logical_expr::Sort) -> Result<Option<LogicalPlan>> {
    let Some(rows) = sort
        .fetch
        .filter(|n| (1..=MAX_LATEST_ROWS as usize).contains(n))
    else {
        return Ok(None);
    };
    if !orders_by_time(&sort.expr, &[], true) {
        return Ok(None);
    }
    let Some(chain) = chain(&sort.input) else {
        return Ok(None);
    };
    let plan = LogicalPlan::Sort(sort.clone());
    chain.swap(&plan, &[], rows)
}

/// The node below plain projections and subquery aliases that column `name` of `plan` comes
/// from, and the column's name there.
fn resolve<'p>(mut plan: &'p LogicalPlan, name: &str) -> Option<(&'p LogicalPlan, String)> {
    let mut name = name.to_string();
    loop {
        match plan {
            LogicalPlan::SubqueryAlias(a) => plan = a.input.as_ref(),
            LogicalPlan::Projection(p) => {
                let i = p.schema.fields().iter().position(|f| *f.name() == name)?;
                let inner = match &p.expr[i] {
                    Expr::Alias(a) => a.expr.as_ref(),
                    e => e,
                };
                name = column(inner)?.to_string();
                plan = p.input.as_ref();
            }
            _ => return Some((plan, name)),
        }
    }
}

/// The filters from `plan` down to its Mast scan (plain projections, filters, the scan's own),
/// as conjuncts written without qualifiers, with the table's name; `None` if the chain holds
/// anything else.
fn filters_of(plan: &LogicalPlan) -> Option<(String, BTreeSet<String>)> {
    let mut out = BTreeSet::new();
    let mut add = |e: &Expr| {
        for c in split_conjunction(e) {
            let bare = c
                .clone()
                .transform(|e| {
                    Ok(match e {
                        Expr::Column(col) => Transformed::yes(Expr::Column(
                            datafusion::common::Column::from_name(col.name),
                        )),
                        e => Transformed::no(e),
                    })
                })
                .map(|t| t.data)
                .unwrap_or_else(|_| c.clone());
            out.insert(bare.to_string());
        }
    };
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
                node = p.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            LogicalPlan::Filter(f) => {
                add(&f.predicate);
                node = f.input.as_ref();
            }
            LogicalPlan::TableScan(scan) => {
                for f in &scan.filters {
                    add(f);
                }
                return Some((scan.table_name.table().to_string(), out));
            }
            _ => return None,
        }
    }
}

/// An inner join of a Mast table with its own latest time per key: `r JOIN (SELECT k…,
/// max(time) AS t FROM same table, same filters GROUP BY k…) m ON r.k = m.k … AND r.time = m.t`
/// (either side first). A joined row has its key's latest time, so it is its series' latest
/// row wherever the keys hold one value over the series: the table's side reads latest rows.
fn joined(join: &datafusion::logical_expr::Join) -> Result<Option<LogicalPlan>> {
    use datafusion::logical_expr::{Join, JoinType};
    if join.join_type != JoinType::Inner || join.filter.is_some() || join.on.is_empty() {
        return Ok(None);
    }
    for table_left in [true, false] {
        let (table, other) = if table_left {
            (join.left.as_ref(), join.right.as_ref())
        } else {
            (join.right.as_ref(), join.left.as_ref())
        };
        let pairs: Vec<(&Expr, &Expr)> = join
            .on
            .iter()
            .map(|(l, r)| if table_left { (l, r) } else { (r, l) })
            .collect();
        if let Some(keys) = self_latest_join(table, other, &pairs) {
            let Some(chain) = chain(resolve(table, TIME_COLUMN).map(|(n, _)| n).unwrap_or(table))
            else {
                continue;
            };
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let Some(new_side) = chain.swap(table, &keys, 1)? else {
                continue;
            };
            let mut j: Join = join.clone();
            if table_left {
                j.left = Arc::new(new_side);
            } else {
                j.right = Arc::new(new_side);
            }
            return Ok(Some(LogicalPlan::Join(j)));
        }
    }
    Ok(None)
}

/// The table's key columns when `pairs` (table side, other side) join `table` with its own
/// `max(time)` per key in `other`, as [`joined`] describes.
fn self_latest_join(
    table: &LogicalPlan,
    other: &LogicalPlan,
    pairs: &[(&Expr, &Expr)],
) -> Option<Vec<String>> {
    let mut agg: Option<&datafusion::logical_expr::Aggregate> = None;
    let mut keys = Vec::new();
    let mut joined_groups = BTreeSet::new();
    let mut has_time = false;
    let mut table_node: Option<&LogicalPlan> = None;
    for (t, o) in pairs {
        let (node, t_col) = resolve(table, column(t)?)?;
        // every table-side key from the same node
        match table_node {
            Some(n) if !std::ptr::eq(n, node) => return None,
            _ => table_node = Some(node),
        }
        let (onode, o_col) = resolve(other, column(o)?)?;
        let LogicalPlan::Aggregate(a) = onode else {
            return None;
        };
        match agg {
            Some(prev) if !std::ptr::eq(prev, a) => return None,
            _ => agg = Some(a),
        }
        let i = a.schema.fields().iter().position(|f| *f.name() == o_col)?;
        let groups = a.group_expr.len();
        if i < groups {
            // a key: the same column of the table on both sides
            let g = super::group_strings::key_column(&a.group_expr[i])?;
            if g != t_col || t_col == TIME_COLUMN {
                return None;
            }
            joined_groups.insert(i);
            keys.push(t_col);
        } else {
            // the latest time: max(time) against the table's time
            if t_col != TIME_COLUMN || !is_max_time(&a.aggr_expr[i - groups]) {
                return None;
            }
            has_time = true;
        }
    }
    let agg = agg?;
    // every group key joined: a finer grouping's latest time is not the key's
    if !has_time || joined_groups.len() != agg.group_expr.len() {
        return None;
    }
    // the same rows on both sides: one table, the same filters
    let (t_table, t_filters) = filters_of(table_node?)?;
    let (o_table, o_filters) = filters_of(&agg.input)?;
    (t_table == o_table && t_filters == o_filters).then_some(keys)
}

/// `max(time)`, aliased or not, without DISTINCT or FILTER.
fn is_max_time(e: &Expr) -> bool {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    matches!(e, Expr::AggregateFunction(f)
        if f.func.name() == max_udaf().name()
            && !f.params.distinct
            && f.params.filter.is_none()
            && f.params.args.len() == 1
            && is_time(&f.params.args[0]))
}
