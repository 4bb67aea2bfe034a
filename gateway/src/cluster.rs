//! The compute side of the gateway: the Ballista scheduler embedded in this
//! process, and the in-process executors of the embedded default.
//!
//! The scheduler's gRPC service listens on a loopback port of its own; query
//! jobs are submitted to it by `DistributedQueryExec` and results are fetched
//! from the executors that hold them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::ids::new_instance_id;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::BallistaCodec;
use ballista_core::serde::protobuf::ExecutorRegistration;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::scheduler::{ExecutorOperatingSystemSpecification, ExecutorSpecification};
use ballista_core::utils::{GrpcServerConfig, create_grpc_server};
use ballista_core::{BALLISTA_PROTOCOL_VERSION, ConfigProducer, RuntimeProducer};
use ballista_executor::executor::Executor;
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::metrics::LoggingMetricsCollector;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

/// An executor as operators see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecutorInfo {
    pub id: String,
    pub host: String,
    /// Flight (shuffle/result) port.
    pub port: u16,
    pub task_slots: u32,
    /// Last heartbeat, Unix seconds.
    pub last_heartbeat_unix: Option<u64>,
}

/// Handle on the embedded scheduler.
#[derive(Clone)]
pub struct Cluster {
    scheduler: Arc<SchedulerServer<LogicalPlanNode, PhysicalPlanNode>>,
    scheduler_addr: SocketAddr,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("scheduler_addr", &self.scheduler_addr)
            .finish()
    }
}

impl Cluster {
    /// Starts the scheduler on a loopback port and `local_executors` executors
    /// with `slots` task slots each, working under `data_dir/executors/N`.
    pub async fn start(
        runtime: Arc<RuntimeEnv>,
        local_executors: usize,
        slots: usize,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> Result<Self, ClusterError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ClusterError::Scheduler(e.to_string()))?;
        let scheduler_addr = listener
            .local_addr()
            .map_err(|e| ClusterError::Scheduler(e.to_string()))?;

        let rt = Arc::clone(&runtime);
        let session_builder = Arc::new(move |config| Ok(sluice_lake::session_state(config, Arc::clone(&rt))));
        let config_producer: ConfigProducer = Arc::new(sluice_lake::session_config);
        let mut config = SchedulerConfig::default()
            .with_hostname("127.0.0.1")
            .with_port(scheduler_addr.port())
            .with_scheduler_policy(TaskSchedulingPolicy::PullStaged);
        config.override_session_builder = Some(Arc::clone(&session_builder) as _);
        config.override_config_producer = Some(Arc::clone(&config_producer));
        // The embedded default is one process: executors cannot vanish on their
        // own, so the spot-oriented timeouts of remote mode do not apply here.
        let cluster = BallistaCluster::new_memory(
            format!("127.0.0.1:{}", scheduler_addr.port()),
            session_builder,
            Arc::clone(&config_producer),
        );
        let scheduler: SchedulerServer<LogicalPlanNode, PhysicalPlanNode> = create_scheduler(cluster, Arc::new(config))
            .await
            .map_err(|e| ClusterError::Scheduler(e.to_string()))?;
        let server = scheduler.clone();
        let token = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = start_grpc_service_with_listener(listener, server) => {
                    if let Err(e) = r {
                        tracing::error!("scheduler service stopped: {e}");
                    }
                }
                () = token.cancelled() => {}
            }
        });

        for index in 0..local_executors {
            let work_dir = data_dir.join("executors").join(index.to_string());
            // Shuffle files of a previous run are garbage: jobs do not survive a restart.
            let _ = std::fs::remove_dir_all(&work_dir);
            std::fs::create_dir_all(&work_dir).map_err(|source| ClusterError::WorkDir {
                path: work_dir.clone(),
                source,
            })?;
            start_local_executor(
                index,
                scheduler_addr,
                slots,
                &work_dir,
                Arc::clone(&runtime),
                shutdown.clone(),
            )
            .await
            .map_err(|message| ClusterError::Executor { index, message })?;
        }
        Ok(Cluster {
            scheduler: Arc::new(scheduler),
            scheduler_addr,
        })
    }

    /// URL `DistributedQueryExec` submits jobs to.
    pub fn scheduler_url(&self) -> String {
        format!("http://{}", self.scheduler_addr)
    }

    /// Cancels a running job; unknown or finished jobs are ignored.
    pub async fn cancel_job(&self, job_id: &str) {
        if let Err(e) = self.scheduler.cancel_job(job_id.to_owned().into()).await {
            tracing::debug!(job_id, "cancel of job failed: {e}");
        }
    }

    /// Number of executors currently registered and alive.
    pub async fn alive_executors(&self) -> usize {
        self.executors().await.len()
    }

    /// Executors registered with the scheduler.
    pub async fn executors(&self) -> Vec<ExecutorInfo> {
        let state = self.scheduler.state.executor_manager.get_executors_state().await;
        state
            .map(|v| {
                v.into_iter()
                    .map(|(meta, heartbeat, _)| ExecutorInfo {
                        id: meta.id,
                        host: meta.host,
                        port: meta.port,
                        task_slots: meta.specification.vcores,
                        last_heartbeat_unix: heartbeat.map(|d| d.as_secs()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn start_local_executor(
    index: usize,
    scheduler_addr: SocketAddr,
    slots: usize,
    work_dir: &Path,
    runtime: Arc<RuntimeEnv>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let registration = ExecutorRegistration {
        id: format!("local-{index}-{}", new_instance_id()),
        host: Some("127.0.0.1".to_owned()),
        port: u32::from(address.port()),
        grpc_port: 0,
        specification: Some(ExecutorSpecification::default().with_vcores(slots as u32).into()),
        os_info: Some(ExecutorOperatingSystemSpecification::default().into()),
        ballista_protocol_version: BALLISTA_PROTOCOL_VERSION,
    };
    let work_dir = work_dir.to_str().ok_or("work dir is not UTF-8")?.to_owned();
    let config_producer: ConfigProducer = Arc::new(sluice_lake::session_config);
    let runtime_producer: RuntimeProducer = Arc::new(move |_| Ok(Arc::clone(&runtime)));
    let functions = BallistaFunctionRegistry::from(&sluice_lake::session_state(
        sluice_lake::session_config(),
        sluice_lake::runtime_env().map_err(|e| e.to_string())?,
    ));
    let executor = Arc::new(Executor::with_default_execution_engine(
        registration,
        &work_dir,
        runtime_producer,
        config_producer,
        Arc::new(functions),
        Arc::new(LoggingMetricsCollector::default()),
        slots,
    ));
    let flight = FlightServiceServer::new(BallistaFlightService::new(work_dir))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let token = shutdown.clone();
    tokio::spawn(async move {
        let incoming = tokio_stream_from(listener);
        let r = create_grpc_server(&GrpcServerConfig::default())
            .add_service(flight)
            .serve_with_incoming_shutdown(incoming, token.cancelled_owned())
            .await;
        if let Err(e) = r {
            tracing::error!(index, "executor flight service stopped: {e}");
        }
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{scheduler_addr}"))
        .map_err(|e| e.to_string())?
        .connect_lazy();
    let scheduler = SchedulerGrpcClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let codec: BallistaCodec<LogicalPlanNode, PhysicalPlanNode> = BallistaCodec::default();
    tokio::spawn(async move {
        tokio::select! {
            r = ballista_executor::execution_loop::poll_loop(
                scheduler,
                executor,
                codec,
                None,
                None,
                ballista_executor::health::ExecutorHealth::new(),
            ) => {
                if let Err(e) = r {
                    tracing::error!(index, "in-process executor stopped: {e}");
                }
            }
            () = shutdown.cancelled() => {}
        }
    });
    Ok(())
}

fn tokio_stream_from(listener: TcpListener) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}
