//! Lake reads as Ballista jobs, with the gateway's half of fault tolerance.
//!
//! Ballista recomputes the tasks and shuffle output lost with an executor
//! while a job runs, and only those (our patches in `third_party/` make that
//! exact on the static planner, which Sluice uses). What it cannot recover is
//! the job's *final* output: once a job succeeds its result partitions live
//! only on the executors that wrote them, and if one of those dies before the
//! gateway has fetched it, the rows are gone. So the gateway:
//! - waits up to `--capacity-wait` for an executor before submitting;
//! - before the first row leaves, checks that every executor holding the
//!   job's results is still alive, and re-runs the whole job when one is not
//!   or when its results are lost before any row has been handed to the
//!   client (at most [`MAX_RERUNS`] times);
//! - ends the statement with a retryable error (SQLSTATE 40001, gRPC
//!   UNAVAILABLE) when results are lost after rows were sent, so a client never
//!   sees duplicated or missing rows.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionConfig;
use futures::{StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, Membership};
use crate::error::{ErrorKind, QueryError};

/// Re-runs of one query (executors lost before its first row was sent).
pub(crate) const MAX_RERUNS: u32 = 6;

/// The job currently serving a query; the statement's guard cancels it when
/// the results are abandoned, a re-run cancels it before resubmitting.
#[derive(Clone, Default)]
pub(crate) struct CurrentJob(Arc<Mutex<Option<JobHandle>>>);

/// A submitted job.
#[derive(Debug, Clone)]
pub(crate) struct JobHandle {
    pub id: String,
}

impl CurrentJob {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<JobHandle>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, job: JobHandle) {
        *self.lock() = Some(job);
    }

    /// The job serving the query now, once it was submitted.
    pub(crate) fn handle(&self) -> Option<JobHandle> {
        self.lock().clone()
    }

    /// Like [`CurrentJob::handle`], and forgets the job.
    fn take(&self) -> Option<JobHandle> {
        self.lock().take()
    }
}

/// What a query needs to (re)submit its job.
pub(crate) struct JobSpec {
    pub cluster: Cluster,
    /// The optimized plan; it reads lake tables only.
    pub plan: LogicalPlan,
    pub schema: SchemaRef,
    /// The session's settings, which the job is planned and run with.
    pub config: SessionConfig,
    pub session_id: String,
    pub token: CancellationToken,
    /// The statement's history entry: its job id and re-runs show there.
    pub query: Option<Arc<super::history::Query>>,
}

struct State {
    spec: JobSpec,
    current: CurrentJob,
    inner: Option<SendableRecordBatchStream>,
    /// Executors when the current job was submitted.
    membership: Option<Membership>,
    /// The current job's results arrived with no executor lost meanwhile.
    results_checked: bool,
    rows_sent: bool,
    reruns: u32,
}

impl State {
    async fn cancel_current(&mut self) {
        if let Some(job) = self.current.take() {
            self.spec.cluster.cancel_job(&job).await;
        }
    }
}

/// Why a job is re-run when its results are on an executor that is gone.
const RESULTS_ON_LOST_EXECUTOR: &str = "an executor holding the job's results left the cluster";

/// How a failed job stream ended.
enum Failure {
    /// The job itself failed (plan, data or retry limits): final.
    Job(DataFusionError),
    /// Every executor was lost and none came back in time.
    NoExecutors(String),
    /// The job's results could not be fetched: a re-run can recover.
    ResultsLost(DataFusionError),
}

fn classify(e: DataFusionError) -> Failure {
    let text = e.to_string();
    if text.contains("all executors were lost") {
        return Failure::NoExecutors(text);
    }
    match &e {
        // `Cluster::results` reports a failed job as "Job <id> failed: ..."
        // and `Cluster::submit` one the scheduler refused as "Fail to execute query ...".
        DataFusionError::Execution(msg) if msg.starts_with("Job ") || msg.starts_with("Fail to execute query") => {
            Failure::Job(e)
        }
        DataFusionError::External(inner) if inner.downcast_ref::<QueryError>().is_some() => Failure::Job(e),
        // Everything else comes from reaching the executors that hold the
        // results (connection refused, fetch failed, stream broken).
        _ => Failure::ResultsLost(e),
    }
}

/// How long a job that failed on a broken connection waits for the loss of
/// the executor behind it to be confirmed: a killed process drops its
/// connections a moment before its ports refuse.
const LOSS_SETTLES: std::time::Duration = std::time::Duration::from_millis(300);

/// True if a failed job lost an executor since `then`. A failure that reads
/// like a broken connection (a task's fetch cut off mid-stream is reported as
/// an execution error, not a fetch failure) waits up to [`LOSS_SETTLES`] for
/// the loss to show.
async fn executor_lost(cluster: &Cluster, then: &Membership, e: &DataFusionError) -> bool {
    if cluster.lost_or_dead_since(then).await {
        return true;
    }
    if !broken_connection(&e.to_string()) {
        return false;
    }
    let deadline = tokio::time::Instant::now() + LOSS_SETTLES;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if cluster.lost_or_dead_since(then).await {
            return true;
        }
    }
    false
}

/// Error texts of a connection to an executor that broke.
fn broken_connection(text: &str) -> bool {
    const SIGNS: &[&str] = &[
        "h2 protocol error",
        "error reading a body",
        "peer closed connection",
        "connection reset",
        "broken pipe",
        "transport error",
        "Connection refused",
        "FetchFailed",
        "GrpcConnectionError",
    ];
    SIGNS.iter().any(|s| text.contains(s))
}

fn no_executors(cluster: &Cluster, detail: Option<&str>) -> DataFusionError {
    if let Some(d) = detail {
        tracing::warn!("query failed for lack of executors: {d}");
    }
    DataFusionError::External(Box::new(QueryError::new(
        ErrorKind::NoCapacity,
        format!(
            "no executors available: none was alive within {} s; try again when the cluster has capacity",
            cluster.capacity_wait().as_secs()
        ),
    )))
}

fn lost_after_rows() -> DataFusionError {
    DataFusionError::External(Box::new(QueryError::new(
        ErrorKind::Unavailable,
        "query results were lost with an executor after rows were sent; the statement was ended, retry it",
    )))
}

/// Starts the query as a cluster job; returns its result stream and the
/// handle of the job currently serving it.
pub(crate) fn run(
    spec: JobSpec,
) -> (
    impl futures::Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static,
    CurrentJob,
) {
    let current = CurrentJob::default();
    let state = State {
        spec,
        current: current.clone(),
        inner: None,
        membership: None,
        results_checked: false,
        rows_sent: false,
        reruns: 0,
    };
    let stream = futures::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        loop {
            let mut inner = match st.inner.take() {
                Some(inner) => inner,
                None => {
                    if !st.spec.cluster.wait_for_capacity(&st.spec.token).await {
                        return Some((Err(no_executors(&st.spec.cluster, None)), None));
                    }
                    st.membership = Some(st.spec.cluster.membership().await);
                    st.results_checked = false;
                    let name = format!(
                        "sluice-{}-{}",
                        st.spec.session_id,
                        ballista_core::ids::new_instance_id()
                    );
                    let job = match st
                        .spec
                        .cluster
                        .submit(&name, &st.spec.plan, st.spec.config.clone())
                        .await
                    {
                        Ok(job) => job,
                        Err(e) => return Some((Err(e), None)),
                    };
                    st.current.set(JobHandle { id: job.job_id.clone() });
                    if let Some(q) = &st.spec.query {
                        q.set_job(&job.job_id);
                    }
                    let cluster = st.spec.cluster.clone();
                    let schema = Arc::clone(&st.spec.schema);
                    let results =
                        futures::stream::once(async move { cluster.results(job, schema).await }).try_flatten();
                    let stream: SendableRecordBatchStream =
                        Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&st.spec.schema), results));
                    stream
                }
            };
            let mut item = inner.next().await;
            if !st.results_checked && matches!(item, Some(Ok(_))) {
                // The first rows arrive once the job has finished: check
                // that the rest of its results can still be fetched.
                st.results_checked = true;
                let job = st.current.handle().map(|h| h.id);
                if let Some(job_id) = job
                    && !st.spec.cluster.job_results_reachable(&job_id).await
                {
                    item = Some(Err(DataFusionError::Execution(RESULTS_ON_LOST_EXECUTOR.to_owned())));
                }
            }
            match item {
                None => {
                    if let Some(job_id) = st.current.handle().map(|h| h.id) {
                        st.spec.cluster.record_job_work(&job_id).await;
                    }
                    return None;
                }
                Some(Ok(batch)) => {
                    if batch.num_rows() > 0 {
                        st.rows_sent = true;
                    }
                    st.inner = Some(inner);
                    return Some((Ok(batch), Some(st)));
                }
                Some(Err(e)) => match classify(e) {
                    Failure::Job(e) => {
                        // A job can fail on a broken shuffle fetch before the
                        // loss of the executor behind it is noticed: re-run it
                        // if one of its executors is gone or dead now.
                        let then = st.membership.clone().expect("set at submission");
                        if st.reruns < MAX_RERUNS && executor_lost(&st.spec.cluster, &then, &e).await {
                            st.reruns += 1;
                            st.spec.query.iter().for_each(|q| q.add_rerun());
                            tracing::warn!(
                                rerun = st.reruns,
                                "re-running a job that failed while an executor died: {e}"
                            );
                            drop(inner);
                            st.cancel_current().await;
                            continue;
                        }
                        return Some((Err(e), None));
                    }
                    Failure::NoExecutors(detail) => {
                        return Some((Err(no_executors(&st.spec.cluster, Some(&detail))), None));
                    }
                    Failure::ResultsLost(e) if st.rows_sent => {
                        tracing::warn!("results lost after rows were sent: {e}");
                        return Some((Err(lost_after_rows()), None));
                    }
                    Failure::ResultsLost(e) if st.reruns < MAX_RERUNS => {
                        st.reruns += 1;
                        st.spec.query.iter().for_each(|q| q.add_rerun());
                        tracing::warn!(rerun = st.reruns, "re-running the job before any row was sent: {e}");
                        drop(inner);
                        st.cancel_current().await;
                    }
                    Failure::ResultsLost(e) => {
                        tracing::warn!("results lost {} times; giving up: {e}", st.reruns + 1);
                        return Some((
                            Err(DataFusionError::External(Box::new(QueryError::new(
                                ErrorKind::Unavailable,
                                "query results were lost with executors repeatedly; retry the query",
                            )))),
                            None,
                        ));
                    }
                },
            }
        }
    });
    (stream, current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_connections_are_told_from_query_errors() {
        assert!(broken_connection(
            "Job a failed: ... h2 protocol error: error reading a body from connection ..."
        ));
        assert!(broken_connection("Job a failed: FetchFailed(\"exec-1\", 2, 3, ...)"));
        assert!(!broken_connection("Job a failed: Arrow error: Divide by zero error"));
    }

    #[test]
    fn job_failures_are_final_and_fetch_failures_rerun() {
        assert!(matches!(
            classify(DataFusionError::Execution("Job abc failed: divide by zero".into())),
            Failure::Job(_)
        ));
        assert!(matches!(
            classify(DataFusionError::Execution(
                "Job abc failed: all executors were lost and no executor re-registered within 5s".into()
            )),
            Failure::NoExecutors(_)
        ));
        assert!(matches!(
            classify(DataFusionError::Execution(
                "GrpcConnectionError(\"Error connecting to executor at 127.0.0.1:1\")".into()
            )),
            Failure::ResultsLost(_)
        ));
    }
}
