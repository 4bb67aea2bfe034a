//! DataFusion's view of the catalog: one [`SluiceCatalog`] (the `sluice`
//! catalog) whose schemas are the metastore's databases, plus in-memory system
//! schemas (`pg_catalog`, `information_schema`) registered at start-up.
//!
//! Tables become `ListingTable`s built from the stored schema, so resolving a
//! table never infers a schema from the object store; views are re-planned
//! from their SQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider, TableProviderFactory};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, TableReference};
use datafusion::datasource::listing_table_factory::ListingTableFactory;
use datafusion::datasource::view::ViewTable;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::CreateExternalTable;
use prost::Message;

use super::{CATALOG_NAME, CatalogState, Table, TableKind};

/// Encodes an Arrow schema for [`Table::arrow_schema`].
pub fn encode_schema(schema: &Schema) -> DfResult<Vec<u8>> {
    let proto: datafusion_proto::protobuf::Schema = schema.try_into()?;
    Ok(proto.encode_to_vec())
}

/// Decodes [`Table::arrow_schema`].
pub fn decode_schema(bytes: &[u8]) -> DfResult<Schema> {
    let proto = datafusion_proto::protobuf::Schema::decode(bytes)
        .map_err(|e| DataFusionError::Internal(format!("stored schema is unreadable: {e}")))?;
    Ok((&proto).try_into()?)
}

/// Providers built so far, keyed by (database, table), valid while the
/// snapshot still holds the same `Table` (pointer equality).
type ProviderCache = Arc<Mutex<HashMap<(String, String), (Arc<Table>, Arc<dyn TableProvider>)>>>;

/// The `sluice` catalog.
#[derive(Debug)]
pub struct SluiceCatalog {
    state: Arc<CatalogState>,
    system: RwLock<HashMap<String, Arc<dyn SchemaProvider>>>,
    /// Planning state used to build listing tables and plan views; set once the
    /// base session exists (it contains this catalog).
    planner: OnceLock<SessionState>,
    cache: ProviderCache,
}

impl SluiceCatalog {
    pub fn new(state: Arc<CatalogState>) -> Self {
        SluiceCatalog {
            state,
            system: RwLock::new(HashMap::new()),
            planner: OnceLock::new(),
            cache: Arc::default(),
        }
    }

    /// Gives the catalog the session state it plans views and listing tables with.
    pub fn set_planner(&self, state: SessionState) {
        let _ = self.planner.set(state);
    }

    pub fn catalog_state(&self) -> &Arc<CatalogState> {
        &self.state
    }
}

impl CatalogProvider for SluiceCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state.snapshot().databases.keys().cloned().collect();
        names.extend(self.system.read().unwrap_or_else(|e| e.into_inner()).keys().cloned());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(s) = self.system.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Some(Arc::clone(s));
        }
        if !self.state.snapshot().databases.contains_key(name) {
            return None;
        }
        Some(Arc::new(DatabaseSchema {
            database: name.to_owned(),
            state: Arc::clone(&self.state),
            planner: self.planner.get().cloned(),
            cache: Arc::clone(&self.cache),
        }))
    }

    /// Only system schemas are registered this way; user schemas are created
    /// through [`CatalogState::create_database`] so they are durable.
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        Ok(self
            .system
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), schema))
    }
}

#[derive(Debug)]
struct DatabaseSchema {
    database: String,
    state: Arc<CatalogState>,
    planner: Option<SessionState>,
    cache: ProviderCache,
}

#[async_trait]
impl SchemaProvider for DatabaseSchema {
    fn table_names(&self) -> Vec<String> {
        self.state
            .snapshot()
            .tables
            .keys()
            .filter(|(db, _)| db == &self.database)
            .map(|(_, t)| t.clone())
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.state.table(&self.database, name) else {
            return Ok(None);
        };
        let key = (self.database.clone(), name.to_owned());
        if let Some((cached_meta, provider)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && Arc::ptr_eq(cached_meta, &table)
        {
            return Ok(Some(Arc::clone(provider)));
        }
        let Some(planner) = &self.planner else {
            return Err(DataFusionError::Internal(
                "catalog used before the session was built".into(),
            ));
        };
        let provider = build_provider(planner, &table).await?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (table, Arc::clone(&provider)));
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.state.table(&self.database, name).is_some()
    }
}

/// Builds the DataFusion provider of a catalog table.
pub async fn build_provider(planner: &SessionState, table: &Table) -> DfResult<Arc<dyn TableProvider>> {
    let reference = TableReference::full(CATALOG_NAME, table.database.as_str(), table.name.as_str());
    match table.kind {
        TableKind::View => {
            let sql = table.view_sql.as_deref().unwrap_or_default();
            let plan = planner.create_logical_plan(sql).await?;
            Ok(Arc::new(ViewTable::new(plan, Some(sql.to_owned()))))
        }
        TableKind::Managed | TableKind::External => {
            let schema: SchemaRef = Arc::new(decode_schema(&table.arrow_schema)?);
            let cmd = CreateExternalTable::builder(
                reference.clone(),
                table.locations.first().cloned().unwrap_or_default(),
                table.format.clone(),
                Arc::new(DFSchema::try_from(schema)?),
            )
            .with_locations(table.locations.clone())
            .with_partition_cols(table.partition_columns.clone())
            .with_options(table.options.clone().into_iter().collect())
            .build();
            ListingTableFactory::new().create(planner, &cmd).await
        }
    }
}
