//! The Hive-model catalog: databases (SQL schemas), tables with their columns,
//! partition columns, location, format and options, partitions, views — and,
//! for managed tables, the manifest of committed data files.
//!
//! [`Metastore`] is the storage seam: embedded SQLite ([`sqlite`], the
//! default) or PostgreSQL ([`postgres`], shared by several gateways), both
//! through one relational model ([`sql`]), or an external Hive Metastore
//! ([`hive`], with one of those as its side store). [`CatalogState`] keeps an in-memory snapshot
//! of databases and tables so DataFusion's synchronous catalog calls never
//! block on storage, and [`provider::SluiceCatalog`] exposes that snapshot to
//! DataFusion. Partitions and manifests are read on demand (and cached by
//! `crate::lake`): a table can have many thousands.
//!
//! **Commit protocol.** A write registers itself ([`Metastore::begin_write`])
//! before it puts any file, writes files whose names carry its write id, and
//! becomes visible only through [`Metastore::commit_write`], one transaction
//! that records the files (and the table, for CTAS) and lists what the write
//! replaced as garbage. Readers of managed tables read only files in the
//! manifest, so they see the state before or after a commit, never a mix.
//! Files of writes that never committed are deleted by the writer or, after a
//! crash, by the start-up sweep; garbage is deleted after a grace period so
//! queries planned before the commit can finish.

mod commit;
#[cfg(test)]
mod conformance;
pub mod hive;
pub mod postgres;
pub mod provider;
pub mod sql;
pub mod sqlite;
pub mod user_view;

pub use self::commit::{
    CommitKind, DataFile, Garbage, PartitionChange, PartitionEdit, PendingWrite, Strictness, WriteCommit,
};

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

/// Name of the SQL catalog (Postgres "database") clients connect to.
pub const CATALOG_NAME: &str = "sluice";
/// The database that always exists and is first on the search path.
pub const DEFAULT_DATABASE: &str = "default";
/// Hive's name for a NULL partition value.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Text every "changed while the statement ran" error carries (it crosses
/// the scheduler as a job failure message).
pub const CHANGED_MARKER: &str = "was changed by another statement while this one ran";

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
    #[error("\"{0}\" is {1}; DROP it before creating another kind of relation with that name")]
    WrongKind(String, &'static str),
    #[error(
        "relation \"{0}\" was changed by another statement while this one ran (dropped, replaced or written); run it again"
    )]
    TableChanged(String),
    #[error("partition {1} of \"{0}\" already exists")]
    PartitionExists(String, String),
    #[error("partition {1} of \"{0}\" does not exist")]
    PartitionNotFound(String, String),
    #[error("schema \"{0}\" cannot be dropped")]
    Protected(String),
    #[error("role \"{0}\" already exists")]
    RoleExists(String),
    #[error("role \"{0}\" does not exist")]
    RoleNotFound(String),
    #[error("role \"{0}\" cannot be dropped because {1}")]
    RoleInUse(String, String),
    #[error("policy \"{0}\" for table \"{1}\" already exists")]
    PolicyExists(String, String),
    #[error("policy \"{0}\" for table \"{1}\" does not exist")]
    PolicyNotFound(String, String),
    #[error("catalog storage failed: {0}")]
    Storage(String),
    #[error("stored metadata for \"{0}\" is unreadable: {1}")]
    Corrupt(String, String),
}

/// A database (shown to SQL as a schema).
#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    pub name: String,
    /// Default location of managed tables in this database.
    pub location: String,
    pub comment: Option<String>,
    /// The role that created it; `None`: the bootstrap superuser (and
    /// everything made before roles existed).
    pub owner: Option<String>,
}

/// Managed tables are owned by Sluice (data under the warehouse, files listed
/// in the manifest, deleted on DROP); external tables only point at data
/// (files found by listing); views hold SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Managed,
    External,
    View,
}

impl TableKind {
    /// "a view", "a managed table", ... for messages.
    pub fn describe(self) -> &'static str {
        match self {
            TableKind::Managed => "a managed table",
            TableKind::External => "an external table",
            TableKind::View => "a view",
        }
    }

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

/// The catalog's columns of an Arrow schema.
pub fn columns_of(schema: &arrow::datatypes::Schema) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// A table or view.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub database: String,
    pub name: String,
    /// Unique per incarnation: a table dropped and created again, or
    /// replaced, gets a new id (and with it new partitions and manifest).
    pub id: String,
    /// Bumped by every change to the table's data or partitions; caches of
    /// partitions and listings are keyed by it.
    pub version: u64,
    pub kind: TableKind,
    /// `PARQUET`, `CSV`, `JSON`, `AVRO`; empty for views.
    pub format: String,
    /// Location URLs; empty for views.
    pub locations: Vec<String>,
    /// All columns, data columns first, then partition columns (Hive order).
    pub columns: Vec<Column>,
    pub partition_columns: Vec<String>,
    /// Format and store options as given to `OPTIONS (...)`.
    pub options: BTreeMap<String, String>,
    /// Table properties (write settings of managed tables: `compression`, ...).
    pub properties: BTreeMap<String, String>,
    /// The exact Arrow schema, encoded with datafusion-proto, so providers are
    /// rebuilt without touching the object store.
    pub arrow_schema: Vec<u8>,
    /// The defining query of a view.
    pub view_sql: Option<String>,
    /// The role that created it (a view runs with its owner's rights);
    /// `None`: the bootstrap superuser.
    pub owner: Option<String>,
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }

    /// `(k='v', ...)` of one of its partitions, for error messages.
    pub fn describe_partition(&self, values: &[String]) -> String {
        let inner = self
            .partition_columns
            .iter()
            .zip(values)
            .map(|(k, v)| format!("{k}='{v}'"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("({inner})")
    }
}

/// A new table id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A partition of a table: values in partition-column order (Hive strings,
/// [`NULL_PARTITION`] for NULL), its location, and where its files come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub values: Vec<String>,
    pub location: String,
    /// Files are found by listing `location` (external tables); otherwise
    /// they are the manifest's (managed tables).
    pub listed: bool,
}

/// Durable storage of the catalog. Every method is one atomic change: when it
/// returns `Ok`, the change survives a crash of the gateway.
#[async_trait]
pub trait Metastore: Send + Sync + std::fmt::Debug {
    async fn list_databases(&self) -> Result<Vec<Database>, CatalogError>;
    async fn create_database(&self, db: &Database) -> Result<(), CatalogError>;
    /// Drops a database; with `cascade` its tables and views go too, and the
    /// managed tables' files become garbage. Returns the dropped tables.
    async fn drop_database(
        &self,
        name: &str,
        cascade: bool,
        garbage_after_unix: u64,
    ) -> Result<Vec<Table>, CatalogError>;
    async fn list_tables(&self) -> Result<Vec<Table>, CatalogError>;
    /// Creates a table or view without data, with `partitions` (external
    /// tables); `replace` overwrites an existing one of the same kind (whose
    /// managed files become garbage).
    async fn create_table(
        &self,
        table: &Table,
        partitions: &[Partition],
        replace: bool,
        garbage_after_unix: u64,
    ) -> Result<(), CatalogError>;
    /// Drops a table or view; a managed table's files become garbage. With
    /// `expected_id`, only that incarnation: a relation that took the name
    /// since the caller looked (another gateway's) fails with `TableChanged`.
    async fn drop_table(
        &self,
        database: &str,
        name: &str,
        expected_id: Option<&str>,
        garbage_after_unix: u64,
    ) -> Result<Table, CatalogError>;
    async fn list_partitions(&self, table_id: &str) -> Result<Vec<Partition>, CatalogError>;
    /// The partitions of `table` that may match `filter` (a Hive Metastore
    /// partition filter), when the store evaluates it itself; `None`: it
    /// does not, and the caller prunes [`Metastore::list_partitions`].
    async fn partitions_matching(&self, table: &Table, filter: &str) -> Result<Option<Vec<Partition>>, CatalogError> {
        let _ = (table, filter);
        Ok(None)
    }
    /// Whether `table`'s partitions may change without passing through a
    /// Sluice catalog (another engine's metastore table): readers then do
    /// not keep its partition set beyond the store's own cache.
    fn partitions_change_outside(&self, table: &Table) -> bool {
        let _ = table;
        false
    }
    /// Applies one [`PartitionEdit`] and bumps the table's version.
    async fn alter_partitions(&self, edit: &PartitionEdit) -> Result<PartitionChange, CatalogError>;
    /// The manifest of a managed table.
    async fn list_files(&self, table_id: &str) -> Result<Vec<DataFile>, CatalogError>;
    /// Records a write before it puts its first file.
    async fn begin_write(&self, write: &PendingWrite) -> Result<(), CatalogError>;
    /// Makes a write visible (see the module docs).
    async fn commit_write(&self, commit: &WriteCommit) -> Result<(), CatalogError>;
    /// Forgets a write whose files were deleted.
    async fn end_write(&self, write_id: &str) -> Result<(), CatalogError>;
    /// Whether a write is still pending (neither committed nor ended).
    async fn write_pending(&self, write_id: &str) -> Result<bool, CatalogError>;
    /// Writes begun and neither committed nor ended (a crash interrupted them).
    async fn pending_writes(&self) -> Result<Vec<PendingWrite>, CatalogError>;
    /// Garbage whose grace period ended by `now_unix`.
    async fn due_garbage(&self, now_unix: u64) -> Result<Vec<Garbage>, CatalogError>;
    /// Forgets garbage that was deleted.
    async fn forget_garbage(&self, paths: &[String]) -> Result<(), CatalogError>;
    /// Roles, memberships, grants, policies and masks (`crate::access`).
    async fn load_access(&self) -> Result<crate::access::AccessSnapshot, CatalogError>;
    /// Applies changes to them, all or none.
    async fn change_access(&self, changes: &[crate::access::AccessChange]) -> Result<(), CatalogError>;
    /// A number that changes with every change, when other processes may
    /// change this catalog too (see [`CatalogState::follow`]); `None` when
    /// only this process does.
    async fn generation(&self) -> Result<Option<u64>, CatalogError> {
        Ok(None)
    }
    /// Whether other gateways share this catalog (their writes under way
    /// look like interrupted ones to this gateway).
    fn shared(&self) -> bool {
        false
    }
}

/// Opens the metastore `--catalog` names.
pub async fn open_metastore(location: &crate::config::CatalogLocation) -> Result<Arc<dyn Metastore>, CatalogError> {
    use crate::config::CatalogLocation;
    match location {
        CatalogLocation::Hive { addresses, side, poll } => {
            let side = open_relational(side).await?;
            Ok(Arc::new(hive::HiveMetastore::open(addresses, side, *poll).await?))
        }
        other => open_relational(other).await,
    }
}

/// Opens a SQLite or PostgreSQL metastore.
async fn open_relational(location: &crate::config::CatalogLocation) -> Result<Arc<dyn Metastore>, CatalogError> {
    use crate::config::CatalogLocation;
    Ok(match location {
        CatalogLocation::Sqlite(path) => Arc::new(sqlite::SqliteMetastore::open(path)?),
        CatalogLocation::Postgres {
            url, password, ca_file, ..
        } => {
            let (url, password, ca_file) = (url.0.clone(), password.as_ref().map(|p| p.0.clone()), ca_file.clone());
            let store = tokio::task::spawn_blocking(move || {
                postgres::PostgresMetastore::connect(&url, password.as_deref(), ca_file.as_deref())
            })
            .await
            .map_err(|e| CatalogError::Storage(format!("catalog task failed: {e}")))??;
            Arc::new(store)
        }
        CatalogLocation::Hive { .. } => {
            return Err(CatalogError::Storage(
                "a Hive Metastore cannot be the side store of another".into(),
            ));
        }
    })
}

/// Follows a shared catalog: every `poll`, reloads the snapshot if another
/// gateway changed the catalog, until `stop`.
pub fn spawn_follower(state: Arc<CatalogState>, poll: std::time::Duration, stop: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut seen = None;
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(poll) => {}
            }
            match state.follow(&mut seen).await {
                Ok(_) if failing => {
                    tracing::info!("catalog reachable again");
                    failing = false;
                }
                Ok(_) => {}
                // Logged once per outage, not every poll.
                Err(e) if !failing => {
                    tracing::warn!("cannot check the catalog for other gateways' changes: {e}");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    });
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A consistent in-memory view of the metastore, refreshed after each change.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Bumped by every refresh: providers that depend on other tables
    /// (views) are valid for one generation.
    pub generation: u64,
    pub databases: BTreeMap<String, Database>,
    /// (database, table) -> table
    pub tables: BTreeMap<(String, String), Arc<Table>>,
    /// Roles, grants, policies and masks.
    pub access: Arc<crate::access::AccessSnapshot>,
}

/// Called after every change with the tables whose data or definition
/// changed (so caches keyed by them can be dropped).
pub type ChangeListener = Arc<dyn Fn(&[Arc<Table>]) + Send + Sync>;

/// The metastore plus its snapshot. All DDL goes through here so the snapshot
/// never disagrees with storage.
pub struct CatalogState {
    store: Arc<dyn Metastore>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serialises changes so the snapshot is rebuilt in commit order.
    ddl: tokio::sync::Mutex<()>,
    warehouse: url::Url,
    listeners: RwLock<Vec<ChangeListener>>,
}

impl std::fmt::Debug for CatalogState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogState")
            .field("store", &self.store)
            .field("warehouse", &self.warehouse.as_str())
            .finish_non_exhaustive()
    }
}

impl CatalogState {
    /// Opens the catalog, creating the `default` database on first start.
    pub async fn open(store: Arc<dyn Metastore>, warehouse: url::Url) -> Result<Self, CatalogError> {
        let state = CatalogState {
            store,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            ddl: tokio::sync::Mutex::new(()),
            warehouse,
            listeners: RwLock::new(Vec::new()),
        };
        state.refresh().await?;
        if !state.snapshot().databases.contains_key(DEFAULT_DATABASE) {
            match state.create_database(DEFAULT_DATABASE, None, None).await {
                Ok(()) | Err(CatalogError::DatabaseExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(state)
    }

    /// Reloads the snapshot when the catalog's generation moved since `seen`
    /// (another gateway changed it); returns whether it did. Called every
    /// `--catalog-poll` on catalogs with a generation.
    pub async fn follow(&self, seen: &mut Option<u64>) -> Result<bool, CatalogError> {
        // Read before the reload: a change that lands during it moves the
        // generation again and is picked up by the next call.
        let Some(now) = self.store.generation().await? else {
            return Ok(false);
        };
        if *seen == Some(now) {
            return Ok(false);
        }
        let _g = self.ddl.lock().await;
        self.refresh().await?;
        *seen = Some(now);
        Ok(true)
    }

    /// Registers a function told about every change (cache invalidation).
    pub fn on_change(&self, listener: ChangeListener) {
        self.listeners.write().unwrap_or_else(|e| e.into_inner()).push(listener);
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

    /// Reloads the snapshot and tells listeners which tables changed.
    async fn refresh(&self) -> Result<(), CatalogError> {
        let databases = self.store.list_databases().await?;
        let tables = self.store.list_tables().await?;
        let access = Arc::new(self.store.load_access().await?);
        let generation = self.snapshot().generation + 1;
        let snap = Snapshot {
            generation,
            access,
            databases: databases.into_iter().map(|d| (d.name.clone(), d)).collect(),
            tables: tables
                .into_iter()
                .map(|t| ((t.database.clone(), t.name.clone()), Arc::new(t)))
                .collect(),
        };
        let old = {
            let mut guard = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *guard, Arc::new(snap))
        };
        let new = self.snapshot();
        let changed: Vec<Arc<Table>> = old
            .tables
            .iter()
            .filter(|(k, t)| {
                new.tables
                    .get(*k)
                    .is_none_or(|n| n.id != t.id || n.version != t.version)
            })
            .map(|(_, t)| Arc::clone(t))
            .collect();
        if !changed.is_empty() {
            let listeners = self.listeners.read().unwrap_or_else(|e| e.into_inner()).clone();
            for l in listeners {
                l(&changed);
            }
        }
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

    /// Runs one change under the DDL lock and refreshes the snapshot, whether
    /// or not the change succeeded.
    async fn change<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, CatalogError>>,
    ) -> Result<T, CatalogError> {
        let _g = self.ddl.lock().await;
        let r = f.await;
        if let Err(e) = self.refresh().await {
            // The change itself is durable (or failed) either way; a failed
            // refresh must not turn a committed change into a reported
            // failure. Try once more, then let the next change refresh.
            tracing::error!("catalog snapshot not refreshed after a change: {e}");
            if let Err(e) = self.refresh().await {
                tracing::error!("catalog snapshot still not refreshed: {e}");
                if r.is_err() {
                    return Err(e);
                }
            }
        }
        r
    }

    pub async fn create_database(
        &self,
        name: &str,
        comment: Option<String>,
        owner: Option<String>,
    ) -> Result<(), CatalogError> {
        let db = Database {
            name: name.to_owned(),
            location: self.database_location(name),
            comment,
            owner,
        };
        self.change(self.store.create_database(&db)).await
    }

    pub async fn drop_database(
        &self,
        name: &str,
        cascade: bool,
        garbage_after_unix: u64,
    ) -> Result<Vec<Table>, CatalogError> {
        if name == DEFAULT_DATABASE {
            return Err(CatalogError::Protected(name.to_owned()));
        }
        self.change(self.store.drop_database(name, cascade, garbage_after_unix))
            .await
    }

    pub async fn create_table(
        &self,
        table: Table,
        partitions: &[Partition],
        replace: bool,
        garbage_after_unix: u64,
    ) -> Result<(), CatalogError> {
        self.change(self.store.create_table(&table, partitions, replace, garbage_after_unix))
            .await
    }

    /// Drops `table`, the incarnation the caller checked.
    pub async fn drop_table(&self, table: &Table, garbage_after_unix: u64) -> Result<Table, CatalogError> {
        self.change(
            self.store
                .drop_table(&table.database, &table.name, Some(&table.id), garbage_after_unix),
        )
        .await
    }

    pub async fn alter_partitions(&self, edit: &PartitionEdit) -> Result<PartitionChange, CatalogError> {
        self.change(self.store.alter_partitions(edit)).await
    }

    /// Applies changes to roles, grants, policies or masks, all or none.
    pub async fn change_access(&self, changes: &[crate::access::AccessChange]) -> Result<(), CatalogError> {
        self.change(self.store.change_access(changes)).await
    }

    pub async fn commit_write(&self, commit: &WriteCommit) -> Result<(), CatalogError> {
        self.change(self.store.commit_write(commit)).await
    }

    pub fn table(&self, database: &str, name: &str) -> Option<Arc<Table>> {
        self.snapshot()
            .tables
            .get(&(database.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Tells listeners that `table` changed outside Sluice (`REFRESH TABLE`).
    pub fn invalidate(&self, table: &Arc<Table>) {
        let listeners = self.listeners.read().unwrap_or_else(|e| e.into_inner()).clone();
        for l in listeners {
            l(std::slice::from_ref(table));
        }
    }
}
