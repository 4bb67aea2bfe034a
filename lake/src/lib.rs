//! What the gateway and the executors must agree on so that a plan made on one
//! runs on the other: the DataFusion session (functions, optimizer rules,
//! Ballista extensions) and the runtime (object stores).
//!
//! The gateway plans with [`session_state`]; the embedded scheduler and every
//! executor (in-process or `sluice-executor`) build their sessions with the
//! same function, so a table location that resolves on the gateway resolves
//! on every executor.

pub mod membership;

use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use datafusion::common::Result;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionConfig;

/// The runtime shared by every session of one process: memory pool, disk
/// manager and object store registry (local files today; S3/GCS/Azure join
/// here).
pub fn runtime_env() -> Result<Arc<RuntimeEnv>> {
    runtime_env_with_memory_limit(None)
}

/// [`runtime_env`] whose query memory is capped at `limit` bytes, shared
/// fairly between concurrent tasks; operators that can spill do so when the
/// cap is reached.
pub fn runtime_env_with_memory_limit(limit: Option<usize>) -> Result<Arc<RuntimeEnv>> {
    let mut builder = RuntimeEnvBuilder::new();
    if let Some(limit) = limit {
        builder = builder.with_memory_pool(Arc::new(datafusion::execution::memory_pool::FairSpillPool::new(limit)));
    }
    Ok(Arc::new(builder.build()?))
}

/// The session configuration every Sluice component starts from.
pub fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new_with_ballista()
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(false);
    // `timestamptz` must carry a zone, as in Postgres (sessions run in UTC).
    config.options_mut().execution.time_zone = Some("+00:00".to_owned());
    config
}

/// Builds a session on `config` and `runtime` with Ballista's functions and
/// optimizer rules.
pub fn session_state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionState {
    use ballista_core::extension::{
        ballista_aggregate_functions, ballista_scalar_functions, ballista_window_functions,
    };
    SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(ballista_scalar_functions())
        .with_aggregate_functions(ballista_aggregate_functions())
        .with_window_functions(ballista_window_functions())
        .build()
}
