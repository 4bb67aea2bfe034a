//! [`LakeTable`]: a catalog table as a DataFusion `TableProvider` whose scan
//! is planned from the catalog's partitions (see the module docs of
//! `crate::table`), and the cache of built providers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::project_schema;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchemaBuilder;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion_datasource::compute_all_files_statistics;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore};
use sluice_lake::store::{TableStoreOptions, resolve};

use super::explain::{ScanLog, ScanReport};
use super::prune::{is_partition_filter, prune};
use super::{Part, TableServices};
use crate::catalog::Table;

/// Partitions listed at once while planning a scan.
const LIST_CONCURRENCY: usize = 32;

/// A managed or external table of the catalog.
#[derive(Debug)]
pub struct LakeTable {
    table: Arc<Table>,
    schema: SchemaRef,
    file_schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
    store_options: TableStoreOptions,
    format_options: BTreeMap<String, String>,
    services: Arc<TableServices>,
}

impl LakeTable {
    pub fn try_new(table: Arc<Table>, services: Arc<TableServices>) -> DfResult<Self> {
        let schema: SchemaRef = Arc::new(crate::catalog::provider::decode_schema(&table.arrow_schema)?);
        let n_data = schema.fields().len().saturating_sub(table.partition_columns.len());
        let file_schema = Arc::new(Schema::new(schema.fields()[..n_data].to_vec()));
        let partition_fields = schema.fields()[n_data..].to_vec();
        let location = table.locations.first().cloned().unwrap_or_default();
        let (store_options, format_options) = TableStoreOptions::parse(&location, &table.options)?;
        Ok(LakeTable {
            table,
            schema,
            file_schema,
            partition_fields,
            store_options,
            format_options,
            services,
        })
    }

    /// The catalog entry this provider reads.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// The files of one partition: the manifest's, or a (cached) listing.
    async fn files_of(&self, state: &dyn Session, part: &Part) -> DfResult<Vec<(ObjectStoreUrl, PartitionedFile)>> {
        let file = |meta: ObjectMeta| PartitionedFile::new_from_meta(meta).with_partition_values(part.values.clone());
        match &part.files {
            Some(files) => files
                .iter()
                .map(|f| {
                    let r = resolve(&f.path, &self.store_options)?;
                    let meta = ObjectMeta {
                        location: r.path,
                        // Manifest files are immutable (unique names), so a
                        // fixed time keeps footer-cache entries valid.
                        last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                        size: f.size,
                        e_tag: None,
                        version: None,
                    };
                    Ok((r.store_url, file(meta)))
                })
                .collect(),
            None => {
                let r = resolve(&part.location, &self.store_options)?;
                let store = state.runtime_env().object_store(&r.store_url)?;
                let metas = self.services.listing(&self.table.id, &part.location, store, &r).await?;
                Ok(metas.iter().map(|m| (r.store_url.clone(), file(m.clone()))).collect())
            }
        }
    }
}

/// `files` with their statistics (row counts, sizes, min/max per column), as
/// a listing table collects them: Parquet files' from their footers, cached
/// per store and file (`stats.rs`), so a table read again costs no request;
/// other formats' as their reader infers them. The planner needs them to put
/// the smaller side of a join on its build side and to broadcast small tables
/// instead of shuffling them.
async fn with_statistics(
    state: &dyn Session,
    services: &TableServices,
    format: &dyn FileFormat,
    (store_url, store): (&str, &Arc<dyn ObjectStore>),
    file_schema: &SchemaRef,
    files: Vec<PartitionedFile>,
) -> DfResult<Vec<PartitionedFile>> {
    let concurrency = state.config_options().execution.meta_fetch_concurrency.get();
    let parquet = format.is::<ParquetFormat>();
    futures::stream::iter(files)
        .map(|file| async move {
            let stats = if parquet {
                services
                    .stats
                    .parquet(store_url, store, file_schema, &file.object_meta)
                    .await?
            } else {
                Arc::new(
                    format
                        .infer_stats(state, store, Arc::clone(file_schema), &file.object_meta)
                        .await?,
                )
            };
            Ok::<_, DataFusionError>(file.with_statistics(stats))
        })
        .buffered(concurrency)
        .try_collect()
        .await
}

/// Spreads files over `n` groups of about equal bytes.
fn group_files(mut files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    let n = n.max(1).min(files.len().max(1));
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for f in files {
        if let Some(g) = groups.iter_mut().min_by_key(|g| g.0) {
            g.0 += f.object_meta.size;
            g.1.push(f);
        }
    }
    groups
        .into_iter()
        .filter(|g| !g.1.is_empty())
        .map(|g| FileGroup::new(g.1))
        .collect()
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Partition filters are evaluated exactly on the partition values;
        // the rest stay above the scan (and reach Parquet's pruning through
        // DataFusion's physical filter pushdown).
        Ok(filters
            .iter()
            .map(|f| {
                if is_partition_filter(&self.table.partition_columns, f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let partition_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| is_partition_filter(&self.table.partition_columns, f))
            .cloned()
            .collect();
        let hive_filter = super::pushdown::hive_filter(&partition_filters, &self.partition_fields);
        let set = self.services.partitions(&self.table, hive_filter.as_deref()).await?;
        let chosen = prune(&set, &partition_filters, state)?;
        let lookups: Vec<_> = chosen.iter().map(|&i| self.files_of(state, &set.parts[i])).collect();
        let per_part: Vec<Vec<(ObjectStoreUrl, PartitionedFile)>> = futures::stream::iter(lookups)
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        let mut by_store: BTreeMap<String, (ObjectStoreUrl, Vec<PartitionedFile>)> = BTreeMap::new();
        let mut files_chosen = 0;
        for (url, file) in per_part.into_iter().flatten() {
            files_chosen += 1;
            by_store
                .entry(url.as_str().to_owned())
                .or_insert_with(|| (url, Vec::new()))
                .1
                .push(file);
        }
        if let Some(log) = state.config().get_extension::<ScanLog>() {
            let files_total = set
                .parts
                .iter()
                .map(|p| p.files.as_ref().map(Vec::len))
                .sum::<Option<usize>>();
            log.push(ScanReport {
                table: self.table.qualified(),
                partitions_chosen: chosen.len(),
                partitions_total: set.parts.len(),
                files_chosen,
                files_total,
                filters: partition_filters.iter().map(ToString::to_string).collect(),
            });
        }
        if by_store.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(&self.schema, projection)?)));
        }
        let session = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("lake tables are planned with a SessionState".into()))?;
        let format_name = self.table.format.to_ascii_lowercase();
        let format = session
            .get_file_format_factory(&format_name)
            .ok_or_else(|| DataFusionError::Plan(format!("no reader for format {}", self.table.format)))?
            .create(session, &self.format_options.clone().into_iter().collect())?;
        let target = state.config().target_partitions();
        let collect = state.config().collect_statistics();
        let mut plans = Vec::with_capacity(by_store.len());
        for (_, (url, files)) in by_store {
            let table_schema = TableSchemaBuilder::new(Arc::clone(&self.file_schema))
                .with_table_partition_cols(self.partition_fields.clone())
                .build();
            let files = if collect {
                let store = state.runtime_env().object_store(&url)?;
                with_statistics(
                    state,
                    &self.services,
                    format.as_ref(),
                    (url.as_str(), &store),
                    &self.file_schema,
                    files,
                )
                .await?
            } else {
                files
            };
            let (groups, statistics) =
                compute_all_files_statistics(group_files(files, target), Arc::clone(&self.schema), collect, false)?;
            let config = FileScanConfigBuilder::new(url, format.file_source(table_schema))
                .with_file_groups(groups)
                .with_statistics(statistics)
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            plans.push(format.create_physical_plan(state, config).await?);
        }
        UnionExec::try_new(plans)
    }
}

/// Providers built so far, valid while their table keeps its id and version
/// (views: while the catalog generation is unchanged, since they depend on
/// other tables).
#[derive(Debug)]
pub(crate) struct ProviderCache {
    /// (database, name) → (table id, stamp, provider).
    cache: moka::sync::Cache<(String, String), CachedProvider>,
}

type CachedProvider = (String, u64, Arc<dyn TableProvider>);

impl ProviderCache {
    pub(crate) fn new(entries: u64, ttl: Duration) -> Self {
        ProviderCache {
            cache: moka::sync::Cache::builder()
                .max_capacity(entries)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub(crate) fn get(&self, table: &Table, stamp: u64) -> Option<Arc<dyn TableProvider>> {
        let (id, version, provider) = self.cache.get(&(table.database.clone(), table.name.clone()))?;
        (id == table.id && version == stamp).then_some(provider)
    }

    pub(crate) fn put(&self, table: &Table, stamp: u64, provider: Arc<dyn TableProvider>) {
        self.cache.insert(
            (table.database.clone(), table.name.clone()),
            (table.id.clone(), stamp, provider),
        );
    }

    pub(crate) fn forget(&self, database: &str, name: &str) {
        self.cache.invalidate(&(database.to_owned(), name.to_owned()));
    }
}
