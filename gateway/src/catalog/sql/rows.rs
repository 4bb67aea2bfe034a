//! Row-level reads and writes of the SQL metastore, each inside the
//! caller's transaction; `commit` is the write commit protocol's one
//! transaction.

use std::collections::BTreeMap;

use super::{Sql, params};

use crate::catalog::{CatalogError, Column, CommitKind, DataFile, Partition, Table, TableKind, WriteCommit};

pub(super) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

pub(super) fn unjson<T: serde::de::DeserializeOwned>(table: &str, s: &str) -> Result<T, CatalogError> {
    serde_json::from_str(s).map_err(|e| CatalogError::Corrupt(table.to_owned(), e.to_string()))
}

/// Tables (optionally of one database, or one table), each with its
/// columns, ordered by database and name. Two statements whatever the count.
pub(super) fn read_tables(
    tx: &mut dyn Sql,
    db_filter: Option<&str>,
    name_filter: Option<&str>,
) -> Result<Vec<Table>, CatalogError> {
    const FILTER: &str = "(CAST($1 AS TEXT) IS NULL OR t.db = $1) AND (CAST($2 AS TEXT) IS NULL OR t.name = $2)";
    let rows = tx.query(
        &format!(
            "SELECT t.db, t.name, t.id, t.version, t.kind, t.format, t.locations, t.partition_cols, t.options, t.properties, t.arrow_schema, t.view_sql, t.owner
             FROM tbls t WHERE {FILTER}"
        ),
        params![db_filter, name_filter],
    )?;
    let mut columns: BTreeMap<String, Vec<(i64, Column)>> = BTreeMap::new();
    for r in tx.query(
        &format!(
            "SELECT c.table_id, c.position, c.name, c.data_type, c.nullable FROM cols c JOIN tbls t ON t.id = c.table_id WHERE {FILTER}"
        ),
        params![db_filter, name_filter],
    )? {
        columns.entry(r.text(0)?).or_default().push((
            r.int(1)?,
            Column {
                name: r.text(2)?,
                data_type: r.text(3)?,
                nullable: r.flag(4)?,
            },
        ));
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (db, name, id, kind) = (r.text(0)?, r.text(1)?, r.text(2)?, r.text(4)?);
        let full = format!("{db}.{name}");
        let mut cols = columns.remove(&id).unwrap_or_default();
        cols.sort_by_key(|(position, _)| *position);
        out.push(Table {
            kind: TableKind::parse(&kind).ok_or_else(|| CatalogError::Corrupt(full.clone(), format!("kind {kind}")))?,
            version: r.unsigned(3)?,
            format: r.text(5)?,
            locations: unjson(&full, &r.text(6)?)?,
            partition_columns: unjson(&full, &r.text(7)?)?,
            options: unjson::<BTreeMap<String, String>>(&full, &r.text(8)?)?,
            properties: unjson::<BTreeMap<String, String>>(&full, &r.text(9)?)?,
            arrow_schema: r.blob(10)?,
            view_sql: r.opt_text(11)?,
            owner: r.opt_text(12)?,
            columns: cols.into_iter().map(|(_, c)| c).collect(),
            database: db,
            name,
            id,
        });
    }
    // Byte order, whatever the database's collation.
    out.sort_by(|a, b| (&a.database, &a.name).cmp(&(&b.database, &b.name)));
    Ok(out)
}

pub(super) fn find_table(tx: &mut dyn Sql, db: &str, name: &str) -> Result<Option<Table>, CatalogError> {
    Ok(read_tables(tx, Some(db), Some(name))?.pop())
}

pub(super) fn require_database(tx: &mut dyn Sql, db: &str) -> Result<(), CatalogError> {
    tx.query_opt("SELECT 1 FROM dbs WHERE name = $1", params![db])?
        .map(|_| ())
        .ok_or_else(|| CatalogError::DatabaseNotFound(db.to_owned()))
}

pub(super) fn insert_table(tx: &mut dyn Sql, t: &Table) -> Result<(), CatalogError> {
    tx.exec(
        "INSERT INTO tbls(db, name, id, version, kind, format, locations, partition_cols, options, properties, arrow_schema, view_sql, owner)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        params![
            &t.database,
            &t.name,
            &t.id,
            t.version.max(1),
            t.kind.as_str(),
            &t.format,
            json(&t.locations),
            json(&t.partition_columns),
            json(&t.options),
            json(&t.properties),
            t.arrow_schema.as_slice(),
            t.view_sql.as_deref(),
            t.owner.as_deref()
        ],
    )?;
    for (i, col) in t.columns.iter().enumerate() {
        tx.exec(
            "INSERT INTO cols(table_id, position, name, data_type, nullable) VALUES ($1, $2, $3, $4, $5)",
            params![&t.id, i as i64, &col.name, &col.data_type, col.nullable],
        )?;
    }
    Ok(())
}

/// Lists the manifest files of `table_id` (optionally of one partition) as
/// garbage, before the rows go away.
pub(super) fn files_to_garbage(
    tx: &mut dyn Sql,
    table_id: &str,
    part_values: Option<&str>,
    after: u64,
) -> Result<usize, CatalogError> {
    let n = tx.exec(
        "INSERT INTO garbage(path, delete_after)
         SELECT path, CAST($3 AS BIGINT) FROM files WHERE table_id = $1 AND (CAST($2 AS TEXT) IS NULL OR part_values = $2)
         ON CONFLICT (path) DO UPDATE SET delete_after = excluded.delete_after",
        params![table_id, part_values, after],
    )?;
    Ok(n)
}

/// With `replace`, removes `old` so `new` can take its name; a relation of
/// another kind is never replaced (a view must not drop a table's data).
pub(super) fn replace_table(
    tx: &mut dyn Sql,
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
pub(super) fn remove_table(tx: &mut dyn Sql, t: &Table, after: u64) -> Result<(), CatalogError> {
    if t.kind == TableKind::Managed {
        files_to_garbage(tx, &t.id, None, after)?;
    }
    tx.exec("DELETE FROM tbls WHERE id = $1", params![&t.id])?;
    Ok(())
}

pub(super) fn bump_version(tx: &mut dyn Sql, table_id: &str) -> Result<(), CatalogError> {
    tx.exec("UPDATE tbls SET version = version + 1 WHERE id = $1", params![table_id])?;
    Ok(())
}

pub(super) fn insert_partitions(tx: &mut dyn Sql, table_id: &str, parts: &[Partition]) -> Result<usize, CatalogError> {
    let mut added = 0;
    for p in parts {
        added += tx.exec(
            "INSERT INTO parts(table_id, part_values, location, listed) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            params![table_id, json(&p.values), &p.location, p.listed],
        )?;
    }
    Ok(added)
}

pub(super) fn insert_files(tx: &mut dyn Sql, table_id: &str, files: &[DataFile]) -> Result<(), CatalogError> {
    for f in files {
        tx.exec(
            "INSERT INTO files(table_id, part_values, path, size, rows) VALUES ($1, $2, $3, $4, $5)",
            params![table_id, json(&f.partition), &f.path, f.size, f.rows],
        )?;
    }
    Ok(())
}

/// The table a commit targets, which must still be the incarnation the write
/// started on.
pub(super) fn live_table(tx: &mut dyn Sql, db: &str, name: &str, table_id: &str) -> Result<Table, CatalogError> {
    match find_table(tx, db, name)? {
        Some(t) if t.id == table_id => Ok(t),
        _ => Err(CatalogError::TableChanged(format!("{db}.{name}"))),
    }
}

pub(super) fn commit(tx: &mut dyn Sql, c: &WriteCommit) -> Result<(), CatalogError> {
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
                    tx.exec("DELETE FROM files WHERE table_id = $1", params![table_id])?;
                }
                Some(parts) => {
                    for values in parts {
                        let key = json(values);
                        files_to_garbage(tx, table_id, Some(&key), after)?;
                        tx.exec(
                            "DELETE FROM files WHERE table_id = $1 AND part_values = $2",
                            params![table_id, &key],
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
    tx.exec("DELETE FROM writes WHERE write_id = $1", params![&c.write_id])?;
    Ok(())
}
