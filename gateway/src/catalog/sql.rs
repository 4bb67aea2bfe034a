//! The catalog's relational model, written once for every SQL backend.
//!
//! [`SqlMetastore`] implements [`Metastore`] over a [`Backend`]: a database
//! that runs a closure in one transaction on a blocking thread and gives it a
//! [`Sql`] handle. The statements (`rows`, `access`) are the subset of SQL
//! that SQLite and PostgreSQL read alike; parameters are written `$1`, `$2`,
//! ... and typed by [`Value`]. What differs between the databases (column
//! types, placeholders, locking, change detection) stays in the backend
//! (`super::sqlite`, `super::postgres`).

use std::sync::Arc;

use async_trait::async_trait;

mod access;
mod rows;

use self::rows::{
    bump_version, commit, files_to_garbage, find_table, insert_partitions, insert_table, json, read_tables,
    remove_table, replace_table, require_database, unjson,
};
use super::{
    CatalogError, DataFile, Database, Garbage, Metastore, Partition, PartitionChange, PartitionEdit, PendingWrite,
    Strictness, Table, WriteCommit,
};

/// The catalog's tables, in SQLite's spelling (`INTEGER`, `BLOB`);
/// [`postgres_types`] turns it into PostgreSQL's.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS dbs (
    name TEXT PRIMARY KEY,
    location TEXT NOT NULL,
    comment TEXT,
    owner TEXT
);
CREATE TABLE IF NOT EXISTS tbls (
    db TEXT NOT NULL REFERENCES dbs(name),
    name TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    format TEXT NOT NULL,
    locations TEXT NOT NULL,
    partition_cols TEXT NOT NULL,
    options TEXT NOT NULL,
    properties TEXT NOT NULL,
    arrow_schema BLOB NOT NULL,
    view_sql TEXT,
    owner TEXT,
    PRIMARY KEY (db, name)
);
CREATE TABLE IF NOT EXISTS cols (
    table_id TEXT NOT NULL REFERENCES tbls(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    data_type TEXT NOT NULL,
    nullable INTEGER NOT NULL,
    PRIMARY KEY (table_id, position)
);
CREATE TABLE IF NOT EXISTS parts (
    table_id TEXT NOT NULL REFERENCES tbls(id) ON DELETE CASCADE,
    part_values TEXT NOT NULL,
    location TEXT NOT NULL,
    listed INTEGER NOT NULL,
    PRIMARY KEY (table_id, part_values)
);
CREATE TABLE IF NOT EXISTS files (
    table_id TEXT NOT NULL REFERENCES tbls(id) ON DELETE CASCADE,
    part_values TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    PRIMARY KEY (table_id, path)
);
CREATE INDEX IF NOT EXISTS files_by_partition ON files(table_id, part_values);
CREATE TABLE IF NOT EXISTS writes (
    write_id TEXT PRIMARY KEY,
    location TEXT NOT NULL,
    started INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS garbage (
    path TEXT PRIMARY KEY,
    delete_after INTEGER NOT NULL
);
"#;

/// Roles, their memberships, privileges, row filters and column masks
/// (`crate::access`). Privileges, policies and masks name their object by
/// schema and table and go with it when it is dropped.
pub(super) const ACCESS_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS roles (
    name TEXT PRIMARY KEY,
    login INTEGER NOT NULL,
    superuser INTEGER NOT NULL,
    verifier TEXT
);
CREATE TABLE IF NOT EXISTS role_members (
    role TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    member TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    PRIMARY KEY (role, member)
);
CREATE TABLE IF NOT EXISTS grants (
    db TEXT NOT NULL,
    tbl TEXT NOT NULL,
    privilege TEXT NOT NULL,
    col TEXT NOT NULL,
    grantee TEXT NOT NULL,
    PRIMARY KEY (db, tbl, privilege, col, grantee)
);
CREATE TABLE IF NOT EXISTS policies (
    db TEXT NOT NULL,
    tbl TEXT NOT NULL,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    predicate TEXT NOT NULL,
    PRIMARY KEY (db, tbl, name)
);
CREATE TABLE IF NOT EXISTS masks (
    db TEXT NOT NULL,
    tbl TEXT NOT NULL,
    col TEXT NOT NULL,
    role TEXT NOT NULL,
    expression TEXT NOT NULL,
    PRIMARY KEY (db, tbl, col, role)
);
"#;

/// A schema in SQLite's spelling, in PostgreSQL's.
pub(super) fn postgres_types(schema: &str) -> String {
    schema.replace(" INTEGER ", " BIGINT ").replace(" BLOB ", " BYTEA ")
}

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}
impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::Text(s.clone())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<u64> for Value {
    /// Saturates at `i64::MAX` (SQL integers are signed).
    fn from(i: u64) -> Self {
        Value::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Int(i64::from(b))
    }
}
impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Self {
        Value::Blob(b.to_vec())
    }
}
impl<T> From<Option<T>> for Value
where
    Value: From<T>,
{
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Value::from)
    }
}

/// `params![a, b]`: a parameter list of [`Value`]s.
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::catalog::sql::Value::from($v)),*] as &[$crate::catalog::sql::Value] };
}
pub(super) use params;

/// One result row.
#[derive(Debug)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, CatalogError> {
        self.0
            .get(i)
            .ok_or_else(|| CatalogError::Storage(format!("result has no column {i}")))
    }

    fn mistyped(&self, i: usize, want: &str) -> CatalogError {
        CatalogError::Storage(format!("column {i} is {:?}, not {want}", self.0.get(i)))
    }

    pub fn text(&self, i: usize) -> Result<String, CatalogError> {
        match self.at(i)? {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(self.mistyped(i, "text")),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, CatalogError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, CatalogError> {
        match self.at(i)? {
            Value::Int(v) => Ok(*v),
            _ => Err(self.mistyped(i, "an integer")),
        }
    }

    /// An integer column that holds a count or a size.
    pub fn unsigned(&self, i: usize) -> Result<u64, CatalogError> {
        Ok(u64::try_from(self.int(i)?).unwrap_or_default())
    }

    pub fn flag(&self, i: usize) -> Result<bool, CatalogError> {
        Ok(self.int(i)? != 0)
    }

    pub fn blob(&self, i: usize) -> Result<Vec<u8>, CatalogError> {
        match self.at(i)? {
            Value::Blob(b) => Ok(b.clone()),
            _ => Err(self.mistyped(i, "bytes")),
        }
    }
}

/// A connection inside one transaction.
pub trait Sql {
    /// Runs a statement; returns the rows it changed.
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<usize, CatalogError>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, CatalogError>;
    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, CatalogError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

/// What a transaction may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads a consistent state.
    Read,
    /// Changes the catalog; serialized with every other writer of the same
    /// catalog, other processes included.
    Write,
    /// Changes only bookkeeping no snapshot shows (pending writes, deleted
    /// garbage): other gateways need not reload for it.
    Bookkeeping,
}

/// A database the catalog lives in.
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Runs `f` in one transaction, committed if it returns `Ok`. Blocks:
    /// called on a blocking thread.
    fn run<T>(&self, mode: Mode, f: impl FnOnce(&mut dyn Sql) -> Result<T, CatalogError>) -> Result<T, CatalogError>;

    /// A number that changes with every committed change, when other
    /// processes may change the catalog too; `None` when only this one does.
    fn generation(&self) -> Result<Option<u64>, CatalogError> {
        Ok(None)
    }

    /// Whether other processes (gateways) share this catalog.
    fn shared(&self) -> bool {
        false
    }
}

/// A [`Metastore`] on a SQL [`Backend`].
#[derive(Debug)]
pub struct SqlMetastore<B> {
    backend: Arc<B>,
}

impl<B> Clone for SqlMetastore<B> {
    fn clone(&self) -> Self {
        SqlMetastore {
            backend: Arc::clone(&self.backend),
        }
    }
}

impl<B: Backend> SqlMetastore<B> {
    pub fn new(backend: B) -> Self {
        SqlMetastore {
            backend: Arc::new(backend),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        mode: Mode,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, CatalogError> + Send + 'static,
    ) -> Result<T, CatalogError> {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || backend.run(mode, f))
            .await
            .map_err(|e| CatalogError::Storage(format!("catalog task failed: {e}")))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, CatalogError> + Send + 'static,
    ) -> Result<T, CatalogError> {
        self.run(Mode::Read, f).await
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, CatalogError> + Send + 'static,
    ) -> Result<T, CatalogError> {
        self.run(Mode::Write, f).await
    }
}

#[async_trait]
impl<B: Backend> Metastore for SqlMetastore<B> {
    async fn list_databases(&self) -> Result<Vec<Database>, CatalogError> {
        self.read(|c| {
            let mut out = c
                .query("SELECT name, location, comment, owner FROM dbs", &[])?
                .into_iter()
                .map(|r| {
                    Ok(Database {
                        name: r.text(0)?,
                        location: r.text(1)?,
                        comment: r.opt_text(2)?,
                        owner: r.opt_text(3)?,
                    })
                })
                .collect::<Result<Vec<_>, CatalogError>>()?;
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn create_database(&self, db: &Database) -> Result<(), CatalogError> {
        let db = db.clone();
        self.write(move |c| {
            let n = c.exec(
                "INSERT INTO dbs(name, location, comment, owner) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                params![&db.name, &db.location, db.comment.clone(), db.owner.clone()],
            )?;
            if n == 0 {
                return Err(CatalogError::DatabaseExists(db.name));
            }
            Ok(())
        })
        .await
    }

    async fn drop_database(&self, name: &str, cascade: bool, after: u64) -> Result<Vec<Table>, CatalogError> {
        let name = name.to_owned();
        self.write(move |tx| {
            require_database(tx, &name)?;
            let tables = read_tables(tx, Some(&name), None)?;
            if !tables.is_empty() && !cascade {
                return Err(CatalogError::DatabaseNotEmpty(name));
            }
            for t in &tables {
                remove_table(tx, t, after)?;
            }
            access::forget_schema(tx, &name)?;
            tx.exec("DELETE FROM dbs WHERE name = $1", params![&name])?;
            Ok(tables)
        })
        .await
    }

    async fn list_tables(&self) -> Result<Vec<Table>, CatalogError> {
        self.read(|c| read_tables(c, None, None)).await
    }

    async fn create_table(
        &self,
        table: &Table,
        partitions: &[Partition],
        replace: bool,
        after: u64,
    ) -> Result<(), CatalogError> {
        let (t, parts) = (table.clone(), partitions.to_vec());
        self.write(move |tx| {
            require_database(tx, &t.database)?;
            if let Some(old) = find_table(tx, &t.database, &t.name)? {
                replace_table(tx, &old, &t, replace, after)?;
            }
            insert_table(tx, &t)?;
            insert_partitions(tx, &t.id, &parts)?;
            Ok(())
        })
        .await
    }

    async fn drop_table(
        &self,
        database: &str,
        name: &str,
        expected_id: Option<&str>,
        after: u64,
    ) -> Result<Table, CatalogError> {
        let (database, name, expected_id) = (database.to_owned(), name.to_owned(), expected_id.map(str::to_owned));
        self.write(move |tx| {
            let table = find_table(tx, &database, &name)?
                .ok_or_else(|| CatalogError::TableNotFound(format!("{database}.{name}")))?;
            if expected_id.as_ref().is_some_and(|id| *id != table.id) {
                return Err(CatalogError::TableChanged(format!("{database}.{name}")));
            }
            remove_table(tx, &table, after)?;
            access::forget_table(tx, &database, &name)?;
            Ok(table)
        })
        .await
    }

    async fn list_partitions(&self, table_id: &str) -> Result<Vec<Partition>, CatalogError> {
        let table_id = table_id.to_owned();
        self.read(move |c| {
            let mut rows = c
                .query(
                    "SELECT part_values, location, listed FROM parts WHERE table_id = $1",
                    params![&table_id],
                )?
                .into_iter()
                .map(|r| Ok((r.text(0)?, r.text(1)?, r.flag(2)?)))
                .collect::<Result<Vec<_>, CatalogError>>()?;
            // Byte order of the key, whatever the database's collation.
            rows.sort();
            rows.into_iter()
                .map(|(v, location, listed)| {
                    Ok(Partition {
                        values: unjson(&table_id, &v)?,
                        location,
                        listed,
                    })
                })
                .collect()
        })
        .await
    }

    async fn alter_partitions(&self, edit: &PartitionEdit) -> Result<PartitionChange, CatalogError> {
        let PartitionEdit {
            database,
            name,
            table_id,
            add,
            drop,
            strictness,
            garbage_after_unix: after,
        } = edit.clone();
        self.write(move |tx| {
            let table = find_table(tx, &database, &name)?
                .ok_or_else(|| CatalogError::TableNotFound(format!("{database}.{name}")))?;
            if table.id != table_id {
                return Err(CatalogError::TableChanged(format!("{database}.{name}")));
            }
            let mut change = PartitionChange::default();
            for values in &drop {
                let key = json(values);
                files_to_garbage(tx, &table.id, Some(&key), after)?;
                tx.exec(
                    "DELETE FROM files WHERE table_id = $1 AND part_values = $2",
                    params![&table.id, &key],
                )?;
                let n = tx.exec(
                    "DELETE FROM parts WHERE table_id = $1 AND part_values = $2",
                    params![&table.id, &key],
                )?;
                if n == 0 && strictness == Strictness::Strict {
                    return Err(CatalogError::PartitionNotFound(
                        table.qualified(),
                        table.describe_partition(values),
                    ));
                }
                change.dropped += n;
            }
            for p in &add {
                let n = insert_partitions(tx, &table.id, std::slice::from_ref(p))?;
                if n == 0 && strictness == Strictness::Strict {
                    return Err(CatalogError::PartitionExists(
                        table.qualified(),
                        table.describe_partition(&p.values),
                    ));
                }
                change.added += n;
            }
            if change != PartitionChange::default() {
                bump_version(tx, &table.id)?;
            }
            Ok(change)
        })
        .await
    }

    async fn list_files(&self, table_id: &str) -> Result<Vec<DataFile>, CatalogError> {
        let table_id = table_id.to_owned();
        self.read(move |c| {
            let mut files = c
                .query(
                    "SELECT part_values, path, size, rows FROM files WHERE table_id = $1",
                    params![&table_id],
                )?
                .into_iter()
                .map(|r| {
                    Ok(DataFile {
                        partition: unjson(&table_id, &r.text(0)?)?,
                        path: r.text(1)?,
                        size: r.unsigned(2)?,
                        rows: r.unsigned(3)?,
                    })
                })
                .collect::<Result<Vec<_>, CatalogError>>()?;
            files.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(files)
        })
        .await
    }

    async fn begin_write(&self, write: &PendingWrite) -> Result<(), CatalogError> {
        let w = write.clone();
        self.run(Mode::Bookkeeping, move |c| {
            c.exec(
                "INSERT INTO writes(write_id, location, started) VALUES ($1, $2, $3)",
                params![&w.write_id, &w.location, w.started_unix],
            )?;
            Ok(())
        })
        .await
    }

    async fn commit_write(&self, c: &WriteCommit) -> Result<(), CatalogError> {
        let c = c.clone();
        self.write(move |tx| commit(tx, &c)).await
    }

    async fn end_write(&self, write_id: &str) -> Result<(), CatalogError> {
        let write_id = write_id.to_owned();
        self.run(Mode::Bookkeeping, move |c| {
            c.exec("DELETE FROM writes WHERE write_id = $1", params![&write_id])?;
            Ok(())
        })
        .await
    }

    async fn write_pending(&self, write_id: &str) -> Result<bool, CatalogError> {
        let write_id = write_id.to_owned();
        self.read(move |c| {
            Ok(
                c.query_opt("SELECT 1 FROM writes WHERE write_id = $1", params![&write_id])?
                    .is_some(),
            )
        })
        .await
    }

    async fn pending_writes(&self) -> Result<Vec<PendingWrite>, CatalogError> {
        self.read(|c| {
            c.query("SELECT write_id, location, started FROM writes ORDER BY started", &[])?
                .into_iter()
                .map(|r| {
                    Ok(PendingWrite {
                        write_id: r.text(0)?,
                        location: r.text(1)?,
                        started_unix: r.unsigned(2)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn due_garbage(&self, now_unix: u64) -> Result<Vec<Garbage>, CatalogError> {
        self.read(move |c| {
            let mut due = c
                .query(
                    "SELECT path, delete_after FROM garbage WHERE delete_after <= $1",
                    params![now_unix],
                )?
                .into_iter()
                .map(|r| {
                    Ok(Garbage {
                        path: r.text(0)?,
                        delete_after_unix: r.unsigned(1)?,
                    })
                })
                .collect::<Result<Vec<_>, CatalogError>>()?;
            due.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(due)
        })
        .await
    }

    async fn forget_garbage(&self, paths: &[String]) -> Result<(), CatalogError> {
        let paths = paths.to_vec();
        self.run(Mode::Bookkeeping, move |tx| {
            for p in &paths {
                tx.exec("DELETE FROM garbage WHERE path = $1", params![p])?;
            }
            Ok(())
        })
        .await
    }

    async fn load_access(&self) -> Result<crate::access::AccessSnapshot, CatalogError> {
        self.read(access::load).await
    }

    async fn change_access(&self, changes: &[crate::access::AccessChange]) -> Result<(), CatalogError> {
        let changes = changes.to_vec();
        self.write(move |tx| changes.iter().try_for_each(|c| access::apply(tx, c)))
            .await
    }

    async fn generation(&self) -> Result<Option<u64>, CatalogError> {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || backend.generation())
            .await
            .map_err(|e| CatalogError::Storage(format!("catalog task failed: {e}")))?
    }

    fn shared(&self) -> bool {
        self.backend.shared()
    }
}
