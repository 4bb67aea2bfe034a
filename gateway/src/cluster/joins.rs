//! Broadcast joins only where they are exact on a cluster.
//!
//! With file statistics, DataFusion's `JoinSelection` collects a small build
//! side into every probe partition (`CollectLeft`) whatever the join type. In
//! one process that is exact for every type: the probe partitions share one
//! bitmap of matched build rows, and the last one to finish emits the build
//! rows nobody matched. On a cluster each probe task has its own copy, so
//! the join types that emit unmatched build rows (LEFT, FULL, LEFT SEMI/ANTI,
//! LEFT MARK) cannot run that way. Ballista's planner notices and demotes such
//! a join to a partitioned one, but only after DataFusion's optimizer ran: the
//! join's output then has many partitions where its parent (a sort, say)
//! expected one and reads only the first, and rows go missing.
//!
//! This rule runs right after `JoinSelection` in the plans the scheduler
//! distributes and makes such joins partitioned there, so the distribution
//! rules that follow give every parent the input it requires. Null-aware
//! anti joins are left to Ballista, which runs them as one task.

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};

/// Makes `CollectLeft` hash joins of types a cluster cannot broadcast
/// partitioned (module docs).
#[derive(Debug, Default)]
pub(crate) struct PartitionUnsafeBroadcasts;

/// Join types whose output is driven by the probe side alone: each probe
/// task can join against its own copy of the build side.
fn broadcast_safe(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Inner | JoinType::Right | JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark
    )
}

impl PhysicalOptimizerRule for PartitionUnsafeBroadcasts {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if *join.partition_mode() != PartitionMode::CollectLeft
                || broadcast_safe(*join.join_type())
                || join.null_aware
            {
                return Ok(Transformed::no(node));
            }
            let mut left = Arc::clone(join.left());
            if let Some(coalesce) = left.downcast_ref::<CoalescePartitionsExec>() {
                left = Arc::clone(coalesce.input());
            }
            let partitioned = join
                .builder()
                .with_partition_mode(PartitionMode::Partitioned)
                .with_new_children(vec![left, Arc::clone(join.right())])?
                .recompute_properties()
                .build_exec()?;
            Ok(Transformed::yes(partitioned))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "sluice_partition_unsafe_broadcasts"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `rules` with [`PartitionUnsafeBroadcasts`] right after DataFusion's
/// `join_selection` (at the end if there is none).
pub(crate) fn with_rule(
    mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
) -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let at = rules
        .iter()
        .position(|r| r.name() == "join_selection")
        .map_or(rules.len(), |i| i + 1);
    rules.insert(at, Arc::new(PartitionUnsafeBroadcasts));
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::common::NullEquality;
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_expr::expressions::col;

    fn join(join_type: JoinType) -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int32, true)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int32Array::from(vec![1, 2]))]).unwrap();
        let side = || {
            MemorySourceConfig::try_new_exec(&[vec![batch.clone()], vec![batch.clone()]], Arc::clone(&schema), None)
                .unwrap()
        };
        let on = vec![(col("k", &schema).unwrap(), col("k", &schema).unwrap())];
        Arc::new(
            HashJoinExec::try_new(
                side(),
                side(),
                on,
                None,
                &join_type,
                None,
                PartitionMode::CollectLeft,
                NullEquality::NullEqualsNothing,
                false,
            )
            .unwrap(),
        )
    }

    fn mode(plan: &Arc<dyn ExecutionPlan>) -> PartitionMode {
        *plan.downcast_ref::<HashJoinExec>().unwrap().partition_mode()
    }

    #[test]
    fn joins_emitting_unmatched_build_rows_become_partitioned() {
        for t in [
            JoinType::Left,
            JoinType::Full,
            JoinType::LeftSemi,
            JoinType::LeftAnti,
            JoinType::LeftMark,
        ] {
            let out = PartitionUnsafeBroadcasts
                .optimize(join(t), &ConfigOptions::default())
                .unwrap();
            assert_eq!(mode(&out), PartitionMode::Partitioned, "{t}");
        }
    }

    #[test]
    fn probe_driven_joins_stay_broadcast() {
        for t in [
            JoinType::Inner,
            JoinType::Right,
            JoinType::RightSemi,
            JoinType::RightAnti,
        ] {
            let plan = join(t);
            let out = PartitionUnsafeBroadcasts
                .optimize(Arc::clone(&plan), &ConfigOptions::default())
                .unwrap();
            assert!(Arc::ptr_eq(&plan, &out), "{t}");
        }
    }

    #[test]
    fn the_rule_follows_join_selection() {
        let rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
        let rules = with_rule(rules);
        let names: Vec<&str> = rules.iter().map(|r| r.name()).collect();
        let at = names.iter().position(|n| *n == "join_selection").unwrap();
        assert_eq!(names[at + 1], "sluice_partition_unsafe_broadcasts");
    }
}
