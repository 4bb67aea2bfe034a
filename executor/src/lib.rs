//! `sluice-executor`: a stateless worker of a Sluice cluster, meant for spot
//! capacity. It runs Ballista plan fragments with the same session setup
//! (functions, object stores) the gateway plans with (crate `sluice-lake`),
//! joins the cluster with the cluster secret (mutual TLS on every channel, see
//! `sluice_lake::membership`), and on SIGTERM drains: it takes no new tasks,
//! finishes the running ones within `--drain-timeout`, deregisters and exits 0.
//!
//! [`node::ExecutorNode`] is also what the gateway runs in process for its
//! embedded default, so both paths execute tasks the same way.

pub mod client_pool;
pub mod config;
mod control;
mod engine;
pub mod http;
pub mod node;

use std::future::Future;
use std::sync::Arc;

use config::Config;
use node::{DrainOutcome, ExecutorNode, NodeConfig};
use tokio::net::TcpListener;

/// Errors that end the executor process.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("--work-dir: cannot prepare {path}: {source}")]
    WorkDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{flag}: cannot listen on {addr}: {source}")]
    Listen {
        flag: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("--listen-file: {0}")]
    ListenFile(std::io::Error),
    #[error("cannot build the runtime: {0}")]
    Runtime(String),
    #[error("{0}")]
    Node(#[from] node::NodeError),
}

/// Runs an executor until `terminate` resolves, then drains it.
pub async fn run(config: Config, terminate: impl Future<Output = ()>) -> Result<DrainOutcome, RunError> {
    // Shuffle files of an earlier life are garbage: no job survives its executor.
    let _ = std::fs::remove_dir_all(&config.work_dir);
    std::fs::create_dir_all(&config.work_dir).map_err(|source| RunError::WorkDir {
        path: config.work_dir.clone(),
        source,
    })?;
    let store_metrics = sluice_lake::store::StoreMetrics::new().map_err(|e| RunError::Runtime(e.to_string()))?;
    let runtime =
        sluice_lake::runtime_env(&config.lake, store_metrics.clone()).map_err(|e| RunError::Runtime(e.to_string()))?;
    let credentials = sluice_lake::membership::ClusterCredentials::from_secret(&config.cluster_secret.0)
        .map_err(node::NodeError::from)?;
    let flight_addr = std::net::SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(flight_addr)
        .await
        .map_err(|source| RunError::Listen {
            flag: "--port",
            addr: flight_addr.to_string(),
            source,
        })?;
    let http_listener = match config.http_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| RunError::Listen {
            flag: "--http-listen",
            addr: addr.to_string(),
            source,
        })?),
        None => None,
    };
    let node = Arc::new(
        ExecutorNode::start(
            NodeConfig {
                name: "exec".to_owned(),
                scheduler: config.scheduler.clone(),
                listener,
                advertise_host: config.advertise_host.clone(),
                work_dir: config.work_dir.clone(),
                task_slots: config.task_slots,
                runtime,
                credentials,
                heartbeat_interval: config.heartbeat_interval,
                poll_now: None,
            },
            config.register_timeout,
        )
        .await?,
    );
    let http_stop = tokio_util::sync::CancellationToken::new();
    let http_port = match http_listener {
        Some(l) => {
            let port = l.local_addr().map(|a| a.port()).ok();
            let node = Arc::clone(&node);
            let stop = http_stop.clone();
            tokio::spawn(async move {
                if let Err(e) = http::serve(l, node, store_metrics, stop).await {
                    tracing::error!("http service stopped: {e}");
                }
            });
            port
        }
        None => None,
    };
    if let Some(path) = &config.listen_file {
        let json = format!(
            "{{\"id\":\"{}\",\"flight\":{},\"http\":{}}}\n",
            node.id(),
            node.flight_port(),
            http_port.map_or("null".to_owned(), |p| p.to_string())
        );
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(RunError::ListenFile)?;
    }
    tracing::info!(
        executor = node.id(),
        flight_port = node.flight_port(),
        scheduler = %config.scheduler,
        task_slots = config.task_slots,
        "executor serving"
    );
    terminate.await;
    let outcome = node.drain(config.drain_timeout).await;
    if let DrainOutcome::TimedOut { abandoned } = outcome {
        tracing::warn!(
            abandoned,
            "drain timeout passed; the scheduler re-runs the abandoned tasks elsewhere"
        );
    }
    node.stop();
    http_stop.cancel();
    let _ = std::fs::remove_dir_all(&config.work_dir);
    Ok(outcome)
}
