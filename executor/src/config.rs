//! The executor's one typed configuration: clap flags with `SLUICE_*` env
//! twins, optionally layered over a TOML file; validated once at start.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Errors in the configuration; each names the flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--config: cannot read {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("--config: {path} is not valid TOML for the executor: {source}")]
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

/// Command-line flags. Every flag has a `SLUICE_*` environment twin.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "sluice-executor",
    version,
    about = "Sluice executor: a stateless worker of a Sluice cluster"
)]
pub struct Cli {
    /// TOML file with the same keys as the flags (snake_case); flags and env win over it.
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The gateway's scheduler address, HOST:PORT (its --scheduler-listen).
    #[arg(long, env = "SLUICE_SCHEDULER")]
    pub scheduler: Option<String>,
    /// Address the Flight (shuffle/result) service binds to.
    #[arg(long, env = "SLUICE_BIND")]
    pub bind: Option<IpAddr>,
    /// Port of the Flight service (0 = any free port).
    #[arg(long, env = "SLUICE_PORT")]
    pub port: Option<u16>,
    /// Host other cluster members reach this executor at (default: the bind
    /// address, or the host name when binding all interfaces).
    #[arg(long, env = "SLUICE_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,
    /// Directory for shuffle and result files; emptied at start.
    #[arg(long, env = "SLUICE_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Concurrent task slots (default: CPUs).
    #[arg(long, env = "SLUICE_TASK_SLOTS")]
    pub task_slots: Option<usize>,
    /// Query memory cap, e.g. 4GiB or 512MiB; operators spill beyond it (default: no cap).
    #[arg(long, env = "SLUICE_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// Seconds to finish running tasks after SIGTERM before leaving anyway.
    #[arg(long, env = "SLUICE_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<u64>,
    /// Seconds between heartbeats to the scheduler (its --executor-timeout must be larger).
    #[arg(long, env = "SLUICE_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<u64>,
    /// Seconds to keep trying to register with the scheduler at start.
    #[arg(long, env = "SLUICE_REGISTER_TIMEOUT")]
    pub register_timeout: Option<u64>,
    /// HTTP address for /healthz and /metrics (not served when unset).
    #[arg(long, env = "SLUICE_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Shared secret that makes this process a cluster member (at least 16 bytes).
    #[arg(long, env = "SLUICE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<sluice_lake::config::Secret<String>>,
    /// File holding the cluster secret (instead of --cluster-secret).
    #[arg(long, env = "SLUICE_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Write the bound ports as JSON here once serving (for tests and tooling).
    #[arg(long, env = "SLUICE_LISTEN_FILE")]
    pub listen_file: Option<PathBuf>,
    /// Log lines as `text` (default) or `json` (one object per line).
    #[arg(long, env = "SLUICE_LOG_FORMAT")]
    pub log_format: Option<sluice_lake::logging::LogFormat>,
    #[command(flatten)]
    pub lake: sluice_lake::config::LakeArgs,
}

/// The TOML file: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    scheduler: Option<String>,
    bind: Option<IpAddr>,
    port: Option<u16>,
    advertise_host: Option<String>,
    work_dir: Option<PathBuf>,
    task_slots: Option<usize>,
    memory_limit: Option<String>,
    drain_timeout: Option<u64>,
    heartbeat_interval: Option<u64>,
    register_timeout: Option<u64>,
    http_listen: Option<SocketAddr>,
    cluster_secret_file: Option<PathBuf>,
    listen_file: Option<PathBuf>,
    log_format: Option<sluice_lake::logging::LogFormat>,
    footer_cache_size: Option<String>,
    footer_cache_ttl: Option<u64>,
    /// Named object stores: `[stores.NAME]` with `url` and `options`.
    #[serde(default)]
    stores: std::collections::BTreeMap<String, sluice_lake::store::NamedStoreConfig>,
}

/// Validated executor configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub scheduler: String,
    pub bind: IpAddr,
    pub port: u16,
    pub advertise_host: String,
    pub work_dir: PathBuf,
    pub task_slots: usize,
    /// Object stores, footer cache, memory cap.
    pub lake: sluice_lake::config::LakeSettings,
    pub drain_timeout: Duration,
    pub log_format: sluice_lake::logging::LogFormat,
    pub heartbeat_interval: Duration,
    pub register_timeout: Duration,
    pub http_listen: Option<SocketAddr>,
    pub cluster_secret: sluice_lake::config::Secret<Vec<u8>>,
    pub listen_file: Option<PathBuf>,
}

impl Config {
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
        let scheduler = cli
            .scheduler
            .or(file.scheduler)
            .ok_or_else(|| invalid("--scheduler", "required: the gateway's --scheduler-listen address"))?;
        match scheduler.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(invalid("--scheduler", format!("expected HOST:PORT, got '{scheduler}'"))),
        }
        let bind = cli.bind.or(file.bind).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let advertise_host = match cli.advertise_host.or(file.advertise_host) {
            Some(h) if h.trim().is_empty() => return Err(invalid("--advertise-host", "must not be empty")),
            Some(h) => h,
            None if bind.is_unspecified() => hostname().ok_or_else(|| {
                invalid(
                    "--advertise-host",
                    "required when binding all interfaces and the host name is unknown",
                )
            })?,
            None => bind.to_string(),
        };
        let work_dir = cli
            .work_dir
            .or(file.work_dir)
            .unwrap_or_else(|| std::env::temp_dir().join(format!("sluice-executor-{}", std::process::id())));
        let task_slots = cli
            .task_slots
            .or(file.task_slots)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        if task_slots == 0 {
            return Err(invalid("--task-slots", "must be at least 1"));
        }
        let memory_limit = match cli.memory_limit.or(file.memory_limit) {
            Some(text) => Some(sluice_lake::config::parse_bytes(&text).map_err(|m| invalid("--memory-limit", m))?),
            None => None,
        };
        let heartbeat = cli.heartbeat_interval.or(file.heartbeat_interval).unwrap_or(5);
        if heartbeat == 0 {
            return Err(invalid("--heartbeat-interval", "must be at least 1 second"));
        }
        let secret = sluice_lake::membership::load_secret(
            cli.cluster_secret.map(|s| s.0),
            cli.cluster_secret_file.or(file.cluster_secret_file).as_deref(),
        )
        .map_err(|(flag, message)| invalid(flag, message))?
        .ok_or_else(|| {
            invalid(
                "--cluster-secret",
                "required (or SLUICE_CLUSTER_SECRET): the same secret the gateway was started with",
            )
        })?;
        Ok(Config {
            scheduler,
            bind,
            port: cli.port.or(file.port).unwrap_or(50051),
            advertise_host,
            work_dir,
            task_slots,
            lake: sluice_lake::config::LakeSettings::load(
                cli.lake,
                sluice_lake::config::LakeFileSettings {
                    footer_cache_size: file.footer_cache_size,
                    footer_cache_ttl: file.footer_cache_ttl,
                    stores: file.stores,
                },
                memory_limit,
            )
            .map_err(|(flag, message)| invalid(flag, message))?,
            drain_timeout: Duration::from_secs(cli.drain_timeout.or(file.drain_timeout).unwrap_or(30)),
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            heartbeat_interval: Duration::from_secs(heartbeat),
            register_timeout: Duration::from_secs(cli.register_timeout.or(file.register_timeout).unwrap_or(60)),
            http_listen: cli.http_listen.or(file.http_listen),
            cluster_secret: sluice_lake::config::Secret(secret),
            listen_file: cli.listen_file.or(file.listen_file),
        })
    }
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("sluice-executor").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn secret_is_required_and_checked() {
        let err = Config::load(cli(&["--scheduler", "gw:50050"])).unwrap_err();
        assert!(err.to_string().starts_with("--cluster-secret:"), "{err}");
        let err = Config::load(cli(&["--scheduler", "gw:50050", "--cluster-secret", "short"])).unwrap_err();
        assert!(err.to_string().contains("at least 16"), "{err}");
    }

    #[test]
    fn toml_layers_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.toml");
        std::fs::write(
            &path,
            "scheduler = \"gw:1\"\ntask_slots = 3\ndrain_timeout = 7\nbind = \"127.0.0.1\"\n",
        )
        .unwrap();
        let c = Config::load(cli(&[
            "--config",
            path.to_str().unwrap(),
            "--task-slots",
            "5",
            "--cluster-secret",
            "0123456789abcdef",
        ]))
        .unwrap();
        assert_eq!(c.scheduler, "gw:1");
        assert_eq!(c.task_slots, 5);
        assert_eq!(c.drain_timeout, Duration::from_secs(7));
        assert_eq!(c.advertise_host, "127.0.0.1");
        std::fs::write(&path, "schedular = \"gw:1\"\n").unwrap();
        assert!(Config::load(cli(&["--config", path.to_str().unwrap()])).is_err());
    }
}
