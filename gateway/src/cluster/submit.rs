//! The gateway's own way into its embedded scheduler: jobs submitted in
//! process and their results read along the shortest path.
//!
//! Ballista's client (`DistributedQueryExec`) serializes the logical plan,
//! dials the scheduler over mutual TLS for every job, and fetches each result
//! partition over a new Flight connection, one after the other. The gateway
//! embeds the scheduler, so it hands the plan over in memory
//! (`SchedulerServer::submit_job`, which also names the job's id at once) and
//! follows the job's status on a channel. The results are read by a
//! `ShuffleReaderExec` over the final stage's locations: partitions written
//! by in-process executors (which share one work dir) are read from their
//! files, the others are fetched concurrently over pooled connections.

use std::sync::Arc;

use ballista_core::execution_plans::ShuffleReaderExec;
use ballista_core::serde::protobuf::{JobStatus, SuccessfulJob, job_status};
use ballista_core::serde::scheduler::PartitionLocation;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use tokio::sync::mpsc;

use super::Cluster;

/// A job handed to the scheduler: its id, where its status arrives, and the
/// task context its results are read with.
pub(crate) struct Submitted {
    pub job_id: String,
    status: mpsc::Receiver<JobStatus>,
    task_ctx: Arc<TaskContext>,
}

impl std::fmt::Debug for Submitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitted").field("job_id", &self.job_id).finish()
    }
}

/// Prefix of the error of a job that failed, as `DistributedQueryExec`
/// words it (`query::distributed` classifies failures by it).
pub(crate) const JOB_FAILED: &str = "Job ";

impl Cluster {
    /// Submits `plan` (optimized, reading lake tables) as the job `name`,
    /// planned with `config` (the session's settings).
    pub(crate) async fn submit(&self, name: &str, plan: &LogicalPlan, config: SessionConfig) -> Result<Submitted> {
        let mut config = self.credentials.apply(config);
        config
            .options_mut()
            .set(ballista_core::config::BALLISTA_JOB_NAME, name)?;
        // As the scheduler's own session manager does: Ballista repartitions
        // between stages itself.
        let config = config.with_round_robin_repartition(false);
        let state = (self.session_builder)(config)?;
        let task_ctx = state.task_ctx();
        let ctx = Arc::new(SessionContext::new_with_state(state));
        let (tx, status) = mpsc::channel(16);
        let job_id = self
            .scheduler
            .submit_job(name, ctx, plan, Some(tx))
            .await
            .map_err(|e| DataFusionError::Execution(format!("Fail to execute query: {e}")))?;
        Ok(Submitted {
            job_id: job_id.to_string(),
            status,
            task_ctx,
        })
    }

    /// Waits for the job to end and returns its results as one stream; the
    /// rows of each result partition come in order (a sorted result is one
    /// partition), partitions as they are read.
    pub(crate) async fn results(&self, mut job: Submitted, schema: SchemaRef) -> Result<SendableRecordBatchStream> {
        let done = loop {
            let Some(status) = job.status.recv().await else {
                return Err(DataFusionError::Execution(format!(
                    "{JOB_FAILED}{} failed: the scheduler stopped reporting it",
                    job.job_id
                )));
            };
            match status.status {
                Some(job_status::Status::Successful(done)) => break done,
                Some(job_status::Status::Failed(failed)) => {
                    return Err(DataFusionError::Execution(format!(
                        "{JOB_FAILED}{} failed: {}",
                        job.job_id, failed.error
                    )));
                }
                Some(job_status::Status::Queued(_) | job_status::Status::Running(_)) | None => {}
            }
        };
        let SuccessfulJob { partition_location, .. } = done;
        let locations = partition_location
            .into_iter()
            .map(|l| l.try_into())
            .collect::<std::result::Result<Vec<PartitionLocation>, _>>()
            .map_err(|e| DataFusionError::Execution(format!("bad result location of job {}: {e}", job.job_id)))?;
        let Some(first) = locations.first() else {
            return Ok(Box::pin(
                datafusion::physical_plan::stream::EmptyRecordBatchStream::new(schema),
            ));
        };
        let stage_id = first.partition_id.stage_id;
        let partitions = locations.len();
        let reader = ShuffleReaderExec::try_new_broadcast(stage_id, locations, schema, partitions)?
            .with_work_dir(self.local_work_dir())
            .with_client_pool(Arc::clone(&self.client_pool));
        Arc::new(reader).execute(0, job.task_ctx)
    }

    /// Where in-process executors keep shuffle and result files (a directory
    /// no file is in when there are none).
    fn local_work_dir(&self) -> String {
        self.local_work_dir.to_string_lossy().into_owned()
    }
}
