//! Row-level reads and writes of the SQLite metastore, each inside the
//! caller's transaction; `commit` is the write commit protocol's one
//! transaction.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use crate::catalog::{CatalogError, Column, CommitKind, DataFile, Partition, Table, TableKind, WriteCommit};

pub(super) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

pub(super) fn unjson<T: serde::de::DeserializeOwned>(table: &str, s: &str) -> Result<T, CatalogError> {
    serde_json::from_str(s).map_err(|e| CatalogError::Corrupt(table.to_owned(), e.to_string()))
}

type TableRow = (
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    Vec<u8>,
    Option<String>,
    Option<String>,
);

pub(super) fn read_tables(
    tx: &Connection,
    db_filter: Option<&str>,
    name_filter: Option<&str>,
) -> Result<Vec<Table>, CatalogError> {
    let mut stmt = tx.prepare(
        "SELECT db, name, id, version, kind, format, locations, partition_cols, options, properties, arrow_schema, view_sql, owner
         FROM tbls WHERE (?1 IS NULL OR db = ?1) AND (?2 IS NULL OR name = ?2) ORDER BY db, name",
    )?;
    let rows = stmt
        .query_map(params![db_filter, name_filter], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
            ))
        })?
        .collect::<Result<Vec<TableRow>, _>>()?;
    let mut col_stmt =
        tx.prepare("SELECT name, data_type, nullable FROM cols WHERE table_id = ?1 ORDER BY position")?;
    let mut out = Vec::with_capacity(rows.len());
    for (db, name, id, version, kind, format, locations, pcols, options, props, schema, view_sql, owner) in rows {
        let full = format!("{db}.{name}");
        let columns = col_stmt
            .query_map(params![id], |r| {
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
            id,
            version: u64::try_from(version).unwrap_or_default(),
            format,
            columns,
            arrow_schema: schema,
            view_sql,
            owner,
        });
    }
    Ok(out)
}

pub(super) fn find_table(tx: &Connection, db: &str, name: &str) -> Result<Option<Table>, CatalogError> {
    Ok(read_tables(tx, Some(db), Some(name))?.pop())
}

pub(super) fn require_database(tx: &Connection, db: &str) -> Result<(), CatalogError> {
    let found: Option<String> = tx
        .query_row("SELECT name FROM dbs WHERE name = ?1", params![db], |r| r.get(0))
        .optional()?;
    found
        .map(|_| ())
        .ok_or_else(|| CatalogError::DatabaseNotFound(db.to_owned()))
}

pub(super) fn insert_table(tx: &Connection, t: &Table) -> Result<(), CatalogError> {
    tx.execute(
        "INSERT INTO tbls(db, name, id, version, kind, format, locations, partition_cols, options, properties, arrow_schema, view_sql, owner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            t.database,
            t.name,
            t.id,
            i64::try_from(t.version.max(1)).unwrap_or(1),
            t.kind.as_str(),
            t.format,
            json(&t.locations),
            json(&t.partition_columns),
            json(&t.options),
            json(&t.properties),
            t.arrow_schema,
            t.view_sql,
            t.owner
        ],
    )?;
    for (i, col) in t.columns.iter().enumerate() {
        tx.execute(
            "INSERT INTO cols(table_id, position, name, data_type, nullable) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![t.id, i as i64, col.name, col.data_type, col.nullable as i64],
        )?;
    }
    Ok(())
}

/// Lists the manifest files of `table_id` (optionally of one partition) as
/// garbage, before the rows go away.
pub(super) fn files_to_garbage(
    tx: &Connection,
    table_id: &str,
    part_values: Option<&str>,
    after: u64,
) -> Result<usize, CatalogError> {
    let n = tx.execute(
        "INSERT OR REPLACE INTO garbage(path, delete_after)
         SELECT path, ?3 FROM files WHERE table_id = ?1 AND (?2 IS NULL OR part_values = ?2)",
        params![table_id, part_values, i64::try_from(after).unwrap_or(i64::MAX)],
    )?;
    Ok(n)
}

/// With `replace`, removes `old` so `new` can take its name; a relation of
/// another kind is never replaced (a view must not drop a table's data).
pub(super) fn replace_table(
    tx: &Connection,
    old: &Table,
    new: &Table,
    replace: bool,
    after: u64,
) -> Result<(), CatalogError> {
    if !replace {
        return Err(CatalogError::TableExists(new.qualified()));
    }
    if old.kind != new.kind {
        return Err(CatalogError::WrongKind(old.qualified(), old.kind.describe()));
    }
    remove_table(tx, old, after)
}

/// Removes a table row (cascading to columns, partitions and manifest), its
/// manifest files becoming garbage.
pub(super) fn remove_table(tx: &Connection, t: &Table, after: u64) -> Result<(), CatalogError> {
    if t.kind == TableKind::Managed {
        files_to_garbage(tx, &t.id, None, after)?;
    }
    tx.execute("DELETE FROM tbls WHERE id = ?1", params![t.id])?;
    Ok(())
}

pub(super) fn bump_version(tx: &Connection, table_id: &str) -> Result<(), CatalogError> {
    tx.execute("UPDATE tbls SET version = version + 1 WHERE id = ?1", params![table_id])?;
    Ok(())
}

pub(super) fn insert_partitions(tx: &Connection, table_id: &str, parts: &[Partition]) -> Result<usize, CatalogError> {
    let mut added = 0;
    for p in parts {
        added += tx.execute(
            "INSERT INTO parts(table_id, part_values, location, listed) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            params![table_id, json(&p.values), p.location, p.listed as i64],
        )?;
    }
    Ok(added)
}

pub(super) fn insert_files(tx: &Connection, table_id: &str, files: &[DataFile]) -> Result<(), CatalogError> {
    let mut stmt =
        tx.prepare("INSERT INTO files(table_id, part_values, path, size, rows) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for f in files {
        stmt.execute(params![
            table_id,
            json(&f.partition),
            f.path,
            i64::try_from(f.size).unwrap_or(i64::MAX),
            i64::try_from(f.rows).unwrap_or(i64::MAX)
        ])?;
    }
    Ok(())
}

/// The table a commit targets, which must still be the incarnation the write
/// started on.
pub(super) fn live_table(tx: &Connection, db: &str, name: &str, table_id: &str) -> Result<Table, CatalogError> {
    match find_table(tx, db, name)? {
        Some(t) if t.id == table_id => Ok(t),
        _ => Err(CatalogError::TableChanged(format!("{db}.{name}"))),
    }
}

pub(super) fn commit(tx: &Connection, c: &WriteCommit) -> Result<(), CatalogError> {
    let after = c.garbage_after_unix;
    let table_id = match &c.kind {
        CommitKind::Create { table, replace } => {
            require_database(tx, &table.database)?;
            if let Some(old) = find_table(tx, &table.database, &table.name)? {
                replace_table(tx, &old, table, *replace, after)?;
            }
            insert_table(tx, table)?;
            table.id.clone()
        }
        CommitKind::Append {
            database,
            name,
            table_id,
        } => {
            live_table(tx, database, name, table_id)?;
            table_id.clone()
        }
        CommitKind::Overwrite {
            database,
            name,
            table_id,
            expected_version,
            partitions,
        } => {
            let live = live_table(tx, database, name, table_id)?;
            if live.version != *expected_version {
                return Err(CatalogError::TableChanged(format!("{database}.{name}")));
            }
            match partitions {
                None => {
                    files_to_garbage(tx, table_id, None, after)?;
                    tx.execute("DELETE FROM files WHERE table_id = ?1", params![table_id])?;
                }
                Some(parts) => {
                    for values in parts {
                        let key = json(values);
                        files_to_garbage(tx, table_id, Some(&key), after)?;
                        tx.execute(
                            "DELETE FROM files WHERE table_id = ?1 AND part_values = ?2",
                            params![table_id, key],
                        )?;
                    }
                }
            }
            table_id.clone()
        }
    };
    insert_partitions(tx, &table_id, &c.partitions)?;
    insert_files(tx, &table_id, &c.files)?;
    bump_version(tx, &table_id)?;
    tx.execute("DELETE FROM writes WHERE write_id = ?1", params![c.write_id])?;
    Ok(())
}

/// `(k='v', ...)` of a partition, for error messages.
pub(super) fn describe(table: &Table, values: &[String]) -> String {
    let inner = table
        .partition_columns
        .iter()
        .zip(values)
        .map(|(k, v)| format!("{k}='{v}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("({inner})")
}
