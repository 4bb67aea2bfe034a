//! The Hive-model catalog: databases (SQL schemas), tables with their columns,
//! partition columns, location, format and options, partitions, and views.
//!
//! [`Metastore`] is the storage seam (embedded SQLite today; PostgreSQL and an
//! external Hive Metastore later). [`CatalogState`] keeps an in-memory snapshot
//! of it so DataFusion's synchronous catalog calls never block on storage, and
//! [`provider::SluiceCatalog`] exposes that snapshot to DataFusion.

pub mod provider;
pub mod sqlite;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

/// Name of the SQL catalog (Postgres "database") clients connect to.
pub const CATALOG_NAME: &str = "sluice";
/// The database that always exists and is first on the search path.
pub const DEFAULT_DATABASE: &str = "default";

/// Errors of the catalog layer.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("schema \"{0}\" already exists")]
    DatabaseExists(String),
    #[error("schema \"{0}\" does not exist")]
    DatabaseNotFound(String),
    #[error("schema \"{0}\" is not empty; use DROP SCHEMA ... CASCADE")]
    DatabaseNotEmpty(String),
    #[error("relation \"{0}\" already exists")]
    TableExists(String),
    #[error("relation \"{0}\" does not exist")]
    TableNotFound(String),
    #[error("schema \"{0}\" cannot be dropped")]
    Protected(String),
    #[error("catalog storage failed: {0}")]
    Storage(String),
    #[error("stored metadata for \"{0}\" is unreadable: {1}")]
    Corrupt(String, String),
}

impl From<rusqlite::Error> for CatalogError {
    fn from(e: rusqlite::Error) -> Self {
        CatalogError::Storage(e.to_string())
    }
}

/// A database (shown to SQL as a schema).
#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    pub name: String,
    /// Default location of managed tables in this database.
    pub location: String,
    pub comment: Option<String>,
}

/// Managed tables are owned by Sluice (data under the warehouse, deleted on
/// DROP); external tables only point at data; views hold SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Managed,
    External,
    View,
}

impl TableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Managed => "MANAGED_TABLE",
            TableKind::External => "EXTERNAL_TABLE",
            TableKind::View => "VIRTUAL_VIEW",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "MANAGED_TABLE" => Some(TableKind::Managed),
            "EXTERNAL_TABLE" => Some(TableKind::External),
            "VIRTUAL_VIEW" => Some(TableKind::View),
            _ => None,
        }
    }
}

/// One column as the Hive model keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// Arrow type, as displayed by DataFusion (`Int64`, `Utf8`, ...).
    pub data_type: String,
    pub nullable: bool,
}

/// A table or view.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub database: String,
    pub name: String,
    pub kind: TableKind,
    /// `PARQUET`, `CSV`, `JSON`; empty for views.
    pub format: String,
    /// Location URLs; empty for views.
    pub locations: Vec<String>,
    /// All columns, data columns first, then partition columns (Hive order).
    pub columns: Vec<Column>,
    pub partition_columns: Vec<String>,
    /// Format options as given to `OPTIONS (...)`.
    pub options: BTreeMap<String, String>,
    pub properties: BTreeMap<String, String>,
    /// The exact Arrow schema, encoded with datafusion-proto, so providers are
    /// rebuilt without touching the object store.
    pub arrow_schema: Vec<u8>,
    /// The defining query of a view.
    pub view_sql: Option<String>,
}

/// A partition of a table: values in partition-column order, and its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub values: Vec<String>,
    pub location: String,
}

/// Durable storage of the catalog. Every method is one atomic change: when it
/// returns `Ok`, the change survives a crash of the gateway.
#[async_trait]
pub trait Metastore: Send + Sync + std::fmt::Debug {
    async fn list_databases(&self) -> Result<Vec<Database>, CatalogError>;
    async fn create_database(&self, db: &Database) -> Result<(), CatalogError>;
    /// Drops a database; with `cascade` its tables and views go too. Returns
    /// the tables that were dropped (so managed data can be deleted).
    async fn drop_database(&self, name: &str, cascade: bool) -> Result<Vec<Table>, CatalogError>;
    async fn list_tables(&self) -> Result<Vec<Table>, CatalogError>;
    /// Creates a table or view; `replace` overwrites an existing one.
    async fn create_table(&self, table: &Table, replace: bool) -> Result<(), CatalogError>;
    async fn drop_table(&self, database: &str, name: &str) -> Result<Table, CatalogError>;
    /// Records partitions (idempotent on values).
    async fn add_partitions(&self, database: &str, table: &str, parts: &[Partition]) -> Result<(), CatalogError>;
    async fn list_partitions(&self, database: &str, table: &str) -> Result<Vec<Partition>, CatalogError>;
}

/// A consistent in-memory view of the metastore, refreshed after each change.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub databases: BTreeMap<String, Database>,
    /// (database, table) -> table
    pub tables: BTreeMap<(String, String), Arc<Table>>,
}

/// The metastore plus its snapshot. All DDL goes through here so the snapshot
/// never disagrees with storage.
#[derive(Debug)]
pub struct CatalogState {
    store: Arc<dyn Metastore>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serialises DDL so the snapshot is rebuilt in commit order.
    ddl: tokio::sync::Mutex<()>,
    warehouse: url::Url,
}

impl CatalogState {
    /// Opens the catalog, creating the `default` database on first start.
    pub async fn open(store: Arc<dyn Metastore>, warehouse: url::Url) -> Result<Self, CatalogError> {
        let state = CatalogState {
            store,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            ddl: tokio::sync::Mutex::new(()),
            warehouse,
        };
        state.refresh().await?;
        if !state.snapshot().databases.contains_key(DEFAULT_DATABASE) {
            match state.create_database(DEFAULT_DATABASE, None).await {
                Ok(()) | Err(CatalogError::DatabaseExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(state)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn warehouse(&self) -> &url::Url {
        &self.warehouse
    }

    pub fn metastore(&self) -> &Arc<dyn Metastore> {
        &self.store
    }

    async fn refresh(&self) -> Result<(), CatalogError> {
        let databases = self.store.list_databases().await?;
        let tables = self.store.list_tables().await?;
        let snap = Snapshot {
            databases: databases.into_iter().map(|d| (d.name.clone(), d)).collect(),
            tables: tables
                .into_iter()
                .map(|t| ((t.database.clone(), t.name.clone()), Arc::new(t)))
                .collect(),
        };
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
        Ok(())
    }

    /// Default location of a database: `<warehouse>/<name>.db/` (Hive layout).
    pub fn database_location(&self, name: &str) -> String {
        if name == DEFAULT_DATABASE {
            self.warehouse.to_string()
        } else {
            format!("{}{}.db/", self.warehouse, name)
        }
    }

    pub async fn create_database(&self, name: &str, comment: Option<String>) -> Result<(), CatalogError> {
        let _g = self.ddl.lock().await;
        let db = Database {
            name: name.to_owned(),
            location: self.database_location(name),
            comment,
        };
        let r = self.store.create_database(&db).await;
        self.refresh().await?;
        r
    }

    pub async fn drop_database(&self, name: &str, cascade: bool) -> Result<Vec<Table>, CatalogError> {
        if name == DEFAULT_DATABASE {
            return Err(CatalogError::Protected(name.to_owned()));
        }
        let _g = self.ddl.lock().await;
        let r = self.store.drop_database(name, cascade).await;
        self.refresh().await?;
        r
    }

    pub async fn create_table(&self, table: Table, replace: bool) -> Result<(), CatalogError> {
        let _g = self.ddl.lock().await;
        let r = self.store.create_table(&table, replace).await;
        self.refresh().await?;
        r
    }

    pub async fn drop_table(&self, database: &str, name: &str) -> Result<Table, CatalogError> {
        let _g = self.ddl.lock().await;
        let r = self.store.drop_table(database, name).await;
        self.refresh().await?;
        r
    }

    pub async fn add_partitions(&self, database: &str, table: &str, parts: &[Partition]) -> Result<(), CatalogError> {
        self.store.add_partitions(database, table, parts).await
    }

    pub fn table(&self, database: &str, name: &str) -> Option<Arc<Table>> {
        self.snapshot()
            .tables
            .get(&(database.to_owned(), name.to_owned()))
            .cloned()
    }
}
