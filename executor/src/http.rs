//! Operator HTTP endpoints of an executor: `/healthz` (registered with the
//! scheduler and heartbeating; 503 while draining) and `/metrics`
//! (Prometheus text format: task slots, heartbeats, object-store requests).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::node::ExecutorNode;

fn node_health(node: &ExecutorNode) -> (StatusCode, &'static str) {
    if node.stats().draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

#[derive(Clone)]
struct AppState {
    node: Arc<ExecutorNode>,
    registry: prometheus::Registry,
}

async fn healthz(State(app): State<AppState>) -> impl IntoResponse {
    node_health(&app.node)
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let node = &app.node;
    let s = node.stats();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
        out.push_str(&format!(
            "# HELP sluice_executor_{name} {help}\n# TYPE sluice_executor_{name} {kind}\nsluice_executor_{name}{{executor=\"{}\"}} {value}\n",
            node.id()
        ));
    };
    gauge("task_slots", "Concurrent task slots", "gauge", node.task_slots() as u64);
    gauge(
        "tasks_running",
        "Tasks executing now",
        "gauge",
        node.running_tasks() as u64,
    );
    gauge(
        "draining",
        "1 while draining after SIGTERM",
        "gauge",
        u64::from(s.draining.load(Ordering::Relaxed)),
    );
    gauge(
        "heartbeats_ok_total",
        "Heartbeats the scheduler accepted",
        "counter",
        s.heartbeats_ok.load(Ordering::Relaxed),
    );
    gauge(
        "heartbeats_failed_total",
        "Heartbeats that failed",
        "counter",
        s.heartbeats_failed.load(Ordering::Relaxed),
    );
    gauge(
        "last_heartbeat_unix_seconds",
        "Time of the last accepted heartbeat",
        "gauge",
        s.last_heartbeat_unix.load(Ordering::Relaxed),
    );
    let mut buf = Vec::new();
    let _ = prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &app.registry.gather(), &mut buf);
    out.push_str(&String::from_utf8_lossy(&buf));
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Serves the endpoints until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    node: Arc<ExecutorNode>,
    store_metrics: sluice_lake::store::StoreMetrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let registry =
        prometheus::Registry::new_custom(Some("sluice_executor".into()), None).map_err(std::io::Error::other)?;
    store_metrics.register(&registry).map_err(std::io::Error::other)?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(AppState { node, registry });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
