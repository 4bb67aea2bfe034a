//! The execution engine of a Sluice node: Ballista's default engine, with the
//! Parquet scans of every task reading footers through the process's footer
//! cache (`sluice_lake::with_footer_cache`), and shuffle fetches from other
//! members over pooled connections (`client_pool`).

use std::sync::Arc;

use ballista_executor::execution_engine::{DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor};
use datafusion::error::Result;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;

pub(crate) struct CachingEngine {
    inner: DefaultExecutionEngine,
    runtime: Arc<RuntimeEnv>,
}

impl CachingEngine {
    pub(crate) fn new(runtime: Arc<RuntimeEnv>) -> Self {
        CachingEngine {
            inner: DefaultExecutionEngine::with_client_pool(Arc::new(crate::client_pool::ClientPool::default())),
            runtime,
        }
    }
}

impl ExecutionEngine for CachingEngine {
    fn create_query_stage_exec(
        &self,
        job_id: ballista_core::JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        let plan = sluice_lake::with_footer_cache(plan, &self.runtime)?;
        self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )
    }
}
