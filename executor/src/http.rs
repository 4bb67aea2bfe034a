//! Operator HTTP endpoints of an executor: `/healthz` (registered with the
//! scheduler and heartbeating; 503 while draining) and `/metrics`
//! (Prometheus text format).

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

async fn healthz(State(node): State<Arc<ExecutorNode>>) -> impl IntoResponse {
    if node.stats().draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn metrics(State(node): State<Arc<ExecutorNode>>) -> impl IntoResponse {
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
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Serves the endpoints until `shutdown`.
pub async fn serve(listener: TcpListener, node: Arc<ExecutorNode>, shutdown: CancellationToken) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(node);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
