//! The gateway's dealings with the scheduler's jobs: cancelling them,
//! checking that a finished job's results are on
//! live executors, and counting the work finished jobs did.

use super::Cluster;

/// Counters of the work finished cluster jobs did: each stage's partitions,
/// and how many times partitions ran. More runs than partitions means work
/// was done again, after an executor loss or a failed task.
#[derive(Debug, Clone)]
pub struct JobMetrics {
    pub partitions: prometheus::IntCounter,
    pub partition_runs: prometheus::IntCounter,
}

impl Cluster {
    /// Counts the work of finished jobs into `metrics` (see
    /// [`Cluster::record_job_work`]).
    pub fn with_job_metrics(mut self, metrics: JobMetrics) -> Self {
        self.job_metrics = Some(metrics);
        self
    }

    /// Adds a finished job's partitions and partition runs to the job
    /// metrics: every task attempt counts the partitions it was given, also
    /// when it was lost or killed.
    pub(crate) async fn record_job_work(&self, job_id: &str) {
        use ballista_scheduler::state::execution_stage::ExecutionStage;
        let Some(metrics) = &self.job_metrics else {
            return;
        };
        // The in-memory job state stores a finished job in the same step
        // that tells its status to the job's client, so it is there now.
        let Ok(Some(graph)) = self.jobs.get_execution_graph(&job_id.to_owned().into()).await else {
            return;
        };
        let (mut partitions, mut runs) = (0, 0);
        for (id, stage) in graph.stages() {
            if let ExecutionStage::Successful(stage) = stage {
                let ran = stage
                    .task_infos
                    .iter()
                    .map(|t| t.global_input_partition_ids.len())
                    .sum::<usize>();
                tracing::debug!(
                    job_id,
                    stage = id,
                    partitions = stage.partitions,
                    runs = ran,
                    "stage work"
                );
                partitions += stage.partitions;
                runs += ran;
            }
        }
        tracing::debug!(job_id, partitions, runs, "job work");
        metrics.partitions.inc_by(partitions as u64);
        metrics.partition_runs.inc_by(runs as u64);
    }

    /// True unless a finished job's results are on an executor that left
    /// the cluster or whose port refuses connections now (killed, not yet
    /// noticed by the scheduler). A job the scheduler no longer knows
    /// answers true: its fetch will tell.
    pub async fn job_results_reachable(&self, job_id: &str) -> bool {
        use ballista_core::serde::protobuf::job_status::Status;
        let status = self
            .scheduler
            .state
            .task_manager
            .get_job_status(&job_id.to_owned().into())
            .await;
        let Ok(Some(ballista_core::serde::protobuf::JobStatus {
            status: Some(Status::Successful(job)),
            ..
        })) = status
        else {
            return true;
        };
        let holders: std::collections::HashMap<String, String> = job
            .partition_location
            .iter()
            .filter_map(|l| l.executor_meta.as_ref())
            .map(|m| (m.id.clone(), format!("{}:{}", m.host, m.port)))
            .collect();
        !self.any_gone(&holders).await
    }

    /// Cancels a job: the scheduler fails it and asks the executors to
    /// abort its running tasks. Unknown or finished jobs are ignored.
    pub(crate) async fn cancel_job(&self, job: &crate::query::JobHandle) {
        tracing::debug!(job_id = %job.id, "cancelling job");
        if let Err(e) = self.scheduler.cancel_job(job.id.clone().into()).await {
            tracing::debug!(job_id = %job.id, "cancel of job failed: {e}");
        }
    }
}
