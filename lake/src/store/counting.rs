//! Request counting: every store a Sluice process builds is wrapped so its
//! requests show in `/metrics` by kind (LIST, GET, HEAD, PUT, DELETE, COPY).
//! A call counts once, however many pages or parts the store splits it into.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use prometheus::{IntCounterVec, Opts};

/// Object-store requests by kind, and lookups of the metadata caches that
/// spare them (hits / (hits + misses) is a cache's hit ratio).
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    requests: IntCounterVec,
    cache_lookups: IntCounterVec,
}

/// Hit and miss counters of one cache.
#[derive(Debug, Clone)]
pub struct CacheCounters {
    hits: prometheus::IntCounter,
    misses: prometheus::IntCounter,
}

impl CacheCounters {
    /// Counts a lookup that found its entry (`hit`) or not.
    pub fn record(&self, hit: bool) {
        if hit { &self.hits } else { &self.misses }.inc();
    }
}

impl StoreMetrics {
    pub fn new() -> prometheus::Result<Self> {
        Ok(StoreMetrics {
            requests: IntCounterVec::new(
                Opts::new("object_store_requests_total", "Object store requests, by kind"),
                &["kind"],
            )?,
            cache_lookups: IntCounterVec::new(
                Opts::new(
                    "cache_lookups_total",
                    "Metadata cache lookups, by cache and result (hit, miss)",
                ),
                &["cache", "result"],
            )?,
        })
    }

    /// Registers the counters in a process's registry.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.cache_lookups.clone()))
    }

    /// The counters of cache `name` (`parquet_footer`, `partitions`, ...).
    pub fn cache(&self, name: &str) -> CacheCounters {
        CacheCounters {
            hits: self.cache_lookups.with_label_values(&[name, "hit"]),
            misses: self.cache_lookups.with_label_values(&[name, "miss"]),
        }
    }

    fn inc(&self, kind: &str) {
        self.requests.with_label_values(&[kind]).inc();
    }

    /// Requests of `kind` so far.
    pub fn count(&self, kind: &str) -> u64 {
        self.requests.with_label_values(&[kind]).get()
    }
}

/// An [`ObjectStore`] that counts the requests it passes on.
#[derive(Debug)]
pub(super) struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    metrics: StoreMetrics,
}

impl CountingStore {
    pub(super) fn new(inner: Arc<dyn ObjectStore>, metrics: StoreMetrics) -> Self {
        CountingStore { inner, metrics }
    }
}

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.metrics.inc("PUT");
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.metrics.inc("PUT");
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.metrics.inc(if options.head { "HEAD" } else { "GET" });
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.metrics.inc("GET");
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.metrics.inc("DELETE");
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.metrics.inc("LIST");
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.metrics.inc("LIST");
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.metrics.inc("LIST");
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.metrics.inc("COPY");
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.metrics.inc("COPY");
        self.inner.rename_opts(from, to, options).await
    }
}
