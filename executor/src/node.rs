//! One executor node: a Ballista executor that polls the scheduler for tasks,
//! serves its shuffle and result partitions over Flight to cluster members
//! only (and, on the same listener, the scheduler's task cancellations:
//! `control`), heartbeats at a configurable interval, and drains on request.
//!
//! Drain (spot reclamation notice): the node turns its gRPC health status to
//! NOT_SERVING (how the gateway tells draining from alive), takes every free task slot so
//! the scheduler gives it no more tasks (it keeps polling, reporting zero free
//! slots, which also reports the results of tasks that finish), waits for the
//! running tasks, then deregisters. The scheduler treats a deregistered
//! executor as lost: shuffle output that lived on it is recomputed elsewhere.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::BALLISTA_PROTOCOL_VERSION;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::BallistaCodec;
use ballista_core::serde::protobuf::executor_grpc_server::ExecutorGrpcServer;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{ExecutorRegistration, ExecutorStoppedParams, PollWorkParams};
use ballista_core::serde::scheduler::{ExecutorOperatingSystemSpecification, ExecutorSpecification};
use ballista_core::utils::{GrpcServerConfig, create_grpc_server};
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::executor::Executor;
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::metrics::LoggingMetricsCollector;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use sluice_lake::membership::{self, ClusterCredentials};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Largest gRPC message on cluster channels (plans can be large).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Longest a finished task waits before Ballista's poll loop reports it when
/// no slot is free (its fixed heartbeat poll interval, plus a margin).
const STATUS_REPORT_DELAY: Duration = Duration::from_millis(5500);

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("bad scheduler address {0}: {1}")]
    SchedulerAddress(String, String),
    #[error("cannot read the Flight listener address: {0}")]
    Listener(std::io::Error),
    #[error("{0}")]
    Membership(#[from] membership::MembershipError),
    #[error("work dir {0} is not valid UTF-8")]
    WorkDir(PathBuf),
    #[error("cannot build the task session: {0}")]
    Session(String),
    #[error("the scheduler at {address} did not accept this executor within {waited:?}: {last_error}")]
    Register {
        address: String,
        waited: Duration,
        last_error: String,
    },
}

/// What a node needs to start.
#[derive(Debug)]
pub struct NodeConfig {
    /// Prefix of the executor id (a unique suffix is added).
    pub name: String,
    /// Scheduler `HOST:PORT`.
    pub scheduler: String,
    /// Bound listener for the Flight (shuffle/result) service.
    pub listener: TcpListener,
    /// Host other members reach this executor's Flight service at.
    pub advertise_host: String,
    pub work_dir: PathBuf,
    pub task_slots: usize,
    pub runtime: Arc<RuntimeEnv>,
    pub credentials: ClusterCredentials,
    pub heartbeat_interval: Duration,
    /// Wakes the idle poll loop when the scheduler has new work; only an
    /// executor in the scheduler's process can be woken (the gateway wires
    /// it to the scheduler's `on_work_available`). Without it the loop polls
    /// every 50 ms when idle.
    pub poll_now: Option<Arc<tokio::sync::Notify>>,
}

/// Live counters of a node, for `/metrics`.
#[derive(Debug, Default)]
pub struct NodeStats {
    pub heartbeats_ok: AtomicU64,
    pub heartbeats_failed: AtomicU64,
    pub last_heartbeat_unix: AtomicU64,
    pub draining: AtomicBool,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every running task finished and was reported.
    Drained,
    /// The timeout passed with this many tasks still running; the scheduler
    /// re-runs them elsewhere.
    TimedOut { abandoned: usize },
}

/// A running executor node.
pub struct ExecutorNode {
    id: String,
    flight_port: u16,
    task_slots: usize,
    slots: Arc<Semaphore>,
    executor: Arc<Executor>,
    scheduler: SchedulerGrpcClient<Channel>,
    scheduler_addr: String,
    stop: CancellationToken,
    stats: Arc<NodeStats>,
    /// The gRPC health service's status: NOT_SERVING once draining, so the
    /// gateway can show it (pull-mode polls overwrite heartbeat statuses).
    health: tonic_health::server::HealthReporter,
}

impl std::fmt::Debug for ExecutorNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorNode")
            .field("id", &self.id)
            .field("flight_port", &self.flight_port)
            .finish_non_exhaustive()
    }
}

impl ExecutorNode {
    /// Starts the Flight service and registers with the scheduler, waiting up
    /// to `register_timeout` for it to accept this executor.
    pub async fn start(config: NodeConfig, register_timeout: Duration) -> Result<Self, NodeError> {
        let flight_port = config.listener.local_addr().map_err(NodeError::Listener)?.port();
        let id = format!("{}-{}", config.name, ballista_core::ids::new_instance_id());
        let registration = ExecutorRegistration {
            id: id.clone(),
            host: Some(config.advertise_host.clone()),
            port: u32::from(flight_port),
            // The scheduler's control calls (cancel tasks, remove job data)
            // share the Flight listener: see `control`.
            grpc_port: u32::from(flight_port),
            specification: Some(
                ExecutorSpecification::default()
                    .with_vcores(config.task_slots as u32)
                    .into(),
            ),
            os_info: Some(ExecutorOperatingSystemSpecification::default().into()),
            ballista_protocol_version: BALLISTA_PROTOCOL_VERSION,
        };
        let work_dir = config
            .work_dir
            .to_str()
            .ok_or_else(|| NodeError::WorkDir(config.work_dir.clone()))?
            .to_owned();

        let credentials = config.credentials.clone();
        let config_producer: ConfigProducer = Arc::new(move || credentials.apply(sluice_lake::session_config()));
        let runtime = Arc::clone(&config.runtime);
        let runtime_producer: RuntimeProducer = Arc::new(move |_| Ok(Arc::clone(&runtime)));
        let functions = BallistaFunctionRegistry::from(&sluice_lake::session_state(
            sluice_lake::session_config(),
            Arc::clone(&config.runtime),
        ));
        let executor = Arc::new(Executor::new(
            registration.clone(),
            &work_dir,
            runtime_producer,
            config_producer,
            Arc::new(functions),
            Arc::new(LoggingMetricsCollector::default()),
            config.task_slots,
            Arc::new(crate::engine::CachingEngine::new(Arc::clone(&config.runtime))),
        ));

        let stop = CancellationToken::new();
        let server_tls = config.credentials.server_config()?;
        let flight = FlightServiceServer::new(BallistaFlightService::new(work_dir))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let control = ExecutorGrpcServer::new(crate::control::Control::new(
            Arc::clone(&executor),
            config.work_dir.clone(),
        ));
        let (health, health_service) = tonic_health::server::health_reporter();
        let incoming = membership::incoming(config.listener, server_tls, "executor-flight");
        let token = stop.clone();
        let name = id.clone();
        tokio::spawn(async move {
            let r = create_grpc_server(&GrpcServerConfig::default())
                .add_service(flight)
                .add_service(control)
                .add_service(health_service)
                .serve_with_incoming_shutdown(incoming, token.cancelled_owned())
                .await;
            if let Err(e) = r {
                tracing::error!(executor = %name, "flight service stopped: {e}");
            }
        });

        let url = format!("https://{}", config.scheduler);
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|e| NodeError::SchedulerAddress(config.scheduler.clone(), e.to_string()))?
            .tls_config(config.credentials.client_tls())
            .map_err(|e| NodeError::SchedulerAddress(config.scheduler.clone(), e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .connect_lazy();
        let scheduler = SchedulerGrpcClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);

        let stats = Arc::new(NodeStats::default());
        let node = ExecutorNode {
            health,
            id,
            flight_port,
            task_slots: config.task_slots,
            slots: Arc::new(Semaphore::new(config.task_slots)),
            executor,
            scheduler,
            scheduler_addr: config.scheduler.clone(),
            stop,
            stats,
        };
        if let Err(e) = node.register(&registration, register_timeout).await {
            node.stop.cancel();
            return Err(e);
        }
        node.spawn_heartbeats(registration, config.heartbeat_interval);
        node.spawn_poll_loop(config.poll_now);
        Ok(node)
    }

    async fn register(&self, registration: &ExecutorRegistration, timeout: Duration) -> Result<(), NodeError> {
        let started = Instant::now();
        loop {
            let mut client = self.scheduler.clone();
            match client.poll_work(heartbeat(registration)).await {
                Ok(_) => {
                    tracing::info!(executor = %self.id, "registered with the scheduler");
                    return Ok(());
                }
                Err(status) => {
                    let last_error = describe_status(&status);
                    if started.elapsed() >= timeout {
                        return Err(NodeError::Register {
                            address: self.scheduler_addr.clone(),
                            waited: timeout,
                            last_error,
                        });
                    }
                    tracing::warn!(executor = %self.id, "scheduler not reachable yet: {last_error}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    fn spawn_heartbeats(&self, registration: ExecutorRegistration, interval: Duration) {
        let mut client = self.scheduler.clone();
        let stop = self.stop.clone();
        let stats = Arc::clone(&self.stats);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                match client.poll_work(heartbeat(&registration)).await {
                    Ok(_) => {
                        stats.heartbeats_ok.fetch_add(1, Ordering::Relaxed);
                        stats.last_heartbeat_unix.store(unix_now(), Ordering::Relaxed);
                    }
                    Err(status) => {
                        stats.heartbeats_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(executor = %registration.id, "heartbeat failed: {}", describe_status(&status));
                    }
                }
            }
        });
    }

    fn spawn_poll_loop(&self, poll_now: Option<Arc<tokio::sync::Notify>>) {
        let scheduler = self.scheduler.clone();
        let executor = Arc::clone(&self.executor);
        let slots = Arc::clone(&self.slots);
        let stop = self.stop.clone();
        let id = self.id.clone();
        // Ballista's codecs plus the boundary of row policies
        // (`sluice_lake::secure`), which the scheduler's tasks may hold.
        let codec: BallistaCodec<LogicalPlanNode, PhysicalPlanNode> = BallistaCodec::new(
            Arc::new(ballista_core::serde::BallistaLogicalExtensionCodec::default()),
            Arc::new(sluice_lake::secure::SecureCodec::default()),
        );
        tokio::spawn(async move {
            tokio::select! {
                r = ballista_executor::execution_loop::poll_loop(
                    scheduler,
                    executor,
                    codec,
                    poll_now,
                    Some(slots),
                    ballista_executor::health::ExecutorHealth::new(),
                ) => {
                    if let Err(e) = r {
                        tracing::error!(executor = %id, "poll loop stopped: {e}");
                    }
                }
                () = stop.cancelled() => {}
            }
        });
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn flight_port(&self) -> u16 {
        self.flight_port
    }

    pub fn task_slots(&self) -> usize {
        self.task_slots
    }

    /// Tasks currently executing.
    pub fn running_tasks(&self) -> usize {
        self.executor.active_task_count()
    }

    pub fn stats(&self) -> &Arc<NodeStats> {
        &self.stats
    }

    /// Stops taking tasks, waits up to `timeout` for running ones and for
    /// their results to be reported, then deregisters from the scheduler.
    /// The Flight service keeps serving until [`ExecutorNode::stop`].
    pub async fn drain(&self, timeout: Duration) -> DrainOutcome {
        self.stats.draining.store(true, Ordering::Relaxed);
        self.health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        let deadline = Instant::now() + timeout;
        let running_at_start = self.running_tasks();
        tracing::info!(executor = %self.id, running = running_at_start, ?timeout, "draining");
        // Hold every slot: the poll loop then reports no free slots, so the
        // scheduler binds no new tasks here, while it keeps polling (and so
        // reports the status of tasks as they finish).
        let mut held = 0usize;
        if let Ok(p) = Arc::clone(&self.slots).try_acquire_many_owned(self.slots.available_permits() as u32) {
            held += p.num_permits();
            p.forget();
        }
        while held < self.task_slots {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, Arc::clone(&self.slots).acquire_owned()).await {
                Ok(Ok(p)) => {
                    p.forget();
                    held += 1;
                }
                _ => break,
            }
        }
        let outcome = if held >= self.task_slots {
            if running_at_start > 0 {
                // Let the poll loop report the last results before leaving.
                let wait = STATUS_REPORT_DELAY.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(wait).await;
            }
            DrainOutcome::Drained
        } else {
            DrainOutcome::TimedOut {
                abandoned: self.running_tasks(),
            }
        };
        let mut client = self.scheduler.clone();
        let stopped = client
            .executor_stopped(ExecutorStoppedParams {
                executor_id: self.id.clone(),
                reason: "draining: spot reclamation or shutdown".to_owned(),
            })
            .await;
        if let Err(status) = stopped {
            tracing::warn!(executor = %self.id, "deregistration failed: {}", describe_status(&status));
        }
        tracing::info!(executor = %self.id, ?outcome, "drained");
        outcome
    }

    /// Stops the poll loop, heartbeats and the Flight service.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for ExecutorNode {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A liveness heartbeat. Under pull scheduling Ballista registers and
/// refreshes an executor on every `poll_work`; one that offers no free slot is
/// given no task, so this is a pure heartbeat. (Ballista's own heartbeat RPC
/// would try to dial back a push-mode executor service, which pull-mode nodes
/// do not run.) A draining node keeps heartbeating: it is alive and serving
/// its partitions until it deregisters.
fn heartbeat(registration: &ExecutorRegistration) -> PollWorkParams {
    PollWorkParams {
        metadata: Some(registration.clone()),
        num_free_vcores: 0,
        task_status: vec![],
    }
}

/// A gRPC failure as an operator should read it.
fn describe_status(status: &tonic::Status) -> String {
    use std::error::Error;
    let mut message = status.message().to_owned();
    let mut source = status.source();
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
