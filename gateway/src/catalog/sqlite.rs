//! Embedded SQLite metastore. WAL journal with `synchronous=FULL`: a change is
//! on disk before the call returns, so acknowledged DDL survives `kill -9`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{CatalogError, Column, Database, Metastore, Partition, Table, TableKind};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS dbs (
    name TEXT PRIMARY KEY,
    location TEXT NOT NULL,
    comment TEXT
);
CREATE TABLE IF NOT EXISTS tbls (
    db TEXT NOT NULL REFERENCES dbs(name),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    format TEXT NOT NULL,
    locations TEXT NOT NULL,
    partition_cols TEXT NOT NULL,
    options TEXT NOT NULL,
    properties TEXT NOT NULL,
    arrow_schema BLOB NOT NULL,
    view_sql TEXT,
    PRIMARY KEY (db, name)
);
CREATE TABLE IF NOT EXISTS cols (
    db TEXT NOT NULL,
    tbl TEXT NOT NULL,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    data_type TEXT NOT NULL,
    nullable INTEGER NOT NULL,
    PRIMARY KEY (db, tbl, position),
    FOREIGN KEY (db, tbl) REFERENCES tbls(db, name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS partitions (
    db TEXT NOT NULL,
    tbl TEXT NOT NULL,
    part_values TEXT NOT NULL,
    location TEXT NOT NULL,
    PRIMARY KEY (db, tbl, part_values),
    FOREIGN KEY (db, tbl) REFERENCES tbls(db, name) ON DELETE CASCADE
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
        conn.execute_batch(SCHEMA)?;
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
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn unjson<T: serde::de::DeserializeOwned>(table: &str, s: &str) -> Result<T, CatalogError> {
    serde_json::from_str(s).map_err(|e| CatalogError::Corrupt(table.to_owned(), e.to_string()))
}

fn read_tables(tx: &Connection, db_filter: Option<&str>) -> Result<Vec<Table>, CatalogError> {
    let mut stmt = tx.prepare(
        "SELECT db, name, kind, format, locations, partition_cols, options, properties, arrow_schema, view_sql
         FROM tbls WHERE (?1 IS NULL OR db = ?1) ORDER BY db, name",
    )?;
    let rows = stmt
        .query_map(params![db_filter], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, Vec<u8>>(8)?,
                r.get::<_, Option<String>>(9)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut col_stmt =
        tx.prepare("SELECT name, data_type, nullable FROM cols WHERE db = ?1 AND tbl = ?2 ORDER BY position")?;
    let mut out = Vec::with_capacity(rows.len());
    for (db, name, kind, format, locations, pcols, options, props, schema, view_sql) in rows {
        let full = format!("{db}.{name}");
        let columns = col_stmt
            .query_map(params![db, name], |r| {
                Ok(Column {
                    name: r.get(0)?,
                    data_type: r.get(1)?,
                    nullable: r.get::<_, i64>(2)? != 0,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Table {
            kind: TableKind::parse(&kind).ok_or_else(|| CatalogError::Corrupt(full.clone(), format!("kind {kind}")))?,
            locations: unjson(&full, &locations)?,
            partition_columns: unjson(&full, &pcols)?,
            options: unjson::<BTreeMap<String, String>>(&full, &options)?,
            properties: unjson::<BTreeMap<String, String>>(&full, &props)?,
            database: db,
            name,
            format,
            columns,
            arrow_schema: schema,
            view_sql,
        });
    }
    Ok(out)
}

#[async_trait]
impl Metastore for SqliteMetastore {
    async fn list_databases(&self) -> Result<Vec<Database>, CatalogError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT name, location, comment FROM dbs ORDER BY name")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Database {
                        name: r.get(0)?,
                        location: r.get(1)?,
                        comment: r.get(2)?,
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
                "INSERT INTO dbs(name, location, comment) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![db.name, db.location, db.comment],
            )?;
            if n == 0 {
                return Err(CatalogError::DatabaseExists(db.name));
            }
            Ok(())
        })
        .await
    }

    async fn drop_database(&self, name: &str, cascade: bool) -> Result<Vec<Table>, CatalogError> {
        let name = name.to_owned();
        self.with(move |c| {
            let tx = c.transaction()?;
            let exists: Option<String> = tx
                .query_row("SELECT name FROM dbs WHERE name = ?1", params![name], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Err(CatalogError::DatabaseNotFound(name));
            }
            let tables = read_tables(&tx, Some(&name))?;
            if !tables.is_empty() && !cascade {
                return Err(CatalogError::DatabaseNotEmpty(name));
            }
            tx.execute("DELETE FROM tbls WHERE db = ?1", params![name])?;
            tx.execute("DELETE FROM dbs WHERE name = ?1", params![name])?;
            tx.commit()?;
            Ok(tables)
        })
        .await
    }

    async fn list_tables(&self) -> Result<Vec<Table>, CatalogError> {
        self.with(|c| read_tables(c, None)).await
    }

    async fn create_table(&self, table: &Table, replace: bool) -> Result<(), CatalogError> {
        let t = table.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let db: Option<String> = tx
                .query_row("SELECT name FROM dbs WHERE name = ?1", params![t.database], |r| r.get(0))
                .optional()?;
            if db.is_none() {
                return Err(CatalogError::DatabaseNotFound(t.database));
            }
            let existing: Option<String> = tx
                .query_row(
                    "SELECT name FROM tbls WHERE db = ?1 AND name = ?2",
                    params![t.database, t.name],
                    |r| r.get(0),
                )
                .optional()?;
            if existing.is_some() {
                if !replace {
                    return Err(CatalogError::TableExists(format!("{}.{}", t.database, t.name)));
                }
                tx.execute("DELETE FROM tbls WHERE db = ?1 AND name = ?2", params![t.database, t.name])?;
            }
            tx.execute(
                "INSERT INTO tbls(db, name, kind, format, locations, partition_cols, options, properties, arrow_schema, view_sql)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    t.database,
                    t.name,
                    t.kind.as_str(),
                    t.format,
                    json(&t.locations),
                    json(&t.partition_columns),
                    json(&t.options),
                    json(&t.properties),
                    t.arrow_schema,
                    t.view_sql
                ],
            )?;
            for (i, col) in t.columns.iter().enumerate() {
                tx.execute(
                    "INSERT INTO cols(db, tbl, position, name, data_type, nullable) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![t.database, t.name, i as i64, col.name, col.data_type, col.nullable as i64],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn drop_table(&self, database: &str, name: &str) -> Result<Table, CatalogError> {
        let (database, name) = (database.to_owned(), name.to_owned());
        self.with(move |c| {
            let tx = c.transaction()?;
            let table = read_tables(&tx, Some(&database))?
                .into_iter()
                .find(|t| t.name == name)
                .ok_or_else(|| CatalogError::TableNotFound(format!("{database}.{name}")))?;
            tx.execute("DELETE FROM tbls WHERE db = ?1 AND name = ?2", params![database, name])?;
            tx.commit()?;
            Ok(table)
        })
        .await
    }

    async fn add_partitions(&self, database: &str, table: &str, parts: &[Partition]) -> Result<(), CatalogError> {
        let (database, table, parts) = (database.to_owned(), table.to_owned(), parts.to_vec());
        self.with(move |c| {
            let tx = c.transaction()?;
            for p in &parts {
                tx.execute(
                    "INSERT INTO partitions(db, tbl, part_values, location) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    params![database, table, json(&p.values), p.location],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_partitions(&self, database: &str, table: &str) -> Result<Vec<Partition>, CatalogError> {
        let (database, table) = (database.to_owned(), table.to_owned());
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT part_values, location FROM partitions WHERE db = ?1 AND tbl = ?2 ORDER BY part_values",
            )?;
            let rows = stmt
                .query_map(params![database, table], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(v, location)| {
                    Ok(Partition {
                        values: unjson(&table, &v)?,
                        location,
                    })
                })
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(db: &str, name: &str) -> Table {
        Table {
            database: db.into(),
            name: name.into(),
            kind: TableKind::External,
            format: "PARQUET".into(),
            locations: vec!["file:///tmp/x/".into()],
            columns: vec![Column {
                name: "a".into(),
                data_type: "Int64".into(),
                nullable: true,
            }],
            partition_columns: vec![],
            options: BTreeMap::new(),
            properties: BTreeMap::new(),
            arrow_schema: vec![1, 2, 3],
            view_sql: None,
        }
    }

    #[tokio::test]
    async fn round_trip_survives_reopen_and_cascade_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        {
            let m = SqliteMetastore::open(&path).unwrap();
            m.create_database(&Database {
                name: "s".into(),
                location: "file:///w/s.db/".into(),
                comment: None,
            })
            .await
            .unwrap();
            m.create_table(&table("s", "t"), false).await.unwrap();
            assert!(matches!(
                m.create_table(&table("s", "t"), false).await,
                Err(CatalogError::TableExists(_))
            ));
            m.add_partitions(
                "s",
                "t",
                &[Partition {
                    values: vec!["1".into()],
                    location: "file:///w/s.db/t/p=1/".into(),
                }],
            )
            .await
            .unwrap();
        }
        let m = SqliteMetastore::open(&path).unwrap();
        let tables = m.list_tables().await.unwrap();
        assert_eq!(tables, vec![table("s", "t")]);
        assert_eq!(m.list_partitions("s", "t").await.unwrap().len(), 1);
        assert!(matches!(
            m.drop_database("s", false).await,
            Err(CatalogError::DatabaseNotEmpty(_))
        ));
        let dropped = m.drop_database("s", true).await.unwrap();
        assert_eq!(dropped.len(), 1);
        assert!(m.list_tables().await.unwrap().is_empty());
        assert!(
            m.list_partitions("s", "t").await.unwrap().is_empty(),
            "partitions cascade"
        );
    }

    #[tokio::test]
    async fn table_in_missing_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = SqliteMetastore::open(&dir.path().join("c.db")).unwrap();
        assert!(matches!(
            m.create_table(&table("nope", "t"), false).await,
            Err(CatalogError::DatabaseNotFound(_))
        ));
    }
}
