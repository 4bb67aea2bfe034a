//! What the gateway and the executors must agree on so that a plan made on one
//! runs on the other: the DataFusion session (functions, optimizer rules,
//! Ballista extensions) and the runtime (object stores).
//!
//! The gateway plans with [`session_state`]; the embedded scheduler and every
//! executor (in-process or `sluice-executor`) build their sessions with the
//! same function, so a table location that resolves on the gateway resolves
//! on every executor. [`logging`] is the log set-up both binaries share.

pub mod cache;
pub mod config;
pub mod logging;
pub mod membership;
pub mod pg_ident;
pub mod secure;
pub mod store;

use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;

use crate::cache::FooterCache;
use crate::config::LakeSettings;
use crate::store::{LakeRegistry, StoreMetrics};

/// The runtime shared by every session of one process: memory pool (capped
/// by [`LakeSettings::memory_limit`], shared fairly between tasks; operators
/// that can spill do so at the cap), disk manager, the object store registry
/// ([`store::LakeRegistry`]) and the Parquet footer cache.
///
/// DataFusion's own file-listing cache is off: listings are cached by the
/// gateway, which knows when a table changed.
pub fn runtime_env(settings: &LakeSettings, metrics: StoreMetrics) -> Result<Arc<RuntimeEnv>> {
    let footer = Arc::new(FooterCache::new(settings.footer_cache).with_counters(metrics.cache("parquet_footer")));
    let caches = CacheManagerConfig::default()
        .with_list_files_cache(None)
        .with_list_files_cache_limit(0)
        .with_file_metadata_cache(Some(footer))
        .with_metadata_cache_limit(usize::try_from(settings.footer_cache.bytes).unwrap_or(usize::MAX));
    let mut builder = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(LakeRegistry::new(settings.stores.clone(), metrics)))
        .with_cache_manager(caches);
    if let Some(limit) = settings.memory_limit {
        builder = builder.with_memory_pool(Arc::new(datafusion::execution::memory_pool::FairSpillPool::new(limit)));
    }
    Ok(Arc::new(builder.build()?))
}

/// Makes the Parquet scans of a deserialized plan read footers through the
/// runtime's footer cache (plans arrive from the scheduler without a reader
/// factory, which would parse every footer on every read).
pub fn with_footer_cache(plan: Arc<dyn ExecutionPlan>, runtime: &RuntimeEnv) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some((config, source)) = exec.downcast_to_file_source::<ParquetSource>() else {
            return Ok(Transformed::no(node));
        };
        if source.parquet_file_reader_factory().is_some() {
            return Ok(Transformed::no(node));
        }
        let store = runtime.object_store(&config.object_store_url)?;
        let factory = CachedParquetFileReaderFactory::new(store, runtime.cache_manager.get_file_metadata_cache());
        let source = source.clone().with_parquet_file_reader_factory(Arc::new(factory));
        let config: FileScanConfig = FileScanConfigBuilder::from(config.clone())
            .with_source(Arc::new(source))
            .build();
        let exec: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        Ok(Transformed::yes(exec))
    })
    .map(|t| t.data)
}

/// The session configuration every Sluice component starts from.
pub fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new_with_ballista()
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(false)
        // The static planner: its recovery from executor loss re-runs only
        // lost work and is exact with the patches in third_party/; the
        // adaptive one's is not (ARCHITECTURE.md, "Executor loss").
        .with_ballista_adaptive_query_planner(false);
    // Ballista turns hash joins off by default (they cannot spill). They are
    // 1.5-2x faster than sort-merge joins on TPC-H here (SF1, 2 cores), and a
    // build side that does not fit the executor's memory pool fails its
    // query with "resources exhausted" rather than taking the process down;
    // Trino and DataFusion join the same way.
    config.options_mut().optimizer.prefer_hash_join = true;
    // Shuffle files uncompressed (Ballista's default is LZ4), as Trino's
    // exchanges are by default: on local disks and data-centre networks the
    // CPU spent compressing costs more than the bytes it saves (TPC-H SF1,
    // in-process executors: 3% faster). `SET ballista.shuffle.compression.codec
    // = 'lz4'` (or 'zstd') where the network is the bottleneck.
    config = config.set_str(ballista_core::config::BALLISTA_SHUFFLE_COMPRESSION_CODEC, "none");
    // One input partition per task. Ballista 55 packs up to an executor's
    // free slots into one task; after an executor loss, jobs whose tasks
    // were packed returned wrong answers (TPC-H Q21 under bench/chaos.py: 3
    // wrong of 33 queries hit by a kill; 0 of 31 with this setting), and the
    // cause is not found yet (third_party/README.md, "Open"). Each partition
    // is then its own task, so a loss re-runs no more than it must.
    config = config.set_usize(ballista_core::config::BALLISTA_SCHEDULER_MAX_PARTITIONS_PER_TASK, 1);
    // `timestamptz` must carry a zone, as in Postgres (sessions run in UTC).
    config.options_mut().execution.time_zone = Some("+00:00".to_owned());
    // `1.5` is numeric in Postgres, exact to every digit written; as float8
    // `0.1 + 0.2` would not be 0.3 and long literals would lose digits.
    config.options_mut().sql_parser.parse_float_as_decimal = true;
    config
}

/// Postgres functions of datafusion-pg-catalog that depend on nothing but
/// their arguments, so a query over lake tables may call them wherever it
/// runs: the gateway's scheduler decodes and the executors run plans that
/// contain them. (Session- and catalog-dependent ones stay in the gateway,
/// which folds them to constants before a plan leaves it.)
pub fn pg_row_functions() -> Vec<Arc<datafusion::logical_expr::ScalarUDF>> {
    use datafusion_pg_catalog::pg_catalog::{array_bounds_udf, format_type, quote_ident_udf};
    vec![
        Arc::new(quote_ident_udf::create_quote_ident_udf()),
        Arc::new(pg_ident::parse_ident_udf()),
        Arc::new(format_type::create_format_type_udf()),
        Arc::new(array_bounds_udf::create_array_upper_udf()),
        Arc::new(array_bounds_udf::create_array_lower_udf()),
    ]
}

/// Builds a session on `config` and `runtime` with Ballista's functions and
/// optimizer rules, and the Postgres row functions.
pub fn session_state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionState {
    use ballista_core::extension::{
        ballista_aggregate_functions, ballista_scalar_functions, ballista_window_functions,
    };
    let mut scalars = ballista_scalar_functions();
    scalars.extend(pg_row_functions());
    SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(scalars)
        .with_aggregate_functions(ballista_aggregate_functions())
        .with_window_functions(ballista_window_functions())
        .with_query_planner(Arc::new(secure::SluiceQueryPlanner))
        .build()
}
