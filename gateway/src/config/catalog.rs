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
    /// A Hive Metastore (names and foreign tables) plus a SQLite or
    /// PostgreSQL side store (Sluice's tables, writes, access).
    Hive {
        /// `host:port` of each metastore, in failover order.
        addresses: Vec<String>,
        side: Box<CatalogLocation>,
        /// How often other engines' changes are looked for, and how long
        /// foreign tables' partitions are cached.
        poll: Duration,
    },
}

pub(super) fn load(
    url: Option<String>,
    side: Option<String>,
    password: Option<String>,
    poll: Option<f64>,
    ca_file: Option<PathBuf>,
    data_dir: &Path,
) -> Result<CatalogLocation, ConfigError> {
    let poll = poll.unwrap_or(1.0);
    if !(0.05..=3600.0).contains(&poll) {
        return Err(invalid("--catalog-poll", "must be between 0.05 and 3600 seconds"));
    }
    let poll = Duration::from_secs_f64(poll);
    match url {
        Some(url) if url.starts_with("thrift://") => {
            let addresses = url
                .split(',')
                .map(|u| hive_address(u.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            let side = relational("--catalog-side", side, password, poll, ca_file, data_dir)?;
            Ok(CatalogLocation::Hive {
                addresses,
                side: Box::new(side),
                poll,
            })
        }
        url => {
            if side.is_some() {
                return Err(invalid(
                    "--catalog-side",
                    "is for a Hive Metastore catalog (--catalog thrift://...)",
                ));
            }
            relational("--catalog", url, password, poll, ca_file, data_dir)
        }
    }
}

/// `host:port` of `thrift://host[:port]` (9083 by default).
fn hive_address(uri: &str) -> Result<String, ConfigError> {
    let rest = uri
        .strip_prefix("thrift://")
        .ok_or_else(|| {
            invalid(
                "--catalog",
                format!("{uri:?}: every metastore URI starts with thrift://"),
            )
        })?
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '@', '?']) {
        return Err(invalid("--catalog", format!("{uri:?} is not thrift://host:port")));
    }
    let has_port = rest
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && !host.ends_with(':') && port.parse::<u16>().is_ok());
    Ok(if has_port {
        rest.to_owned()
    } else {
        format!("{rest}:9083")
    })
}

fn relational(
    flag: &'static str,
    url: Option<String>,
    password: Option<String>,
    poll: Duration,
    ca_file: Option<PathBuf>,
    data_dir: &Path,
) -> Result<CatalogLocation, ConfigError> {
    let Some(url) = url else {
        return Ok(CatalogLocation::Sqlite(data_dir.join("catalog.db")));
    };
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(invalid(
                flag,
                "sqlite:// needs a file path: sqlite:///path/to/catalog.db",
            ));
        }
        return Ok(CatalogLocation::Sqlite(PathBuf::from(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(CatalogLocation::Postgres {
            url: Secret(url),
            password: password.map(Secret),
            ca_file,
            poll,
        });
    }
    // Never echo the URL: it may hold a password.
    Err(invalid(
        flag,
        "not a supported catalog URL; expected sqlite:///path/to/catalog.db, postgres://user@host:port/database or thrift://host:port",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hive(url: &str, side: Option<&str>) -> Result<CatalogLocation, ConfigError> {
        load(
            Some(url.into()),
            side.map(String::from),
            None,
            None,
            None,
            Path::new("/d"),
        )
    }

    #[test]
    fn hive_metastore_uris_with_failover_and_a_side_store() {
        let CatalogLocation::Hive { addresses, side, .. } = hive("thrift://a:9083,thrift://b", None).unwrap() else {
            panic!("not a Hive catalog")
        };
        assert_eq!(addresses, ["a:9083", "b:9083"]);
        assert!(matches!(*side, CatalogLocation::Sqlite(p) if p == Path::new("/d/catalog.db")));
        let CatalogLocation::Hive { side, .. } = hive("thrift://[::1]:1", Some("postgres://u@h/c")).unwrap() else {
            panic!("not a Hive catalog")
        };
        assert!(matches!(*side, CatalogLocation::Postgres { .. }));
        for bad in [
            "thrift://",
            "thrift://a:1,http://b",
            "thrift://u@a:1",
            "thrift://a:1/db",
        ] {
            assert!(hive(bad, None).is_err(), "{bad}");
        }
        assert!(
            hive("thrift://a", Some("thrift://b")).is_err(),
            "a metastore is no side store"
        );
        assert!(load(None, Some("sqlite:///x".into()), None, None, None, Path::new("/d")).is_err());
    }
}
