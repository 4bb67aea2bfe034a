//! How Sluice's tables sit in a Hive Metastore and in the side store.
//!
//! A table Sluice creates is *Sluice's*: the metastore holds its Hive
//! description (so other engines read it) with its id in the parameter
//! [`ID_PARAM`], and the side store holds the exact definition, partitions
//! and manifest as a *shadow* named by that id in [`SHADOW_DATABASE`] (never
//! by its SQL name, so shadows of two gateways racing for one name never
//! collide: the metastore decides which wins). Every other table is
//! *foreign*: read from the metastore each time, files found by listing.

use std::collections::{BTreeMap, HashMap};

use hive_metastore as hms;
use sha2::Digest;

use crate::catalog::{CatalogError, Table, TableKind};
use crate::hms::convert;

/// The side store's database of shadows.
pub(super) const SHADOW_DATABASE: &str = "sluice_hms_shadow";
/// Table parameter naming a Sluice table's id.
pub(super) const ID_PARAM: &str = "sluice.table_id";

pub(super) fn shadow_name(id: &str) -> String {
    format!("t_{id}")
}

/// `table` as its shadow in the side store.
pub(super) fn shadow_of(table: &Table) -> Table {
    Table {
        database: SHADOW_DATABASE.into(),
        name: shadow_name(&table.id),
        ..table.clone()
    }
}

/// A shadow under its SQL name.
pub(super) fn named(shadow: &Table, database: &str, name: &str) -> Table {
    Table {
        database: database.into(),
        name: name.into(),
        ..shadow.clone()
    }
}

/// The Sluice id a metastore table carries, if Sluice created it.
pub(super) fn id_param(t: &hms::Table) -> Option<String> {
    t.parameters
        .as_ref()?
        .get(ID_PARAM)
        .map(|v| v.to_string())
        .filter(|v| !v.is_empty())
}

pub(super) fn db_and_name(t: &hms::Table) -> (String, String) {
    (
        t.db_name.as_deref().unwrap_or_default().to_ascii_lowercase(),
        t.table_name.as_deref().unwrap_or_default().to_ascii_lowercase(),
    )
}

/// The id of a foreign table: stable across listings and gateways, new
/// when the table is dropped and created again (its create time moves).
pub(super) fn foreign_id(database: &str, name: &str, create_time: i32) -> String {
    let digest = sha2::Sha256::digest(format!("{database}\0{name}\0{create_time}"));
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("hms_{hex}")
}

/// A foreign metastore table as Sluice reads it: an external table whose
/// files are found by listing, versioned by its last DDL time.
pub(super) fn foreign_table(t: &hms::Table) -> Result<Table, String> {
    let (database, name) = db_and_name(t);
    if t.table_type.as_deref() == Some("VIRTUAL_VIEW") {
        return Err("a view of another engine (its SQL is that engine's dialect)".into());
    }
    let mut table = convert::new_table(t, t.owner.as_deref().map(str::to_owned)).map_err(|e| e.to_string())?;
    let create_time = t.create_time.unwrap_or_default();
    table.id = foreign_id(&database, &name, create_time);
    let ddl_time = t
        .parameters
        .as_ref()
        .and_then(|p| p.get("transient_lastDdlTime"))
        .and_then(|v| v.parse::<u64>().ok());
    table.version = ddl_time.unwrap_or(create_time.max(0) as u64).max(1);
    table.kind = TableKind::External;
    Ok(table)
}

/// The Sluice table a metastore table is: its shadow's definition under
/// its metastore name, or a foreign table.
pub(super) fn sluice_table(t: &hms::Table, shadows: &HashMap<String, Table>) -> Result<(Table, bool), String> {
    let (database, name) = db_and_name(t);
    if let Some(shadow) = id_param(t).and_then(|id| shadows.get(&id)) {
        return Ok((named(shadow, &database, &name), false));
    }
    foreign_table(t).map(|t| (t, true))
}

/// `e` with the shadow's name replaced by the table's SQL name.
pub(super) fn renamed(e: CatalogError, shadow: &Table, database: &str, name: &str) -> CatalogError {
    let from = shadow.qualified();
    let to = format!("{database}.{name}");
    let fix = |s: String| if s == from { to.clone() } else { s.replace(&from, &to) };
    match e {
        CatalogError::TableExists(s) => CatalogError::TableExists(fix(s)),
        CatalogError::TableNotFound(_) => CatalogError::TableChanged(to),
        CatalogError::TableChanged(s) => CatalogError::TableChanged(fix(s)),
        CatalogError::WrongKind(s, k) => CatalogError::WrongKind(fix(s), k),
        CatalogError::PartitionExists(s, p) => CatalogError::PartitionExists(fix(s), p),
        CatalogError::PartitionNotFound(s, p) => CatalogError::PartitionNotFound(fix(s), p),
        CatalogError::Corrupt(s, why) => CatalogError::Corrupt(fix(s), why),
        other => other,
    }
}

/// `(k='v', ...)`, as the catalog names partitions in messages.
pub(super) fn describe(table: &Table, values: &[String]) -> String {
    let pairs: Vec<String> = table
        .partition_columns
        .iter()
        .zip(values)
        .map(|(k, v)| format!("{k}='{v}'"))
        .collect();
    format!("({})", pairs.join(", "))
}

/// The metastore's description of a database.
pub(super) fn database(db: &crate::catalog::Database) -> hms::Database {
    hms::Database {
        name: Some(db.name.clone().into()),
        description: db.comment.clone().map(Into::into),
        location_uri: Some(db.location.clone().into()),
        parameters: Some(Default::default()),
        privileges: None,
        owner_name: db.owner.clone().map(Into::into),
        owner_type: db.owner.as_ref().map(|_| hms::PrincipalType::USER),
        catalog_name: None,
    }
}

pub(super) fn from_database(db: &hms::Database) -> crate::catalog::Database {
    crate::catalog::Database {
        name: db.name.as_deref().unwrap_or_default().to_ascii_lowercase(),
        location: db
            .location_uri
            .as_deref()
            .map(convert::normalize_location)
            .unwrap_or_default(),
        comment: db.description.as_deref().filter(|d| !d.is_empty()).map(str::to_owned),
        owner: db.owner_name.as_deref().filter(|o| !o.is_empty()).map(str::to_owned),
    }
}

/// The metastore's description of a Sluice table (owner left empty for
/// the bootstrap superuser).
pub(super) fn hive_table(table: &Table) -> Result<hms::Table, CatalogError> {
    let mut t = convert::table(table, "").map_err(|e| CatalogError::Corrupt(table.qualified(), e.to_string()))?;
    if table.owner.is_none() {
        t.owner = None;
    }
    // Creation time is the metastore's to set.
    t.create_time = None;
    let mut params: BTreeMap<String, String> = t
        .parameters
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    params.remove("sluice.version");
    t.parameters = Some(params.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_ids_are_stable_and_move_with_the_incarnation() {
        assert_eq!(foreign_id("s", "t", 5), foreign_id("s", "t", 5));
        assert_ne!(foreign_id("s", "t", 5), foreign_id("s", "t", 6));
        assert_ne!(foreign_id("s", "t", 5), foreign_id("s", "u", 5));
        assert!(foreign_id("s", "t", 5).starts_with("hms_"));
    }

    #[test]
    fn shadow_names_in_errors_become_sql_names() {
        let t = Table {
            database: SHADOW_DATABASE.into(),
            name: shadow_name("abc"),
            id: "abc".into(),
            version: 1,
            kind: TableKind::Managed,
            format: "PARQUET".into(),
            locations: vec![],
            columns: vec![],
            partition_columns: vec!["p".into()],
            options: Default::default(),
            properties: Default::default(),
            arrow_schema: vec![],
            view_sql: None,
            owner: None,
        };
        let e = renamed(
            CatalogError::PartitionExists(t.qualified(), "(p='1')".into()),
            &t,
            "s",
            "t",
        );
        assert_eq!(e.to_string(), "partition (p='1') of \"s.t\" already exists");
        assert!(matches!(
            renamed(CatalogError::TableNotFound(t.qualified()), &t, "s", "t"),
            CatalogError::TableChanged(n) if n == "s.t"
        ));
    }
}
