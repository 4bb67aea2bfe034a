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
use ballista_core::serde::protobuf::{JobStatus, PartitionLocation as ProtoLocation, SuccessfulJob, job_status};
use ballista_core::serde::scheduler::PartitionLocation;
use ballista_core::utils::GrpcClientConfig;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
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
    /// The task context its results are read with.
    pub task_ctx: Arc<TaskContext>,
}

impl std::fmt::Debug for Submitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitted").field("job_id", &self.job_id).finish()
    }
}

/// Prefix of the error of a job that failed, as `DistributedQueryExec`
/// words it (`query::distributed` classifies failures by it).
pub(crate) const JOB_FAILED: &str = "Job ";

/// Result partitions a reader streams at once.
const READ_AHEAD: usize = 4;

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

    /// Waits for the job to end; returns where its result partitions wait.
    pub(crate) async fn finished(&self, job: &mut Submitted) -> Result<Vec<ProtoLocation>> {
        loop {
            let Some(status) = job.status.recv().await else {
                return Err(DataFusionError::Execution(format!(
                    "{JOB_FAILED}{} failed: the scheduler stopped reporting it",
                    job.job_id
                )));
            };
            match status.status {
                Some(job_status::Status::Successful(SuccessfulJob { partition_location, .. })) => {
                    return Ok(partition_location);
                }
                Some(job_status::Status::Failed(failed)) => {
                    return Err(DataFusionError::Execution(format!(
                        "{JOB_FAILED}{} failed: {}",
                        job.job_id, failed.error
                    )));
                }
                Some(job_status::Status::Queued(_) | job_status::Status::Running(_)) | None => {}
            }
        }
    }

    /// Streams a finished job's result partitions, [`READ_AHEAD`] at a
    /// time, batches as they arrive; the rows of each partition come in
    /// order (a sorted result is one partition).
    pub(crate) fn read(
        &self,
        locations: Vec<ProtoLocation>,
        task_ctx: &Arc<TaskContext>,
        schema: SchemaRef,
    ) -> Result<SendableRecordBatchStream> {
        let locations = locations
            .into_iter()
            .map(|l| {
                let rows = row_count(&l);
                l.try_into().map(|l: PartitionLocation| (l, rows))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| DataFusionError::Execution(format!("bad result location: {e}")))?;
        let work_dir = self.local_work_dir();
        let (local, remote): (Vec<_>, Vec<_>) = locations
            .into_iter()
            .partition(|(l, _)| l.path(&work_dir).is_ok_and(|p| p.exists()));
        // A remote partition its writer counted no rows in is not fetched:
        // its executor may be gone, and there is nothing to lose.
        let remote = remote.into_iter().filter(|(_, rows)| *rows != Some(0));
        // Files of in-process executors, through Ballista's reader (its
        // remote fetches buffer each whole partition in memory, so remote
        // results are read below instead).
        let local = local
            .into_iter()
            .map(|(l, _)| {
                let reader =
                    ShuffleReaderExec::try_new_broadcast(l.partition_id.stage_id, vec![l], Arc::clone(&schema), 1)?
                        .with_work_dir(work_dir.clone());
                Arc::new(reader).execute(0, Arc::clone(task_ctx))
            })
            .collect::<Result<Vec<_>>>()?;
        // Remote partitions stream over pooled connections: the gateway
        // holds at most READ_AHEAD partitions' HTTP/2 windows and the
        // batches in flight.
        let config = task_ctx.session_config();
        let fetch = RemoteFetch {
            pool: Arc::clone(&self.client_pool),
            grpc: (&config.ballista_config()).into(),
            endpoint: config.ballista_override_create_grpc_client_endpoint(),
        };
        // One stream per partition that opens it and reads it to its end:
        // at most READ_AHEAD partitions are open at once.
        let remote = futures::stream::iter(remote)
            .map(move |(location, rows)| {
                Box::pin(futures::stream::once(fetch.clone().open(location, rows)).try_flatten())
            })
            .flatten_unordered(READ_AHEAD);
        let local = futures::stream::iter(local).flatten_unordered(READ_AHEAD);
        let batches = futures::stream::select(local, remote);
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    /// Reads result partitions of a job that ended before (a Flight
    /// endpoint's share of a result), with the cluster's client settings.
    pub(crate) fn read_finished(
        &self,
        locations: Vec<ProtoLocation>,
        schema: SchemaRef,
    ) -> Result<SendableRecordBatchStream> {
        let config = self.credentials.apply(SessionConfig::new_with_ballista());
        let task_ctx = (self.session_builder)(config)?.task_ctx();
        self.read(locations, &task_ctx, schema)
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
    /// goes back to the pool when the stream ends. `rows` is the count its
    /// writer recorded: a stream that breaks after delivering exactly that
    /// many rows (the executor died as it was closing the stream) is
    /// complete, not lost.
    async fn open(self, location: PartitionLocation, rows: Option<u64>) -> Result<SendableRecordBatchStream> {
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
        let partition = location.partition_id.partition_id;
        // The client rides along with the stream and returns to the pool
        // with it.
        let batches = stream.map(move |batch| {
            let _ = &client;
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            complete_at(batches, rows, partition),
        )))
    }
}

/// Ends a partition's stream at a break that comes after all `rows` its
/// writer counted have arrived; a break before that stays an error.
fn complete_at(
    batches: impl futures::Stream<Item = Result<RecordBatch>> + Send,
    rows: Option<u64>,
    partition: usize,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send {
    batches.scan(0u64, move |seen, batch| {
        let item = match batch {
            Ok(batch) => {
                *seen += batch.num_rows() as u64;
                Some(Ok(batch))
            }
            Err(e) if rows == Some(*seen) => {
                tracing::warn!(partition, rows = *seen, "result stream broke after its last row: {e}");
                None
            }
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(item)
    })
}

/// The row count a result partition's writer recorded, if it did.
fn row_count(location: &ProtoLocation) -> Option<u64> {
    let rows = location.partition_stats.as_ref()?.num_rows;
    u64::try_from(rows).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int32Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use futures::StreamExt;

    use super::*;

    fn batch(n: i32) -> Result<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        Ok(RecordBatch::try_new(
            schema,
            vec![Arc::new(Int32Array::from_iter_values(0..n))],
        )?)
    }

    fn broken() -> Result<RecordBatch> {
        Err(DataFusionError::Execution("h2 protocol error: stream reset".into()))
    }

    async fn read(items: Vec<Result<RecordBatch>>, rows: Option<u64>) -> (u64, bool) {
        let mut out = complete_at(futures::stream::iter(items), rows, 0).boxed();
        let (mut seen, mut failed) = (0, false);
        while let Some(item) = out.next().await {
            match item {
                Ok(b) => seen += b.num_rows() as u64,
                Err(_) => failed = true,
            }
        }
        (seen, failed)
    }

    #[tokio::test]
    async fn a_break_after_the_last_counted_row_ends_the_partition() {
        assert_eq!(read(vec![batch(3), batch(2), broken()], Some(5)).await, (5, false));
    }

    #[tokio::test]
    async fn a_break_before_the_last_row_or_without_a_count_is_an_error() {
        assert_eq!(read(vec![batch(3), broken()], Some(5)).await, (3, true));
        assert_eq!(read(vec![batch(3), batch(2), broken()], None).await, (5, true));
        assert_eq!(read(vec![broken()], Some(0)).await, (0, false));
        assert_eq!(read(vec![batch(3), batch(2)], Some(5)).await, (5, false));
    }
}
