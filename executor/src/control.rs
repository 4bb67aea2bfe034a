//! The scheduler's control calls to a pull-mode executor, served next to the
//! Flight service on the node's mutual-TLS listener.
//!
//! Ballista's scheduler cancels running tasks (a cancelled or failed job, a
//! stage rolled back after an executor loss) and removes job data by dialing
//! the executor's gRPC port. Ballista's own `ExecutorServer` is push-mode
//! only and plain TCP, so a pull-mode node registered no such port and
//! cancellation never reached it: a cancelled query kept the executors'
//! slots busy until its tasks ran to the end. This service answers:
//! - `cancel_tasks`: aborts the tasks (their slots are free once they
//!   unwind);
//! - `remove_job_data`: removes a job's shuffle files (all, or the listed
//!   stages);
//! - `stop_executor`: acknowledged and ignored — the scheduler sends it to an
//!   executor it has expired; a live pull-mode node re-registers on its next
//!   poll, and stopping is the node's own decision (drain);
//! - `launch_task` / `launch_multi_task`: refused, tasks are pulled.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use ballista_core::serde::protobuf::executor_grpc_server::ExecutorGrpc;
use ballista_core::serde::protobuf::{
    CancelTasksParams, CancelTasksResult, LaunchMultiTaskParams, LaunchMultiTaskResult, LaunchTaskParams,
    LaunchTaskResult, RemoveJobDataParams, RemoveJobDataResult, StopExecutorParams, StopExecutorResult,
};
use ballista_executor::executor::Executor;
use tonic::{Request, Response, Status};

/// The control service of one node.
pub(crate) struct Control {
    executor: Arc<Executor>,
    work_dir: PathBuf,
}

impl Control {
    pub(crate) fn new(executor: Arc<Executor>, work_dir: PathBuf) -> Self {
        Control { executor, work_dir }
    }
}

/// A path component from the scheduler: one plain name, nothing that could
/// leave the work dir.
fn component(name: &str) -> Result<&Path, Status> {
    let path = Path::new(name);
    match path.components().collect::<Vec<_>>().as_slice() {
        [Component::Normal(_)] => Ok(path),
        _ => Err(Status::invalid_argument(format!("not a job id: {name:?}"))),
    }
}

#[tonic::async_trait]
impl ExecutorGrpc for Control {
    async fn launch_task(&self, _: Request<LaunchTaskParams>) -> Result<Response<LaunchTaskResult>, Status> {
        Err(Status::unimplemented("this executor pulls its tasks"))
    }

    async fn launch_multi_task(
        &self,
        _: Request<LaunchMultiTaskParams>,
    ) -> Result<Response<LaunchMultiTaskResult>, Status> {
        Err(Status::unimplemented("this executor pulls its tasks"))
    }

    async fn stop_executor(
        &self,
        request: Request<StopExecutorParams>,
    ) -> Result<Response<StopExecutorResult>, Status> {
        let params = request.into_inner();
        tracing::info!(reason = %params.reason, "the scheduler asked this executor to stop; it keeps polling");
        Ok(Response::new(StopExecutorResult {}))
    }

    async fn cancel_tasks(&self, request: Request<CancelTasksParams>) -> Result<Response<CancelTasksResult>, Status> {
        let tasks = request.into_inner().task_infos;
        let mut cancelled = true;
        for task in &tasks {
            let found = self
                .executor
                .cancel_task(
                    task.job_id.clone().into(),
                    task.stage_id as usize,
                    task.task_id as usize,
                )
                .await
                .unwrap_or(false);
            // A task that already finished has nothing to cancel.
            cancelled &= found;
        }
        tracing::info!(
            tasks = tasks.len(),
            all_found = cancelled,
            "cancelled tasks on the scheduler's request"
        );
        Ok(Response::new(CancelTasksResult { cancelled }))
    }

    async fn remove_job_data(
        &self,
        request: Request<RemoveJobDataParams>,
    ) -> Result<Response<RemoveJobDataResult>, Status> {
        let params = request.into_inner();
        let job = self.work_dir.join(component(&params.job_id)?);
        let targets: Vec<PathBuf> = if params.remove_stage_ids.is_empty() {
            vec![job]
        } else {
            params
                .remove_stage_ids
                .iter()
                .map(|s| job.join(s.to_string()))
                .collect()
        };
        for path in targets {
            match tokio::fs::remove_dir_all(&path).await {
                Ok(()) => tracing::debug!(path = %path.display(), "removed job data"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Status::internal(format!("cannot remove {}: {e}", path.display()))),
            }
        }
        Ok(Response::new(RemoveJobDataResult {}))
    }
}

#[cfg(test)]
mod tests {
    use super::component;

    #[test]
    fn job_ids_cannot_leave_the_work_dir() {
        assert!(component("aB3xYz9").is_ok());
        for bad in ["", "..", "../x", "a/b", "/etc", "."] {
            assert!(component(bad).is_err(), "{bad:?}");
        }
    }
}
