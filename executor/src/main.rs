//! `sluice-executor`: parses the configuration, joins the cluster, and on
//! SIGTERM/SIGINT drains and exits 0.

use clap::Parser;
use sluice_executor::config::{Cli, Config};

fn main() -> anyhow::Result<()> {
    let config = match Config::load(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice-executor: {e}");
            std::process::exit(2);
        }
    };
    sluice_lake::logging::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match sluice_executor::run(config, wait_for_signal()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                eprintln!("sluice-executor: {e}");
                std::process::exit(1);
            }
        }
    })
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("termination signal: draining");
}
