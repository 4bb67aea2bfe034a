//! Changing the metastore: publishing Sluice's tables (the commit point of
//! a CTAS) and retracting them, mirroring their partitions, foreign tables'
//! partitions, and the access definitions a DROP leaves behind.

use hive_metastore as hms;
use pilota::FastStr;

use super::client::{Failure, storage};
use super::model::{self, SHADOW_DATABASE, describe, named, renamed, shadow_name, shadow_of};
use super::{HiveMetastore, s};
use crate::catalog::{
    CatalogError, CommitKind, DataFile, Metastore, Partition, PartitionChange, PartitionEdit, PendingWrite, Strictness,
    Table, TableKind, WriteCommit,
};
use crate::hms::convert;

impl HiveMetastore {
    /// Adds partitions to the metastore's description of `table`.
    pub(super) async fn add_hive_partitions(
        &self,
        table: &Table,
        partitions: &[Partition],
        if_not_exists: bool,
    ) -> Result<Result<usize, Failure>, CatalogError> {
        if partitions.is_empty() || table.partition_columns.is_empty() {
            return Ok(Ok(0));
        }
        let parts = partitions
            .iter()
            .map(|p| convert::partition(table, p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CatalogError::Corrupt(table.qualified(), e.to_string()))?;
        let answer = self
            .hms
            .call("add_partitions_req", |c| {
                let request = hms::AddPartitionsRequest {
                    db_name: s(&table.database),
                    tbl_name: s(&table.name),
                    parts: parts.clone(),
                    if_not_exists,
                    need_result: Some(true),
                    cat_name: None,
                };
                async move { c.add_partitions_req(request).await }
            })
            .await?;
        Ok(answer.map(|r| r.partitions.map_or(0, |p| p.len())))
    }

    /// Drops one partition from the metastore (its files stay: whoever
    /// owns them deletes them). `Ok(false)`: there was none.
    pub(super) async fn drop_hive_partition(&self, table: &Table, values: &[String]) -> Result<bool, CatalogError> {
        let answer = self
            .hms
            .call("drop_partition", |c| {
                let values: Vec<FastStr> = values.iter().map(|v| s(v)).collect();
                async move {
                    c.drop_partition(s(&table.database), s(&table.name), values, false)
                        .await
                }
            })
            .await?;
        match answer {
            Ok(_) => Ok(true),
            Err(Failure::NotFound(_)) => Ok(false),
            Err(f) => Err(storage("drop_partition", f)),
        }
    }

    /// Mirrors a change of a Sluice table's partitions to the metastore, for
    /// other engines (the side store is what Sluice reads).
    pub(super) async fn mirror_partitions(&self, table: &Table, add: &[Partition], drop: &[Vec<String>]) {
        let result = async {
            if let Err(f) = self.add_hive_partitions(table, add, true).await? {
                return Err(storage("add_partitions_req", f));
            }
            for values in drop {
                self.drop_hive_partition(table, values).await?;
            }
            Ok::<_, CatalogError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(table = %table.qualified(), "partitions not mirrored to the Hive Metastore: {e}");
        }
    }

    /// Publishes `table` (whose shadow is in place) in the metastore under
    /// its name, replacing what holds the name when `replace`. On failure the
    /// caller retracts the shadow.
    pub(super) async fn publish(
        &self,
        table: &Table,
        partitions: &[Partition],
        replace: bool,
        after: u64,
    ) -> Result<(), CatalogError> {
        if replace && let Some(existing) = self.hive_table(&table.database, &table.name).await? {
            let shadows = self.shadows().await?;
            let kind = match model::sluice_table(&existing, &shadows) {
                Ok((t, _)) => t.kind,
                Err(_) => TableKind::External,
            };
            if kind != table.kind {
                return Err(CatalogError::WrongKind(table.qualified(), kind.describe()));
            }
            self.drop_table(&table.database, &table.name, None, after).await?;
        }
        let hive = model::hive_table(table)?;
        let answer = self
            .hms
            .call("create_table", |c| {
                let hive = hive.clone();
                async move { c.create_table(hive).await }
            })
            .await?;
        match answer {
            Ok(()) => {}
            Err(Failure::Exists(_)) => return Err(CatalogError::TableExists(table.qualified())),
            Err(f) => {
                let known = self.database_names().await?;
                if !known.iter().any(|d| d.eq_ignore_ascii_case(&table.database)) {
                    return Err(CatalogError::DatabaseNotFound(table.database.clone()));
                }
                return Err(storage("create_table", f));
            }
        }
        self.mirror_partitions(table, partitions, &[]).await;
        Ok(())
    }

    /// Undoes a shadow whose table could not be published: gone without
    /// garbage (its files belong to the failed write, which is pending
    /// again and cleaned up by its writer).
    pub(super) async fn retract(&self, table: &Table, files: &[DataFile], pending: Option<PendingWrite>) {
        let result = async {
            self.side
                .drop_table(SHADOW_DATABASE, &shadow_name(&table.id), Some(&table.id), 0)
                .await?;
            let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
            self.side.forget_garbage(&paths).await?;
            if let Some(p) = pending {
                self.side.begin_write(&p).await?;
            }
            Ok::<_, CatalogError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(table = %table.qualified(), "cannot retract the side store's copy of an unpublished table: {e}");
        }
    }

    /// Removes what was granted or defined on a table (`Some`) or on a
    /// schema and everything in it, after its DROP. (The side store does
    /// this in the DROP's own transaction for its own names.)
    pub(super) async fn forget_access(&self, database: &str, table: Option<&str>) -> Result<(), CatalogError> {
        use crate::access::AccessChange;
        let on = |db: &str, t: &str| db == database && table.is_none_or(|table| t == table);
        let access = self.side.load_access().await?;
        let mut changes = Vec::new();
        let grants: Vec<_> = access
            .grants
            .iter()
            .filter(|g| on(&g.database, &g.table))
            .cloned()
            .collect();
        if !grants.is_empty() {
            changes.push(AccessChange::Revoke(grants));
        }
        for p in access.policies.iter().filter(|p| on(&p.database, &p.table)) {
            changes.push(AccessChange::DropPolicy {
                database: p.database.clone(),
                table: p.table.clone(),
                name: p.name.clone(),
            });
        }
        for m in access.masks.iter().filter(|m| on(&m.database, &m.table)) {
            changes.push(AccessChange::DropMask {
                database: m.database.clone(),
                table: m.table.clone(),
                column: m.column.clone(),
                role: m.role.clone(),
            });
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.side.change_access(&changes).await
    }

    /// The shadow of the Sluice table `id` that is `database.name` now.
    pub(super) async fn live_shadow(&self, database: &str, name: &str, id: &str) -> Result<Table, CatalogError> {
        let qualified = format!("{database}.{name}");
        if self.current_id(database, name).await?.as_deref() != Some(id) {
            return Err(CatalogError::TableChanged(qualified));
        }
        self.shadows()
            .await?
            .remove(id)
            .ok_or(CatalogError::TableChanged(qualified))
    }

    /// [`Metastore::alter_partitions`]: a Sluice table's in the side store
    /// (mirrored), a foreign table's in the metastore.
    pub(super) async fn alter(&self, edit: &PartitionEdit) -> Result<PartitionChange, CatalogError> {
        let qualified = format!("{}.{}", edit.database, edit.name);
        if self.current_id(&edit.database, &edit.name).await?.as_deref() != Some(edit.table_id.as_str()) {
            return Err(CatalogError::TableChanged(qualified));
        }
        let Some(table) = self.foreign(&edit.table_id) else {
            let shadow = self.live_shadow(&edit.database, &edit.name, &edit.table_id).await?;
            let change = self
                .side
                .alter_partitions(&PartitionEdit {
                    database: SHADOW_DATABASE.into(),
                    name: shadow.name.clone(),
                    ..edit.clone()
                })
                .await
                .map_err(|e| renamed(e, &shadow, &edit.database, &edit.name))?;
            let table = named(&shadow, &edit.database, &edit.name);
            self.mirror_partitions(&table, &edit.add, &edit.drop).await;
            return Ok(change);
        };
        self.partitions.invalidate_all();
        let mut change = PartitionChange::default();
        for values in &edit.drop {
            if self.drop_hive_partition(&table, values).await? {
                change.dropped += 1;
            } else if edit.strictness == Strictness::Strict {
                return Err(CatalogError::PartitionNotFound(qualified, describe(&table, values)));
            }
        }
        let lenient = edit.strictness == Strictness::Lenient;
        match self.add_hive_partitions(&table, &edit.add, lenient).await? {
            Ok(n) => change.added += if lenient { n } else { edit.add.len() },
            Err(Failure::Exists(_)) => {
                let spec = edit
                    .add
                    .first()
                    .map(|p| describe(&table, &p.values))
                    .unwrap_or_default();
                return Err(CatalogError::PartitionExists(qualified, spec));
            }
            Err(f) => return Err(storage("add_partitions_req", f)),
        }
        Ok(change)
    }

    /// [`Metastore::commit_write`] (see `ARCHITECTURE.md`, Hive Metastore catalog).
    pub(super) async fn commit(&self, commit: &WriteCommit) -> Result<(), CatalogError> {
        match &commit.kind {
            CommitKind::Create { table, replace } => {
                let pending = self
                    .side
                    .pending_writes()
                    .await?
                    .into_iter()
                    .find(|p| p.write_id == commit.write_id);
                self.side
                    .commit_write(&WriteCommit {
                        kind: CommitKind::Create {
                            table: Box::new(shadow_of(table)),
                            replace: false,
                        },
                        ..commit.clone()
                    })
                    .await?;
                if let Err(e) = self
                    .publish(table, &commit.partitions, *replace, commit.garbage_after_unix)
                    .await
                {
                    self.retract(table, &commit.files, pending).await;
                    return Err(e);
                }
                Ok(())
            }
            CommitKind::Append {
                database,
                name,
                table_id,
            }
            | CommitKind::Overwrite {
                database,
                name,
                table_id,
                ..
            } => {
                let shadow = self.live_shadow(database, name, table_id).await?;
                let kind = match &commit.kind {
                    CommitKind::Overwrite {
                        expected_version,
                        partitions,
                        ..
                    } => CommitKind::Overwrite {
                        database: SHADOW_DATABASE.into(),
                        name: shadow.name.clone(),
                        table_id: table_id.clone(),
                        expected_version: *expected_version,
                        partitions: partitions.clone(),
                    },
                    _ => CommitKind::Append {
                        database: SHADOW_DATABASE.into(),
                        name: shadow.name.clone(),
                        table_id: table_id.clone(),
                    },
                };
                self.side
                    .commit_write(&WriteCommit { kind, ..commit.clone() })
                    .await
                    .map_err(|e| renamed(e, &shadow, database, name))?;
                self.mirror_partitions(&named(&shadow, database, name), &commit.partitions, &[])
                    .await;
                Ok(())
            }
        }
    }
}
