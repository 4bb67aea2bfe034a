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

/// Why a metastore table is not one Sluice reads, if it is not.
fn unreadable(t: &hms::Table) -> Option<String> {
    let param = |k: &str| {
        t.parameters
            .as_ref()
            .and_then(|p| p.get(k))
            .map(|v| v.to_ascii_lowercase())
    };
    if t.table_type.as_deref() == Some("VIRTUAL_VIEW") {
        return Some("a view of another engine (its SQL is that engine's dialect)".into());
    }
    if param("table_type").as_deref() == Some("iceberg") || param("metadata_location").is_some() {
        return Some("an Iceberg table (its files are named by Iceberg metadata, not by listing)".into());
    }
    if let Some(provider) = param("spark.sql.sources.provider") {
        if !matches!(provider.as_str(), "parquet" | "csv" | "json" | "avro" | "hive") {
            return Some(format!("a Spark {provider} table"));
        }
        // Spark's placeholder when it could not describe the table for Hive.
        let cols: Vec<_> = t.sd.iter().flat_map(|sd| sd.cols.iter().flatten()).collect();
        if cols.len() == 1
            && cols[0].name.as_deref() == Some("col")
            && cols[0].r#type.as_deref() == Some("array<string>")
        {
            return Some(format!("a Spark {provider} table stored in a form Hive cannot read"));
        }
    }
    None
}

/// Column names as Spark wrote them into the files (the metastore lowers
/// them), from the schema Spark keeps in the table parameters.
fn spark_names(t: &hms::Table) -> HashMap<String, String> {
    let Some(params) = t.parameters.as_ref() else {
        return HashMap::new();
    };
    let json = match params.get("spark.sql.sources.schema") {
        Some(whole) => whole.to_string(),
        None => {
            let parts = params
                .get("spark.sql.sources.schema.numParts")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            (0..parts.min(1024))
                .filter_map(|i| params.get(format!("spark.sql.sources.schema.part.{i}").as_str()))
                .map(|p| p.to_string())
                .collect()
        }
    };
    let Ok(schema) = serde_json::from_str::<serde_json::Value>(&json) else {
        return HashMap::new();
    };
    schema["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .filter(|n| n.to_ascii_lowercase() != *n)
        .map(|n| (n.to_ascii_lowercase(), n.to_owned()))
        .collect()
}

/// A number that changes when the table's definition does (columns,
/// location, storage, parameters such as the statistics a write updates).
fn definition_version(t: &hms::Table) -> u64 {
    let mut h = sha2::Sha256::new();
    let mut put = |v: &str| {
        h.update(v.as_bytes());
        h.update([0]);
    };
    let field = |f: &hms::FieldSchema| {
        format!(
            "{}:{}",
            f.name.as_deref().unwrap_or(""),
            f.r#type.as_deref().unwrap_or("")
        )
    };
    if let Some(sd) = &t.sd {
        sd.cols.iter().flatten().for_each(|c| put(&field(c)));
        put(sd.location.as_deref().unwrap_or(""));
        put(sd.input_format.as_deref().unwrap_or(""));
        if let Some(serde) = &sd.serde_info {
            put(serde.serialization_lib.as_deref().unwrap_or(""));
            let mut params: Vec<String> = serde
                .parameters
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            params.sort();
            params.iter().for_each(|p| put(p));
        }
    }
    t.partition_keys.iter().flatten().for_each(|k| put(&field(k)));
    let mut params: Vec<String> = t.parameters.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    params.sort();
    params.iter().for_each(|p| put(p));
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // Positive for the catalog's i64 columns, and never 0.
    (u64::from_le_bytes(first) >> 1).max(1)
}

/// A foreign metastore table as Sluice reads it: an external table whose
/// files are found by listing.
pub(super) fn foreign_table(t: &hms::Table) -> Result<Table, String> {
    let (database, name) = db_and_name(t);
    if let Some(why) = unreadable(t) {
        return Err(why);
    }
    let mut table = convert::new_table(t, t.owner.as_deref().map(str::to_owned)).map_err(|e| e.to_string())?;
    table.id = foreign_id(&database, &name, t.create_time.unwrap_or_default());
    table.version = definition_version(t);
    table.kind = TableKind::External;
    let names = spark_names(t);
    if !names.is_empty() {
        let exact = |n: &String| names.get(n).cloned().unwrap_or_else(|| n.clone());
        let schema = crate::catalog::provider::decode_schema(&table.arrow_schema).map_err(|e| e.to_string())?;
        let fields: Vec<arrow::datatypes::Field> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_name(exact(f.name())))
            .collect();
        let schema = arrow::datatypes::Schema::new(fields);
        table.arrow_schema = crate::catalog::provider::encode_schema(&schema).map_err(|e| e.to_string())?;
        table.columns = crate::catalog::columns_of(&schema);
        table.partition_columns = table.partition_columns.iter().map(exact).collect();
    }
    Ok(table)
}

/// What a metastore table is to this gateway.
#[derive(Debug)]
pub(super) enum Identity {
    /// Sluice's, with its shadow (definition, partitions, files) here.
    Own(Table),
    /// Another engine's (or an external table of a Sluice gateway with
    /// another side store): read from the metastore, files listed.
    Foreign(Table),
    /// Not readable here, and why.
    Skipped(String),
}

impl Identity {
    pub(super) fn id(&self) -> Option<&str> {
        match self {
            Identity::Own(t) | Identity::Foreign(t) => Some(&t.id),
            Identity::Skipped(_) => None,
        }
    }
}

/// Whether a table carries a Sluice id that `shadows` does not know (a
/// CTAS of another gateway published after the shadows were read, or a
/// gateway with another side store).
pub(super) fn unknown_sluice_table(t: &hms::Table, shadows: &HashMap<String, Table>) -> bool {
    id_param(t).is_some_and(|id| !shadows.contains_key(&id))
}

/// Whether the metastore's table is where `shadow` keeps its data.
fn same_place(t: &hms::Table, shadow: &Table) -> bool {
    let Some(location) = shadow.locations.first() else {
        return true;
    };
    let hive = t.sd.as_ref().and_then(|sd| sd.location.as_deref()).unwrap_or_default();
    convert::normalize_location(hive) == convert::normalize_location(location)
}

pub(super) fn identify(t: &hms::Table, shadows: &HashMap<String, Table>) -> Identity {
    let (database, name) = db_and_name(t);
    match id_param(t) {
        // A copy of the parameters (CREATE TABLE ... LIKE in another
        // engine) names the shadow too, but not its location.
        Some(id) => match shadows.get(&id).filter(|shadow| same_place(t, shadow)) {
            Some(shadow) => Identity::Own(named(shadow, &database, &name)),
            // Its files are in another side store's manifest: listing its
            // directory would read uncommitted and replaced files.
            None if t.table_type.as_deref() != Some("EXTERNAL_TABLE") => Identity::Skipped(
                "a table of a Sluice gateway whose side store this gateway does not share (--catalog-side)".into(),
            ),
            None => foreign_table(t).map_or_else(Identity::Skipped, Identity::Foreign),
        },
        None => foreign_table(t).map_or_else(Identity::Skipped, Identity::Foreign),
    }
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

/// The metastore's description of a database.
pub(super) fn database(db: &crate::catalog::Database) -> hms::Database {
    hms::Database {
        name: Some(db.name.clone().into()),
        description: db.comment.clone().map(Into::into),
        location_uri: Some(hadoop_location(&db.location).into()),
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

/// A location as Hadoop engines read it: `s3://` is `s3a://` to them
/// (read back, `convert::normalize_location` turns it into `s3://` again).
pub(super) fn hadoop_location(location: &str) -> String {
    match location.strip_prefix("s3://") {
        Some(rest) => format!("s3a://{rest}"),
        None => location.to_owned(),
    }
}

/// A partition as the metastore describes it, at a Hadoop location.
pub(super) fn hive_partition(table: &Table, p: &crate::catalog::Partition) -> Result<hms::Partition, CatalogError> {
    let mut part = convert::partition(table, p).map_err(|e| CatalogError::Corrupt(table.qualified(), e.to_string()))?;
    if let Some(sd) = part.sd.as_mut() {
        sd.location = sd.location.as_deref().map(|l| hadoop_location(l).into());
    }
    Ok(part)
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
    if let Some(sd) = t.sd.as_mut() {
        sd.location = sd.location.as_deref().map(|l| hadoop_location(l).into());
    }
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
    fn a_copy_of_a_sluice_tables_parameters_elsewhere_is_not_that_table() {
        let shadow = Table {
            locations: vec!["file:///w/s.db/t/".into()],
            kind: TableKind::Managed,
            ..shadow_table()
        };
        let shadows = HashMap::from([(shadow.id.clone(), shadow.clone())]);
        let hive = |location: &str, kind: &str| hms::Table {
            db_name: Some("s".into()),
            table_name: Some("t".into()),
            table_type: Some(kind.to_owned().into()),
            parameters: Some([(ID_PARAM.into(), shadow.id.clone().into())].into_iter().collect()),
            sd: Some(hms::StorageDescriptor {
                location: Some(location.to_owned().into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        // The metastore writes `file:/p` without the slash.
        assert!(
            matches!(identify(&hive("file:/w/s.db/t", "MANAGED_TABLE"), &shadows), Identity::Own(t) if t.name == "t")
        );
        assert!(matches!(
            identify(&hive("file:/w/s.db/copy", "MANAGED_TABLE"), &shadows),
            Identity::Skipped(_)
        ));
        assert!(unknown_sluice_table(
            &hive("file:/w/s.db/t", "MANAGED_TABLE"),
            &HashMap::new()
        ));
    }

    fn shadow_table() -> Table {
        Table {
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
        }
    }

    #[test]
    fn shadow_names_in_errors_become_sql_names() {
        let t = shadow_table();
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
