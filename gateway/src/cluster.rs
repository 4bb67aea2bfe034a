//! The compute side of the gateway: the Ballista scheduler embedded in this
//! process, and the in-process executors of the embedded default.
//!
//! The scheduler's gRPC service is served by us (not Ballista's router) behind
//! the cluster's mutual-TLS acceptor (`sluice_lake::membership`): executors
//! register and poll over it (`poll`: only the executor calls, with long
//! polls); the gateway submits jobs in process (`submit`). Ballista's REST
//! API and Flight proxy are not served at all. It listens on
//! `--scheduler-listen` for remote executors, or on an ephemeral loopback port
//! when the cluster is only in-process executors.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ballista_core::ConfigProducer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::utils::{GrpcServerConfig, create_grpc_server};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::create_scheduler;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use sluice_executor::node::{ExecutorNode, MAX_MESSAGE, NodeConfig};
use sluice_lake::membership::{self, ClusterCredentials};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod closes;
mod health;
mod jobs;
mod joins;
mod ordering;
mod poll;
mod submit;
mod watch;

pub use jobs::{JobMetrics, StageProgress};

/// How long a finished job's results stay on its executors (then Ballista
/// removes them): a result split into Flight endpoints is readable this
/// long after its query ended.
pub const RESULTS_KEPT: Duration = Duration::from_secs(300);

/// Errors starting or talking to the embedded cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot start the scheduler: {0}")]
    Scheduler(String),
    #[error("cannot start in-process executor {index}: {message}")]
    Executor { index: usize, message: String },
    #[error("cannot create executor work dir {path}: {source}")]
    WorkDir { path: PathBuf, source: std::io::Error },
}

/// How the cluster behaves when executors come and go.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Executors started inside this process.
    pub local_executors: usize,
    /// Task slots of each in-process executor.
    pub local_slots: usize,
    /// An executor silent this long is dead; its tasks and shuffle output are
    /// recomputed elsewhere.
    pub executor_timeout: Duration,
    /// How long a query waits for an executor when there is none.
    pub capacity_wait: Duration,
    /// Attempts of one task before its job fails.
    pub task_max_failures: usize,
    /// Attempts of one stage (re-runs after lost shuffle input) before its job fails.
    pub stage_max_failures: usize,
}

pub use self::health::ExecutorState;

/// An executor as operators see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecutorInfo {
    pub id: String,
    pub host: String,
    /// Flight (shuffle/result) port.
    pub port: u16,
    /// Port of its control services (cancellation, health).
    pub control_port: u16,
    /// Alive or lost by its heartbeat; draining only from
    /// [`Cluster::executors_now`].
    pub state: ExecutorState,
    pub task_slots: u32,
    /// Last heartbeat, Unix seconds.
    pub last_heartbeat_unix: Option<u64>,
}

impl ExecutorInfo {
    /// Seconds since the last heartbeat (`None`: never heard from).
    pub fn heartbeat_age_secs(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_heartbeat_unix.map(|t| now.saturating_sub(t))
    }
}

/// Handle on the embedded scheduler.
#[derive(Clone)]
pub struct Cluster {
    scheduler: Arc<SchedulerServer<LogicalPlanNode, PhysicalPlanNode>>,
    /// Where this process dials its own scheduler.
    scheduler_addr: SocketAddr,
    credentials: ClusterCredentials,
    capacity_wait: Duration,
    executor_timeout: Duration,
    /// Bumped whenever an executor leaves the cluster (lost or drained).
    losses: tokio::sync::watch::Receiver<u64>,
    /// Task slots of the registered executors, refreshed every 200 ms.
    slots: Arc<std::sync::atomic::AtomicUsize>,
    /// Where the scheduler keeps finished jobs.
    jobs: Arc<dyn ballista_scheduler::cluster::JobState>,
    /// Builds the sessions jobs are planned in (the scheduler's).
    session_builder: ballista_scheduler::scheduler_server::SessionBuilder,
    /// The work dir all in-process executors share: their shuffle and
    /// result files are read from disk by each other and by the gateway.
    local_work_dir: PathBuf,
    /// Connections to remote executors for result fetches.
    client_pool: Arc<dyn ballista_core::client_pool::BallistaClientPool>,
    job_metrics: Option<JobMetrics>,
    health: Arc<health::HealthProbe>,
    _local: Arc<Vec<ExecutorNode>>,
}

/// The executors of the cluster at one moment, and the loss counter then.
#[derive(Debug, Clone)]
pub struct Membership {
    pub losses: u64,
    /// Executor id → Flight address.
    pub executors: std::collections::HashMap<String, String>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("scheduler_addr", &self.scheduler_addr)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts the scheduler on `listener` and the in-process executors, which
    /// work under `data_dir/executors/N`.
    pub async fn start(
        runtime: Arc<RuntimeEnv>,
        logical_codec: Arc<dyn datafusion_proto::logical_plan::LogicalExtensionCodec>,
        listener: TcpListener,
        credentials: ClusterCredentials,
        options: &ClusterOptions,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> Result<Self, ClusterError> {
        let bound = listener
            .local_addr()
            .map_err(|e| ClusterError::Scheduler(e.to_string()))?;
        let scheduler_addr = if bound.ip().is_unspecified() {
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), bound.port())
        } else {
            bound
        };

        let rt = Arc::clone(&runtime);
        // The scheduler plans the jobs: its sessions broadcast only the joins
        // a cluster can broadcast (`joins`) and keep sorted inputs sorted
        // across stage boundaries (`ordering`).
        let session_builder: ballista_scheduler::scheduler_server::SessionBuilder = Arc::new(move |config| {
            let state = sluice_lake::session_state(config, Arc::clone(&rt));
            let rules = joins::with_rule(state.physical_optimizers().to_vec());
            Ok(datafusion::execution::SessionStateBuilder::new_from_existing(state)
                .with_physical_optimizer_rules(rules)
                .with_physical_optimizer_rule(Arc::new(ordering::SortAfterShuffle))
                .build())
        });
        let creds = credentials.clone();
        let config_producer: ConfigProducer = Arc::new(move || creds.apply(sluice_lake::session_config()));
        let executor_timeout = options.executor_timeout.as_secs().max(2);
        let mut config = SchedulerConfig::default()
            .with_hostname(scheduler_addr.ip().to_string())
            .with_port(scheduler_addr.port())
            .with_scheduler_policy(TaskSchedulingPolicy::PullStaged);
        config.executor_timeout_seconds = executor_timeout;
        config.expire_dead_executor_interval_seconds = (executor_timeout / 4).max(1);
        config.no_executors_grace_period_seconds = options.capacity_wait.as_secs().max(1);
        config.task_max_failures = options.task_max_failures;
        config.stage_max_failures = options.stage_max_failures;
        config.finished_job_data_clean_up_interval_seconds = RESULTS_KEPT.as_secs();
        config.enable_embedded_flight_proxy = false;
        config.use_tls = true;
        config.override_create_grpc_client_endpoint = Some(credentials.endpoint_override());
        config.override_session_builder = Some(Arc::clone(&session_builder) as _);
        config.override_logical_codec = Some(logical_codec);
        // Tasks may hold the boundary of a user's row policies.
        config.override_physical_codec = Some(Arc::new(sluice_lake::secure::SecureCodec::default()));
        config.override_config_producer = Some(Arc::clone(&config_producer));
        // Executors learn of a runnable job or stage at once instead of at
        // their next idle poll: in-process ones are woken, remote ones are
        // answered on the poll the gateway holds for them (`poll`).
        let wake: Vec<Arc<tokio::sync::Notify>> = (0..options.local_executors)
            .map(|_| Arc::new(tokio::sync::Notify::new()))
            .collect();
        let (work_tx, work) = tokio::sync::watch::channel(0u64);
        let nodes = wake.clone();
        config = config.with_on_work_available(Arc::new(move |_| {
            work_tx.send_modify(|n| *n = n.wrapping_add(1));
            for node in &nodes {
                node.notify_one();
            }
        }));
        if !wake.is_empty() {
            // Work also appears without the callback (a stage bound by
            // another executor's poll, retries, recovery). With a wake-up
            // wired, Ballista's loop falls back to polling every second; this
            // keeps the fallback at the 50 ms of an unwired loop.
            let nodes = wake.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = tick.tick() => nodes.iter().for_each(|n| n.notify_one()),
                    }
                }
            });
        }
        let cluster = BallistaCluster::new_memory(
            scheduler_addr.to_string(),
            Arc::clone(&session_builder),
            config_producer,
        );
        let jobs = cluster.job_state();
        let scheduler: SchedulerServer<LogicalPlanNode, PhysicalPlanNode> = create_scheduler(cluster, Arc::new(config))
            .await
            .map_err(|e| ClusterError::Scheduler(e.to_string()))?;

        let tls = credentials
            .server_config()
            .map_err(|e| ClusterError::Scheduler(e.to_string()))?;
        let scheduler = Arc::new(scheduler);
        let (loss_tx, losses) = tokio::sync::watch::channel(0u64);
        let service =
            SchedulerGrpcServer::new(poll::ExecutorService::new(Arc::clone(&scheduler), work, losses.clone()))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
        let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
        let incoming = futures::StreamExt::map(membership::incoming(listener, tls, "scheduler"), move |conn| {
            conn.map(|tls| closes::Reporting::new(tls, closed_tx.clone()))
        });
        let token = shutdown.clone();
        tokio::spawn(async move {
            let r = create_grpc_server(&GrpcServerConfig::default())
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, token.cancelled_owned())
                .await;
            if let Err(e) = r {
                tracing::error!("scheduler service stopped: {e}");
            }
        });
        tracing::info!(%bound, "scheduler listening (cluster members only)");

        // In-process executors share one work dir: a shuffle file one of
        // them wrote is then a local file to the others (Ballista reads a
        // partition from disk when its file is in the reader's work dir),
        // and to the gateway's result reader. Task ids, which name the
        // files, are unique within a job, so writers never collide.
        let executors_dir = data_dir.join("executors");
        // Shuffle files of a previous run are garbage: jobs do not survive a restart.
        let _ = std::fs::remove_dir_all(&executors_dir);
        let local_work_dir = executors_dir.join("local");
        std::fs::create_dir_all(&local_work_dir).map_err(|source| ClusterError::WorkDir {
            path: local_work_dir.clone(),
            source,
        })?;
        let mut local = Vec::with_capacity(options.local_executors);
        for (index, wake) in wake.iter().enumerate() {
            let work_dir = local_work_dir.clone();
            let err = |message: String| ClusterError::Executor { index, message };
            let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| err(e.to_string()))?;
            let node = ExecutorNode::start(
                NodeConfig {
                    name: format!("local-{index}"),
                    scheduler: scheduler_addr.to_string(),
                    listener,
                    advertise_host: "127.0.0.1".to_owned(),
                    work_dir,
                    task_slots: options.local_slots,
                    runtime: Arc::clone(&runtime),
                    credentials: credentials.clone(),
                    heartbeat_interval: Duration::from_secs((executor_timeout / 3).max(1)),
                    poll_now: Some(Arc::clone(wake)),
                },
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| err(e.to_string()))?;
            local.push(node);
        }
        let slots = Arc::new(std::sync::atomic::AtomicUsize::new(
            options.local_executors * options.local_slots,
        ));
        tokio::spawn(watch::watch_executors(
            Arc::clone(&scheduler),
            loss_tx,
            Arc::clone(&slots),
            closed,
            shutdown.clone(),
        ));
        Ok(Cluster {
            scheduler,
            losses,
            slots,
            scheduler_addr,
            health: Arc::new(health::HealthProbe::new(credentials.client_tls())),
            credentials,
            capacity_wait: options.capacity_wait,
            executor_timeout: Duration::from_secs(executor_timeout),
            jobs,
            session_builder,
            local_work_dir,
            client_pool: Arc::new(sluice_executor::client_pool::ClientPool::default()),
            job_metrics: None,
            _local: Arc::new(local),
        })
    }

    /// Task slots of the executors registered now (0 when there are none).
    pub fn task_slots(&self) -> usize {
        self.slots.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Current executors and loss count.
    pub async fn membership(&self) -> Membership {
        let losses = *self.losses.borrow();
        let executors = self
            .executors()
            .await
            .into_iter()
            .map(|e| (e.id, format!("{}:{}", e.host, e.port)))
            .collect();
        Membership { losses, executors }
    }

    /// True if an executor has left the cluster since `then`, or one of
    /// `then`'s ports refuses connections now.
    pub async fn lost_or_dead_since(&self, then: &Membership) -> bool {
        *self.losses.borrow() != then.losses || self.any_gone(&then.executors).await
    }

    /// True if one of `executors` (id → Flight address) is no longer
    /// registered, or its port refuses connections now (killed, not yet
    /// noticed by the scheduler).
    async fn any_gone(&self, executors: &std::collections::HashMap<String, String>) -> bool {
        let now = self.membership().await;
        if executors.keys().any(|id| !now.executors.contains_key(id)) {
            return true;
        }
        let probes = executors.values().map(|addr| watch::port_refuses(addr));
        futures::future::join_all(probes).await.into_iter().any(|dead| dead)
    }

    /// Credentials this process presents to cluster members.
    pub fn credentials(&self) -> &ClusterCredentials {
        &self.credentials
    }

    /// How long a query waits for an executor when there is none.
    pub fn capacity_wait(&self) -> Duration {
        self.capacity_wait
    }

    /// Waits up to `capacity_wait` for at least one live executor; false if
    /// none came.
    pub async fn wait_for_capacity(&self, token: &CancellationToken) -> bool {
        let deadline = tokio::time::Instant::now() + self.capacity_wait;
        loop {
            if self.alive_executors().await > 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline || token.is_cancelled() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Silence after which an executor counts as lost.
    pub fn executor_timeout(&self) -> Duration {
        self.executor_timeout
    }

    /// Number of executors registered and heard from within the executor timeout.
    pub async fn alive_executors(&self) -> usize {
        self.executors().await.iter().filter(|e| self.is_alive(e)).count()
    }

    /// Whether `executor` was heard from within the executor timeout.
    pub fn is_alive(&self, executor: &ExecutorInfo) -> bool {
        executor
            .heartbeat_age_secs()
            .is_some_and(|age| age < self.executor_timeout.as_secs())
    }

    /// Executors registered with the scheduler, alive or lost by their
    /// heartbeats.
    pub async fn executors(&self) -> Vec<ExecutorInfo> {
        let state = self.scheduler.state.executor_manager.get_executors_state().await;
        state
            .map(|v| {
                v.into_iter()
                    .map(|(meta, heartbeat, _)| {
                        let mut e = ExecutorInfo {
                            id: meta.id,
                            host: meta.host,
                            port: meta.port,
                            control_port: meta.grpc_port,
                            state: ExecutorState::Lost,
                            task_slots: meta.specification.vcores,
                            last_heartbeat_unix: heartbeat.map(|d| d.as_secs()),
                        };
                        if self.is_alive(&e) {
                            e.state = ExecutorState::Alive;
                        }
                        e
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// [`Self::executors`], with the alive ones asked whether they drain
    /// (one health check each, concurrently).
    pub async fn executors_now(&self) -> Vec<ExecutorInfo> {
        let mut list = self.executors().await;
        self.health.retain(&list);
        let draining = futures::future::join_all(
            list.iter()
                .map(|e| async { e.state == ExecutorState::Alive && self.health.draining(e).await }),
        )
        .await;
        for (e, d) in list.iter_mut().zip(draining) {
            if d {
                e.state = ExecutorState::Draining;
            }
        }
        list
    }
}
