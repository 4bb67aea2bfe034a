//! The boundary of what a user may see of a table. A table read under row
//! policies is `SecureBoundary(Filter(policies)(TableScan))` in the user's
//! plan: no optimizer rule moves a predicate across it, logical
//! (`prevent_predicate_push_down_columns` is every column) or physical
//! (`SecureBoundaryExec` accepts no pushed filter), so a user's predicate is
//! evaluated only on rows the policies let through and cannot leak hidden
//! rows by failing on them (division by zero, a failed cast). Projections
//! still pass, so only the columns a query reads are scanned, and the
//! policies' own predicates still prune partitions and row groups.
//!
//! Both nodes cross the wire: the gateway's logical codec and every
//! process's physical codec ([`SecureCodec`]) know them.

use std::any::Any;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchemaRef, Result, internal_err};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

/// Marks a boundary in encoded plans (logical and physical).
pub const MAGIC: &[u8] = b"sluice-secure-boundary/1";

/// The logical boundary over a user's view of one table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecureBoundary {
    pub input: LogicalPlan,
}

impl SecureBoundary {
    /// `input` behind a boundary, as a plan node.
    pub fn wrap(input: LogicalPlan) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(SecureBoundary { input }),
        })
    }
}

impl PartialOrd for SecureBoundary {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.input.partial_cmp(&other.input)
    }
}

impl UserDefinedLogicalNodeCore for SecureBoundary {
    fn name(&self) -> &str {
        "SecureBoundary"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<datafusion::logical_expr::Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SecureBoundary")
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<datafusion::logical_expr::Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        match inputs.pop() {
            Some(input) if inputs.is_empty() => Ok(SecureBoundary { input }),
            _ => internal_err!("SecureBoundary takes one input"),
        }
    }

    /// Columns flow through unchanged: a parent's projection may narrow the
    /// input (it cannot widen what the input exposes).
    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        Some(vec![output_columns.to_vec()])
    }

    fn supports_limit_pushdown(&self) -> bool {
        false
    }
}

/// The physical boundary: passes its input's batches through.
#[derive(Debug)]
pub struct SecureBoundaryExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl SecureBoundaryExec {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        let properties = Arc::clone(input.properties());
        SecureBoundaryExec { input, properties }
    }
}

impl DisplayAs for SecureBoundaryExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SecureBoundaryExec")
    }
}

impl ExecutionPlan for SecureBoundaryExec {
    fn name(&self) -> &'static str {
        "SecureBoundaryExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(SecureBoundaryExec::new(input))),
            _ => internal_err!("SecureBoundaryExec takes one input"),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    // `gather_filters_for_pushdown` keeps its default: every parent filter
    // is unsupported here, so none reaches the input.
}

/// Plans [`SecureBoundary`] as [`SecureBoundaryExec`].
#[derive(Debug, Default)]
pub struct SecurePlanner;

#[async_trait]
impl ExtensionPlanner for SecurePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn datafusion::logical_expr::UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if node.as_any().downcast_ref::<SecureBoundary>().is_none() {
            return Ok(None);
        }
        match physical_inputs {
            [input] => Ok(Some(Arc::new(SecureBoundaryExec::new(Arc::clone(input))))),
            _ => internal_err!("SecureBoundary takes one input"),
        }
    }
}

/// DataFusion's planner plus [`SecurePlanner`].
#[derive(Debug, Default)]
pub struct SluiceQueryPlanner;

#[async_trait]
impl QueryPlanner for SluiceQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(SecurePlanner)])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}

/// Ballista's physical codec plus [`SecureBoundaryExec`]; the scheduler
/// encodes tasks and every executor decodes them with it.
#[derive(Debug, Default)]
pub struct SecureCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for SecureCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if buf == MAGIC {
            return match inputs {
                [input] => Ok(Arc::new(SecureBoundaryExec::new(Arc::clone(input)))),
                _ => internal_err!("SecureBoundaryExec takes one input"),
            };
        }
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if node.downcast_ref::<SecureBoundaryExec>().is_some() {
            buf.extend_from_slice(MAGIC);
            return Ok(());
        }
        self.inner.try_encode(node, buf, proto_converter)
    }
}

/// Whether `node` is a [`SecureBoundary`] (for logical codecs).
pub fn is_boundary(node: &dyn Any) -> bool {
    node.is::<SecureBoundary>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;
    use datafusion::logical_expr::{LogicalPlanBuilder, col, lit};
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;

    /// `SELECT * FROM (boundary(SELECT * FROM t WHERE a <> 0)) WHERE 10 / a > 1`
    /// over a = [0, 5, 20].
    async fn guarded(ctx: &SessionContext) -> LogicalPlan {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(vec![0, 5, 20]))]).unwrap();
        ctx.register_table("t", Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()))
            .unwrap();
        let policy = ctx
            .table("t")
            .await
            .unwrap()
            .filter(col("a").not_eq(lit(0i64)))
            .unwrap();
        let guarded = SecureBoundary::wrap(policy.into_optimized_plan().unwrap());
        LogicalPlanBuilder::from(guarded)
            .filter((lit(10i64) / col("a")).gt(lit(1i64)))
            .unwrap()
            .build()
            .unwrap()
    }

    fn context() -> SessionContext {
        SessionContext::new_with_state(
            datafusion::execution::SessionStateBuilder::new()
                .with_default_features()
                .with_query_planner(Arc::new(SluiceQueryPlanner))
                .build(),
        )
    }

    #[tokio::test]
    async fn no_predicate_crosses_the_boundary() {
        let ctx = context();
        let plan = guarded(&ctx).await;
        let optimized = ctx.state().optimize(&plan).unwrap();
        let text = optimized.display_indent().to_string();
        let (above, below) = text.split_once("SecureBoundary").unwrap();
        assert!(
            above.contains("Int64(10) / t.a") && !below.contains("Int64(10)"),
            "{text}"
        );
        let physical = ctx.state().create_physical_plan(&plan).await.unwrap();
        let text = displayable(physical.as_ref()).indent(true).to_string();
        let (above, below) = text.split_once("SecureBoundaryExec").unwrap();
        assert!(above.contains("10 / a") && !below.contains("10 /"), "{text}");
        // Unguarded, the division would meet a = 0 and fail; guarded it
        // sees 5 and 20 only.
        let rows = datafusion::physical_plan::collect(physical, ctx.task_ctx())
            .await
            .unwrap();
        let values: Vec<i64> = rows
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(values, vec![5]);
    }

    #[tokio::test]
    async fn the_exec_survives_the_physical_codec() {
        use datafusion_proto::physical_plan::AsExecutionPlan;
        use datafusion_proto::protobuf::PhysicalPlanNode;
        let ctx = context();
        let physical = ctx.state().create_physical_plan(&guarded(&ctx).await).await.unwrap();
        let codec = SecureCodec::default();
        let proto = PhysicalPlanNode::try_from_physical_plan(Arc::clone(&physical), &codec).unwrap();
        let back = proto.try_into_physical_plan(&ctx.task_ctx(), &codec).unwrap();
        assert_eq!(
            displayable(back.as_ref()).indent(true).to_string(),
            displayable(physical.as_ref()).indent(true).to_string()
        );
    }
}
