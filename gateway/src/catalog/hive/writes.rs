//! Changing the metastore: publishing Sluice's tables (the commit point of
//! a CTAS) and retracting them, mirroring their partitions, foreign tables'
//! partitions, and the access definitions a DROP leaves behind.

use hive_metastore as hms;
use pilota::FastStr;

use super::client::{Failure, storage};
use super::model::{self, SHADOW_DATABASE, named, renamed, shadow_name, shadow_of};
use super::{HiveMetastore, s};
use crate::catalog::{
    CatalogError, CommitKind, DataFile, Partition, PartitionChange, PartitionEdit, PendingWrite, Strictness, Table,
    WriteCommit,
};

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
            .map(|p| model::hive_partition(table, p))
            .collect::<Result<Vec<_>, _>>()?;
        let answer = self
            .hms
            .write("add_partitions_req", |c| {
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
            .write("drop_partition", |c| {
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
    /// its name: that is the commit point. With `replace`, one `alter_table`
    /// swaps the description of the Sluice table holding the name (the old
    /// incarnation's files become garbage, its grants stay with the name);
    /// another engine's table is never replaced. On failure the caller
    /// retracts the shadow.
    pub(super) async fn publish(
        &self,
        table: &Table,
        partitions: &[Partition],
        replace: bool,
        after: u64,
    ) -> Result<(), CatalogError> {
        let hive = model::hive_table(table)?;
        let existing = match replace {
            true => self.identify(&table.database, &table.name).await?,
            false => None,
        };
        let Some(existing) = existing else {
            self.create_hive(table, &hive).await?;
            self.mirror_partitions(table, partitions, &[]).await;
            return Ok(());
        };
        let model::Identity::Own(old) = existing else {
            return Err(CatalogError::WrongKind(table.qualified(), "another engine's table"));
        };
        if old.kind != table.kind {
            return Err(CatalogError::WrongKind(table.qualified(), old.kind.describe()));
        }
        let answer = self
            .hms
            .write("alter_table", |c| {
                let (db, name, hive) = (s(&table.database), s(&table.name), hive.clone());
                async move { c.alter_table(db, name, hive).await }
            })
            .await?;
        if let Err(f) = answer {
            // The metastore refuses some changes in place (partition keys):
            // the name is free for a moment while the table is replaced.
            tracing::info!(table = %table.qualified(), "replacing by drop and create: {}", f.message());
            self.drop_hive(&table.database, &table.name, false).await?;
            self.create_hive(table, &hive).await?;
        }
        if let Err(e) = self
            .side
            .drop_table(SHADOW_DATABASE, &shadow_name(&old.id), Some(&old.id), after)
            .await
        {
            tracing::warn!(table = %table.qualified(), "the replaced table's files were not made garbage: {e}");
        }
        // The old incarnation's partitions leave the metastore's description.
        let keep: std::collections::HashSet<&Vec<String>> = partitions.iter().map(|p| &p.values).collect();
        let stale: Vec<Vec<String>> = self
            .hive_partition_values(table)
            .await?
            .into_iter()
            .filter(|v| !keep.contains(v))
            .collect();
        self.mirror_partitions(table, partitions, &stale).await;
        Ok(())
    }

    /// The partition values the metastore lists for `table`.
    async fn hive_partition_values(&self, table: &Table) -> Result<Vec<Vec<String>>, CatalogError> {
        if table.partition_columns.is_empty() {
            return Ok(Vec::new());
        }
        Ok(match self.hive_partitions(table).await? {
            Ok(parts) => parts
                .into_iter()
                .map(|p| {
                    p.values
                        .unwrap_or_default()
                        .into_iter()
                        .map(|v| v.to_string())
                        .collect()
                })
                .collect(),
            Err(_) => Vec::new(),
        })
    }

    /// Creates `hive` in the metastore. After a transport error the table
    /// may have been created: it counts if the name now holds this id.
    pub(super) async fn create_hive(&self, table: &Table, hive: &hms::Table) -> Result<(), CatalogError> {
        let answer = self
            .hms
            .write("create_table", |c| {
                let hive = hive.clone();
                async move { c.create_table(hive).await }
            })
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                let now = self.hive_table(&table.database, &table.name).await?;
                if now.as_ref().and_then(model::id_param).as_deref() == Some(table.id.as_str()) {
                    return Ok(());
                }
                return Err(e);
            }
        };
        match answer {
            Ok(()) => Ok(()),
            Err(Failure::Exists(_)) => Err(CatalogError::TableExists(table.qualified())),
            Err(f) => {
                let known = self.database_names().await?;
                if !known.iter().any(|d| d.eq_ignore_ascii_case(&table.database)) {
                    return Err(CatalogError::DatabaseNotFound(table.database.clone()));
                }
                Err(storage("create_table", f))
            }
        }
    }

    /// Drops `db.name` from the metastore; `Ok(false)`: there was none.
    /// After a transport error it counts if the name is free.
    pub(super) async fn drop_hive(&self, db: &str, name: &str, delete_data: bool) -> Result<bool, CatalogError> {
        let answer = self
            .hms
            .write("drop_table", |c| async move {
                c.drop_table(s(db), s(name), delete_data).await
            })
            .await;
        match answer {
            Ok(Ok(())) => Ok(true),
            Ok(Err(Failure::NotFound(_))) => Ok(false),
            Ok(Err(f)) => Err(storage("drop_table", f)),
            Err(e) => match self.hive_table(db, name).await? {
                None => Ok(true),
                Some(_) => Err(e),
            },
        }
    }

    /// Whether `db.name` is another engine's managed table (its data goes
    /// when it is dropped, as in Hive).
    pub(super) async fn is_foreign_managed(&self, db: &str, name: &str) -> Result<bool, CatalogError> {
        Ok(self
            .hive_table(db, name)
            .await?
            .is_some_and(|t| t.table_type.as_deref() == Some("MANAGED_TABLE") && model::id_param(&t).is_none()))
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

    /// [`crate::catalog::Metastore::alter_partitions`]: a Sluice table's in the side store
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
        // Before and after: a query between them may cache the old list.
        self.partitions.invalidate_all();
        let result = self.alter_foreign(&table, edit).await;
        self.partitions.invalidate_all();
        result
    }

    async fn alter_foreign(&self, table: &Table, edit: &PartitionEdit) -> Result<PartitionChange, CatalogError> {
        let qualified = table.qualified();
        let mut change = PartitionChange::default();
        for values in &edit.drop {
            if self.drop_hive_partition(table, values).await? {
                change.dropped += 1;
            } else if edit.strictness == Strictness::Strict {
                return Err(CatalogError::PartitionNotFound(
                    qualified,
                    table.describe_partition(values),
                ));
            }
        }
        let lenient = edit.strictness == Strictness::Lenient;
        match self.add_hive_partitions(table, &edit.add, lenient).await? {
            Ok(n) => change.added += if lenient { n } else { edit.add.len() },
            Err(Failure::Exists(_)) => {
                let spec = edit
                    .add
                    .first()
                    .map(|p| table.describe_partition(&p.values))
                    .unwrap_or_default();
                return Err(CatalogError::PartitionExists(qualified, spec));
            }
            Err(f) => return Err(storage("add_partitions_req", f)),
        }
        Ok(change)
    }

    /// [`crate::catalog::Metastore::commit_write`] (see `ARCHITECTURE.md`, Hive Metastore catalog).
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
