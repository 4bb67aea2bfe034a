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
use datafusion::arrow::array::{AsArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::Int32Type;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::collect;
use sha2::{Digest, Sha256};

mod remap;

use remap::{Kind, Remapped};

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

/// What the crate's four tables and their stable OIDs are for one
/// generation of the catalog: reading them walks every table of every
/// schema, so it is done once per catalog change, not at every scan.
struct Base {
    generation: u64,
    namespaces: HashMap<i32, i32>,
    relations: HashMap<i32, i32>,
    databases: HashMap<i32, i32>,
    /// The crate's OID and name of every schema.
    ns_names: HashMap<i32, String>,
    /// The crate's OID, schema and name of every relation.
    relation_names: Vec<(i32, String, String)>,
    /// The crate's rows of each [`Kind`] (index `Kind as usize`), read on
    /// first use.
    tables: [tokio::sync::OnceCell<Vec<RecordBatch>>; 4],
}

impl std::fmt::Debug for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Base")
            .field("generation", &self.generation)
            .field("relations", &self.relations.len())
            .finish_non_exhaustive()
    }
}

/// The OID maps of one scan: the generation's, and what the session's user
/// may not see.
struct Mapping {
    base: Arc<Base>,
    /// The crate's OIDs of schemas and relations the session's user may not
    /// see: their rows are left out.
    hidden_namespaces: HashSet<i32>,
    hidden_relations: HashSet<i32>,
}

/// The catalog's generation now (bumped by every change).
pub(crate) type Generation = Arc<dyn Fn() -> u64 + Send + Sync>;

/// `pg_catalog` with stable OIDs.
#[derive(Debug, Clone)]
pub(crate) struct StablePgCatalog {
    inner: Arc<dyn SchemaProvider>,
    table_ids: TableIdsDebug,
    visibility: VisibilityDebug,
    generation: GenerationDebug,
    base: Arc<std::sync::Mutex<Option<Arc<Base>>>>,
}

#[derive(Clone)]
struct VisibilityDebug(Visibility);

impl std::fmt::Debug for VisibilityDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Visibility")
    }
}

#[derive(Clone)]
struct TableIdsDebug(TableIds);

impl std::fmt::Debug for TableIdsDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableIds")
    }
}

#[derive(Clone)]
struct GenerationDebug(Generation);

impl std::fmt::Debug for GenerationDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Generation")
    }
}

impl StablePgCatalog {
    pub(crate) fn new(
        inner: Arc<dyn SchemaProvider>,
        table_ids: TableIds,
        visibility: Visibility,
        generation: Generation,
    ) -> Self {
        StablePgCatalog {
            inner,
            table_ids: TableIdsDebug(table_ids),
            visibility: VisibilityDebug(visibility),
            generation: GenerationDebug(generation),
            base: Arc::default(),
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

    /// The crate's rows of `kind` for the current generation.
    async fn table_rows(&self, state: &dyn Session, base: &Base, kind: Kind) -> Result<Vec<RecordBatch>> {
        let rows = base.tables[kind as usize]
            .get_or_try_init(|| self.rows(state, kind.table()))
            .await?;
        Ok(rows.clone())
    }

    /// The current generation's [`Base`], read if the catalog changed since
    /// the last one.
    async fn base(&self, state: &dyn Session) -> Result<Arc<Base>> {
        let generation = (self.generation.0)();
        let cached = self.base.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(base) = cached.filter(|b| b.generation == generation) {
            return Ok(base);
        }
        let base = Arc::new(self.read_base(state, generation).await?);
        *self.base.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&base));
        Ok(base)
    }

    /// Reads the crate's namespaces, relations and databases and maps their
    /// OIDs to stable ones.
    async fn read_base(&self, state: &dyn Session, generation: u64) -> Result<Base> {
        let namespaces = self.rows(state, "pg_namespace").await?;
        let mut ns_names: HashMap<i32, String> = HashMap::new();
        for b in &namespaces {
            let (oids, names) = (int32(b, "oid")?, utf8(b, "nspname")?);
            for i in 0..b.num_rows() {
                ns_names.insert(oids.value(i), names.value(i).to_owned());
            }
        }
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
        let mut relation_names = Vec::new();
        let mut relations: Vec<(i32, String)> = Vec::new();
        let mut fixed_relations: HashMap<i32, i32> = HashMap::new();
        for b in &classes {
            let (oids, nsps) = (int32(b, "oid")?, int32(b, "relnamespace")?);
            let names = utf8(b, "relname")?;
            for i in 0..b.num_rows() {
                let schema = ns_names.get(&nsps.value(i)).map_or("", String::as_str);
                let name = names.value(i);
                relation_names.push((oids.value(i), schema.to_owned(), name.to_owned()));
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
        let read = |rows| tokio::sync::OnceCell::new_with(Some(rows));
        Ok(Base {
            generation,
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
            ns_names,
            relation_names,
            tables: [
                read(namespaces),
                read(classes),
                tokio::sync::OnceCell::new(),
                read(databases),
            ],
        })
    }

    /// The OID maps of a scan by the session's user.
    async fn mapping(&self, state: &dyn Session) -> Result<Mapping> {
        let base = self.base(state).await?;
        let viewer = state.config().get_extension::<crate::catalog::user_view::Viewer>();
        let sees =
            |schema: &str, table: Option<&str>| viewer.as_deref().is_none_or(|v| (self.visibility.0)(v, schema, table));
        let hidden_namespaces = base
            .ns_names
            .iter()
            .filter(|(_, name)| !sees(name, None))
            .map(|(oid, _)| *oid)
            .collect();
        let hidden_relations = base
            .relation_names
            .iter()
            .filter(|(_, schema, name)| !sees(schema, Some(name)))
            .map(|(oid, _, _)| *oid)
            .collect();
        Ok(Mapping {
            base,
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
        // The wrapper needs itself as an Arc to read the other tables at
        // scan (a clone shares the cached generation).
        let catalog = Arc::new(self.clone());
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
