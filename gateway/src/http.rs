//! Operator HTTP endpoints: `/healthz` (process up) and `/readyz` (catalog
//! open and at least one executor alive) answer anyone (probes); `/metrics`
//! (Prometheus text format) and `/executors` (JSON) need credentials (see
//! [`guard`]). With a certificate the port serves TLS only.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;

/// Gateway metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Statements by protocol and outcome, latency, rows and bytes out.
    pub statements: crate::query::history::StatementMetrics,
    pub executors_alive: IntGauge,
    /// Registered executors not heard from within the executor timeout.
    pub executors_lost: IntGauge,
    /// Tasks of running cluster jobs executing now / waiting for a slot.
    pub tasks_running: IntGauge,
    pub tasks_queued: IntGauge,
    /// Open client connections by protocol (`pg`, `flight`).
    pub connections: prometheus::IntGaugeVec,
    /// Work of finished cluster jobs (see [`crate::cluster::JobMetrics`]).
    pub jobs: crate::cluster::JobMetrics,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("sluice".into()), None)?;
        let statements = crate::query::history::StatementMetrics::new(&registry)?;
        let executors_alive = IntGauge::new("executors_alive", "Executors registered with the scheduler and alive")?;
        registry.register(Box::new(executors_alive.clone()))?;
        let executors_lost = IntGauge::new(
            "executors_lost",
            "Executors registered but not heard from within the executor timeout",
        )?;
        let tasks_running = IntGauge::new("tasks_running", "Tasks of running cluster jobs executing now")?;
        let tasks_queued = IntGauge::new(
            "tasks_queued",
            "Partitions of running cluster jobs' ready stages waiting for a task slot",
        )?;
        let connections = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("connections_open", "Open client connections by protocol"),
            &["protocol"],
        )?;
        for g in [&executors_lost, &tasks_running, &tasks_queued] {
            registry.register(Box::new(g.clone()))?;
        }
        registry.register(Box::new(connections.clone()))?;
        let jobs = crate::cluster::JobMetrics {
            partitions: IntCounter::new(
                "job_partitions_total",
                "Partitions of the stages of finished cluster jobs",
            )?,
            partition_runs: IntCounter::new(
                "job_partition_runs_total",
                "Partition runs of finished cluster jobs, including runs again after an executor loss",
            )?,
        };
        registry.register(Box::new(jobs.partitions.clone()))?;
        registry.register(Box::new(jobs.partition_runs.clone()))?;
        Ok(Metrics {
            registry,
            statements,
            executors_alive,
            executors_lost,
            tasks_running,
            tasks_queued,
            connections,
            jobs,
        })
    }
}

mod guard;
mod ui;
pub use guard::Access;

struct AppState {
    metrics: Metrics,
    cluster: Cluster,
    /// Cancelled when shutdown starts: `/readyz` turns unready.
    draining: CancellationToken,
    ui: ui::Ui,
    rest: crate::frontend::rest::Rest,
}

/// What the HTTP port serves from.
#[derive(Debug)]
pub struct Parts {
    pub metrics: Metrics,
    pub cluster: Cluster,
    pub access: Access,
    /// Queries for the web UI.
    pub history: Arc<crate::query::history::History>,
    /// Cancelled when shutdown starts: `/readyz` turns unready.
    pub draining: CancellationToken,
    /// `POST /v1/statement`.
    pub rest: crate::frontend::rest::Rest,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    if s.draining.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down\n".to_owned());
    }
    let alive = s.cluster.alive_executors().await;
    if alive > 0 {
        (StatusCode::OK, format!("ready: {alive} executor(s)\n"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: no executors\n".to_owned())
    }
}

async fn statement(
    State(s): State<Arc<AppState>>,
    axum::extract::ConnectInfo(guard::Peer(peer)): axum::extract::ConnectInfo<guard::Peer>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    s.rest.statement(peer.ip(), headers, body).await
}

async fn executors(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let list = s.cluster.executors_now().await;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned()),
    )
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let alive = s.cluster.alive_executors().await;
    s.metrics.executors_alive.set(alive as i64);
    s.metrics
        .executors_lost
        .set(s.cluster.executors().await.len().saturating_sub(alive) as i64);
    let (mut running, mut queued) = (0, 0);
    for q in s.ui.history.running() {
        let Some(job) = q.snapshot().job_id else { continue };
        for stage in s.cluster.job_stages(&job).await.unwrap_or_default() {
            if matches!(stage.state.as_str(), "Running" | "Resolved") {
                running += stage.running;
                queued += stage.partitions.saturating_sub(stage.done + stage.running);
            }
        }
    }
    s.metrics.tasks_running.set(running as i64);
    s.metrics.tasks_queued.set(queued as i64);
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&s.metrics.registry.gather(), &mut buf) {
        Ok(()) => (StatusCode::OK, String::from_utf8_lossy(&buf).into_owned()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Serves the HTTP endpoints until `shutdown` (the last step of a stop;
/// `/readyz` answers 503 from `draining` on); TLS only when `tls` is set.
pub async fn run(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    parts: Parts,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let access = Arc::new(parts.access);
    let state = Arc::new(AppState {
        metrics: parts.metrics,
        cluster: parts.cluster,
        draining: parts.draining,
        ui: ui::Ui {
            access: Arc::clone(&access),
            history: parts.history,
        },
        rest: parts.rest,
    });
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/executors", get(executors))
        .route_layer(axum::middleware::from_fn_with_state(access, guard::require));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .merge(ui::routes())
        .route("/v1/statement", axum::routing::post(statement))
        .with_state(state)
        .into_make_service_with_connect_info::<guard::Peer>();
    match tls {
        Some(acceptor) => {
            let local = listener.local_addr()?;
            let rx = crate::tls::incoming(listener, acceptor, shutdown.clone());
            axum::serve(guard::TlsListener { rx, local }, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
    }
}
