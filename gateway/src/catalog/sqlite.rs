//! Embedded SQLite metastore. WAL journal with `synchronous=FULL`: a change is
//! on disk before the call returns, so acknowledged DDL and commits survive
//! `kill -9`. Every [`Metastore`] method is one SQLite transaction.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, Transaction, params};

mod access;

use self::rows::{
    bump_version, commit, describe, files_to_garbage, find_table, insert_partitions, insert_table, json, read_tables,
    remove_table, replace_table, require_database, unjson,
};

use super::{
    CatalogError, DataFile, Database, Garbage, Metastore, Partition, PartitionChange, PartitionEdit, PendingWrite,
    Strictness, Table, WriteCommit,
};

/// Catalog format; bumped when the schema changes. Format 2 catalogs are
/// upgraded in place (owners and the access tables are added).
const FORMAT: i64 = 3;

const SCHEMA: &str = r#"
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
const ACCESS_SCHEMA: &str = r#"
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

/// SQLite-backed [`Metastore`].
#[derive(Debug, Clone)]
pub struct SqliteMetastore {
    conn: Arc<Mutex<Connection>>,
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
        Ok(SqliteMetastore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, CatalogError> + Send + 'static,
    ) -> Result<T, CatalogError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| CatalogError::Storage(format!("catalog task failed: {e}")))?
    }

    /// Runs `f` in one transaction, committed if it returns `Ok`.
    async fn tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, CatalogError> + Send + 'static,
    ) -> Result<T, CatalogError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl Metastore for SqliteMetastore {
    async fn list_databases(&self) -> Result<Vec<Database>, CatalogError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT name, location, comment, owner FROM dbs ORDER BY name")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Database {
                        name: r.get(0)?,
                        location: r.get(1)?,
                        comment: r.get(2)?,
                        owner: r.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn create_database(&self, db: &Database) -> Result<(), CatalogError> {
        let db = db.clone();
        self.with(move |c| {
            let n = c.execute(
                "INSERT INTO dbs(name, location, comment, owner) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![db.name, db.location, db.comment, db.owner],
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
        self.tx(move |tx| {
            require_database(tx, &name)?;
            let tables = read_tables(tx, Some(&name), None)?;
            if !tables.is_empty() && !cascade {
                return Err(CatalogError::DatabaseNotEmpty(name));
            }
            for t in &tables {
                remove_table(tx, t, after)?;
            }
            access::forget_schema(tx, &name)?;
            tx.execute("DELETE FROM dbs WHERE name = ?1", params![name])?;
            Ok(tables)
        })
        .await
    }

    async fn list_tables(&self) -> Result<Vec<Table>, CatalogError> {
        self.with(|c| read_tables(c, None, None)).await
    }

    async fn create_table(
        &self,
        table: &Table,
        partitions: &[Partition],
        replace: bool,
        after: u64,
    ) -> Result<(), CatalogError> {
        let (t, parts) = (table.clone(), partitions.to_vec());
        self.tx(move |tx| {
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

    async fn drop_table(&self, database: &str, name: &str, after: u64) -> Result<Table, CatalogError> {
        let (database, name) = (database.to_owned(), name.to_owned());
        self.tx(move |tx| {
            let table = find_table(tx, &database, &name)?
                .ok_or_else(|| CatalogError::TableNotFound(format!("{database}.{name}")))?;
            remove_table(tx, &table, after)?;
            access::forget_table(tx, &database, &name)?;
            Ok(table)
        })
        .await
    }

    async fn list_partitions(&self, table_id: &str) -> Result<Vec<Partition>, CatalogError> {
        let table_id = table_id.to_owned();
        self.with(move |c| {
            let mut stmt =
                c.prepare("SELECT part_values, location, listed FROM parts WHERE table_id = ?1 ORDER BY part_values")?;
            let rows = stmt
                .query_map(params![table_id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(v, location, listed)| {
                    Ok(Partition {
                        values: unjson(&table_id, &v)?,
                        location,
                        listed: listed != 0,
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
        self.tx(move |tx| {
            let table = find_table(tx, &database, &name)?
                .ok_or_else(|| CatalogError::TableNotFound(format!("{database}.{name}")))?;
            if table.id != table_id {
                return Err(CatalogError::TableChanged(format!("{database}.{name}")));
            }
            let mut change = PartitionChange::default();
            for values in &drop {
                let key = json(values);
                files_to_garbage(tx, &table.id, Some(&key), after)?;
                tx.execute(
                    "DELETE FROM files WHERE table_id = ?1 AND part_values = ?2",
                    params![table.id, key],
                )?;
                let n = tx.execute(
                    "DELETE FROM parts WHERE table_id = ?1 AND part_values = ?2",
                    params![table.id, key],
                )?;
                if n == 0 && strictness == Strictness::Strict {
                    return Err(CatalogError::PartitionNotFound(
                        table.qualified(),
                        describe(&table, values),
                    ));
                }
                change.dropped += n;
            }
            for p in &add {
                let n = insert_partitions(tx, &table.id, std::slice::from_ref(p))?;
                if n == 0 && strictness == Strictness::Strict {
                    return Err(CatalogError::PartitionExists(
                        table.qualified(),
                        describe(&table, &p.values),
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
        self.with(move |c| {
            let mut stmt =
                c.prepare("SELECT part_values, path, size, rows FROM files WHERE table_id = ?1 ORDER BY path")?;
            let rows = stmt
                .query_map(params![table_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(v, path, size, rows)| {
                    Ok(DataFile {
                        partition: unjson(&table_id, &v)?,
                        path,
                        size: u64::try_from(size).unwrap_or_default(),
                        rows: u64::try_from(rows).unwrap_or_default(),
                    })
                })
                .collect()
        })
        .await
    }

    async fn begin_write(&self, write: &PendingWrite) -> Result<(), CatalogError> {
        let w = write.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO writes(write_id, location, started) VALUES (?1, ?2, ?3)",
                params![
                    w.write_id,
                    w.location,
                    i64::try_from(w.started_unix).unwrap_or_default()
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn commit_write(&self, c: &WriteCommit) -> Result<(), CatalogError> {
        let c = c.clone();
        self.tx(move |tx| commit(tx, &c)).await
    }

    async fn end_write(&self, write_id: &str) -> Result<(), CatalogError> {
        let write_id = write_id.to_owned();
        self.with(move |c| {
            c.execute("DELETE FROM writes WHERE write_id = ?1", params![write_id])?;
            Ok(())
        })
        .await
    }

    async fn write_pending(&self, write_id: &str) -> Result<bool, CatalogError> {
        let write_id = write_id.to_owned();
        self.with(move |c| {
            let n: i64 = c.query_row(
                "SELECT count(*) FROM writes WHERE write_id = ?1",
                params![write_id],
                |r| r.get(0),
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn pending_writes(&self) -> Result<Vec<PendingWrite>, CatalogError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT write_id, location, started FROM writes ORDER BY started")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(PendingWrite {
                        write_id: r.get(0)?,
                        location: r.get(1)?,
                        started_unix: u64::try_from(r.get::<_, i64>(2)?).unwrap_or_default(),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn due_garbage(&self, now_unix: u64) -> Result<Vec<Garbage>, CatalogError> {
        self.with(move |c| {
            let mut stmt =
                c.prepare("SELECT path, delete_after FROM garbage WHERE delete_after <= ?1 ORDER BY path")?;
            let rows = stmt
                .query_map(params![i64::try_from(now_unix).unwrap_or(i64::MAX)], |r| {
                    Ok(Garbage {
                        path: r.get(0)?,
                        delete_after_unix: u64::try_from(r.get::<_, i64>(1)?).unwrap_or_default(),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn forget_garbage(&self, paths: &[String]) -> Result<(), CatalogError> {
        let paths = paths.to_vec();
        self.tx(move |tx| {
            for p in &paths {
                tx.execute("DELETE FROM garbage WHERE path = ?1", params![p])?;
            }
            Ok(())
        })
        .await
    }

    async fn load_access(&self) -> Result<crate::access::AccessSnapshot, CatalogError> {
        self.with(|c| access::load(c)).await
    }

    async fn change_access(&self, changes: &[crate::access::AccessChange]) -> Result<(), CatalogError> {
        let changes = changes.to_vec();
        self.tx(move |tx| changes.iter().try_for_each(|c| access::apply(tx, c)))
            .await
    }
}

mod rows;
#[cfg(test)]
mod tests;
