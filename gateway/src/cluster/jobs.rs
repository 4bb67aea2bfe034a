//! The gateway's dealings with the scheduler's jobs: cancelling them,
//! checking that a finished job's results are on
//! live executors, and counting the work finished jobs did.

use super::Cluster;

/// When [`Cluster::release_results`] queues a job's clean-up a second time.
const RELEASE_AGAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Counters of the work finished cluster jobs did: each stage's partitions,
/// and how many times partitions ran. More runs than partitions means work
/// was done again, after an executor loss or a failed task.
#[derive(Debug, Clone)]
pub struct JobMetrics {
    pub partitions: prometheus::IntCounter,
    pub partition_runs: prometheus::IntCounter,
}

/// One stage of a job as the web UI shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageProgress {
    pub stage_id: usize,
    /// `Unresolved`, `Resolved`, `Running`, `Successful` or `Failed`.
    pub state: String,
    /// Attempts of the stage before this one (re-runs after lost input).
    pub attempt: usize,
    /// Partitions of the stage (0 while unresolved).
    pub partitions: usize,
    /// Partitions finished.
    pub done: usize,
    /// Tasks running now.
    pub running: usize,
    /// The stages that read this one's output (none: the final stage).
    pub consumers: Vec<usize>,
    /// Rows the stage wrote so far (its finished tasks' metrics).
    pub rows: Option<usize>,
    /// Bytes of the stage's output its consumer has located so far (the
    /// shuffle writers' partition statistics).
    pub bytes: Option<u64>,
}

/// The stages of `graph` with their progress, in stage order.
fn stages_of(graph: &dyn ballista_scheduler::state::execution_graph::ExecutionGraph) -> Vec<StageProgress> {
    use ballista_scheduler::state::execution_stage::ExecutionStage;
    let rows = |m: &[datafusion::physical_plan::metrics::MetricsSet]| m.first().and_then(|m| m.output_rows());
    let sum = |locations: &mut dyn Iterator<Item = &ballista_core::serde::scheduler::PartitionLocation>| {
        locations
            .map(|l| l.partition_stats.num_bytes())
            .try_fold(0u64, |acc, b| b.map(|b| acc + b))
    };
    // A stage's output, as its consumers record it (each consumer holds
    // the locations of its inputs); the final stage's as the job's.
    let mut output: std::collections::HashMap<usize, Option<u64>> = std::collections::HashMap::new();
    for stage in graph.stages().values() {
        let inputs = match stage {
            ExecutionStage::UnResolved(s) => Some(&s.inputs),
            ExecutionStage::Resolved(s) => Some(&s.inputs),
            ExecutionStage::Running(s) => Some(&s.inputs),
            ExecutionStage::Successful(s) => Some(&s.inputs),
            ExecutionStage::Failed(_) => None,
        };
        for (input, out) in inputs.into_iter().flatten() {
            output.insert(*input, sum(&mut out.partition_locations.values().flatten()));
        }
    }
    let final_bytes = sum(&mut graph.output_locations().iter());
    let mut stages: Vec<StageProgress> = graph
        .stages()
        .iter()
        .map(|(id, stage)| {
            let (attempt, partitions, done, running, out) = match stage {
                ExecutionStage::UnResolved(s) => (s.stage_attempt_num, 0, 0, 0, None),
                ExecutionStage::Resolved(s) => (s.stage_attempt_num, s.partitions, 0, 0, None),
                ExecutionStage::Running(s) => (
                    s.stage_attempt_num,
                    s.partitions,
                    s.successful_tasks().min(s.partitions),
                    s.running_tasks().len(),
                    s.stage_metrics.as_deref().and_then(rows),
                ),
                ExecutionStage::Successful(s) => (
                    s.stage_attempt_num,
                    s.partitions,
                    s.partitions,
                    0,
                    rows(&s.stage_metrics),
                ),
                ExecutionStage::Failed(s) => (s.stage_attempt_num, s.partitions, s.successful_tasks(), 0, None),
            };
            StageProgress {
                stage_id: *id,
                state: stage.variant_name().to_owned(),
                attempt,
                partitions,
                done,
                running,
                consumers: stage.output_links().to_vec(),
                rows: out,
                bytes: if stage.output_links().is_empty() {
                    final_bytes.filter(|b| *b > 0)
                } else {
                    output.get(id).copied().flatten().filter(|b| *b > 0)
                },
            }
        })
        .collect();
    stages.sort_by_key(|s| s.stage_id);
    stages
}

impl Cluster {
    /// The stages of job `job_id` with their progress, in stage order;
    /// `None` when the scheduler does not know the job (any more).
    pub async fn job_stages(&self, job_id: &str) -> Option<Vec<StageProgress>> {
        let id = job_id.to_owned().into();
        // A running job's graph lives in the task manager's cache; a
        // finished one in the job state.
        let running = self.scheduler.state.task_manager.get_running_job_cache();
        match running.get(&id) {
            Some(job) => Some(stages_of(job.execution_graph.read().await.as_ref())),
            None => Some(stages_of(self.jobs.get_execution_graph(&id).await.ok()??.as_ref())),
        }
    }

    /// Counts the work of finished jobs into `metrics` (see
    /// [`Cluster::record_job_work`]).
    pub fn with_job_metrics(mut self, metrics: JobMetrics) -> Self {
        self.job_metrics = Some(metrics);
        self
    }

    /// Removes a finished job's result files from every executor now: its
    /// one reader has read them all. (Ballista keeps them [`RESULTS_KEPT`]
    /// for readers that come later, as Flight endpoints do; a large result
    /// is as large on the executors' disks.)
    ///
    /// [`RESULTS_KEPT`]: super::RESULTS_KEPT
    pub(crate) fn release_results(&self, job_id: &str) {
        let manager = self.scheduler.state.executor_manager.clone();
        manager.clean_up_job_data(job_id.to_owned().into());
        // Ballista queues a job's intermediate-stage clean-up from a task
        // spawned at its success, and a pull-mode executor keeps one pending
        // clean-up per job: a later one replaces an earlier one
        // (`ExecutorManager::clean_up_job_data_inner`). Should that task run
        // after the call above, it would leave the final stage's files; the
        // whole job is queued once more after it has surely run (removing a
        // job dir that is gone is a no-op).
        let job_id = job_id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(RELEASE_AGAIN).await;
            manager.clean_up_job_data(job_id.into());
        });
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
