//! Stable `pg_catalog` OIDs. datafusion-pg-catalog numbers schemas and
//! relations from a counter in the order its scans first meet them, so a
//! restarted gateway (or a second one on the same catalog) hands out other
//! OIDs and a client's cached OIDs point at the wrong table. This wraps its
//! `pg_catalog` schema: `pg_namespace`, `pg_class`, `pg_attribute` and
//! `pg_database` are the crate's rows with every OID replaced by one derived
//! from what the object is — a lake table's catalog id (a re-created table
//! gets a new OID, as in PostgreSQL), otherwise its qualified name — so the
//! OIDs agree across these tables, across restarts and across gateways. The
//! rest of `pg_catalog` is the crate's, untouched.
//!
//! Derived OIDs sit in the user range (≥ 16384) except the ones PostgreSQL
//! fixes: `pg_catalog` 11, `public` 2200, and pg_catalog's own tables, which
//! keep the OIDs the crate's static `pg_type`, `pg_index` and
//! `pg_description` rows refer to (`pg_class` 1259, ...). Two objects whose hashes collide
//! are told apart in name order, the later one moving to the next free OID.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{Int32Type, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{ExecutionPlan, collect};
use sha2::{Digest, Sha256};

/// A lake table's durable id, by (schema, table).
pub(crate) type TableIds = Arc<dyn Fn(&str, &str) -> Option<String> + Send + Sync>;

/// May `user` see schema `.1` (table `.2`: `None` for the schema itself)?
/// (`catalog::user_view::sees`.)
pub(crate) type Visibility = Arc<dyn Fn(&crate::catalog::user_view::Viewer, &str, Option<&str>) -> bool + Send + Sync>;

const USER_RANGE: u32 = 16_384;

/// The OID for `key`, before collisions are resolved.
fn derived(key: &str) -> u32 {
    let digest = Sha256::digest(key.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    USER_RANGE + n % (i32::MAX as u32 - USER_RANGE)
}

fn namespace_key(name: &str) -> Option<String> {
    match name {
        "pg_catalog" | "public" => None,
        _ => Some(format!("namespace\0{name}")),
    }
}

fn fixed_namespace(name: &str) -> Option<i32> {
    match name {
        "pg_catalog" => Some(11),
        "public" => Some(2200),
        _ => None,
    }
}

/// Derived OIDs for a set of keys, collisions resolved in key order.
fn assign(keys: impl IntoIterator<Item = String>) -> HashMap<String, i32> {
    resolve(keys.into_iter().map(|k| (derived(&k), k)))
}

/// Keys with their wanted OIDs; a clash goes to the key that sorts first,
/// the next moving up to the next free OID.
fn resolve(pairs: impl IntoIterator<Item = (u32, String)>) -> HashMap<String, i32> {
    let wanted: BTreeMap<(u32, String), ()> = pairs.into_iter().map(|p| (p, ())).collect();
    let mut taken = HashSet::new();
    let mut out = HashMap::new();
    for (oid, key) in wanted.into_keys() {
        let mut oid = oid;
        while !taken.insert(oid) {
            oid = if oid >= i32::MAX as u32 - 1 {
                USER_RANGE
            } else {
                oid + 1
            };
        }
        out.insert(key, oid as i32);
    }
    out
}

/// The crate's OIDs of one scan, mapped to stable ones.
struct Mapping {
    namespaces: HashMap<i32, i32>,
    relations: HashMap<i32, i32>,
    databases: HashMap<i32, i32>,
    /// The crate's OIDs of schemas and relations the session's user may not
    /// see: their rows are left out.
    hidden_namespaces: HashSet<i32>,
    hidden_relations: HashSet<i32>,
}

/// `pg_catalog` with stable OIDs.
#[derive(Debug)]
pub(crate) struct StablePgCatalog {
    inner: Arc<dyn SchemaProvider>,
    table_ids: TableIdsDebug,
    visibility: VisibilityDebug,
}

struct VisibilityDebug(Visibility);

impl std::fmt::Debug for VisibilityDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Visibility")
    }
}

struct TableIdsDebug(TableIds);

impl std::fmt::Debug for TableIdsDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableIds")
    }
}

impl StablePgCatalog {
    pub(crate) fn new(inner: Arc<dyn SchemaProvider>, table_ids: TableIds, visibility: Visibility) -> Self {
        StablePgCatalog {
            inner,
            table_ids: TableIdsDebug(table_ids),
            visibility: VisibilityDebug(visibility),
        }
    }

    async fn rows(&self, state: &dyn Session, table: &str) -> Result<Vec<RecordBatch>> {
        let provider = self
            .inner
            .table(table)
            .await?
            .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog.{table} is missing")))?;
        let plan = provider.scan(state, None, &[], None).await?;
        collect(plan, state.task_ctx()).await
    }

    /// Reads the crate's namespaces, relations and databases and maps their
    /// OIDs to stable ones.
    async fn mapping(&self, state: &dyn Session) -> Result<Mapping> {
        let viewer = state.config().get_extension::<crate::catalog::user_view::Viewer>();
        let sees =
            |schema: &str, table: Option<&str>| viewer.as_deref().is_none_or(|v| (self.visibility.0)(v, schema, table));
        let namespaces = self.rows(state, "pg_namespace").await?;
        let mut ns_names: HashMap<i32, String> = HashMap::new();
        let mut hidden_namespaces = HashSet::new();
        for b in &namespaces {
            let (oids, names) = (int32(b, "oid")?, utf8(b, "nspname")?);
            for i in 0..b.num_rows() {
                ns_names.insert(oids.value(i), names.value(i).to_owned());
                if !sees(names.value(i), None) {
                    hidden_namespaces.insert(oids.value(i));
                }
            }
        }
        let mut hidden_relations = HashSet::new();
        // pg_catalog's own tables keep PostgreSQL's OIDs, the ones its row
        // types name in the crate's static pg_type (typrelid), so pg_type,
        // pg_index, pg_constraint and pg_description join back to pg_class.
        let mut system: HashMap<String, i32> = HashMap::new();
        for b in &self.rows(state, "pg_type").await? {
            let (relids, namespaces) = (int32(b, "typrelid")?, int32(b, "typnamespace")?);
            let names = utf8(b, "typname")?;
            for i in 0..b.num_rows() {
                if namespaces.value(i) == 11 && relids.value(i) != 0 {
                    system.insert(names.value(i).to_owned(), relids.value(i));
                }
            }
        }
        let classes = self.rows(state, "pg_class").await?;
        let mut relations: Vec<(i32, String)> = Vec::new();
        let mut fixed_relations: HashMap<i32, i32> = HashMap::new();
        for b in &classes {
            let (oids, nsps) = (int32(b, "oid")?, int32(b, "relnamespace")?);
            let names = utf8(b, "relname")?;
            for i in 0..b.num_rows() {
                let schema = ns_names.get(&nsps.value(i)).map_or("", String::as_str);
                let name = names.value(i);
                if !sees(schema, Some(name)) {
                    hidden_relations.insert(oids.value(i));
                }
                if let Some(oid) = system.get(name).filter(|_| schema == "pg_catalog") {
                    fixed_relations.insert(oids.value(i), *oid);
                    continue;
                }
                let key = match (self.table_ids.0)(schema, name) {
                    Some(id) => format!("table\0{id}"),
                    None => format!("relation\0{schema}\0{name}"),
                };
                relations.push((oids.value(i), key));
            }
        }
        let databases = self.rows(state, "pg_database").await?;
        let mut db_keys: Vec<(i32, String)> = Vec::new();
        for b in &databases {
            let oids = int32(b, "oid")?;
            let names = utf8(b, "datname")?;
            for i in 0..b.num_rows() {
                db_keys.push((oids.value(i), format!("database\0{}", names.value(i))));
            }
        }
        let keys = ns_names
            .values()
            .filter_map(|n| namespace_key(n))
            .chain(relations.iter().map(|(_, k)| k.clone()))
            .chain(db_keys.iter().map(|(_, k)| k.clone()));
        let stable = assign(keys);
        let lookup = |key: &String| stable.get(key).copied().unwrap_or(0);
        Ok(Mapping {
            namespaces: ns_names
                .iter()
                .map(|(oid, name)| {
                    let new = fixed_namespace(name).unwrap_or_else(|| namespace_key(name).map_or(0, |k| lookup(&k)));
                    (*oid, new)
                })
                .collect(),
            relations: relations
                .iter()
                .map(|(oid, key)| (*oid, lookup(key)))
                .chain(fixed_relations)
                .collect(),
            databases: db_keys.iter().map(|(oid, key)| (*oid, lookup(key))).collect(),
            hidden_namespaces,
            hidden_relations,
        })
    }
}

fn missing(column: &str) -> DataFusionError {
    DataFusionError::Internal(format!("pg_catalog column {column} is missing"))
}

fn utf8<'a>(batch: &'a RecordBatch, column: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| missing(column))
}

fn int32<'a>(batch: &'a RecordBatch, column: &str) -> Result<&'a Int32Array> {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .ok_or_else(|| missing(column))
}

/// Which table, and which of its columns hold which kind of OID.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Namespace,
    Class,
    Attribute,
    Database,
}

impl Kind {
    fn of(name: &str) -> Option<Kind> {
        match name {
            "pg_namespace" => Some(Kind::Namespace),
            "pg_class" => Some(Kind::Class),
            "pg_attribute" => Some(Kind::Attribute),
            "pg_database" => Some(Kind::Database),
            _ => None,
        }
    }

    fn columns(self) -> &'static [(&'static str, Oids)] {
        match self {
            Kind::Namespace => &[("oid", Oids::Namespace)],
            Kind::Class => &[
                ("oid", Oids::Relation),
                ("relnamespace", Oids::Namespace),
                ("relfilenode", Oids::Relation),
            ],
            Kind::Attribute => &[("attrelid", Oids::Relation)],
            Kind::Database => &[("oid", Oids::Database)],
        }
    }

    fn table(self) -> &'static str {
        match self {
            Kind::Namespace => "pg_namespace",
            Kind::Class => "pg_class",
            Kind::Attribute => "pg_attribute",
            Kind::Database => "pg_database",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Oids {
    Namespace,
    Relation,
    Database,
}

/// One of the four tables, its OIDs rewritten at scan.
#[derive(Debug)]
struct Remapped {
    kind: Kind,
    schema: SchemaRef,
    catalog: Arc<StablePgCatalog>,
}

#[async_trait]
impl TableProvider for Remapped {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mapping = self.catalog.mapping(state).await?;
        let batches = self.catalog.rows(state, self.kind.table()).await?;
        let batches = batches
            .into_iter()
            .map(|b| remap(hide(b, self.kind, &mapping)?, self.kind, &mapping))
            .collect::<Result<Vec<_>>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?)
    }
}

/// Leaves out the rows of objects the session's user may not see.
fn hide(batch: RecordBatch, kind: Kind, mapping: &Mapping) -> Result<RecordBatch> {
    let (column, hidden) = match kind {
        Kind::Namespace => ("oid", &mapping.hidden_namespaces),
        Kind::Class => ("oid", &mapping.hidden_relations),
        Kind::Attribute => ("attrelid", &mapping.hidden_relations),
        Kind::Database => return Ok(batch),
    };
    if hidden.is_empty() {
        return Ok(batch);
    }
    let oids = int32(&batch, column)?;
    let keep: datafusion::arrow::array::BooleanArray = oids
        .iter()
        .map(|o| Some(o.is_none_or(|o| !hidden.contains(&o))))
        .collect();
    Ok(datafusion::arrow::compute::filter_record_batch(&batch, &keep)?)
}

fn remap(batch: RecordBatch, kind: Kind, mapping: &Mapping) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (name, oids) in kind.columns() {
        let Some(index) = batch.schema().index_of(name).ok() else {
            continue;
        };
        let map = match oids {
            Oids::Namespace => &mapping.namespaces,
            Oids::Relation => &mapping.relations,
            Oids::Database => &mapping.databases,
        };
        let old = int32(&batch, name)?;
        let new: Int32Array = old
            .iter()
            .map(|v| v.map(|v| map.get(&v).copied().unwrap_or(v)))
            .collect();
        let new = new.into_data().into_builder().nulls(old.nulls().cloned());
        columns[index] = Arc::new(Int32Array::from(new.build()?));
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[async_trait]
impl SchemaProvider for StablePgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let Some(kind) = Kind::of(&name.to_ascii_lowercase()) else {
            return Ok(Some(table));
        };
        // The wrapper needs itself as an Arc to read the other tables at scan.
        let catalog = Arc::new(StablePgCatalog {
            inner: Arc::clone(&self.inner),
            table_ids: TableIdsDebug(Arc::clone(&self.table_ids.0)),
            visibility: VisibilityDebug(Arc::clone(&self.visibility.0)),
        });
        Ok(Some(Arc::new(Remapped {
            kind,
            schema: table.schema(),
            catalog,
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_oids_are_fixed_and_in_the_user_range() {
        // The same key gives the same OID in every process and build.
        assert_eq!(derived("namespace\0sales"), derived("namespace\0sales"));
        let all = assign((0..5000).map(|i| format!("relation\0s\0t{i}")));
        assert_eq!(all.len(), 5000);
        assert!(all.values().all(|&o| o >= USER_RANGE as i32));
        assert_eq!(all.values().collect::<HashSet<_>>().len(), 5000, "OIDs are unique");
        // Adding objects leaves the others' OIDs alone (no collision here).
        let more = assign((0..5001).map(|i| format!("relation\0s\0t{i}")));
        assert!(all.iter().all(|(k, v)| more[k] == *v));
    }

    #[test]
    fn collisions_move_the_later_key() {
        let out = resolve([
            (20_000, "b".to_owned()),
            (20_000, "a".to_owned()),
            (20_001, "c".to_owned()),
        ]);
        assert_eq!(out["a"], 20_000);
        assert_eq!(out["b"], 20_001);
        assert_eq!(out["c"], 20_002);
        assert_eq!(fixed_namespace("pg_catalog"), Some(11));
        assert_eq!(fixed_namespace("public"), Some(2200));
    }
}
