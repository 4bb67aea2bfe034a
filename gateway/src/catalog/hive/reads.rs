//! Reading the metastore: databases, tables, foreign tables' partitions
//! (cached for the poll interval) and the fingerprint of what other engines
//! change.

use std::collections::HashMap;
use std::sync::Arc;

use hive_metastore as hms;
use sha2::Digest;

use super::client::{Failure, storage};
use super::model::{self, SHADOW_DATABASE};
use super::{FULL_RELOAD, HiveMetastore, s};
use crate::catalog::{CatalogError, Partition, Table};
use crate::hms::convert;

/// Tables fetched per `get_table_objects_by_name`.
const TABLES_PER_CALL: usize = 100;

impl HiveMetastore {
    pub(super) fn foreign(&self, id: &str) -> Option<Arc<Table>> {
        self.foreign.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// Shadows in the side store by table id.
    pub(super) async fn shadows(&self) -> Result<HashMap<String, Table>, CatalogError> {
        Ok(self
            .side
            .list_tables()
            .await?
            .into_iter()
            .filter(|t| t.database == SHADOW_DATABASE)
            .map(|t| (t.id.clone(), t))
            .collect())
    }

    pub(super) async fn database_names(&self) -> Result<Vec<String>, CatalogError> {
        let names = self
            .hms
            .read("get_all_databases", |c| async move { c.get_all_databases().await })
            .await?
            .map_err(|f| storage("get_all_databases", f))?;
        Ok(names.into_iter().map(|n| n.to_string()).collect())
    }

    /// The tables of `db` as the metastore describes them (`None`: no such database).
    pub(super) async fn hive_tables(&self, db: &str) -> Result<Option<Vec<hms::Table>>, CatalogError> {
        let names = match self
            .hms
            .read("get_all_tables", |c| async move { c.get_all_tables(s(db)).await })
            .await?
        {
            Ok(names) => names,
            Err(Failure::NotFound(_)) => return Ok(None),
            Err(f) => return Err(storage("get_all_tables", f)),
        };
        if names.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut tables = Vec::with_capacity(names.len());
        // In batches: a database of thousands of tables is not one message.
        for batch in names.chunks(TABLES_PER_CALL) {
            match self
                .hms
                .read("get_table_objects_by_name", |c| {
                    let names = batch.to_vec();
                    async move { c.get_table_objects_by_name(s(db), names).await }
                })
                .await?
            {
                Ok(some) => tables.extend(some),
                Err(Failure::NotFound(_)) => return Ok(None),
                Err(f) => return Err(storage("get_table_objects_by_name", f)),
            }
        }
        Ok(Some(tables))
    }

    pub(super) async fn hive_table(&self, db: &str, name: &str) -> Result<Option<hms::Table>, CatalogError> {
        match self
            .hms
            .read("get_table", |c| async move { c.get_table(s(db), s(name)).await })
            .await?
        {
            Ok(t) => Ok(Some(t)),
            Err(Failure::NotFound(_)) => Ok(None),
            Err(f) => Err(storage("get_table", f)),
        }
    }

    /// What holds `db.name` now.
    pub(super) async fn identify(&self, db: &str, name: &str) -> Result<Option<model::Identity>, CatalogError> {
        let Some(t) = self.hive_table(db, name).await? else {
            return Ok(None);
        };
        let mut shadows = self.shadows().await?;
        if model::unknown_sluice_table(&t, &shadows) {
            // Published by a CTAS after the shadows were read: read again.
            shadows = self.shadows().await?;
        }
        Ok(Some(model::identify(&t, &shadows)))
    }

    /// The Sluice id of the table holding `db.name` now.
    pub(super) async fn current_id(&self, db: &str, name: &str) -> Result<Option<String>, CatalogError> {
        Ok(self.identify(db, name).await?.and_then(|i| i.id().map(str::to_owned)))
    }

    pub(super) fn warn_once(&self, table: &str, why: &str) {
        if self
            .warned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.to_owned())
        {
            tracing::warn!(table, "not readable from the Hive Metastore, skipped: {why}");
        }
    }

    /// All partitions of a foreign table (cached for the poll interval).
    pub(super) async fn foreign_partitions(&self, table: &Table) -> Result<Vec<Partition>, CatalogError> {
        let key = (table.id.clone(), String::new());
        if let Some(hit) = self.partitions.get(&key).await {
            return Ok(hit.as_ref().clone());
        }
        let parts = match self.hive_partitions(table).await? {
            Ok(parts) => self.readable(table, &parts),
            Err(Failure::NotFound(_)) => Vec::new(),
            Err(f) => return Err(storage("get_partitions", f)),
        };
        self.partitions.insert(key, Arc::new(parts.clone())).await;
        Ok(parts)
    }

    /// Every partition the metastore lists for `table`.
    pub(super) async fn hive_partitions(
        &self,
        table: &Table,
    ) -> Result<Result<Vec<hms::Partition>, Failure>, CatalogError> {
        self.hms
            .read("get_partitions", |c| {
                let (db, name) = (s(&table.database), s(&table.name));
                async move { c.get_partitions(db, name, -1).await }
            })
            .await
    }

    /// The partitions of a foreign table the metastore chose by `filter`;
    /// `None` when it cannot evaluate the filter.
    pub(super) async fn foreign_partitions_matching(
        &self,
        table: &Table,
        filter: &str,
    ) -> Result<Option<Vec<Partition>>, CatalogError> {
        let key = (table.id.clone(), filter.to_owned());
        if let Some(hit) = self.partitions.get(&key).await {
            return Ok(Some(hit.as_ref().clone()));
        }
        let answer = self
            .hms
            .read("get_partitions_by_filter", |c| {
                let (db, name, filter) = (s(&table.database), s(&table.name), s(filter));
                async move { c.get_partitions_by_filter(db, name, filter, -1).await }
            })
            .await?;
        let parts = match answer {
            Ok(parts) => self.readable(table, &parts),
            Err(Failure::NotFound(_)) => Vec::new(),
            // The metastore cannot evaluate this filter (a column type it
            // does not push down): the reader prunes the whole list.
            Err(f) => {
                tracing::debug!(table = %table.qualified(), filter, "the metastore refused a partition filter: {}", f.message());
                return Ok(None);
            }
        };
        tracing::debug!(table = %table.qualified(), filter, partitions = parts.len(), "partitions chosen by the Hive Metastore");
        self.partitions.insert(key, Arc::new(parts.clone())).await;
        Ok(Some(parts))
    }

    /// A fingerprint of what other engines may change (see the module docs).
    pub(super) async fn fingerprint(&self) -> Result<u64, CatalogError> {
        let mut h = sha2::Sha256::new();
        for db in self.database_names().await? {
            h.update(db.as_bytes());
            h.update([0]);
        }
        let tables = self
            .hms
            .read("get_table_meta", |c| async move {
                c.get_table_meta(s("*"), s("*"), Vec::new()).await
            })
            .await?
            .map_err(|f| storage("get_table_meta", f))?;
        let mut names: Vec<String> = tables
            .iter()
            .map(|t| format!("{}.{}:{}", t.db_name, t.table_name, t.table_type))
            .collect();
        names.sort();
        for n in names {
            h.update(n.as_bytes());
            h.update([0]);
        }
        let event = self
            .hms
            .read_plain("get_current_notificationEventId", |c| async move {
                c.get_current_notification_event_id().await
            })
            .await
            .map_or(0, |e| e.event_id);
        h.update(event.to_le_bytes());
        h.update(self.side.generation().await?.unwrap_or(0).to_le_bytes());
        h.update((crate::catalog::unix_now() / FULL_RELOAD).to_le_bytes());
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Ok(u64::from_le_bytes(first))
    }

    /// The partitions of a foreign table that Sluice can read.
    pub(super) fn readable(&self, table: &Table, parts: &[hms::Partition]) -> Vec<Partition> {
        parts
            .iter()
            .filter_map(|p| match convert::new_partition(table, p) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.warn_once(&table.qualified(), &e.to_string());
                    None
                }
            })
            .collect()
    }
}
