//! The catalog settings of the gateway's config: which backend, and how a
//! shared one is followed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_lake::config::Secret;

use super::{ConfigError, invalid};

/// Where the catalog lives (`--catalog`).
#[derive(Debug, Clone)]
pub enum CatalogLocation {
    /// An embedded SQLite file, owned by this gateway.
    Sqlite(PathBuf),
    /// A PostgreSQL database that several gateways may share.
    Postgres {
        /// `postgres://user@host:port/db` or key=value form, as given.
        url: Secret<String>,
        /// Used when the URL has none.
        password: Option<Secret<String>>,
        /// CA that the server's certificate must chain to (verify-full).
        ca_file: Option<PathBuf>,
        /// How often other gateways' changes are looked for.
        poll: Duration,
    },
}

pub(super) fn load(
    url: Option<String>,
    password: Option<String>,
    poll: Option<f64>,
    ca_file: Option<PathBuf>,
    data_dir: &Path,
) -> Result<CatalogLocation, ConfigError> {
    let Some(url) = url else {
        return Ok(CatalogLocation::Sqlite(data_dir.join("catalog.db")));
    };
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(invalid(
                "--catalog",
                "sqlite:// needs a file path: sqlite:///path/to/catalog.db",
            ));
        }
        return Ok(CatalogLocation::Sqlite(PathBuf::from(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let poll = poll.unwrap_or(1.0);
        if !(0.05..=3600.0).contains(&poll) {
            return Err(invalid("--catalog-poll", "must be between 0.05 and 3600 seconds"));
        }
        return Ok(CatalogLocation::Postgres {
            url: Secret(url),
            password: password.map(Secret),
            ca_file,
            poll: Duration::from_secs_f64(poll),
        });
    }
    // Never echo the URL: it may hold a password.
    Err(invalid(
        "--catalog",
        "not a supported catalog URL; expected sqlite:///path/to/catalog.db or postgres://user@host:port/database",
    ))
}
