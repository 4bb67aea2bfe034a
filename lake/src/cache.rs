//! The Parquet footer cache: parsed file metadata kept in memory so a query
//! that reads a file again does not fetch and decode its footer again.
//!
//! It is DataFusion's `FileMetadataCache` slot filled with a moka cache that
//! has a byte budget and a time-to-live from the configuration. DataFusion
//! checks each hit against the file's current size and modification time, so
//! a rewritten file is never read with a stale footer.

use std::sync::RwLock;
use std::time::Duration;

use datafusion::common::HashMap;
use datafusion::common::TableReference;
use datafusion::execution::cache::cache_manager::CachedFileMetadataEntry;
use datafusion::execution::cache::{Cache, CacheEntryInfo, CacheValue};
use object_store::path::Path;

/// Byte budget and lifetime of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    pub bytes: u64,
    pub ttl: Duration,
}

/// The footer cache (see the module docs).
pub struct FooterCache {
    inner: RwLock<moka::sync::Cache<Path, CachedFileMetadataEntry>>,
    limits: RwLock<CacheLimits>,
    counters: Option<crate::store::CacheCounters>,
}

impl std::fmt::Debug for FooterCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FooterCache").field("limits", &self.limits()).finish()
    }
}

fn build(limits: CacheLimits) -> moka::sync::Cache<Path, CachedFileMetadataEntry> {
    moka::sync::Cache::builder()
        .max_capacity(limits.bytes)
        .time_to_live(limits.ttl)
        .weigher(|k: &Path, v: &CachedFileMetadataEntry| u32::try_from(k.as_ref().len() + v.size()).unwrap_or(u32::MAX))
        .build()
}

impl FooterCache {
    pub fn new(limits: CacheLimits) -> Self {
        FooterCache {
            inner: RwLock::new(build(limits)),
            limits: RwLock::new(limits),
            counters: None,
        }
    }

    /// Counts lookups (hits and misses) in `counters`.
    pub fn with_counters(mut self, counters: crate::store::CacheCounters) -> Self {
        self.counters = Some(counters);
        self
    }

    fn cache(&self) -> moka::sync::Cache<Path, CachedFileMetadataEntry> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn limits(&self) -> CacheLimits {
        *self.limits.read().unwrap_or_else(|e| e.into_inner())
    }

    fn rebuild(&self, limits: CacheLimits) {
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) = limits;
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = build(limits);
    }
}

impl Cache<Path, CachedFileMetadataEntry> for FooterCache {
    fn get(&self, key: &Path) -> Option<CachedFileMetadataEntry> {
        let found = self.cache().get(key);
        if let Some(c) = &self.counters {
            c.record(found.is_some());
        }
        found
    }

    fn put(&self, key: &Path, value: CachedFileMetadataEntry) -> Option<CachedFileMetadataEntry> {
        let cache = self.cache();
        let old = cache.get(key);
        cache.insert(key.clone(), value);
        old
    }

    fn remove(&self, k: &Path) -> Option<CachedFileMetadataEntry> {
        self.cache().remove(k)
    }

    fn contains_key(&self, k: &Path) -> bool {
        self.cache().contains_key(k)
    }

    fn len(&self) -> usize {
        usize::try_from(self.cache().entry_count()).unwrap_or(usize::MAX)
    }

    fn clear(&self) {
        self.cache().invalidate_all();
    }

    fn name(&self) -> String {
        "SluiceFooterCache".to_owned()
    }

    fn cache_limit(&self) -> usize {
        usize::try_from(self.limits().bytes).unwrap_or(usize::MAX)
    }

    fn update_cache_limit(&self, limit: usize) {
        let mut limits = self.limits();
        let bytes = limit as u64;
        if limits.bytes != bytes {
            limits.bytes = bytes;
            self.rebuild(limits);
        }
    }

    fn cache_ttl(&self) -> Option<Duration> {
        Some(self.limits().ttl)
    }

    fn update_cache_ttl(&self, ttl: Option<Duration>) {
        let mut limits = self.limits();
        if let Some(ttl) = ttl
            && ttl != limits.ttl
        {
            limits.ttl = ttl;
            self.rebuild(limits);
        }
    }

    fn drop_table_entries(&self, _table_ref: &TableReference) -> datafusion::common::Result<()> {
        // Keys are file paths, not tables; entries are validated per use.
        Ok(())
    }

    fn list_entries(&self) -> HashMap<Path, CacheEntryInfo<CachedFileMetadataEntry>> {
        self.cache()
            .iter()
            .map(|(k, v)| {
                let size_bytes = v.size();
                (
                    (*k).clone(),
                    CacheEntryInfo {
                        value: v,
                        size_bytes,
                        hits: 0,
                        expires: None,
                    },
                )
            })
            .collect()
    }
}
