//! `sluice-executor`: a stateless Sluice worker. It wraps Ballista's executor
//! with the same session setup (functions, object stores) the gateway plans
//! with (crate `sluice-lake`), registers with a scheduler and runs plan
//! fragments until SIGTERM, when it drains and exits.
//!
//! The gateway does not yet expose its scheduler to remote executors (issue
//! "Stateless executors on spot pools"); until then this binary runs against
//! any Ballista 55 scheduler.

use std::sync::Arc;

use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use clap::Parser;

/// Flags; each has a `SLUICE_*` environment twin.
#[derive(Debug, Parser)]
#[command(name = "sluice-executor", version, about = "Sluice executor (Ballista worker)")]
struct Cli {
    /// Scheduler address HOST:PORT.
    #[arg(long, env = "SLUICE_SCHEDULER", default_value = "127.0.0.1:50050")]
    scheduler: String,
    /// Address to bind the Flight (shuffle/result) service to.
    #[arg(long, env = "SLUICE_BIND", default_value = "127.0.0.1")]
    bind: String,
    /// Port of the Flight service (0 = any).
    #[arg(long, env = "SLUICE_PORT", default_value_t = 50051)]
    port: u16,
    /// Host other cluster members reach this executor at.
    #[arg(long, env = "SLUICE_ADVERTISE_HOST")]
    advertise_host: Option<String>,
    /// Directory for shuffle and result files.
    #[arg(long, env = "SLUICE_WORK_DIR")]
    work_dir: Option<String>,
    /// Concurrent task slots (default: CPUs).
    #[arg(long, env = "SLUICE_TASK_SLOTS")]
    task_slots: Option<usize>,
    /// Heartbeat interval in seconds.
    #[arg(long, env = "SLUICE_HEARTBEAT_SECONDS", default_value_t = 5)]
    heartbeat_seconds: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let (host, port) = cli
        .scheduler
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("--scheduler: expected HOST:PORT, got {}", cli.scheduler))?;
    let scheduler_port: u16 = port
        .parse()
        .map_err(|_| anyhow::anyhow!("--scheduler: bad port in {}", cli.scheduler))?;
    let runtime_env = sluice_lake::runtime_env()?;
    let config = ExecutorProcessConfig {
        scheduler_host: host.to_owned(),
        scheduler_port,
        bind_host: cli.bind,
        port: cli.port,
        external_host: cli.advertise_host,
        work_dir: cli.work_dir,
        vcores: cli
            .task_slots
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        executor_heartbeat_interval_seconds: cli.heartbeat_seconds,
        override_config_producer: Some(Arc::new(sluice_lake::session_config)),
        override_runtime_producer: Some(Arc::new(move |_| Ok(Arc::clone(&runtime_env)))),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(start_executor_process(Arc::new(config)))?;
    Ok(())
}
