//! Orderings that survive the cut between stages.
//!
//! DataFusion may keep a sorted input sorted through a hash repartition (an
//! order-preserving `RepartitionExec`, which merges its inputs per output
//! partition, or any repartition of a single sorted partition, whose rows
//! keep their order) and then rely on that order above it: a window function reads
//! its partitions sorted, an aggregate streams over sorted groups. Ballista's
//! static planner cuts the plan into stages at every hash repartition and
//! replaces it with a shuffle, whose reader yields the map outputs in no
//! particular order, so the operator above fails ("Expects PARTITION BY
//! expression to be ordered") or answers wrongly. This rule, run last among
//! the physical optimizer rules of the plans the scheduler distributes,
//! replaces each hash repartition with ordered output by a plain one and a
//! per-partition sort on the same ordering: the sort lands above the shuffle
//! reader, in the consuming stage, and the plan means the same.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};

/// Replaces hash repartitions with ordered output by a repartition and a
/// per-partition sort (module docs).
#[derive(Debug, Default)]
pub(crate) struct SortAfterShuffle;

impl PhysicalOptimizerRule for SortAfterShuffle {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(repartition) = node.downcast_ref::<RepartitionExec>() else {
                return Ok(Transformed::no(node));
            };
            if !matches!(repartition.partitioning(), Partitioning::Hash(..)) {
                return Ok(Transformed::no(node));
            }
            // Ordered output: merged in order, or a single input partition
            // split, which keeps its order without merging.
            let Some(ordering) = node.output_ordering().cloned() else {
                return Ok(Transformed::no(node));
            };
            let plain = RepartitionExec::try_new(Arc::clone(repartition.input()), repartition.partitioning().clone())?;
            let sorted = SortExec::new(ordering, Arc::new(plain)).with_preserve_partitioning(true);
            Ok(Transformed::yes(Arc::new(sorted) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "sluice_sort_after_shuffle"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_expr::expressions::col;
    use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
    use datafusion::physical_plan::displayable;

    /// `partitions` partitions, each sorted on `k`.
    fn sorted_source(partitions: usize) -> (Arc<dyn ExecutionPlan>, LexOrdering) {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int32, false)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int32Array::from(vec![3, 1, 2]))]).unwrap();
        let ordering = LexOrdering::new(vec![PhysicalSortExpr::new_default(col("k", &schema).unwrap())]).unwrap();
        let data = vec![vec![batch]; partitions];
        let source = MemorySourceConfig::try_new_exec(&data, schema, None).unwrap();
        let sort = SortExec::new(ordering.clone(), source).with_preserve_partitioning(true);
        (Arc::new(sort), ordering)
    }

    #[test]
    fn order_preserving_hash_repartition_becomes_repartition_then_sort() {
        let (input, ordering) = sorted_source(2);
        let keys = vec![col("k", &input.schema()).unwrap()];
        let repartition = RepartitionExec::try_new(input, Partitioning::Hash(keys, 4))
            .unwrap()
            .with_preserve_order();
        assert!(repartition.preserve_order());
        let plan: Arc<dyn ExecutionPlan> = Arc::new(repartition);
        let out = SortAfterShuffle.optimize(plan, &ConfigOptions::default()).unwrap();

        let sort = out.downcast_ref::<SortExec>().expect("a sort on top");
        assert!(sort.preserve_partitioning());
        assert_eq!(sort.expr(), &ordering);
        let below = sort
            .input()
            .downcast_ref::<RepartitionExec>()
            .expect("the repartition below");
        assert!(!below.preserve_order(), "{}", displayable(out.as_ref()).indent(true));
        assert_eq!(out.output_partitioning().partition_count(), 4);
        assert_eq!(out.output_ordering(), Some(&ordering));
    }

    #[test]
    fn a_split_single_sorted_partition_is_sorted_again_after_the_shuffle() {
        // One sorted input partition: the repartition keeps each output
        // partition's order without being order-preserving.
        let (input, ordering) = sorted_source(1);
        let keys = vec![col("k", &input.schema()).unwrap()];
        let repartition = RepartitionExec::try_new(input, Partitioning::Hash(keys, 4)).unwrap();
        assert!(!repartition.preserve_order());
        let plan: Arc<dyn ExecutionPlan> = Arc::new(repartition);
        assert_eq!(plan.output_ordering(), Some(&ordering));
        let out = SortAfterShuffle.optimize(plan, &ConfigOptions::default()).unwrap();
        let sort = out.downcast_ref::<SortExec>().expect("a sort on top");
        assert_eq!(sort.expr(), &ordering);
        assert!(sort.input().is::<RepartitionExec>());
    }

    #[test]
    fn repartitions_without_order_are_left_alone() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int32, false)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int32Array::from(vec![3, 1, 2]))]).unwrap();
        let source =
            MemorySourceConfig::try_new_exec(&[vec![batch.clone()], vec![batch]], Arc::clone(&schema), None).unwrap();
        let keys = vec![col("k", &schema).unwrap()];
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(RepartitionExec::try_new(source, Partitioning::Hash(keys, 4)).unwrap());
        let out = SortAfterShuffle
            .optimize(Arc::clone(&plan), &ConfigOptions::default())
            .unwrap();
        assert!(Arc::ptr_eq(&plan, &out));
    }
}
