//! A catalog in PostgreSQL, shared by several gateways.
//!
//! The tables are [`SCHEMA`]'s, in the schema `sluice` of the database the
//! URL names. Every change is one transaction that first takes one
//! transaction-scoped advisory lock, so changes from all gateways are
//! serialized by the database: two `CREATE TABLE`s of one name cannot both
//! pass the existence check. Each change also bumps `sluice_catalog.generation`;
//! gateways poll it (`--catalog-poll`) and reload their snapshot when it
//! moved, which bounds how long another gateway's DDL stays unseen.
//!
//! The client is the synchronous `postgres` crate on a blocking thread, as
//! SQLite is: one connection per gateway (catalog calls are few and short),
//! opened again when it breaks.

use std::error::Error;
use std::str::FromStr;
use std::sync::Mutex;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, IsolationLevel};

use super::CatalogError;
use super::sql::{ACCESS_SCHEMA, Backend, Mode, Row, SCHEMA, Sql, SqlMetastore, Value, postgres_types};

/// Format of the tables in the `sluice` schema.
const FORMAT: i64 = 1;

/// The advisory lock every change holds (an arbitrary constant: "sluice").
const LOCK: i64 = 0x736c_7569_6365;

/// The catalog in a PostgreSQL database.
pub type PostgresMetastore = SqlMetastore<Postgres>;

mod tls;

/// The PostgreSQL [`Backend`].
pub struct Postgres {
    config: postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password.
        f.debug_struct("Postgres")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .finish_non_exhaustive()
    }
}

fn storage(e: postgres::Error) -> CatalogError {
    // `Display` of a server error is only "db error"; its message is below.
    match e.as_db_error() {
        Some(db) => CatalogError::Storage(format!("PostgreSQL catalog: {} ({})", db.message(), db.code().code())),
        None => {
            // The causes (a refused certificate, a refused connection) are
            // in the source chain, not in `Display`.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            CatalogError::Storage(format!("PostgreSQL catalog: {message}"))
        }
    }
}

impl PostgresMetastore {
    /// Connects to `url` (`postgres://user@host:port/db`, or the key=value
    /// form), with `password` unless the URL has one, and creates the
    /// catalog's tables if they are missing. Blocks: call it from a blocking
    /// thread.
    /// TLS follows the URL's `sslmode` (see `tls`): verified against
    /// `ca_file` when given.
    pub fn connect(url: &str, password: Option<&str>, ca_file: Option<&std::path::Path>) -> Result<Self, CatalogError> {
        let mut config = postgres::Config::from_str(url)
            .map_err(|e| CatalogError::Storage(format!("--catalog is not a PostgreSQL URL: {e}")))?;
        if config.get_password().is_none()
            && let Some(p) = password
        {
            config.password(p);
        }
        config.application_name("sluice-gateway");
        if ca_file.is_some() {
            // Verification is pointless if the server may answer "no TLS":
            // with a CA the connection is TLS or nothing (verify-full).
            config.ssl_mode(postgres::config::SslMode::Require);
        } else if config.get_ssl_mode() != postgres::config::SslMode::Disable {
            tracing::warn!(
                "TLS to the PostgreSQL catalog, if the server offers it, does not authenticate the server: set --catalog-ca-file"
            );
        }
        let backend = Postgres {
            config,
            tls: tls::connector(ca_file)?,
            client: Mutex::new(None),
        };
        backend.install()?;
        Ok(SqlMetastore::new(backend))
    }
}

impl Drop for Postgres {
    /// The client's own drop blocks on its runtime, which panics on a
    /// thread that drives async tasks: drop it on a thread of its own.
    fn drop(&mut self) {
        let client = self.client.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(client) = client {
            std::thread::spawn(move || drop(client));
        }
    }
}

impl Postgres {
    fn connect(&self) -> Result<Client, CatalogError> {
        let mut client = self.config.connect(self.tls.clone()).map_err(storage)?;
        // The schema itself is created by `install`, under the lock.
        client.batch_execute("SET search_path = sluice").map_err(storage)?;
        Ok(client)
    }

    /// Runs `f` on the connection, opening it first if there is none or it
    /// broke; a connection that breaks in `f` is dropped.
    fn with<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, CatalogError>) -> Result<T, CatalogError> {
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.connect()?);
        }
        let client = guard.as_mut().expect("connected above");
        let out = f(client);
        if client.is_closed() {
            *guard = None;
        }
        out
    }

    /// Creates the tables (under the lock: gateways may start together) and
    /// checks their format.
    fn install(&self) -> Result<(), CatalogError> {
        self.with(|client| {
            let mut tx = client.transaction().map_err(storage)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
                .map_err(storage)?;
            tx.batch_execute(&format!(
                "SET LOCAL client_min_messages = warning; CREATE SCHEMA IF NOT EXISTS sluice;{}{}CREATE TABLE IF NOT EXISTS sluice_catalog (format BIGINT NOT NULL, generation BIGINT NOT NULL);",
                postgres_types(SCHEMA),
                postgres_types(ACCESS_SCHEMA)
            ))
            .map_err(storage)?;
            let format: Option<i64> = tx
                .query_opt("SELECT format FROM sluice_catalog", &[])
                .map_err(storage)?
                .map(|r| r.get(0));
            match format {
                None => {
                    tx.execute(
                        "INSERT INTO sluice_catalog(format, generation) VALUES ($1, 0)",
                        &[&FORMAT],
                    )
                    .map_err(storage)?;
                }
                Some(FORMAT) => {}
                Some(other) => {
                    return Err(CatalogError::Storage(format!(
                        "the PostgreSQL catalog holds format {other}; this Sluice reads format {FORMAT}"
                    )));
                }
            }
            tx.commit().map_err(storage)
        })
    }
}

impl Backend for Postgres {
    fn run<T>(&self, mode: Mode, f: impl FnOnce(&mut dyn Sql) -> Result<T, CatalogError>) -> Result<T, CatalogError> {
        self.with(|client| {
            let mut tx = match mode {
                Mode::Read => client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start(),
                Mode::Write | Mode::Bookkeeping => client.transaction(),
            }
            .map_err(storage)?;
            if mode == Mode::Write {
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
                    .map_err(storage)?;
            }
            let out = f(&mut tx)?;
            if mode == Mode::Write {
                tx.execute("UPDATE sluice_catalog SET generation = generation + 1", &[])
                    .map_err(storage)?;
            }
            tx.commit().map_err(storage)?;
            Ok(out)
        })
    }

    fn generation(&self) -> Result<Option<u64>, CatalogError> {
        self.with(|client| {
            let row = client
                .query_one("SELECT generation FROM sluice_catalog", &[])
                .map_err(storage)?;
            Ok(Some(u64::try_from(row.get::<_, i64>(0)).unwrap_or_default()))
        })
    }

    fn shared(&self) -> bool {
        true
    }
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => Err(format!("an integer cannot be sent as {ty}").into()),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    /// Any type: [`Self::to_sql`] converts or refuses per value.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn value(row: &postgres::Row, i: usize) -> Result<Value, CatalogError> {
    let ty = row.columns()[i].type_();
    let v = match *ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Type::BOOL => row.try_get::<_, Option<bool>>(i).map(|v| v.map(Value::from)),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map(|v| v.map(Value::Blob)),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
            row.try_get::<_, Option<String>>(i).map(|v| v.map(Value::Text))
        }
        _ => {
            return Err(CatalogError::Storage(format!(
                "unexpected column type {ty} in the catalog"
            )));
        }
    };
    Ok(v.map_err(storage)?.unwrap_or(Value::Null))
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Sql for postgres::Transaction<'_> {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<usize, CatalogError> {
        let n = self.execute(sql, &refs(params)).map_err(storage)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, CatalogError> {
        postgres::Transaction::query(self, sql, &refs(params))
            .map_err(storage)?
            .iter()
            .map(|r| Ok(Row((0..r.len()).map(|i| value(r, i)).collect::<Result<_, _>>()?)))
            .collect()
    }
}
