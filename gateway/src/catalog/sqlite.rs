//! Embedded SQLite catalog, the default. WAL journal with `synchronous=FULL`:
//! a change is on disk before the call returns, so acknowledged DDL and
//! commits survive `kill -9`. Every [`Metastore`](super::Metastore) method is
//! one SQLite transaction; one process owns the file.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::CatalogError;
use super::sql::{ACCESS_SCHEMA, Backend, Mode, Row, SCHEMA, Sql, SqlMetastore, Value};

/// Catalog format; bumped when the schema changes. Format 2 catalogs are
/// upgraded in place (owners and the access tables are added).
const FORMAT: i64 = 3;

impl From<rusqlite::Error> for CatalogError {
    fn from(e: rusqlite::Error) -> Self {
        CatalogError::Storage(e.to_string())
    }
}

/// The catalog in one SQLite file.
pub type SqliteMetastore = SqlMetastore<Sqlite>;

/// The SQLite [`Backend`].
#[derive(Debug)]
pub struct Sqlite {
    conn: Mutex<Connection>,
}

impl SqliteMetastore {
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let format: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let has_tables: bool = conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'tbls'",
            [],
            |r| r.get(0),
        )?;
        if has_tables && format == 2 {
            // Format 3 adds owners (NULL: the bootstrap superuser) and the
            // access tables, created below.
            conn.execute_batch("ALTER TABLE dbs ADD COLUMN owner TEXT; ALTER TABLE tbls ADD COLUMN owner TEXT;")?;
        } else if has_tables && format != FORMAT {
            return Err(CatalogError::Storage(format!(
                "{} holds catalog format {format}; this Sluice reads formats 2 and {FORMAT}. Start with a new --data-dir or --catalog",
                path.display()
            )));
        }
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(ACCESS_SCHEMA)?;
        conn.pragma_update(None, "user_version", FORMAT)?;
        Ok(SqlMetastore::new(Sqlite { conn: Mutex::new(conn) }))
    }
}

impl Backend for Sqlite {
    fn run<T>(&self, mode: Mode, f: impl FnOnce(&mut dyn Sql) -> Result<T, CatalogError>) -> Result<T, CatalogError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let behavior = match mode {
            Mode::Read => TransactionBehavior::Deferred,
            Mode::Write | Mode::Bookkeeping => TransactionBehavior::Immediate,
        };
        let mut tx = conn.transaction_with_behavior(behavior)?;
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// `$1` → `?1`: SQLite reads `$1` as a named parameter.
fn placeholders(sql: &str) -> Cow<'_, str> {
    if sql.contains('$') {
        Cow::Owned(sql.replace('$', "?"))
    } else {
        Cow::Borrowed(sql)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl Sql for Transaction<'_> {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<usize, CatalogError> {
        let mut stmt = self.prepare_cached(&placeholders(sql))?;
        Ok(stmt.execute(rusqlite::params_from_iter(params))?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, CatalogError> {
        let mut stmt = self.prepare_cached(&placeholders(sql))?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(width);
            for i in 0..width {
                row.push(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(i) => Value::Int(i),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                    ValueRef::Real(x) => {
                        return Err(CatalogError::Storage(format!("unexpected real {x} in the catalog")));
                    }
                });
            }
            out.push(Row(row));
        }
        Ok(out)
    }
}
