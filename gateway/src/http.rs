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
    /// Work of finished cluster jobs (see [`crate::cluster::JobMetrics`]).
    pub jobs: crate::cluster::JobMetrics,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("sluice".into()), None)?;
        let statements = crate::query::history::StatementMetrics::new(&registry)?;
        let executors_alive = IntGauge::new("executors_alive", "Executors registered with the scheduler and alive")?;
        registry.register(Box::new(executors_alive.clone()))?;
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
            jobs,
        })
    }
}

mod guard;
pub use guard::Access;

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    cluster: Cluster,
    /// Cancelled when shutdown starts: `/readyz` turns unready.
    draining: CancellationToken,
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

async fn executors(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let list = s.cluster.executors().await;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned()),
    )
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    s.metrics.executors_alive.set(s.cluster.alive_executors().await as i64);
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
    metrics_: Metrics,
    cluster: Cluster,
    access: Access,
    draining: CancellationToken,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = Arc::new(AppState {
        metrics: metrics_,
        cluster,
        draining,
    });
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/executors", get(executors))
        .route_layer(axum::middleware::from_fn_with_state(Arc::new(access), guard::require));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(guarded)
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
