//! The scheduler's gRPC service as the gateway serves it to executors: the
//! executor calls, with long polls for idle executors.
//!
//! A pull-mode executor learns of new work only by polling: an idle one polls
//! every 50 ms, so a job or stage that becomes runnable waits up to that long
//! for each idle remote executor (in-process ones are woken directly). Here a
//! poll from an executor with every slot free and nothing to report, which
//! binds no task, is held until work appears (the scheduler's
//! `on_work_available`, or an executor leaving the cluster, whose tasks are
//! then to be redone) or [`HOLD`] passes, and then polled once more. An idle
//! executor thus polls about once a second and is handed work the moment
//! there is some. A held poll never outlives its executor's deregistration:
//! a drained executor must not be registered again and bound tasks.
//!
//! Only the calls executors make are served; job submission, job status,
//! sessions and the like are refused: the gateway submits its jobs in process
//! (`submit.rs`), so no cluster member needs them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
use ballista_core::serde::protobuf::{
    CancelJobParams, CancelJobResult, CleanJobDataParams, CleanJobDataResult, CreateUpdateSessionParams,
    CreateUpdateSessionResult, ExecuteQueryParams, ExecuteQueryResult, ExecutorStoppedParams, ExecutorStoppedResult,
    GetJobMetricsParams, GetJobMetricsResult, GetJobStatusParams, GetJobStatusResult, HeartBeatParams, HeartBeatResult,
    PollWorkParams, PollWorkResult, RegisterExecutorParams, RegisterExecutorResult, RemoveSessionParams,
    RemoveSessionResult, UpdateTaskStatusParams, UpdateTaskStatusResult,
};
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// How long an idle executor's empty poll is held at most. Executors poll
/// again at once after it, so this bounds nothing but the poll rate; it is
/// well under every heartbeat timeout.
pub(super) const HOLD: Duration = Duration::from_secs(1);

/// Stopped executors are remembered this long (their held polls end).
const REMEMBER_STOPPED: Duration = Duration::from_secs(60);

type Scheduler = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// The executor side of the scheduler's service (module docs).
pub(super) struct ExecutorService {
    scheduler: Arc<Scheduler>,
    /// Bumped when work appears.
    work: watch::Receiver<u64>,
    /// Bumped when an executor leaves the cluster.
    losses: watch::Receiver<u64>,
    /// Executors that deregistered, and when.
    stopped: Mutex<HashMap<String, Instant>>,
}

impl ExecutorService {
    pub(super) fn new(scheduler: Arc<Scheduler>, work: watch::Receiver<u64>, losses: watch::Receiver<u64>) -> Self {
        Self {
            scheduler,
            work,
            losses,
            stopped: Mutex::new(HashMap::new()),
        }
    }

    fn stopped(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until work appears, an executor leaves, or [`HOLD`] passes.
    async fn hold(mut work: watch::Receiver<u64>, mut losses: watch::Receiver<u64>) {
        tokio::select! {
            _ = work.changed() => {}
            _ = losses.changed() => {}
            () = tokio::time::sleep(HOLD) => {}
        }
    }
}

/// A poll that may be held: the executor has every slot free, reports no
/// status, and names its host (the second poll has no connection info).
fn holdable(params: &PollWorkParams) -> bool {
    let Some(meta) = &params.metadata else { return false };
    use ballista_core::serde::protobuf::executor_resource::Resource;
    let slots: u32 = meta
        .specification
        .iter()
        .flat_map(|s| &s.resources)
        .map(|r| match r.resource {
            Some(Resource::Vcores(n)) => n,
            None => 0,
        })
        .sum();
    params.task_status.is_empty() && meta.host.is_some() && slots > 0 && params.num_free_vcores >= slots
}

fn not_served(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not served: the gateway submits its jobs in process"))
}

#[tonic::async_trait]
impl SchedulerGrpc for ExecutorService {
    async fn poll_work(&self, request: Request<PollWorkParams>) -> Result<Response<PollWorkResult>, Status> {
        let again = holdable(request.get_ref()).then(|| request.get_ref().clone());
        // Marked seen before the first poll: work appearing from here on
        // ends the hold.
        let mut work = self.work.clone();
        work.borrow_and_update();
        let mut losses = self.losses.clone();
        losses.borrow_and_update();
        let first = self.scheduler.poll_work(request).await?;
        let Some(params) = again else { return Ok(first) };
        if !first.get_ref().tasks.is_empty() {
            return Ok(first);
        }
        Self::hold(work, losses).await;
        let id = params.metadata.as_ref().map(|m| m.id.clone()).unwrap_or_default();
        if self.stopped().contains_key(&id) {
            return Ok(first);
        }
        self.scheduler.poll_work(Request::new(params)).await
    }

    async fn register_executor(
        &self,
        request: Request<RegisterExecutorParams>,
    ) -> Result<Response<RegisterExecutorResult>, Status> {
        self.scheduler.register_executor(request).await
    }

    async fn heart_beat_from_executor(
        &self,
        request: Request<HeartBeatParams>,
    ) -> Result<Response<HeartBeatResult>, Status> {
        self.scheduler.heart_beat_from_executor(request).await
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusParams>,
    ) -> Result<Response<UpdateTaskStatusResult>, Status> {
        self.scheduler.update_task_status(request).await
    }

    async fn executor_stopped(
        &self,
        request: Request<ExecutorStoppedParams>,
    ) -> Result<Response<ExecutorStoppedResult>, Status> {
        {
            let now = Instant::now();
            let mut stopped = self.stopped();
            stopped.retain(|_, at| now.duration_since(*at) < REMEMBER_STOPPED);
            stopped.insert(request.get_ref().executor_id.clone(), now);
        }
        self.scheduler.executor_stopped(request).await
    }

    async fn create_update_session(
        &self,
        _: Request<CreateUpdateSessionParams>,
    ) -> Result<Response<CreateUpdateSessionResult>, Status> {
        Err(not_served("create_update_session"))
    }

    async fn remove_session(&self, _: Request<RemoveSessionParams>) -> Result<Response<RemoveSessionResult>, Status> {
        Err(not_served("remove_session"))
    }

    type ExecuteQueryPushStream =
        futures::stream::Empty<Result<ballista_core::serde::protobuf::GetJobStatusResult, Status>>;

    async fn execute_query_push(
        &self,
        _: Request<ExecuteQueryParams>,
    ) -> Result<Response<Self::ExecuteQueryPushStream>, Status> {
        Err(not_served("execute_query_push"))
    }

    async fn execute_query(&self, _: Request<ExecuteQueryParams>) -> Result<Response<ExecuteQueryResult>, Status> {
        Err(not_served("execute_query"))
    }

    async fn get_job_status(&self, _: Request<GetJobStatusParams>) -> Result<Response<GetJobStatusResult>, Status> {
        Err(not_served("get_job_status"))
    }

    async fn get_job_metrics(&self, _: Request<GetJobMetricsParams>) -> Result<Response<GetJobMetricsResult>, Status> {
        Err(not_served("get_job_metrics"))
    }

    async fn cancel_job(&self, _: Request<CancelJobParams>) -> Result<Response<CancelJobResult>, Status> {
        Err(not_served("cancel_job"))
    }

    async fn clean_job_data(&self, _: Request<CleanJobDataParams>) -> Result<Response<CleanJobDataResult>, Status> {
        Err(not_served("clean_job_data"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballista_core::serde::protobuf::executor_resource::Resource;
    use ballista_core::serde::protobuf::{
        ExecutorRegistration, ExecutorResource, ExecutorSpecification, FailedTask, TaskStatus, task_status,
    };

    fn poll(slots: u32, free: u32, statuses: usize, host: Option<&str>) -> PollWorkParams {
        PollWorkParams {
            metadata: Some(ExecutorRegistration {
                id: "e1".into(),
                host: host.map(str::to_owned),
                specification: Some(ExecutorSpecification {
                    resources: vec![ExecutorResource {
                        resource: Some(Resource::Vcores(slots)),
                    }],
                }),
                ..Default::default()
            }),
            num_free_vcores: free,
            task_status: (0..statuses)
                .map(|_| TaskStatus {
                    status: Some(task_status::Status::Failed(FailedTask::default())),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn only_idle_executors_with_nothing_to_report_are_held() {
        assert!(holdable(&poll(2, 2, 0, Some("10.0.0.1"))));
        // A busy slot: its task's status must not wait behind a held poll.
        assert!(!holdable(&poll(2, 1, 0, Some("10.0.0.1"))));
        // Statuses to report, a heartbeat (no free slot), a draining node.
        assert!(!holdable(&poll(2, 2, 1, Some("10.0.0.1"))));
        assert!(!holdable(&poll(2, 0, 0, Some("10.0.0.1"))));
        // The second poll carries no connection info to find the host by.
        assert!(!holdable(&poll(2, 2, 0, None)));
        assert!(!holdable(&poll(0, 0, 0, Some("10.0.0.1"))));
    }
}
