//! Object stores: which store serves a table location, built the same way in
//! the gateway and on every executor.
//!
//! A store is chosen by the location's scheme and bucket and configured from
//! three layers, later ones winning:
//! 1. the cloud's standard environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`; for S3
//!    also the shared profile files named by `AWS_PROFILE`);
//! 2. a *named store* of the config file (`[stores.NAME]`) whose `url` is the
//!    location's bucket, or that a table selects with `OPTIONS ('store' 'NAME')`;
//! 3. a table's own `OPTIONS` (`'aws.region' '...'`, `'aws.endpoint' '...'`).
//!
//! Table options travel inside plans, so they may not carry credentials
//! ([`TableStoreOptions::parse`] refuses them): credentials live only in the
//! environment and the config file of each process. A table's options are
//! folded into the user-info part of its [`ObjectStoreUrl`] (URL-safe base64
//! of `store=archive&aws_region=eu-west-1`, then `@bucket`), which is all an
//! executor receives and all it needs to build the same store.
//!
//! Every store is wrapped so its requests are counted by kind
//! ([`StoreMetrics`]), which is how operators see what caching saves.

mod aws_profile;
mod counting;
mod options;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::{ObjectStoreRegistry, ObjectStoreUrl};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use url::Url;

use counting::CountingStore;
pub use counting::{CacheCounters, StoreMetrics};
pub use options::TableStoreOptions;

/// Errors in store settings or locations. Messages are safe to show clients:
/// they never contain option values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("location '{0}' is not a valid URL")]
    BadLocation(String),
    #[error("scheme '{0}' is not supported; use file://, s3://, gs://, az:// or abfss://")]
    UnsupportedScheme(String),
    #[error("unknown option '{key}' for {kind} stores")]
    UnknownOption { kind: &'static str, key: String },
    #[error(
        "option '{0}' is a credential: table OPTIONS are stored in the catalog and sent inside plans, so credentials belong in the environment or a named store of the config file"
    )]
    CredentialInOptions(String),
    #[error(
        "option '{0}' cannot be set per table (it would decide where credentials go); set it in the environment or a named store of the config file, and pick that store with OPTIONS ('store' 'NAME')"
    )]
    NotPerTable(String),
    #[error("no store named '{0}' in the configuration")]
    UnknownStore(String),
    #[error("store '{name}': {message}")]
    BadNamedStore { name: String, message: String },
    #[error("cannot build the {kind} store for '{url}': {message}")]
    Build {
        kind: &'static str,
        url: String,
        message: String,
    },
}

impl From<StoreError> for DataFusionError {
    fn from(e: StoreError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// The kinds of store Sluice builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Local,
    S3,
    Gcs,
    Azure,
}

impl StoreKind {
    /// The kind serving URLs of `scheme`.
    pub fn of_scheme(scheme: &str) -> Result<Self, StoreError> {
        match scheme {
            "file" => Ok(StoreKind::Local),
            "s3" | "s3a" => Ok(StoreKind::S3),
            "gs" => Ok(StoreKind::Gcs),
            "az" | "azure" | "abfs" | "abfss" => Ok(StoreKind::Azure),
            other => Err(StoreError::UnsupportedScheme(other.to_owned())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            StoreKind::Local => "local",
            StoreKind::S3 => "S3",
            StoreKind::Gcs => "GCS",
            StoreKind::Azure => "Azure",
        }
    }

    /// Table option prefix (`aws.`) and object_store key prefix (`aws_`).
    fn prefixes(self) -> Option<(&'static str, &'static str)> {
        match self {
            StoreKind::Local => None,
            StoreKind::S3 => Some(("aws.", "aws_")),
            StoreKind::Gcs => Some(("gcp.", "google_")),
            StoreKind::Azure => Some(("azure.", "azure_")),
        }
    }

    /// Checks that `key` (object_store spelling) is an option of this kind.
    fn validate_key(self, key: &str) -> Result<(), StoreError> {
        let ok = match self {
            StoreKind::Local => false,
            StoreKind::S3 => key.parse::<AmazonS3ConfigKey>().is_ok(),
            StoreKind::Gcs => key.parse::<GoogleConfigKey>().is_ok(),
            StoreKind::Azure => key.parse::<AzureConfigKey>().is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(StoreError::UnknownOption {
                kind: self.name(),
                key: key.to_owned(),
            })
        }
    }

    /// Whether a table may set `key`: only settings that neither carry nor
    /// redirect credentials. An S3 endpoint may be chosen (SigV4 never sends
    /// the secret); GCS and Azure send bearer tokens, so their endpoints,
    /// identity and token settings belong to the process's configuration.
    fn table_may_set(self, key: &str) -> bool {
        use object_store::ClientConfigKey;
        match self {
            StoreKind::Local => false,
            StoreKind::S3 => matches!(
                key.parse::<AmazonS3ConfigKey>(),
                Ok(AmazonS3ConfigKey::Region
                    | AmazonS3ConfigKey::DefaultRegion
                    | AmazonS3ConfigKey::Endpoint
                    | AmazonS3ConfigKey::VirtualHostedStyleRequest
                    | AmazonS3ConfigKey::UnsignedPayload
                    | AmazonS3ConfigKey::Checksum
                    | AmazonS3ConfigKey::SkipSignature
                    | AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
            ),
            StoreKind::Gcs => matches!(key.parse::<GoogleConfigKey>(), Ok(GoogleConfigKey::SkipSignature)),
            StoreKind::Azure => matches!(
                key.parse::<AzureConfigKey>(),
                Ok(AzureConfigKey::AccountName | AzureConfigKey::SkipSignature)
            ),
        }
    }
}

/// Words that mark an option as a credential (for the error message).
const CREDENTIAL_WORDS: &[&str] = &[
    "secret",
    "access_key",
    "account_key",
    "master_key",
    "token",
    "sas",
    "password",
    "service_account",
    "credentials",
    "client_id",
];

fn is_credential(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    CREDENTIAL_WORDS.iter().any(|w| k.contains(w))
}

/// A store configured in the config file: `[stores.NAME]` with the bucket URL
/// it serves and object_store options (`aws_endpoint = "..."`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedStoreConfig {
    /// `s3://bucket`, `gs://bucket`, `az://container`: locations under it use
    /// this store unless a table names another.
    pub url: String,
    /// object_store options of the store's kind, in object_store's spelling
    /// (`aws_endpoint`, `aws_region`, `aws_access_key_id`, `google_service_account`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct NamedStore {
    kind: StoreKind,
    /// `scheme://bucket`, normalised.
    bucket: String,
    options: BTreeMap<String, String>,
}

/// Store settings of one process: its named stores. The environment is read
/// when a store is built.
#[derive(Clone, Default)]
pub struct StoreSettings {
    named: BTreeMap<String, NamedStore>,
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Named stores may hold credentials: show only their names.
        f.debug_struct("StoreSettings")
            .field("named", &self.named.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn bucket_key(url: &Url) -> String {
    let scheme = match url.scheme() {
        "s3a" => "s3",
        "azure" | "abfs" | "abfss" => "az",
        s => s,
    };
    format!("{scheme}://{}", url.host_str().unwrap_or_default())
}

impl StoreSettings {
    /// Validates the named stores of a config file.
    pub fn new(named: &BTreeMap<String, NamedStoreConfig>) -> Result<Self, StoreError> {
        let mut out = BTreeMap::new();
        for (name, cfg) in named {
            let bad = |message: String| StoreError::BadNamedStore {
                name: name.clone(),
                message,
            };
            let url = Url::parse(&cfg.url).map_err(|e| bad(format!("url '{}': {e}", cfg.url)))?;
            let kind = StoreKind::of_scheme(url.scheme()).map_err(|e| bad(e.to_string()))?;
            if kind == StoreKind::Local {
                return Err(bad("file:// needs no named store".to_owned()));
            }
            let (url, mut options) = normalize(&url);
            for (k, v) in &cfg.options {
                kind.validate_key(k).map_err(|e| bad(e.to_string()))?;
                options.insert(k.clone(), v.clone());
            }
            out.insert(
                name.clone(),
                NamedStore {
                    kind,
                    bucket: bucket_key(&url),
                    options,
                },
            );
        }
        Ok(StoreSettings { named: out })
    }

    fn named_for_bucket(&self, bucket: &str) -> Option<&NamedStore> {
        self.named.values().find(|s| s.bucket == bucket)
    }
}

/// Rewrites `abfss://container@account.dfs.core.windows.net/p` to
/// `az://container/p` plus the account as an option, so the user-info part of
/// every URL is free for table options.
fn normalize(url: &Url) -> (Url, BTreeMap<String, String>) {
    let mut options = BTreeMap::new();
    if matches!(url.scheme(), "abfs" | "abfss") && !url.username().is_empty() {
        let account = url
            .host_str()
            .unwrap_or_default()
            .split('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        if let Ok(u) = Url::parse(&format!("az://{}{}", url.username(), url.path())) {
            options.insert("azure_storage_account_name".to_owned(), account);
            return (u, options);
        }
    }
    (url.clone(), options)
}

/// A table location resolved to its store: the [`ObjectStoreUrl`] a plan
/// carries and the path inside the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedLocation {
    pub store_url: ObjectStoreUrl,
    /// The location with the table's store options folded in, as DataFusion's
    /// listing code expects it (`s3://opts@bucket/path/`).
    pub url: Url,
    pub path: object_store::path::Path,
}

/// Resolves a table location (as stored in the catalog) with the table's
/// store options.
pub fn resolve(location: &str, options: &TableStoreOptions) -> Result<ResolvedLocation, StoreError> {
    let url = Url::parse(location).map_err(|_| StoreError::BadLocation(location.to_owned()))?;
    StoreKind::of_scheme(url.scheme())?;
    let (mut url, extra) = normalize(&url);
    let mut options = options.clone();
    for (k, v) in extra {
        options.overrides.entry(k).or_insert(v);
    }
    let encoded = options.encode();
    if !encoded.is_empty() {
        url.set_username(&encoded)
            .map_err(|()| StoreError::BadLocation(location.to_owned()))?;
    }
    let base = format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeUsername..url::Position::AfterPort]
    );
    let store_url = ObjectStoreUrl::parse(&base).map_err(|_| StoreError::BadLocation(location.to_owned()))?;
    let path = object_store::path::Path::from_url_path(url.path())
        .map_err(|_| StoreError::BadLocation(location.to_owned()))?;
    Ok(ResolvedLocation { store_url, url, path })
}

/// The [`ObjectStoreRegistry`] of every Sluice runtime: builds stores on first
/// use from the process's settings and the URL's table options, and counts
/// their requests.
pub struct LakeRegistry {
    settings: StoreSettings,
    metrics: StoreMetrics,
    stores: RwLock<BTreeMap<String, Arc<dyn ObjectStore>>>,
}

impl std::fmt::Debug for LakeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeRegistry")
            .field("settings", &self.settings)
            .field(
                "stores",
                &self
                    .stores
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .keys()
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl LakeRegistry {
    pub fn new(settings: StoreSettings, metrics: StoreMetrics) -> Self {
        LakeRegistry {
            settings,
            metrics,
            stores: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    fn key(url: &Url) -> String {
        format!(
            "{}://{}",
            url.scheme(),
            &url[url::Position::BeforeUsername..url::Position::AfterPort]
        )
    }

    fn build(&self, url: &Url) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let kind = StoreKind::of_scheme(url.scheme())?;
        let table = TableStoreOptions::decode(url.username())?;
        let bucket = url.host_str().unwrap_or_default().to_owned();
        let named = match &table.store {
            Some(name) => Some(
                self.settings
                    .named
                    .get(name)
                    .ok_or_else(|| StoreError::UnknownStore(name.clone()))?,
            ),
            None => self.settings.named_for_bucket(&bucket_key(url)),
        };
        let mut options: BTreeMap<String, String> = named.map(|n| n.options.clone()).unwrap_or_default();
        if let Some(n) = named
            && n.kind != kind
        {
            return Err(StoreError::BadNamedStore {
                name: table.store.clone().unwrap_or_default(),
                message: format!("is a {} store, the location is {}", n.kind.name(), kind.name()),
            });
        }
        for (k, v) in table.overrides {
            // Defence in depth: the gateway validated these, but a store URL
            // is never trusted to redirect this process's credentials.
            if !kind.table_may_set(&k) {
                return Err(StoreError::NotPerTable(k));
            }
            options.insert(k, v);
        }
        let err = |e: object_store::Error| StoreError::Build {
            kind: kind.name(),
            url: format!("{}://{bucket}", url.scheme()),
            message: e.to_string(),
        };
        let store: Arc<dyn ObjectStore> = match kind {
            // Deleting a file removes directories it leaves empty (dropped tables).
            StoreKind::Local => Arc::new(LocalFileSystem::new().with_automatic_cleanup(true)),
            StoreKind::S3 => {
                let mut b = aws_profile::apply(AmazonS3Builder::from_env());
                for (k, v) in &options {
                    b = b.with_config(k.parse().map_err(err)?, v);
                }
                Arc::new(b.with_bucket_name(&bucket).build().map_err(err)?)
            }
            StoreKind::Gcs => {
                let mut b = GoogleCloudStorageBuilder::from_env();
                for (k, v) in &options {
                    b = b.with_config(k.parse().map_err(err)?, v);
                }
                Arc::new(b.with_bucket_name(&bucket).build().map_err(err)?)
            }
            StoreKind::Azure => {
                let mut b = MicrosoftAzureBuilder::from_env();
                for (k, v) in &options {
                    b = b.with_config(k.parse().map_err(err)?, v);
                }
                Arc::new(b.with_container_name(&bucket).build().map_err(err)?)
            }
        };
        Ok(Arc::new(CountingStore::new(store, self.metrics.clone())))
    }
}

impl ObjectStoreRegistry for LakeRegistry {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        let store: Arc<dyn ObjectStore> = Arc::new(CountingStore::new(store, self.metrics.clone()));
        self.stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(Self::key(url), store)
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        let key = Self::key(url);
        if let Some(s) = self.stores.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Arc::clone(s));
        }
        let store = self.build(url)?;
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        Ok(Arc::clone(stores.entry(key).or_insert(store)))
    }
}

#[cfg(test)]
mod tests;
