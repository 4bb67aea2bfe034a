//! The gateway's own way into its embedded scheduler: jobs submitted in
//! process and their results read along the shortest path.
//!
//! Ballista's client (`DistributedQueryExec`) serializes the logical plan,
//! dials the scheduler over mutual TLS for every job, and fetches each result
//! partition over a new Flight connection, one after the other. The gateway
//! embeds the scheduler, so it hands the plan over in memory
//! (`SchedulerServer::submit_job`, which also names the job's id at once) and
//! follows the job's status on a channel. Result partitions written by
//! in-process executors (which share one work dir) are read from their files;
//! the others are streamed from their executors over pooled connections, one
//! partition opened ahead, so the gateway never holds a whole result.

use std::sync::Arc;

use ballista_core::client_pool::BallistaClientPool;
use ballista_core::execution_plans::ShuffleReaderExec;
use ballista_core::extension::{BallistaConfigGrpcEndpoint, SessionConfigExt};
use ballista_core::serde::protobuf::{JobStatus, SuccessfulJob, job_status};
use ballista_core::serde::scheduler::PartitionLocation;
use ballista_core::utils::GrpcClientConfig;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};
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
        let work_dir = self.local_work_dir();
        let (local, remote): (Vec<_>, Vec<_>) = locations
            .into_iter()
            .partition(|l| l.path(&work_dir).is_ok_and(|p| p.exists()));
        // Files of in-process executors: Ballista's reader streams local
        // files one after the other. (Its remote fetches buffer each whole
        // partition in memory, so remote results are read below instead.)
        let local = match local.first() {
            None => None,
            Some(first) => {
                let (stage_id, n) = (first.partition_id.stage_id, local.len());
                let reader = ShuffleReaderExec::try_new_broadcast(stage_id, local, Arc::clone(&schema), n)?
                    .with_work_dir(work_dir);
                Some(Arc::new(reader).execute(0, Arc::clone(&job.task_ctx))?)
            }
        };
        // Remote partitions stream over pooled connections, the next one
        // opened while the current one is read: the gateway holds at most
        // two partitions' HTTP/2 windows and the batch in flight.
        let config = job.task_ctx.session_config();
        let fetch = RemoteFetch {
            pool: Arc::clone(&self.client_pool),
            grpc: (&config.ballista_config()).into(),
            endpoint: config.ballista_override_create_grpc_client_endpoint(),
        };
        let remote = futures::stream::iter(remote)
            .map(move |location| fetch.clone().open(location))
            .buffered(2)
            .try_flatten();
        let batches = futures::stream::iter(local).flatten().chain(remote);
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    /// Where in-process executors keep shuffle and result files (a directory
    /// no file is in when there are none).
    fn local_work_dir(&self) -> String {
        self.local_work_dir.to_string_lossy().into_owned()
    }
}

/// How the gateway reaches executors for their result partitions.
#[derive(Clone)]
struct RemoteFetch {
    pool: Arc<dyn BallistaClientPool>,
    grpc: GrpcClientConfig,
    endpoint: Option<Arc<BallistaConfigGrpcEndpoint>>,
}

impl RemoteFetch {
    /// Opens the stream of one remote result partition; the pooled client
    /// goes back to the pool when the stream ends.
    async fn open(self, location: PartitionLocation) -> Result<SendableRecordBatchStream> {
        let meta = &location.executor_meta;
        let lost = |e: &dyn std::fmt::Display| {
            DataFusionError::Execution(format!(
                "cannot fetch result partition {} from executor {} at {}:{}: {e}",
                location.partition_id.partition_id, meta.id, meta.host, meta.port
            ))
        };
        let mut client = self
            .pool
            .acquire(&meta.host, meta.port, &self.grpc, self.endpoint.clone())
            .await
            .map_err(|e| lost(&e))?;
        let stream = match client
            .fetch_partition(
                &meta.id,
                &location.partition_id,
                location.file_id,
                location.layout(),
                false,
            )
            .await
        {
            Ok(stream) => stream,
            Err(e) => {
                client.discard();
                return Err(lost(&e));
            }
        };
        let schema = stream.schema();
        // The client rides along with the stream and returns to the pool
        // with it.
        let batches = stream.map(move |batch| {
            let _ = &client;
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}
