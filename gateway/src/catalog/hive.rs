//! An external Hive Metastore as the catalog (`--catalog thrift://host:9083`,
//! several URIs for failover), with a *side store* (`--catalog-side`, SQLite
//! or PostgreSQL) for what the metastore has no place for: the manifests,
//! pending writes and garbage of managed tables, and roles and grants.
//!
//! The metastore owns the names: databases, and which table holds a name.
//! Tables Sluice creates keep their definition, partitions and files in
//! the side store ([`model`]) and a Hive description in the metastore,
//! whose `create_table` is the commit point of a CTAS (two gateways racing
//! for one name: the metastore lets one win). Tables other engines create
//! are read from the metastore: their partitions fetched per query, with the
//! query's partition filter pushed to `get_partitions_by_filter`, and cached
//! for `--catalog-poll`.
//!
//! Other engines' DDL is seen at the next snapshot reload: the generation
//! is a fingerprint of the databases, the table list and the notification
//! id (when the metastore keeps notifications), moved at least every
//! [`FULL_RELOAD`] so other changes are seen too.

mod client;
mod model;
mod reads;
mod writes;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use pilota::FastStr;

use self::client::{Failure, HmsClient, storage};
use self::model::{SHADOW_DATABASE, named, shadow_name, shadow_of};
use super::{
    CatalogError, DataFile, Database, Garbage, Metastore, Partition, PartitionChange, PartitionEdit, PendingWrite,
    Table, WriteCommit,
};

/// The longest a change made by another engine that moves no fingerprint
/// (an ALTER TABLE) stays unseen.
const FULL_RELOAD: u64 = 30;

fn s(v: &str) -> FastStr {
    FastStr::from(v.to_owned())
}

/// A Hive Metastore plus the side store.
pub struct HiveMetastore {
    hms: HmsClient,
    side: Arc<dyn Metastore>,
    /// Foreign tables by id, as last listed.
    foreign: RwLock<HashMap<String, Arc<Table>>>,
    /// Partitions of foreign tables by (table id, metastore filter; empty: all).
    partitions: moka::future::Cache<(String, String), Arc<Vec<Partition>>>,
    /// Tables already reported as unreadable.
    warned: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for HiveMetastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HiveMetastore")
            .field("hms", &self.hms)
            .field("side", &self.side)
            .finish_non_exhaustive()
    }
}

impl HiveMetastore {
    /// Connects to the metastores at `addresses` (`host:port`); partitions
    /// of foreign tables are cached for `ttl`.
    pub async fn open(addresses: &[String], side: Arc<dyn Metastore>, ttl: Duration) -> Result<Self, CatalogError> {
        let hms = HmsClient::new(addresses).await?;
        // Reachable now, or start-up fails with the reason.
        hms.read("get_all_databases", |c| async move { c.get_all_databases().await })
            .await?
            .map_err(|f| storage("get_all_databases", f))?;
        match side
            .create_database(&Database {
                name: SHADOW_DATABASE.into(),
                location: String::new(),
                comment: Some("definitions and manifests of Sluice's tables in the Hive Metastore".into()),
                owner: None,
            })
            .await
        {
            Ok(()) | Err(CatalogError::DatabaseExists(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(HiveMetastore {
            hms,
            side,
            foreign: RwLock::new(HashMap::new()),
            partitions: moka::future::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(10_000)
                .build(),
            warned: Mutex::new(HashSet::new()),
        })
    }
}

#[async_trait]
impl Metastore for HiveMetastore {
    async fn list_databases(&self) -> Result<Vec<Database>, CatalogError> {
        let mut out = Vec::new();
        for name in self.database_names().await? {
            match self
                .hms
                .read("get_database", |c| {
                    let name = s(&name);
                    async move { c.get_database(name).await }
                })
                .await?
            {
                Ok(db) => out.push(model::from_database(&db)),
                // Dropped since it was listed.
                Err(Failure::NotFound(_)) => {}
                Err(f) => return Err(storage("get_database", f)),
            }
        }
        Ok(out)
    }

    async fn create_database(&self, db: &Database) -> Result<(), CatalogError> {
        let hive = model::database(db);
        match self
            .hms
            .write("create_database", |c| {
                let hive = hive.clone();
                async move { c.create_database(hive).await }
            })
            .await?
        {
            Ok(()) => Ok(()),
            Err(Failure::Exists(_)) => Err(CatalogError::DatabaseExists(db.name.clone())),
            Err(f) => Err(storage("create_database", f)),
        }
    }

    async fn drop_database(&self, name: &str, cascade: bool, after: u64) -> Result<Vec<Table>, CatalogError> {
        let tables = self
            .hive_tables(name)
            .await?
            .ok_or_else(|| CatalogError::DatabaseNotFound(name.into()))?;
        if !cascade && !tables.is_empty() {
            return Err(CatalogError::DatabaseNotEmpty(name.into()));
        }
        let mut dropped = Vec::new();
        for t in &tables {
            let (_, table) = model::db_and_name(t);
            match self.drop_table(name, &table, None, after).await {
                Ok(t) => dropped.push(t),
                // Gone meanwhile, or not Sluice's to read: the metastore's
                // cascade below drops it.
                Err(CatalogError::TableNotFound(_) | CatalogError::Corrupt(..)) => {}
                Err(e) => return Err(e),
            }
        }
        match self
            .hms
            .write("drop_database", |c| async move {
                c.drop_database(s(name), false, cascade).await
            })
            .await?
        {
            Ok(()) => {}
            Err(Failure::NotFound(_)) => return Err(CatalogError::DatabaseNotFound(name.into())),
            // Another engine put a table there since the check.
            Err(Failure::Refused(_)) if !cascade => return Err(CatalogError::DatabaseNotEmpty(name.into())),
            Err(f) => return Err(storage("drop_database", f)),
        }
        if let Err(e) = self.forget_access(name, None).await {
            tracing::warn!(database = name, "grants on a dropped schema not removed: {e}");
        }
        Ok(dropped)
    }

    async fn list_tables(&self) -> Result<Vec<Table>, CatalogError> {
        let mut hive = Vec::new();
        for db in self.database_names().await? {
            hive.extend(self.hive_tables(&db).await?.unwrap_or_default());
        }
        let mut shadows = self.shadows().await?;
        if hive.iter().any(|t| model::unknown_sluice_table(t, &shadows)) {
            // A CTAS published after the shadows were read, or a gateway
            // with another side store: read them again to tell which.
            shadows = self.shadows().await?;
        }
        let mut out = Vec::new();
        let mut foreign = HashMap::new();
        for t in &hive {
            match model::identify(t, &shadows) {
                model::Identity::Own(table) => out.push(table),
                model::Identity::Foreign(table) => {
                    foreign.insert(table.id.clone(), Arc::new(table.clone()));
                    out.push(table);
                }
                model::Identity::Skipped(why) => {
                    let (db, name) = model::db_and_name(t);
                    self.warn_once(&format!("{db}.{name}"), &why);
                }
            }
        }
        *self.foreign.write().unwrap_or_else(|e| e.into_inner()) = foreign;
        Ok(out)
    }

    async fn create_table(
        &self,
        table: &Table,
        partitions: &[Partition],
        replace: bool,
        after: u64,
    ) -> Result<(), CatalogError> {
        self.side
            .create_table(&shadow_of(table), partitions, false, after)
            .await?;
        if let Err(e) = self.publish(table, partitions, replace, after).await {
            self.retract(table, &[], None).await;
            return Err(e);
        }
        Ok(())
    }

    async fn drop_table(
        &self,
        database: &str,
        name: &str,
        expected_id: Option<&str>,
        after: u64,
    ) -> Result<Table, CatalogError> {
        let qualified = format!("{database}.{name}");
        let identity = self
            .identify(database, name)
            .await?
            .ok_or_else(|| CatalogError::TableNotFound(qualified.clone()))?;
        let (table, own) = match identity {
            model::Identity::Own(t) => (t, true),
            model::Identity::Foreign(t) => (t, false),
            model::Identity::Skipped(why) => return Err(CatalogError::Corrupt(qualified, why)),
        };
        if expected_id.is_some_and(|id| id != table.id) {
            return Err(CatalogError::TableChanged(qualified));
        }
        // A foreign managed table's data goes with it, as in Hive; Sluice's
        // files become garbage below, deleted after the grace period.
        let delete_data = !own && self.is_foreign_managed(database, name).await?;
        if !self.drop_hive(database, name, delete_data).await? {
            return Err(CatalogError::TableNotFound(qualified));
        }
        let dropped = if own {
            let shadow = self
                .side
                .drop_table(SHADOW_DATABASE, &shadow_name(&table.id), Some(&table.id), after)
                .await
                .map_err(|e| model::renamed(e, &shadow_of(&table), database, name))?;
            named(&shadow, database, name)
        } else {
            self.partitions.invalidate_all();
            table
        };
        if let Err(e) = self.forget_access(database, Some(name)).await {
            tracing::warn!(table = %qualified, "grants on a dropped table not removed: {e}");
        }
        Ok(dropped)
    }

    async fn list_partitions(&self, table_id: &str) -> Result<Vec<Partition>, CatalogError> {
        match self.foreign(table_id) {
            Some(table) => self.foreign_partitions(&table).await,
            None => self.side.list_partitions(table_id).await,
        }
    }

    async fn partitions_matching(&self, table: &Table, filter: &str) -> Result<Option<Vec<Partition>>, CatalogError> {
        match self.foreign(&table.id) {
            Some(table) => self.foreign_partitions_matching(&table, filter).await,
            None => Ok(None),
        }
    }

    fn partitions_change_outside(&self, table: &Table) -> bool {
        self.foreign(&table.id).is_some()
    }

    async fn alter_partitions(&self, edit: &PartitionEdit) -> Result<PartitionChange, CatalogError> {
        self.alter(edit).await
    }

    async fn list_files(&self, table_id: &str) -> Result<Vec<DataFile>, CatalogError> {
        self.side.list_files(table_id).await
    }

    async fn begin_write(&self, write: &PendingWrite) -> Result<(), CatalogError> {
        self.side.begin_write(write).await
    }

    async fn commit_write(&self, commit: &WriteCommit) -> Result<(), CatalogError> {
        self.commit(commit).await
    }

    async fn end_write(&self, write_id: &str) -> Result<(), CatalogError> {
        self.side.end_write(write_id).await
    }

    async fn write_pending(&self, write_id: &str) -> Result<bool, CatalogError> {
        self.side.write_pending(write_id).await
    }

    async fn pending_writes(&self) -> Result<Vec<PendingWrite>, CatalogError> {
        self.side.pending_writes().await
    }

    async fn due_garbage(&self, now_unix: u64) -> Result<Vec<Garbage>, CatalogError> {
        self.side.due_garbage(now_unix).await
    }

    async fn forget_garbage(&self, paths: &[String]) -> Result<(), CatalogError> {
        self.side.forget_garbage(paths).await
    }

    async fn load_access(&self) -> Result<crate::access::AccessSnapshot, CatalogError> {
        self.side.load_access().await
    }

    async fn change_access(&self, changes: &[crate::access::AccessChange]) -> Result<(), CatalogError> {
        self.side.change_access(changes).await
    }

    async fn generation(&self) -> Result<Option<u64>, CatalogError> {
        self.fingerprint().await.map(Some)
    }

    fn shared(&self) -> bool {
        self.side.shared()
    }
}
