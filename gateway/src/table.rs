//! Lake tables as DataFusion reads them: [`LakeTable`] plans a scan from the
//! catalog's partition list (or, for a Hive Metastore's own tables, the
//! partitions the metastore chose by the query's filter), pruned by the
//! query's filters on partition columns, and reads only the surviving partitions' files — from the
//! manifest for managed tables, by listing the partition's location for
//! external ones. Pruned partitions are never listed or read.
//!
//! [`TableServices`] holds the metadata caches (moka, each with a TTL and a
//! size bound from the config): partition sets (partitions with their typed
//! values and, for managed tables, their files) and file listings. Both are
//! keyed by table id and dropped whenever the catalog reports a change to the
//! table (`CatalogState::on_change`) or `REFRESH TABLE` runs; partition sets
//! also carry the table version they were read at, so a set older than the
//! snapshot's table is never used.

mod codec;
mod explain;
mod listing;
mod provider;
mod prune;
mod pushdown;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{FieldRef, Schema};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use object_store::ObjectMeta;

pub use self::codec::LakeCodec;
pub use self::explain::{ScanLog, ScanReport};
pub use self::listing::{child_url, decode_partition_value, discover_partitions};
pub use self::provider::LakeTable;
use crate::catalog::{CatalogState, DataFile, NULL_PARTITION, Partition, Table, TableKind};

/// Byte budget and lifetime of each metadata cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Table providers kept (entries).
    pub tables: u64,
    pub tables_ttl: Duration,
    /// Bytes of partition sets.
    pub partitions_bytes: u64,
    pub partitions_ttl: Duration,
    /// Bytes of file listings.
    pub listings_bytes: u64,
    pub listings_ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            tables: 10_000,
            tables_ttl: Duration::from_secs(3600),
            partitions_bytes: 256 << 20,
            partitions_ttl: Duration::from_secs(3600),
            listings_bytes: 256 << 20,
            listings_ttl: Duration::from_secs(300),
        }
    }
}

/// One partition as a scan sees it.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// Hive values (strings, [`NULL_PARTITION`] for NULL).
    pub raw: Vec<String>,
    /// Typed values, one per partition column.
    pub values: Vec<ScalarValue>,
    pub location: String,
    /// The manifest's files; `None`: found by listing `location`.
    pub files: Option<Vec<DataFile>>,
}

/// The partitions of one table version, with their values as a batch (one row
/// per partition) to evaluate filters on.
#[derive(Debug)]
pub(crate) struct PartitionSet {
    pub version: u64,
    pub parts: Vec<Part>,
    /// `None` for unpartitioned tables; partitions whose stored values do not
    /// parse as the column types are left out (and logged).
    pub values: Option<RecordBatch>,
}

impl PartitionSet {
    fn weight(&self) -> u32 {
        let bytes: usize = self
            .parts
            .iter()
            .map(|p| {
                64 + p.location.len()
                    + p.raw.iter().map(String::len).sum::<usize>()
                    + p.files
                        .as_ref()
                        .map_or(0, |f| f.iter().map(|f| 48 + f.path.len()).sum())
            })
            .sum();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// Parses a Hive partition value as `field`'s type.
pub fn typed_partition_value(raw: &str, field: &FieldRef) -> DfResult<ScalarValue> {
    if raw == NULL_PARTITION {
        return ScalarValue::try_from(field.data_type());
    }
    ScalarValue::try_from_string(raw.to_owned(), field.data_type())
}

/// The Hive string a managed table's writer uses for `raw` in column
/// `field`: the typed value formatted as Arrow formats it (`01` on an INT
/// column is `1`), so a partition spec and the written directories agree.
pub fn canonical_partition_value(raw: &str, field: &FieldRef) -> DfResult<String> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let value = typed_partition_value(raw, field)?;
    if value.is_null() {
        return Ok(NULL_PARTITION.to_owned());
    }
    let array = value.to_array()?;
    let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
    Ok(formatter.value(0).to_string())
}

/// Whether a managed table may be partitioned by a column of `t`: types
/// whose text form reads back as the same value.
pub fn partitionable(t: &datafusion::arrow::datatypes::DataType) -> bool {
    use datafusion::arrow::datatypes::DataType as D;
    matches!(
        t,
        D::Boolean
            | D::Int8
            | D::Int16
            | D::Int32
            | D::Int64
            | D::UInt8
            | D::UInt16
            | D::UInt32
            | D::UInt64
            | D::Float32
            | D::Float64
            | D::Decimal128(..)
            | D::Decimal256(..)
            | D::Utf8
            | D::LargeUtf8
            | D::Utf8View
            | D::Date32
            | D::Date64
            | D::Timestamp(..)
    )
}

/// Shared by every session of the gateway: the metadata caches and the
/// catalog they are filled from.
pub struct TableServices {
    catalog: Arc<CatalogState>,
    settings: CacheSettings,
    partitions: moka::sync::Cache<String, Arc<PartitionSet>>,
    /// Hits and misses of the partition and listing caches.
    partition_lookups: sluice_lake::store::CacheCounters,
    listing_lookups: sluice_lake::store::CacheCounters,
    /// (table id, location) → files under it.
    listings: moka::sync::Cache<(String, String), Arc<Vec<ObjectMeta>>>,
    pub(crate) providers: provider::ProviderCache,
    /// Statistics of Parquet files, for the planner.
    pub(crate) stats: stats::FileStats,
    /// Bumped by every invalidation: a listing that started before one is
    /// not cached (it may predate a REFRESH TABLE).
    epoch: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for TableServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableServices")
            .field("settings", &self.settings)
            .field("partition_sets", &self.partitions.entry_count())
            .field("listings", &self.listings.entry_count())
            .finish()
    }
}

impl TableServices {
    /// Builds the caches and subscribes them to the catalog's changes.
    pub fn new(
        catalog: Arc<CatalogState>,
        settings: CacheSettings,
        metrics: &sluice_lake::store::StoreMetrics,
    ) -> Arc<Self> {
        let services = Arc::new(TableServices {
            catalog: Arc::clone(&catalog),
            settings,
            partition_lookups: metrics.cache("partitions"),
            listing_lookups: metrics.cache("listings"),
            partitions: moka::sync::Cache::builder()
                .max_capacity(settings.partitions_bytes)
                .time_to_live(settings.partitions_ttl)
                .weigher(|_, v: &Arc<PartitionSet>| v.weight())
                .build(),
            listings: moka::sync::Cache::builder()
                .max_capacity(settings.listings_bytes)
                .time_to_live(settings.listings_ttl)
                .weigher(|k: &(String, String), v: &Arc<Vec<ObjectMeta>>| {
                    let bytes = k.1.len() + v.iter().map(|m| 64 + m.location.as_ref().len()).sum::<usize>();
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .support_invalidation_closures()
                .build(),
            providers: provider::ProviderCache::new(settings.tables, settings.tables_ttl),
            stats: stats::FileStats::new(),
            epoch: std::sync::atomic::AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&services);
        catalog.on_change(Arc::new(move |tables| {
            if let Some(s) = weak.upgrade() {
                for t in tables {
                    s.forget(t);
                }
            }
        }));
        services
    }

    pub fn catalog(&self) -> &Arc<CatalogState> {
        &self.catalog
    }

    /// Drops everything cached about `table`.
    pub fn forget(&self, table: &Table) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.partitions.invalidate(&table.id);
        let listing_id = table.id.clone();
        if let Err(e) = self.listings.invalidate_entries_if(move |k, _| k.0 == listing_id) {
            tracing::warn!("cannot invalidate listings of {}: {e}", table.qualified());
            self.listings.invalidate_all();
        }
        self.providers.forget(&table.database, &table.name);
    }

    /// The partition set of `table` at its version (cached); with
    /// `hive_filter`, only the partitions it may match where the metastore
    /// evaluates it (see [`pushdown`]).
    pub(crate) async fn partitions(
        &self,
        table: &Arc<Table>,
        hive_filter: Option<&str>,
    ) -> DfResult<Arc<PartitionSet>> {
        let store = self.catalog.metastore();
        if store.partitions_change_outside(table) {
            // Another engine may change these at any time: the store's own
            // short-lived cache bounds the calls, none is kept here.
            let chosen = match hive_filter {
                Some(filter) => store.partitions_matching(table, filter).await.map_err(external)?,
                None => None,
            };
            return Ok(Arc::new(self.load_partitions(table, chosen).await?));
        }
        let cached = self
            .partitions
            .get(&table.id)
            .filter(|set| set.version >= table.version);
        self.partition_lookups.record(cached.is_some());
        if let Some(set) = cached {
            return Ok(set);
        }
        let set = Arc::new(self.load_partitions(table, None).await?);
        self.partitions.insert(table.id.clone(), Arc::clone(&set));
        Ok(set)
    }

    /// Reads the partition set of `table`: `chosen` partitions, or all.
    async fn load_partitions(&self, table: &Arc<Table>, chosen: Option<Vec<Partition>>) -> DfResult<PartitionSet> {
        let store = self.catalog.metastore();
        let schema = crate::catalog::provider::decode_schema(&table.arrow_schema)?;
        let fields: Vec<FieldRef> = table
            .partition_columns
            .iter()
            .map(|c| schema.field_with_name(c).map(|f| Arc::new(f.clone())))
            .collect::<Result<_, _>>()?;
        let managed = table.kind == TableKind::Managed;
        let mut files = if managed {
            store.list_files(&table.id).await.map_err(external)?
        } else {
            Vec::new()
        };
        let mut parts = Vec::new();
        if fields.is_empty() {
            if managed {
                parts.push(Part {
                    raw: vec![],
                    values: vec![],
                    location: table.locations.first().cloned().unwrap_or_default(),
                    files: Some(files),
                });
            } else {
                parts.extend(table.locations.iter().map(|l| Part {
                    raw: vec![],
                    values: vec![],
                    location: l.clone(),
                    files: None,
                }));
            }
        } else {
            let mut by_partition: std::collections::HashMap<Vec<String>, Vec<DataFile>> =
                std::collections::HashMap::new();
            for f in files.drain(..) {
                by_partition.entry(f.partition.clone()).or_default().push(f);
            }
            let listed = match chosen {
                Some(parts) => parts,
                None => store.list_partitions(&table.id).await.map_err(external)?,
            };
            for p in listed {
                let values: DfResult<Vec<ScalarValue>> = p
                    .values
                    .iter()
                    .zip(&fields)
                    .map(|(raw, f)| typed_partition_value(raw, f))
                    .collect();
                let Ok(values) = values else {
                    tracing::warn!(table = %table.qualified(), values = ?p.values, "skipping a partition whose values do not parse as the column types");
                    continue;
                };
                let files = if p.listed {
                    None
                } else {
                    Some(by_partition.remove(&p.values).unwrap_or_default())
                };
                parts.push(Part {
                    raw: p.values,
                    values,
                    location: p.location,
                    files,
                });
            }
        }
        let values = if fields.is_empty() {
            None
        } else {
            let columns = (0..fields.len())
                .map(|i| ScalarValue::iter_to_array(parts.iter().map(|p| p.values[i].clone())))
                .collect::<DfResult<Vec<_>>>();
            let schema = Arc::new(Schema::new(fields.clone()));
            Some(match columns {
                Ok(columns) if !parts.is_empty() => RecordBatch::try_new(schema, columns)?,
                _ => RecordBatch::new_empty(schema),
            })
        };
        Ok(PartitionSet {
            version: table.version,
            parts,
            values,
        })
    }

    /// Files under `location` of `table` (cached).
    pub(crate) async fn listing(
        &self,
        table_id: &str,
        location: &str,
        store: Arc<dyn object_store::ObjectStore>,
        resolved: &sluice_lake::store::ResolvedLocation,
    ) -> DfResult<Arc<Vec<ObjectMeta>>> {
        let key = (table_id.to_owned(), location.to_owned());
        let cached = self.listings.get(&key);
        self.listing_lookups.record(cached.is_some());
        if let Some(files) = cached {
            return Ok(files);
        }
        let epoch = self.epoch.load(std::sync::atomic::Ordering::SeqCst);
        let files = Arc::new(listing::list(store, &resolved.path, location.ends_with('/')).await?);
        if self.epoch.load(std::sync::atomic::Ordering::SeqCst) == epoch {
            self.listings.insert(key, Arc::clone(&files));
        }
        Ok(files)
    }
}

fn external(e: crate::catalog::CatalogError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
