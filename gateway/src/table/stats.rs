//! File statistics for the planner, cached per store and file.
//!
//! Row counts, sizes and per-column min/max come from each Parquet file's
//! footer. DataFusion's footer cache cannot hold them safely here: it is keyed
//! by the object path alone and trusts an entry whose size and modification
//! time match, so two buckets holding a file at the same path, of the same
//! size, written in the same second, would share one footer. A footer's
//! statistics answer `min`/`max`/`count` without reading data, so such a mix-up
//! would be a wrong answer. This cache is keyed by the store's URL and the
//! file's full identity (path, size, modification time, ETag).

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::Result;
use object_store::{ObjectMeta, ObjectStore};

/// Column statistics kept at most (a file's weight is its column count + 1).
const CAPACITY: u64 = 500_000;
/// Statistics are never stale (the key is the file's identity); this only
/// returns memory for files no longer read.
const TTL: Duration = Duration::from_secs(3600);

/// Store URL, path, size, modification time (ms) and ETag of a file.
type Key = (String, String, u64, i64, Option<String>);

/// The cache (module docs).
pub(crate) struct FileStats {
    cache: moka::future::Cache<Key, Arc<Statistics>>,
}

impl std::fmt::Debug for FileStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStats")
            .field("files", &self.cache.entry_count())
            .finish()
    }
}

impl FileStats {
    pub(crate) fn new() -> Self {
        FileStats {
            cache: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TTL)
                .weigher(|_, v: &Arc<Statistics>| u32::try_from(v.column_statistics.len() + 1).unwrap_or(u32::MAX))
                .build(),
        }
    }

    /// The statistics of the Parquet file `meta` in the store at `store_url`,
    /// in `schema`'s columns; read from its footer on a miss.
    pub(crate) async fn parquet(
        &self,
        store_url: &str,
        store: &Arc<dyn ObjectStore>,
        schema: &SchemaRef,
        meta: &ObjectMeta,
    ) -> Result<Arc<Statistics>> {
        let key = (
            store_url.to_owned(),
            meta.location.to_string(),
            meta.size,
            meta.last_modified.timestamp_millis(),
            meta.e_tag.clone(),
        );
        self.cache
            .try_get_with(key, async {
                let stats = DFParquetMetadata::new(store.as_ref(), meta)
                    .fetch_statistics(schema)
                    .await?;
                Ok(Arc::new(stats))
            })
            .await
            .map_err(|e: Arc<datafusion::error::DataFusionError>| datafusion::error::DataFusionError::Shared(e))
    }
}
