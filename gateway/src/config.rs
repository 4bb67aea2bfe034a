//! The gateway's one typed configuration: clap flags, each with a `SLUICE_*`
//! env twin, optionally layered under a TOML file. Validated once by
//! [`Config::load`]; immutable afterwards.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;
use sluice_lake::config::Secret;

pub use self::catalog::CatalogLocation;

/// Errors found while loading or validating the configuration. Each names the
/// flag at fault so start-up can stop with one clear line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--config: cannot read {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("--config: {path} is not valid TOML for the gateway: {source}")]
    ParseFile {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{flag}: {message}")]
    Invalid { flag: &'static str, message: String },
}

fn invalid(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        message: message.into(),
    }
}

/// A secret given directly (flag or env) or in a file (trailing newline
/// dropped); the direct one wins.
fn password_from(
    file_flag: &'static str,
    direct: Option<String>,
    path: Option<PathBuf>,
) -> Result<Option<String>, ConfigError> {
    match (direct, path) {
        (Some(p), _) => Ok(Some(p)),
        (None, Some(path)) => Ok(Some(
            std::fs::read_to_string(&path)
                .map_err(|e| invalid(file_flag, format!("cannot read {}: {e}", path.display())))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        )),
        (None, None) => Ok(None),
    }
}

/// Command-line flags. Every flag has a `SLUICE_*` environment twin.
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-gateway", version, about = "Sluice SQL gateway for the data lake")]
pub struct Cli {
    /// TOML file with the same keys as the flags (snake_case); flags and env win over it.
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Home of the embedded catalog and the default warehouse.
    #[arg(long, env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where managed tables are written (default `<data-dir>/warehouse`).
    #[arg(long, env = "SLUICE_WAREHOUSE")]
    pub warehouse: Option<String>,
    /// Catalog backend URL: `sqlite:///path/catalog.db` (default `<data-dir>/catalog.db`), `postgres://user@host:port/db` (shared by several gateways) or `thrift://host:9083[,thrift://host2:9083]` (a Hive Metastore, with failover).
    #[arg(long, env = "SLUICE_CATALOG")]
    pub catalog: Option<String>,
    /// With a Hive Metastore catalog: where Sluice keeps what the metastore cannot hold (manifests, pending writes, roles): `sqlite:///path` (default `<data-dir>/catalog.db`) or `postgres://...` (shared by several gateways).
    #[arg(long, env = "SLUICE_CATALOG_SIDE")]
    pub catalog_side: Option<String>,
    /// Serve the catalog as a Hive Metastore (Thrift) on this loopback address (off by default).
    #[arg(long, env = "SLUICE_HMS_LISTEN")]
    pub hms_listen: Option<SocketAddr>,
    /// Password of a PostgreSQL catalog, unless its URL has one (prefer the env twin or --catalog-password-file).
    #[arg(long, env = "SLUICE_CATALOG_PASSWORD", hide_env_values = true)]
    pub catalog_password: Option<Secret<String>>,
    /// File holding the password of a PostgreSQL catalog.
    #[arg(long, env = "SLUICE_CATALOG_PASSWORD_FILE")]
    pub catalog_password_file: Option<PathBuf>,
    /// PEM CA the PostgreSQL catalog's certificate must chain to (TLS verified, host name checked); without it TLS is unauthenticated.
    #[arg(long, env = "SLUICE_CATALOG_CA_FILE")]
    pub catalog_ca_file: Option<PathBuf>,
    /// Seconds between checks of a shared (PostgreSQL, Hive Metastore) catalog for other gateways' and engines' changes (default 1).
    #[arg(long, env = "SLUICE_CATALOG_POLL")]
    pub catalog_poll: Option<f64>,
    /// Postgres wire listen address.
    #[arg(long, env = "SLUICE_PG_LISTEN")]
    pub pg_listen: Option<SocketAddr>,
    /// Arrow Flight SQL listen address.
    #[arg(long, env = "SLUICE_FLIGHT_LISTEN")]
    pub flight_listen: Option<SocketAddr>,
    /// HTTP listen address for /healthz, /readyz and /metrics.
    #[arg(long, env = "SLUICE_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Ballista executors started inside the gateway process.
    #[arg(long, env = "SLUICE_LOCAL_EXECUTORS")]
    pub local_executors: Option<usize>,
    /// Task slots of each in-process executor (default: the CPUs shared out
    /// among the in-process executors, at least one each).
    #[arg(long, env = "SLUICE_LOCAL_EXECUTOR_SLOTS")]
    pub local_executor_slots: Option<usize>,
    /// Partitions a query's shuffles and scans are split into (default: the
    /// task slots of the executors registered when a session opens). More
    /// than the cluster's task slots only adds scheduling round trips.
    #[arg(long, env = "SLUICE_TARGET_PARTITIONS")]
    pub target_partitions: Option<usize>,
    /// Address remote `sluice-executor`s register at (mutual TLS with the
    /// cluster secret). Unset: in-process executors only, on loopback.
    #[arg(long, env = "SLUICE_SCHEDULER_LISTEN")]
    pub scheduler_listen: Option<SocketAddr>,
    /// Shared secret of the cluster (16+ bytes); executors need the same one.
    /// Required with --scheduler-listen; prefer the env twin or the file.
    #[arg(long, env = "SLUICE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<Secret<String>>,
    /// File holding the cluster secret.
    #[arg(long, env = "SLUICE_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Seconds without a heartbeat before an executor is declared lost and
    /// its work recomputed elsewhere.
    #[arg(long, env = "SLUICE_EXECUTOR_TIMEOUT")]
    pub executor_timeout: Option<u64>,
    /// Seconds a query waits for an executor when there is none (at submission,
    /// or after every executor was lost mid-query) before it fails.
    #[arg(long, env = "SLUICE_CAPACITY_WAIT")]
    pub capacity_wait: Option<u64>,
    /// Attempts of one task (failures on executors) before its query fails.
    #[arg(long, env = "SLUICE_TASK_MAX_FAILURES")]
    pub task_max_failures: Option<usize>,
    /// Attempts of one stage (re-runs after its input was lost) before its query fails.
    #[arg(long, env = "SLUICE_STAGE_MAX_FAILURES")]
    pub stage_max_failures: Option<usize>,
    /// PEM certificate chain; with --tls-key enables SSL on the Postgres port and TLS on Flight.
    #[arg(long, env = "SLUICE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8 or RSA).
    #[arg(long, env = "SLUICE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Refuse plaintext Postgres sessions (needs --tls-cert; Flight and HTTP are TLS-only whenever a certificate is set).
    #[arg(long, env = "SLUICE_REQUIRE_TLS", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub require_tls: Option<bool>,
    /// Open Postgres connections at most; more are answered 53300 "too many clients" (default 1000).
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Open Flight SQL connections at most; calls on more are answered RESOURCE_EXHAUSTED (default 1000).
    #[arg(long, env = "SLUICE_FLIGHT_MAX_CONNECTIONS")]
    pub flight_max_connections: Option<usize>,
    /// Seconds running statements may take to finish after SIGTERM before they are cancelled (default 30).
    #[arg(long, env = "SLUICE_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<u64>,
    /// Ended statements kept in system.queries (default 1000).
    #[arg(long, env = "SLUICE_QUERY_HISTORY")]
    pub query_history: Option<usize>,
    /// Log lines as `text` (default) or `json` (one object per line).
    #[arg(long, env = "SLUICE_LOG_FORMAT")]
    pub log_format: Option<sluice_lake::logging::LogFormat>,
    /// File holding a bearer token that may read /metrics and /executors (for Prometheus); a superuser login may too.
    #[arg(long, env = "SLUICE_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Name of the bootstrap administrator.
    #[arg(long, env = "SLUICE_ADMIN_USER")]
    pub admin_user: Option<String>,
    /// Bootstrap administrator password (prefer the env twin or --admin-password-file).
    #[arg(long, env = "SLUICE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<Secret<String>>,
    /// File holding the bootstrap administrator password.
    #[arg(long, env = "SLUICE_ADMIN_PASSWORD_FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// Write a small TPC-H data set (schema `tpch`) on first start (`--demo` or `--demo=true`).
    #[arg(long, env = "SLUICE_DEMO", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub demo: Option<bool>,
    /// TPC-H scale factor for --demo.
    #[arg(long, env = "SLUICE_DEMO_SCALE")]
    pub demo_scale: Option<f64>,
    /// Key that signs bearer tokens and Flight tickets (32+ bytes). Gateways
    /// sharing it accept each other's tokens. Default: `<data-dir>/token.key`,
    /// created on first start.
    #[arg(long, env = "SLUICE_TOKEN_KEY_FILE")]
    pub token_key_file: Option<PathBuf>,
    /// JSON-lines audit log of every statement (read back as `system.audit`). Default: `<data-dir>/audit.jsonl`.
    #[arg(long, env = "SLUICE_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Accept JWTs signed with this shared secret (HS256/384/512; 32+ bytes).
    #[arg(long, env = "SLUICE_JWT_SECRET_FILE", conflicts_with = "jwt_public_key_file")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Accept JWTs signed by this public key (PEM; RSA: RS*/PS*, EC: ES256/384).
    #[arg(long, env = "SLUICE_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Accept JWTs signed by the keys of this JWK Set (http/https URL; RSA: RS*/PS*, EC: ES256/384; the token's `kid` picks the key).
    #[arg(long, env = "SLUICE_JWT_JWKS_URL", conflicts_with_all = ["jwt_secret_file", "jwt_public_key_file"])]
    pub jwt_jwks_url: Option<String>,
    /// Seconds the keys of --jwt-jwks-url are kept without a refetch that lists them again (default 600).
    #[arg(long, env = "SLUICE_JWT_JWKS_TTL")]
    pub jwt_jwks_ttl: Option<u64>,
    /// Required `iss` of JWTs.
    #[arg(long, env = "SLUICE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of JWTs.
    #[arg(long, env = "SLUICE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The JWT claim that names the user (default `sub`).
    #[arg(long, env = "SLUICE_JWT_USER_CLAIM")]
    pub jwt_user_claim: Option<String>,
    /// The JWT claim listing the login's roles (array, or names separated by spaces/commas); roles of the catalog named there are held for the session, as if granted.
    #[arg(long, env = "SLUICE_JWT_ROLES_CLAIM")]
    pub jwt_roles_claim: Option<String>,
    /// Write the bound addresses as JSON to this file once listening (for tests and supervisors).
    #[arg(long, env = "SLUICE_LISTEN_FILE")]
    pub listen_file: Option<PathBuf>,
    /// Table providers kept in memory (entries; default 10000).
    #[arg(long, env = "SLUICE_TABLE_CACHE_SIZE")]
    pub table_cache_size: Option<u64>,
    /// Seconds a cached table provider is kept (default 3600).
    #[arg(long, env = "SLUICE_TABLE_CACHE_TTL")]
    pub table_cache_ttl: Option<u64>,
    /// Memory for cached partition lists and manifests, e.g. 256MiB (default 256MiB).
    #[arg(long, env = "SLUICE_PARTITION_CACHE_SIZE")]
    pub partition_cache_size: Option<String>,
    /// Seconds a cached partition list is kept (default 3600; changes made
    /// through this gateway invalidate it at once).
    #[arg(long, env = "SLUICE_PARTITION_CACHE_TTL")]
    pub partition_cache_ttl: Option<u64>,
    /// Memory for cached file listings of external tables, e.g. 256MiB (default 256MiB).
    #[arg(long, env = "SLUICE_LISTING_CACHE_SIZE")]
    pub listing_cache_size: Option<String>,
    /// Seconds a file listing is trusted (default 300): files added to an
    /// external location by other writers show after this, or at once after
    /// REFRESH TABLE.
    #[arg(long, env = "SLUICE_LISTING_CACHE_TTL")]
    pub listing_cache_ttl: Option<u64>,
    /// Compression of managed-table Parquet files: zstd (default), snappy or none.
    #[arg(long, env = "SLUICE_WRITE_COMPRESSION")]
    pub write_compression: Option<String>,
    /// Most rows per Parquet row group of managed tables (default 1048576).
    #[arg(long, env = "SLUICE_WRITE_ROW_GROUP_SIZE")]
    pub write_row_group_size: Option<usize>,
    /// Files one write keeps open at once (partitioned writes roll files beyond it; default 64).
    #[arg(long, env = "SLUICE_WRITE_MAX_OPEN_FILES")]
    pub write_max_open_files: Option<usize>,
    /// Size at which a written file is finished and a new one started, e.g. 256MiB (default).
    #[arg(long, env = "SLUICE_WRITE_TARGET_FILE_SIZE")]
    pub write_target_file_size: Option<String>,
    /// Seconds the files replaced by a write or DROP are kept for queries
    /// still reading them before they are deleted (default 60).
    #[arg(long, env = "SLUICE_GC_GRACE")]
    pub gc_grace: Option<u64>,
    #[command(flatten)]
    pub lake: sluice_lake::config::LakeArgs,
}

/// Keys accepted in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    warehouse: Option<String>,
    catalog: Option<String>,
    catalog_side: Option<String>,
    catalog_password_file: Option<PathBuf>,
    catalog_poll: Option<f64>,
    catalog_ca_file: Option<PathBuf>,
    hms_listen: Option<SocketAddr>,
    pg_listen: Option<SocketAddr>,
    flight_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    local_executors: Option<usize>,
    local_executor_slots: Option<usize>,
    target_partitions: Option<usize>,
    scheduler_listen: Option<SocketAddr>,
    cluster_secret_file: Option<PathBuf>,
    executor_timeout: Option<u64>,
    capacity_wait: Option<u64>,
    task_max_failures: Option<usize>,
    stage_max_failures: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    require_tls: Option<bool>,
    max_connections: Option<usize>,
    flight_max_connections: Option<usize>,
    shutdown_timeout: Option<u64>,
    query_history: Option<usize>,
    log_format: Option<sluice_lake::logging::LogFormat>,
    metrics_token_file: Option<PathBuf>,
    admin_user: Option<String>,
    admin_password_file: Option<PathBuf>,
    demo: Option<bool>,
    demo_scale: Option<f64>,
    listen_file: Option<PathBuf>,
    token_key_file: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    jwt_secret_file: Option<PathBuf>,
    jwt_public_key_file: Option<PathBuf>,
    jwt_jwks_url: Option<String>,
    jwt_jwks_ttl: Option<u64>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    jwt_user_claim: Option<String>,
    jwt_roles_claim: Option<String>,
    table_cache_size: Option<u64>,
    table_cache_ttl: Option<u64>,
    partition_cache_size: Option<String>,
    partition_cache_ttl: Option<u64>,
    listing_cache_size: Option<String>,
    listing_cache_ttl: Option<u64>,
    write_compression: Option<String>,
    write_row_group_size: Option<usize>,
    write_max_open_files: Option<usize>,
    write_target_file_size: Option<String>,
    gc_grace: Option<u64>,
    footer_cache_size: Option<String>,
    footer_cache_ttl: Option<u64>,
    /// Named object stores: `[stores.NAME]` with `url` and `options`.
    #[serde(default)]
    stores: std::collections::BTreeMap<String, sluice_lake::store::NamedStoreConfig>,
}

/// How the bootstrap administrator authenticates.
#[derive(Clone)]
pub enum AdminAuth {
    /// SCRAM-SHA-256 (pg) / Basic (Flight) against this password.
    Password(String),
    /// No password configured: accepted from loopback only; the gateway
    /// refuses to listen on a non-loopback address in this mode.
    LoopbackTrust,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAuth::Password(_) => f.write_str("Password(<redacted>)"),
            AdminAuth::LoopbackTrust => f.write_str("LoopbackTrust"),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Warehouse root as a URL (`file:///...` today).
    pub warehouse: url::Url,
    /// Where the catalog lives.
    pub catalog: CatalogLocation,
    /// The Hive Metastore endpoint's address (loopback), if served.
    pub hms_listen: Option<SocketAddr>,
    pub pg_listen: SocketAddr,
    pub flight_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub local_executors: usize,
    pub local_executor_slots: usize,
    /// Fixed partition count; None = the cluster's live task slots.
    pub target_partitions: Option<usize>,
    /// Where remote executors register; None = in-process executors only.
    pub scheduler_listen: Option<SocketAddr>,
    /// Cluster secret; None = a random one (single-process cluster).
    pub cluster_secret: Option<Secret<Vec<u8>>>,
    pub executor_timeout: std::time::Duration,
    pub capacity_wait: std::time::Duration,
    pub task_max_failures: usize,
    pub stage_max_failures: usize,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plaintext Postgres sessions are refused.
    pub require_tls: bool,
    /// Open Postgres connections at most.
    pub max_connections: usize,
    /// Open Flight SQL connections at most.
    pub flight_max_connections: usize,
    /// How long running statements may take to finish after SIGTERM.
    pub shutdown_timeout: std::time::Duration,
    /// Ended statements kept in system.queries.
    pub query_history: usize,
    pub log_format: sluice_lake::logging::LogFormat,
    /// Bearer token for /metrics and /executors.
    pub metrics_token: Option<Secret<String>>,
    pub admin_user: String,
    pub admin_auth: AdminAuth,
    pub demo: bool,
    pub demo_scale: f64,
    pub listen_file: Option<PathBuf>,
    /// File holding the token-signing key.
    pub token_key_file: PathBuf,
    /// The audit log file.
    pub audit_log: PathBuf,
    /// JWT bearer tokens, when a key is configured.
    pub jwt: Option<crate::auth::jwt::JwtSettings>,
    /// Object stores, footer cache.
    pub lake: sluice_lake::config::LakeSettings,
    /// Metadata caches of the gateway.
    pub caches: crate::table::CacheSettings,
    /// How managed-table files are written.
    pub write: crate::query::write::WriteSettings,
    /// How long replaced and dropped files are kept.
    pub gc_grace: std::time::Duration,
}

impl Config {
    /// Parses flags/env, merges the optional TOML file under them, validates.
    pub fn load(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|source| ConfigError::ParseFile {
                    path: path.clone(),
                    source: Box::new(source),
                })?
            }
            None => FileConfig::default(),
        };
        let caches = storage::load_caches(&cli, &file)?;
        let write = storage::load_write(&cli, &file)?;
        let gc_grace = std::time::Duration::from_secs(cli.gc_grace.or(file.gc_grace).unwrap_or(60));
        let lake = sluice_lake::config::LakeSettings::load(
            cli.lake.clone(),
            sluice_lake::config::LakeFileSettings {
                footer_cache_size: file.footer_cache_size.clone(),
                footer_cache_ttl: file.footer_cache_ttl,
                stores: file.stores.clone(),
            },
            None,
        )
        .map_err(|(flag, message)| invalid(flag, message))?;

        let data_dir = cli
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./sluice-data"));
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| invalid("--data-dir", format!("cannot create {}: {e}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(|e| invalid("--data-dir", format!("cannot open {}: {e}", data_dir.display())))?;
        let probe = data_dir.join(".sluice-write-probe");
        std::fs::write(&probe, b"ok")
            .map_err(|e| invalid("--data-dir", format!("{} is not writable: {e}", data_dir.display())))?;
        let _ = std::fs::remove_file(&probe);

        let warehouse = match cli.warehouse.or(file.warehouse) {
            Some(w) => parse_location(&w).map_err(|m| invalid("--warehouse", m))?,
            None => {
                let dir = data_dir.join("warehouse");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| invalid("--warehouse", format!("cannot create {}: {e}", dir.display())))?;
                url::Url::from_directory_path(&dir)
                    .map_err(|()| invalid("--warehouse", "data dir is not an absolute path"))?
            }
        };
        sluice_lake::store::StoreKind::of_scheme(warehouse.scheme())
            .map_err(|e| invalid("--warehouse", e.to_string()))?;
        if warehouse.host_str().is_none_or(str::is_empty) && warehouse.scheme() != "file" {
            return Err(invalid("--warehouse", format!("'{warehouse}' names no bucket")));
        }

        let catalog = catalog::load(
            cli.catalog.or(file.catalog),
            cli.catalog_side.or(file.catalog_side),
            password_from(
                "--catalog-password-file",
                cli.catalog_password.map(|p| p.0),
                cli.catalog_password_file.or(file.catalog_password_file),
            )?,
            cli.catalog_poll.or(file.catalog_poll),
            cli.catalog_ca_file.or(file.catalog_ca_file),
            &data_dir,
        )?;
        let hms_listen = cli.hms_listen.or(file.hms_listen);
        if let Some(addr) = hms_listen
            && !addr.ip().is_loopback()
        {
            return Err(invalid(
                "--hms-listen",
                format!("{addr} is not a loopback address; the Hive Metastore protocol has no authentication here"),
            ));
        }

        let tls = match (cli.tls_cert.or(file.tls_cert), cli.tls_key.or(file.tls_key)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return Err(invalid("--tls-key", "required with --tls-cert")),
            (None, Some(_)) => return Err(invalid("--tls-cert", "required with --tls-key")),
        };
        let require_tls = cli.require_tls.or(file.require_tls).unwrap_or(false);
        let max_connections = cli.max_connections.or(file.max_connections).unwrap_or(1000);
        if max_connections == 0 {
            return Err(invalid("--max-connections", "must be at least 1"));
        }
        let flight_max_connections = cli
            .flight_max_connections
            .or(file.flight_max_connections)
            .unwrap_or(1000);
        if flight_max_connections == 0 {
            return Err(invalid("--flight-max-connections", "must be at least 1"));
        }
        let shutdown_timeout =
            std::time::Duration::from_secs(cli.shutdown_timeout.or(file.shutdown_timeout).unwrap_or(30));
        if require_tls && tls.is_none() {
            return Err(invalid(
                "--require-tls",
                "needs a certificate: set --tls-cert and --tls-key",
            ));
        }
        let metrics_token = match cli.metrics_token_file.or(file.metrics_token_file) {
            Some(path) => {
                let token = std::fs::read_to_string(&path)
                    .map_err(|e| invalid("--metrics-token-file", format!("cannot read {}: {e}", path.display())))?
                    .trim()
                    .to_owned();
                if token.len() < 16 {
                    return Err(invalid(
                        "--metrics-token-file",
                        "the token must be at least 16 characters",
                    ));
                }
                Some(Secret(token))
            }
            None => None,
        };

        let password = password_from(
            "--admin-password-file",
            cli.admin_password.map(|p| p.0),
            cli.admin_password_file.or(file.admin_password_file),
        )?;
        let admin_auth = match password {
            Some(p) if p.is_empty() => return Err(invalid("--admin-password", "must not be empty")),
            Some(p) => AdminAuth::Password(p),
            None => AdminAuth::LoopbackTrust,
        };

        let pg_listen = cli
            .pg_listen
            .or(file.pg_listen)
            .unwrap_or(([127, 0, 0, 1], 5432).into());
        let flight_listen = cli
            .flight_listen
            .or(file.flight_listen)
            .unwrap_or(([127, 0, 0, 1], 32010).into());
        let http_listen = cli
            .http_listen
            .or(file.http_listen)
            .unwrap_or(([127, 0, 0, 1], 8080).into());
        if matches!(admin_auth, AdminAuth::LoopbackTrust) {
            for (flag, addr) in [("--pg-listen", pg_listen), ("--flight-listen", flight_listen)] {
                if !addr.ip().is_loopback() {
                    return Err(invalid(
                        flag,
                        format!(
                            "{addr} is not a loopback address; set SLUICE_ADMIN_PASSWORD (or --admin-password-file) before listening beyond this machine"
                        ),
                    ));
                }
            }
        }

        let local_executors = cli.local_executors.or(file.local_executors).unwrap_or(2);
        let local_executor_slots = cli
            .local_executor_slots
            .or(file.local_executor_slots)
            .unwrap_or_else(|| {
                // They share this machine's CPUs: more slots than CPUs only
                // adds tasks that wait for a core (and shuffle partitions).
                let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
                (cpus / local_executors.max(1)).max(1)
            });
        if local_executor_slots == 0 {
            return Err(invalid("--local-executor-slots", "must be at least 1"));
        }
        let scheduler_listen = cli.scheduler_listen.or(file.scheduler_listen);
        if local_executors == 0 && scheduler_listen.is_none() {
            return Err(invalid(
                "--local-executors",
                "0 needs --scheduler-listen, or no executor could ever join",
            ));
        }
        let cluster_secret = sluice_lake::membership::load_secret(
            cli.cluster_secret.map(|s| s.0),
            cli.cluster_secret_file.or(file.cluster_secret_file).as_deref(),
        )
        .map_err(|(flag, message)| invalid(flag, message))?
        .map(Secret);
        if cluster_secret.is_none() && scheduler_listen.is_some() {
            return Err(invalid(
                "--scheduler-listen",
                "needs a cluster secret (SLUICE_CLUSTER_SECRET or --cluster-secret-file) that executors share",
            ));
        }
        let executor_timeout = cli.executor_timeout.or(file.executor_timeout).unwrap_or(15);
        if executor_timeout < 2 {
            return Err(invalid("--executor-timeout", "must be at least 2 seconds"));
        }
        let capacity_wait = cli.capacity_wait.or(file.capacity_wait).unwrap_or(30);
        if capacity_wait == 0 {
            return Err(invalid("--capacity-wait", "must be at least 1 second"));
        }
        let task_max_failures = cli.task_max_failures.or(file.task_max_failures).unwrap_or(8);
        let stage_max_failures = cli.stage_max_failures.or(file.stage_max_failures).unwrap_or(16);
        if task_max_failures == 0 || stage_max_failures == 0 {
            return Err(invalid("--task-max-failures", "retry limits must be at least 1"));
        }
        let target_partitions = cli.target_partitions.or(file.target_partitions);
        if target_partitions == Some(0) {
            return Err(invalid("--target-partitions", "must be at least 1"));
        }
        let demo_scale = cli.demo_scale.or(file.demo_scale).unwrap_or(0.01);
        if !(demo_scale > 0.0 && demo_scale <= 10.0) {
            return Err(invalid("--demo-scale", "must be in (0, 10]"));
        }
        let admin_user = cli
            .admin_user
            .or(file.admin_user)
            .unwrap_or_else(|| "sluice".to_owned());
        if admin_user.is_empty() {
            return Err(invalid("--admin-user", "must not be empty"));
        }

        let token_key_file = cli
            .token_key_file
            .or(file.token_key_file)
            .unwrap_or_else(|| data_dir.join("token.key"));
        let audit_log = cli
            .audit_log
            .or(file.audit_log)
            .unwrap_or_else(|| data_dir.join("audit.jsonl"));
        let jwt = {
            use crate::auth::jwt::{JwtKey, JwtSettings, JwtVerifier};
            let read = |flag: &'static str, path: &PathBuf| {
                std::fs::read(path).map_err(|e| invalid(flag, format!("{}: {e}", path.display())))
            };
            let secret_file = cli.jwt_secret_file.or(file.jwt_secret_file);
            let public_key_file = cli.jwt_public_key_file.or(file.jwt_public_key_file);
            let jwks_url = cli.jwt_jwks_url.or(file.jwt_jwks_url);
            let jwks_ttl = cli.jwt_jwks_ttl.or(file.jwt_jwks_ttl);
            let given = [
                ("--jwt-secret-file", secret_file.is_some()),
                ("--jwt-public-key-file", public_key_file.is_some()),
                ("--jwt-jwks-url", jwks_url.is_some()),
            ];
            if given.iter().filter(|(_, set)| *set).count() > 1 {
                let flag = given
                    .iter()
                    .find(|(_, set)| *set)
                    .map_or("--jwt-secret-file", |(f, _)| f);
                return Err(invalid(
                    flag,
                    "give only one of --jwt-secret-file, --jwt-public-key-file and --jwt-jwks-url",
                ));
            }
            if jwks_ttl.is_some() && jwks_url.is_none() {
                return Err(invalid("--jwt-jwks-ttl", "needs --jwt-jwks-url"));
            }
            let key = match (secret_file, public_key_file, jwks_url) {
                (Some(p), _, _) => {
                    let mut secret = read("--jwt-secret-file", &p)?;
                    while secret.last().is_some_and(u8::is_ascii_whitespace) {
                        secret.pop();
                    }
                    Some(("--jwt-secret-file", JwtKey::Secret(secret)))
                }
                (None, Some(p), _) => Some((
                    "--jwt-public-key-file",
                    JwtKey::PublicPem(read("--jwt-public-key-file", &p)?),
                )),
                (None, None, Some(url)) => {
                    let ttl = jwks_ttl.unwrap_or(crate::auth::jwks::DEFAULT_TTL.as_secs());
                    if ttl == 0 {
                        return Err(invalid("--jwt-jwks-ttl", "must be at least 1 second"));
                    }
                    Some((
                        "--jwt-jwks-url",
                        JwtKey::Jwks {
                            url: parse_jwks_url(&url).map_err(|m| invalid("--jwt-jwks-url", m))?,
                            ttl: std::time::Duration::from_secs(ttl),
                        },
                    ))
                }
                (None, None, None) => None,
            };
            match key {
                Some((flag, key)) => {
                    let settings = JwtSettings {
                        key,
                        issuer: cli.jwt_issuer.or(file.jwt_issuer),
                        audience: cli.jwt_audience.or(file.jwt_audience),
                        user_claim: cli
                            .jwt_user_claim
                            .or(file.jwt_user_claim)
                            .unwrap_or_else(|| "sub".to_owned()),
                        roles_claim: cli.jwt_roles_claim.or(file.jwt_roles_claim),
                    };
                    // A JWK Set is only fetched at start (its URL is checked above).
                    if !matches!(settings.key, JwtKey::Jwks { .. }) {
                        JwtVerifier::new(&settings).map_err(|e| invalid(flag, e.to_string()))?;
                    }
                    Some(settings)
                }
                None => None,
            }
        };
        Ok(Config {
            jwt,
            token_key_file,
            audit_log,
            catalog,
            hms_listen,
            data_dir,
            warehouse,
            pg_listen,
            flight_listen,
            http_listen,
            local_executors,
            local_executor_slots,
            target_partitions,
            scheduler_listen,
            cluster_secret,
            executor_timeout: std::time::Duration::from_secs(executor_timeout),
            capacity_wait: std::time::Duration::from_secs(capacity_wait),
            task_max_failures,
            stage_max_failures,
            tls,
            require_tls,
            max_connections,
            flight_max_connections,
            shutdown_timeout,
            query_history: cli.query_history.or(file.query_history).unwrap_or(1000),
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            metrics_token,
            admin_user,
            admin_auth,
            demo: cli.demo.or(file.demo).unwrap_or(false),
            demo_scale,
            listen_file: cli.listen_file.or(file.listen_file),
            lake,
            caches,
            write,
            gc_grace,
        })
    }
}

/// An http(s) URL with a host, for --jwt-jwks-url.
fn parse_jwks_url(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the scheme must be http or https, not '{}'", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host".to_owned());
    }
    Ok(url)
}

/// Accepts a URL or an absolute/relative local path and returns a directory URL.
pub fn parse_location(s: &str) -> Result<url::Url, String> {
    let url = if s.contains("://") {
        url::Url::parse(s).map_err(|e| format!("'{s}' is not a valid URL: {e}"))?
    } else {
        let path = std::path::absolute(s).map_err(|e| format!("'{s}': {e}"))?;
        url::Url::from_directory_path(&path).map_err(|()| format!("'{s}' is not a usable path"))?
    };
    let mut url = url;
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

mod catalog;
mod storage;
#[cfg(test)]
mod tests;
