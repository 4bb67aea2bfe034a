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

use ballista_core::serde::protobuf::PartitionLocation as ProtoLocation;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use futures::StreamExt;
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
    /// The current job's results are being read by their only reader: they
    /// leave the executors' disks when this state is dropped (read to the
    /// end, or abandoned by a cancel or an error).
    reading: bool,
    rows_sent: bool,
    reruns: u32,
}

impl Drop for State {
    fn drop(&mut self) {
        if !self.reading || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if let Some(job) = self.current.handle() {
            self.spec.cluster.release_results(&job.id);
        }
    }
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

/// The error of a query whose results were lost once more than
/// [`MAX_RERUNS`] re-runs allow.
fn gave_up(reruns: u32, e: &DataFusionError) -> DataFusionError {
    tracing::warn!("results lost {} times; giving up: {e}", reruns + 1);
    DataFusionError::External(Box::new(QueryError::new(
        ErrorKind::Unavailable,
        "query results were lost with executors repeatedly; retry the query",
    )))
}

/// A job that ended well: where its results wait, and how to read them.
struct Done {
    locations: Vec<ProtoLocation>,
    task_ctx: Arc<TaskContext>,
}

impl State {
    fn new(spec: JobSpec) -> Self {
        State {
            spec,
            current: CurrentJob::default(),
            inner: None,
            reading: false,
            rows_sent: false,
            reruns: 0,
        }
    }

    /// Counts a re-run and cancels the job being replaced.
    async fn rerun(&mut self, why: &str, e: &DataFusionError) {
        self.reruns += 1;
        self.spec.query.iter().for_each(|q| q.add_rerun());
        tracing::warn!(rerun = self.reruns, "re-running the job {why}: {e}");
        self.cancel_current().await;
    }

    /// Runs the query's job to its end, re-running it while executors it
    /// needs are lost (at most [`MAX_RERUNS`] times), and checks that every
    /// executor holding its results is still alive.
    async fn finish(&mut self) -> Result<Done, DataFusionError> {
        loop {
            let cluster = self.spec.cluster.clone();
            if !cluster.wait_for_capacity(&self.spec.token).await {
                return Err(no_executors(&cluster, None));
            }
            let then = cluster.membership().await;
            let name = format!(
                "sluice-{}-{}",
                self.spec.session_id,
                ballista_core::ids::new_instance_id()
            );
            let mut job = cluster.submit(&name, &self.spec.plan, self.spec.config.clone()).await?;
            self.current.set(JobHandle { id: job.job_id.clone() });
            if let Some(q) = &self.spec.query {
                q.set_job(&job.job_id);
            }
            let e = match cluster.finished(&mut job).await {
                Ok(locations) if cluster.job_results_reachable(&job.job_id).await => {
                    return Ok(Done {
                        locations,
                        task_ctx: job.task_ctx,
                    });
                }
                Ok(_) => DataFusionError::Execution(RESULTS_ON_LOST_EXECUTOR.to_owned()),
                Err(e) => e,
            };
            match classify(e) {
                // A job can fail on a broken shuffle fetch before the loss of
                // the executor behind it is noticed: re-run it if one of its
                // executors is gone or dead now.
                Failure::Job(e) => {
                    if self.reruns < MAX_RERUNS && executor_lost(&cluster, &then, &e).await {
                        self.rerun("that failed while an executor died", &e).await;
                        continue;
                    }
                    return Err(e);
                }
                Failure::NoExecutors(detail) => return Err(no_executors(&cluster, Some(&detail))),
                Failure::ResultsLost(e) if self.reruns < MAX_RERUNS => {
                    self.rerun("whose results were lost", &e).await;
                }
                Failure::ResultsLost(e) => return Err(gave_up(self.reruns, &e)),
            }
        }
    }
}

/// Starts the query as a cluster job; returns its result stream and the
/// handle of the job currently serving it.
pub(crate) fn run(
    spec: JobSpec,
) -> (
    impl futures::Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static,
    CurrentJob,
) {
    let state = State::new(spec);
    let current = state.current.clone();
    let stream = futures::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        loop {
            let item = match st.inner.as_mut() {
                Some(inner) => inner.next().await,
                None => match st.finish().await {
                    Err(e) => return Some((Err(e), None)),
                    Ok(done) => {
                        let schema = Arc::clone(&st.spec.schema);
                        match st.spec.cluster.read(done.locations, &done.task_ctx, schema) {
                            Ok(inner) => {
                                st.inner = Some(inner);
                                st.reading = true;
                                continue;
                            }
                            Err(e) => Some(Err(e)),
                        }
                    }
                },
            };
            match item {
                None => {
                    if let Some(job_id) = st.current.handle().map(|h| h.id) {
                        st.spec.cluster.record_job_work(&job_id).await;
                    }
                    // Dropping the state releases the results.
                    return None;
                }
                Some(Ok(batch)) => {
                    if batch.num_rows() > 0 {
                        st.rows_sent = true;
                    }
                    return Some((Ok(batch), Some(st)));
                }
                // Reading a finished job's results failed.
                Some(Err(e)) => {
                    st.inner = None;
                    st.reading = false;
                    match classify(e) {
                        Failure::Job(e) => return Some((Err(e), None)),
                        Failure::NoExecutors(detail) => {
                            return Some((Err(no_executors(&st.spec.cluster, Some(&detail))), None));
                        }
                        Failure::ResultsLost(e) if st.rows_sent => {
                            tracing::warn!("results lost after rows were sent: {e}");
                            return Some((Err(lost_after_rows()), None));
                        }
                        Failure::ResultsLost(e) if st.reruns < MAX_RERUNS => {
                            st.rerun("before any row was sent", &e).await;
                        }
                        Failure::ResultsLost(e) => return Some((Err(gave_up(st.reruns, &e)), None)),
                    }
                }
            }
        }
    });
    (stream, current)
}

/// A query's results split for separate readers (Flight endpoints).
#[derive(Debug)]
pub(crate) struct Split {
    /// Each part's result partitions, heaviest first.
    pub parts: Vec<Vec<ProtoLocation>>,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
}

/// Runs the query's job to its end and splits its result partitions into
/// at most `n` parts of about equal bytes (partitions without rows left
/// out; at least one part). `None`: the statement was cancelled (its job
/// too). `current` names the job while it runs (the caller's guard cancels
/// it if this future is dropped).
pub(crate) async fn split(spec: JobSpec, current: CurrentJob, n: usize) -> Result<Option<Split>, DataFusionError> {
    let token = spec.token.clone();
    let mut st = State::new(spec);
    st.current = current;
    let done = tokio::select! {
        biased;
        () = token.cancelled() => None,
        done = st.finish() => Some(done),
    };
    let done = match done {
        Some(Ok(done)) => done,
        failed => {
            st.cancel_current().await;
            return failed.transpose().map(|_| None);
        }
    };
    if let Some(job_id) = st.current.handle().map(|h| h.id) {
        st.spec.cluster.record_job_work(&job_id).await;
    }
    Ok(Some(split_locations(done.locations, n)))
}

fn split_locations(locations: Vec<ProtoLocation>, n: usize) -> Split {
    let stats = |l: &ProtoLocation| l.partition_stats.clone().unwrap_or_default();
    let known = locations
        .iter()
        .all(|l| stats(l).num_rows >= 0 && stats(l).num_bytes >= 0);
    let rows = known.then(|| locations.iter().map(|l| stats(l).num_rows.unsigned_abs()).sum());
    let bytes = known.then(|| locations.iter().map(|l| stats(l).num_bytes.unsigned_abs()).sum());
    let mut rest: Vec<ProtoLocation> = locations.iter().filter(|l| stats(l).num_rows != 0).cloned().collect();
    if rest.is_empty() {
        rest = locations.into_iter().take(1).collect();
    }
    rest.sort_by_key(|l| std::cmp::Reverse(stats(l).num_bytes));
    let mut parts: Vec<(i64, Vec<ProtoLocation>)> = vec![(0, Vec::new()); n.clamp(1, rest.len().max(1))];
    for l in rest {
        let lightest = parts.iter_mut().min_by_key(|(b, _)| *b).expect("at least one part");
        lightest.0 += stats(&l).num_bytes.max(0);
        lightest.1.push(l);
    }
    Split {
        parts: parts.into_iter().map(|(_, p)| p).collect(),
        rows,
        bytes,
    }
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

    fn location(partition: u32, rows: i64, bytes: i64) -> ProtoLocation {
        ProtoLocation {
            partition_id: Some(ballista_core::serde::protobuf::PartitionId {
                job_id: "j".into(),
                stage_id: 1,
                partition_id: partition,
            }),
            partition_stats: Some(ballista_core::serde::protobuf::PartitionStats {
                num_rows: rows,
                num_batches: 1,
                num_bytes: bytes,
                column_stats: vec![],
            }),
            ..Default::default()
        }
    }

    fn ids(part: &[ProtoLocation]) -> Vec<u32> {
        part.iter()
            .map(|l| l.partition_id.as_ref().unwrap().partition_id)
            .collect()
    }

    #[test]
    fn parts_balance_bytes_and_leave_out_empty_partitions() {
        let split = split_locations(
            vec![
                location(0, 10, 100),
                location(1, 0, 0),
                location(2, 40, 400),
                location(3, 20, 200),
                location(4, 15, 150),
            ],
            2,
        );
        assert_eq!(split.rows, Some(85));
        assert_eq!(split.bytes, Some(850));
        let parts: Vec<Vec<u32>> = split.parts.iter().map(|p| ids(p)).collect();
        assert_eq!(parts, vec![vec![2], vec![3, 4, 0]]);
        // Never more parts than partitions with rows; at least one part.
        assert_eq!(split_locations(vec![location(0, 5, 50)], 8).parts.len(), 1);
        let empty = split_locations(vec![location(0, 0, 0), location(1, 0, 0)], 4);
        assert_eq!(empty.parts.iter().map(|p| ids(p)).collect::<Vec<_>>(), vec![vec![0]]);
        assert_eq!(empty.rows, Some(0));
        // Unknown statistics: no totals.
        assert_eq!(split_locations(vec![location(0, -1, -1)], 2).rows, None);
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
