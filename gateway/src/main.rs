//! `sluice-gateway`: parses the configuration, sets up logging and runs the
//! gateway until SIGINT/SIGTERM.

use clap::Parser;
use sluice_gateway::config::{Cli, Config};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let config = match Config::load(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice-gateway: {e}");
            std::process::exit(2);
        }
    };
    sluice_lake::logging::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            s.cancel();
        });
        if let Err(e) = sluice_gateway::run(config, shutdown).await {
            eprintln!("sluice-gateway: {e}");
            std::process::exit(1);
        }
        Ok(())
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
}
