//! # sluice-gateway
//!
//! The Sluice coordinator. It accepts Postgres-wire and Arrow Flight SQL
//! clients, authenticates them, plans SQL with DataFusion against the
//! Hive-model catalog, and runs queries that read lake tables as jobs on the
//! Ballista scheduler embedded in this process.
//!
//! Code map (see `ARCHITECTURE.md` for the invariants):
//! - [`config`]: the one typed configuration.
//! - [`frontend`]: `pg` and `flight` servers; they see only
//!   [`query::QueryHandler`] and [`auth::Authenticator`].
//! - [`auth`]: passwords, SCRAM secrets, signed tokens; no wire protocol.
//! - [`query`]: the query handler ([`query::Engine`]).
//! - [`catalog`]: metastore trait, SQLite backend, DataFusion providers.
//! - [`cluster`]: embedded Ballista scheduler and in-process executors.
//! - [`http`]: health and metrics endpoints.

pub mod access;
pub mod auth;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod error;
pub mod frontend;
pub mod hms;
pub mod http;
pub mod query;
pub mod session;
pub mod table;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sluice_lake::membership::ClusterCredentials;

use crate::auth::{Authenticator, CatalogAuthenticator};
use crate::catalog::CatalogState;
use crate::config::Config;
use crate::query::managed::ManagedTables;
use crate::query::{Engine, EngineParts, QueryHandler};
use crate::table::{LakeCodec, TableServices};

/// The Postgres version Sluice reports (clients branch on it).
pub const PG_SERVER_VERSION: &str = "16.6";
/// `server_version_num` matching [`PG_SERVER_VERSION`].
pub const PG_SERVER_VERSION_NUM: &str = "160006";

/// Errors that stop the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{flag}: cannot listen on {addr}: {source}")]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("--catalog: {0}")]
    Catalog(#[from] catalog::CatalogError),
    #[error("cluster: {0}")]
    Cluster(#[from] cluster::ClusterError),
    #[error("engine: {0}")]
    Engine(#[from] error::QueryError),
    #[error("--tls-cert/--tls-key: {0}")]
    Tls(String),
    #[error("--token-key-file: {0}")]
    TokenKey(String),
    #[error("--listen-file: {0}")]
    ListenFile(std::io::Error),
    #[error("--jwt-*: {0}")]
    Jwt(String),
    #[error("flight: {0}")]
    Flight(String),
    #[error("--audit-log: {0}")]
    Audit(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0} server stopped: {1}")]
    Serve(&'static str, String),
}

async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { flag, addr, source })
}

/// Reloads the certificate on every SIGHUP; a bad file leaves the current
/// one in place (and says why in the log).
fn spawn_reload_on_sighup(certs: Arc<tls::CertStore>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: certificates will not reload");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(()) = hangups.recv() => match certs.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded; new connections present it"),
                    Err(e) => tracing::error!("SIGHUP: TLS certificate not reloaded, the current one stays: {e}"),
                },
            }
        }
    });
}

/// Reads the token-signing key, creating a random one (mode 0600) if the file
/// does not exist yet.
fn load_or_create_key(path: &std::path::Path) -> Result<Vec<u8>, StartError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read(path) {
        Ok(key) if key.len() >= 32 => return Ok(key),
        Ok(_) => {
            return Err(StartError::TokenKey(format!(
                "{} holds fewer than 32 bytes",
                path.display()
            )));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(StartError::TokenKey(format!("cannot read {}: {e}", path.display())));
        }
        Err(_) => {}
    }
    let key: [u8; 32] = rand::random();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StartError::TokenKey(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(&key)
        .and_then(|()| f.sync_all())
        .map_err(|e| StartError::TokenKey(format!("cannot write {}: {e}", path.display())))?;
    Ok(key.to_vec())
}

/// Addresses the gateway listens on, written to `--listen-file`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct BoundAddrs {
    pub pg: SocketAddr,
    pub flight: SocketAddr,
    pub http: SocketAddr,
    /// Scheduler (cluster members only).
    pub scheduler: SocketAddr,
    /// Hive Metastore endpoint, when served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hms: Option<SocketAddr>,
}

/// Starts every part of the gateway and serves until `shutdown` fires, then
/// stops in order: `/readyz` turns unready and the pg and Flight listeners
/// close; idle pg sessions are told 57P01; running statements get
/// `--shutdown-timeout` to finish, then are cancelled; last the HTTP port,
/// the executors and the scheduler stop. A server that fails while serving
/// stops the gateway with an error.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    // `shutdown` starts the drain; `stop` ends what the statements need.
    let stop = CancellationToken::new();
    let _stop_on_return = stop.clone().drop_guard();
    let pg_listener = bind("--pg-listen", config.pg_listen).await?;
    let flight_listener = bind("--flight-listen", config.flight_listen).await?;
    let http_listener = bind("--http-listen", config.http_listen).await?;
    let hms_listener = match config.hms_listen {
        Some(addr) => Some(bind("--hms-listen", addr).await?),
        None => None,
    };
    let certs = match &config.tls {
        Some((cert, key)) => Some(tls::CertStore::load(cert, key).map_err(|e| StartError::Tls(e.to_string()))?),
        None => None,
    };

    let metastore = catalog::open_metastore(&config.catalog).await?;
    let catalog = Arc::new(CatalogState::open(metastore, config.warehouse.clone()).await?);
    if let config::CatalogLocation::Postgres { poll, .. } | config::CatalogLocation::Hive { poll, .. } = &config.catalog
    {
        catalog::spawn_follower(Arc::clone(&catalog), *poll, stop.clone());
    }
    let metrics = http::Metrics::new()?;
    let store_metrics = sluice_lake::store::StoreMetrics::new()?;
    store_metrics.register(&metrics.registry)?;
    let runtime = sluice_lake::runtime_env(&config.lake, store_metrics.clone()).map_err(error::QueryError::from)?;
    let services = TableServices::new(Arc::clone(&catalog), config.caches, &store_metrics);
    let codec = Arc::new(LakeCodec::new(Arc::clone(&services)));
    let managed = Arc::new(ManagedTables::new(
        Arc::clone(&catalog),
        Arc::clone(&runtime),
        config.write,
        config.gc_grace,
    ));
    // Writes pending now were interrupted by an earlier stop; their files are
    // deleted in the background (this gateway's own writes start later).
    let interrupted = managed.interrupted_writes().await?;
    let sweeper = Arc::clone(&managed);
    tokio::spawn(async move {
        let files = sweeper.sweep(interrupted).await;
        if files > 0 {
            tracing::info!(files, "deleted the files of writes interrupted by an earlier stop");
        }
    });
    managed.spawn_collector(stop.clone());
    let scheduler_listener = bind(
        "--scheduler-listen",
        config.scheduler_listen.unwrap_or(([127, 0, 0, 1], 0).into()),
    )
    .await?;
    let scheduler_addr = scheduler_listener.local_addr().map_err(StartError::ListenFile)?;
    let credentials = match &config.cluster_secret {
        Some(secret) => ClusterCredentials::from_secret(&secret.0),
        None => ClusterCredentials::ephemeral(),
    }
    .map_err(|e| StartError::Cluster(cluster::ClusterError::Scheduler(e.to_string())))?;
    let cluster = cluster::Cluster::start(
        Arc::clone(&runtime),
        Arc::clone(&codec) as _,
        scheduler_listener,
        credentials,
        &cluster::ClusterOptions {
            local_executors: config.local_executors,
            local_slots: config.local_executor_slots,
            executor_timeout: config.executor_timeout,
            capacity_wait: config.capacity_wait,
            task_max_failures: config.task_max_failures,
            stage_max_failures: config.stage_max_failures,
        },
        &config.data_dir,
        stop.clone(),
    )
    .await?
    .with_job_metrics(metrics.jobs.clone());
    let history = Arc::new(query::history::History::new(
        config.query_history,
        metrics.statements.clone(),
    ));
    let engine = Arc::new(Engine::new(EngineParts {
        catalog: Arc::clone(&catalog),
        services,
        managed,
        cluster: cluster.clone(),
        codec,
        runtime,
        history: Arc::clone(&history),
        target_partitions: config.target_partitions,
        admin: config.admin_user.clone(),
        audit: Some(
            query::audit::AuditLog::open(&config.audit_log)
                .await
                .map_err(|e| StartError::Audit(format!("{}: {e}", config.audit_log.display())))?,
        ),
    })?);
    if config.demo {
        let rows = demo::install(&engine, config.demo_scale).await?;
        if rows > 0 {
            tracing::info!(rows, scale = config.demo_scale, "demo data written to schema tpch");
        }
    }

    let key = load_or_create_key(&config.token_key_file)?;
    let roles = {
        let catalog = Arc::clone(&catalog);
        Arc::new(move |name: &str| catalog.snapshot().access.roles.get(name).cloned())
    };
    let mut authenticator = CatalogAuthenticator::new(&config.admin_user, &config.admin_auth, key, roles);
    if let Some(jwt) = &config.jwt {
        let verifier = auth::jwt::JwtVerifier::new(jwt).map_err(|e| StartError::Jwt(e.to_string()))?;
        // A JWK Set is fetched now; when that fails start-up goes on and
        // tokens refetch it.
        verifier.prime().await;
        authenticator = authenticator.with_jwt(verifier);
    }
    let auth: Arc<dyn Authenticator> = Arc::new(authenticator);
    let handler: Arc<dyn QueryHandler> = engine;

    let addrs = BoundAddrs {
        pg: pg_listener.local_addr().map_err(StartError::ListenFile)?,
        flight: flight_listener.local_addr().map_err(StartError::ListenFile)?,
        http: http_listener.local_addr().map_err(StartError::ListenFile)?,
        scheduler: scheduler_addr,
        hms: match &hms_listener {
            Some(l) => Some(l.local_addr().map_err(StartError::ListenFile)?),
            None => None,
        },
    };
    let acceptor = |alpn: &[&[u8]]| {
        certs
            .as_ref()
            .map(|c| c.acceptor(alpn))
            .transpose()
            .map_err(|e| StartError::Tls(e.to_string()))
    };
    let (pg_tls, flight_tls, http_tls) = (acceptor(&[])?, acceptor(&[b"h2"])?, acceptor(&[b"http/1.1"])?);
    if let Some(certs) = &certs {
        spawn_reload_on_sighup(Arc::clone(certs), stop.clone());
    }
    let s = shutdown.clone();
    let pg = frontend::pg::PgServer {
        auth: Arc::clone(&auth),
        handler: Arc::clone(&handler),
        tls: pg_tls,
        certs: certs.clone(),
        require_tls: config.require_tls,
        max_connections: config.max_connections,
        shutdown_timeout: config.shutdown_timeout,
        connections: metrics.connections.with_label_values(&["pg"]),
    };
    let http_access = http::Access {
        auth: Arc::clone(&auth),
        is_superuser: {
            let (catalog, admin) = (Arc::clone(&catalog), config.admin_user.clone());
            Arc::new(move |user: &str| {
                let snapshot = catalog.snapshot();
                access::Access {
                    snapshot: &snapshot.access,
                    admin: &admin,
                    claimed: &[],
                }
                .is_superuser(user)
            })
        },
        metrics_token: config.metrics_token.clone(),
        tls: http_tls.is_some(),
    };
    let rest = frontend::rest::Rest {
        auth: Arc::clone(&auth),
        handler: Arc::clone(&handler),
        tls: http_tls.is_some(),
    };
    let flight = frontend::flight::FlightSqlServer::new(Arc::clone(&auth), Arc::clone(&handler))
        .map_err(|e| StartError::Flight(e.to_string()))?;

    let limits = frontend::flight::Limits {
        max_connections: config.flight_max_connections,
        shutdown_timeout: config.shutdown_timeout,
        connections: metrics.connections.with_label_values(&["flight"]),
    };
    let mut frontends = tokio::task::JoinSet::new();
    if let Some(listener) = hms_listener {
        if matches!(config.admin_auth, config::AdminAuth::Password(_)) {
            tracing::warn!(
                "--hms-listen: the Hive Metastore protocol carries no password; every local process that reaches it acts as {}",
                config.admin_user
            );
        }
        let service = Arc::new(hms::HmsService::new(
            Arc::clone(&catalog),
            config.admin_user.clone(),
            config.gc_grace,
        ));
        let s = shutdown.clone();
        frontends.spawn(async move {
            hms::serve(listener, service, s).await;
            Ok(())
        });
    }
    frontends.spawn(async move {
        pg.run(pg_listener, s.clone()).await;
        match s.is_cancelled() {
            true => Ok(()),
            false => Err(StartError::Serve("pg", "ended before shutdown".to_owned())),
        }
    });
    let s = shutdown.clone();
    frontends.spawn(async move {
        flight
            .run(flight_listener, flight_tls, limits, s)
            .await
            .map_err(|e| StartError::Serve("flight", e.to_string()))
    });
    let (draining, s) = (shutdown.clone(), stop.clone());
    let mut http = tokio::spawn(async move {
        let parts = http::Parts {
            metrics,
            cluster,
            access: http_access,
            history,
            draining,
            rest,
        };
        http::run(http_listener, http_tls, parts, s)
            .await
            .map_err(|e| StartError::Serve("http", e.to_string()))
    });

    if let Some(path) = &config.listen_file {
        let json = serde_json::to_string(&addrs).unwrap_or_default();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(StartError::ListenFile)?;
    }
    tracing::info!(
        pg = %addrs.pg,
        flight = %addrs.flight,
        http = %addrs.http,
        "sluice gateway ready: psql -h {} -p {} -U {} {}",
        addrs.pg.ip(),
        addrs.pg.port(),
        config.admin_user,
        catalog::CATALOG_NAME
    );
    // A server that ends before shutdown failed: stop everything.
    // (A front end that ended because shutdown began is no failure.)
    let early = tokio::select! {
        biased;
        () = shutdown.cancelled() => None,
        Some(ended) = frontends.join_next() => Some(ended_early(ended, "pg or flight")),
        ended = &mut http => Some(ended_early(ended, "http")),
    };
    if let Some(e) = early.filter(|_| !shutdown.is_cancelled()) {
        return Err(e);
    }
    tracing::info!(timeout = ?config.shutdown_timeout, "shutting down: not ready, no new connections, running statements finish");
    while let Some(ended) = frontends.join_next().await {
        if let Ok(Err(e)) = ended {
            tracing::warn!("{e}");
        }
    }
    stop.cancel();
    if let Ok(Err(e)) = http.await {
        tracing::warn!("{e}");
    }
    tracing::info!("sluice gateway stopped");
    Ok(())
}

/// The error of a server task that ended before shutdown.
fn ended_early(ended: Result<Result<(), StartError>, tokio::task::JoinError>, name: &'static str) -> StartError {
    match ended {
        Ok(Err(e)) => e,
        Ok(Ok(())) => StartError::Serve(name, "ended before shutdown".to_owned()),
        Err(e) => StartError::Serve(name, e.to_string()),
    }
}
