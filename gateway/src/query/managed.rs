//! Writes to managed tables and their commit protocol (see the docs of
//! `crate::catalog`): CTAS, `CREATE OR REPLACE TABLE ... AS`, `INSERT INTO`,
//! `INSERT OVERWRITE`.
//!
//! 1. The write is recorded as pending in the catalog before any file is put.
//! 2. Files are written under the table's location with the write id in
//!    their names (`super::write`).
//! 3. One catalog commit makes them the table's (with the table itself for
//!    CTAS); what they replace becomes garbage, deleted after `--gc-grace`.
//!
//! A write that fails, is cancelled (its future dropped) or loses a race
//! (two CTAS of one name: the catalog lets one commit, the other gets
//! 42P07) deletes its own files and nothing else. After a crash, the
//! start-up sweep deletes the files of writes still pending.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use sluice_lake::store::{TableStoreOptions, resolve};
use tokio_util::sync::CancellationToken;

/// A write on a shared catalog pending for longer than this is taken for
/// one its gateway never finished (see [`ManagedTables::interrupted_writes`]).
pub const SHARED_WRITE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

use super::write::{TableWriter, WriteOutcome, WriteSettings, delete_all, partition_dirs};
use crate::catalog::{CatalogState, CommitKind, Partition, PendingWrite, Table, WriteCommit, new_id, unix_now};
use crate::error::{ErrorKind, QueryError};

/// Objects of one store to delete: the store and (path, URL) pairs.
type StoreBatch = (Arc<dyn ObjectStore>, Vec<(Path, String)>);

/// What a write does to its table.
#[derive(Debug, Clone)]
pub enum WriteMode {
    /// A new table (`replace`: replacing one of the same name).
    Create { table: Box<Table>, replace: bool },
    /// INSERT INTO.
    Append,
    /// INSERT OVERWRITE: the partitions written (or these, when the whole
    /// partition spec is static; the whole table when unpartitioned).
    Overwrite { static_partition: Option<Vec<String>> },
}

/// The managed-table writer of the gateway.
#[derive(Debug)]
pub struct ManagedTables {
    catalog: Arc<CatalogState>,
    runtime: Arc<RuntimeEnv>,
    settings: WriteSettings,
    gc_grace: Duration,
}

/// Deletes a write's files and forgets it unless it was committed — also
/// when the statement's future is dropped mid-write (cancel, disconnect).
struct WriteGuard {
    write_id: String,
    catalog: Arc<CatalogState>,
    writer: Option<TableWriter>,
}

impl WriteGuard {
    async fn abort(mut self) {
        if let Some(w) = self.writer.take() {
            end_unless_failed(&self.catalog, &self.write_id, w.abort().await).await;
        }
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        let (id, catalog) = (self.write_id.clone(), Arc::clone(&self.catalog));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let failed = writer.abort().await;
                end_unless_failed(&catalog, &id, failed).await;
            });
        }
    }
}

/// Forgets a write whose files are all gone; one with files left stays
/// pending so the next start-up sweep deletes them.
async fn end_unless_failed(catalog: &CatalogState, write_id: &str, failed: Vec<Path>) {
    if !failed.is_empty() {
        tracing::warn!(write = %write_id, files = failed.len(), "files of an abandoned write are left for the start-up sweep");
        return;
    }
    if let Err(e) = catalog.metastore().end_write(write_id).await {
        tracing::warn!(write = %write_id, "could not end an abandoned write (the start-up sweep will): {e}");
    }
}

impl ManagedTables {
    pub fn new(
        catalog: Arc<CatalogState>,
        runtime: Arc<RuntimeEnv>,
        settings: WriteSettings,
        gc_grace: Duration,
    ) -> Self {
        ManagedTables {
            catalog,
            runtime,
            settings,
            gc_grace,
        }
    }

    pub fn settings(&self) -> WriteSettings {
        self.settings
    }

    /// Unix time after which garbage made now may be deleted.
    pub fn garbage_after(&self) -> u64 {
        unix_now() + self.gc_grace.as_secs()
    }

    fn store_of(&self, location: &str) -> Result<(Arc<dyn ObjectStore>, url::Url, Path), QueryError> {
        let r = resolve(location, &TableStoreOptions::default())
            .map_err(|e| QueryError::new(ErrorKind::InvalidParameter, e.to_string()))?;
        let store = self.runtime.object_store(&r.store_url)?;
        let url = url::Url::parse(location)
            .map_err(|e| QueryError::new(ErrorKind::InvalidParameter, format!("location '{location}': {e}")))?;
        Ok((store, url, r.path))
    }

    /// Writes `input` into `table` (for [`WriteMode::Create`], the table to
    /// create) and commits it. Returns the rows written.
    pub async fn write(
        &self,
        table: &Table,
        mode: WriteMode,
        input: Option<SendableRecordBatchStream>,
        settings: WriteSettings,
    ) -> Result<u64, QueryError> {
        let location =
            table.locations.first().cloned().ok_or_else(|| {
                QueryError::new(ErrorKind::Internal, format!("{} has no location", table.qualified()))
            })?;
        let (store, url, _) = self.store_of(&location)?;
        let schema: SchemaRef = Arc::new(crate::catalog::provider::decode_schema(&table.arrow_schema)?);
        let write_id = new_id();
        self.catalog
            .metastore()
            .begin_write(&PendingWrite {
                write_id: write_id.clone(),
                location: location.clone(),
                started_unix: unix_now(),
            })
            .await?;
        let mut guard = WriteGuard {
            write_id: write_id.clone(),
            catalog: Arc::clone(&self.catalog),
            writer: Some(TableWriter::new(
                store,
                url.clone(),
                &write_id,
                schema,
                &table.partition_columns,
                settings,
            )),
        };
        let outcome = match self.fill(&mut guard, input).await {
            Ok(o) => o,
            Err(e) => {
                guard.abort().await;
                return Err(e);
            }
        };
        let rows = outcome.rows;
        let commit = self.commit_of(table, mode, &write_id, &url, outcome);
        // From here on the outcome must not depend on whether the statement
        // is still awaited: commit and clean up in a task of their own,
        // which now owns the written files.
        drop(guard.writer.take());
        let this = self.clone_handle();
        tokio::spawn(async move { this.commit(commit).await })
            .await
            .map_err(|e| QueryError::new(ErrorKind::Internal, format!("commit task failed: {e}")))??;
        Ok(rows)
    }

    fn clone_handle(&self) -> ManagedTables {
        ManagedTables {
            catalog: Arc::clone(&self.catalog),
            runtime: Arc::clone(&self.runtime),
            settings: self.settings,
            gc_grace: self.gc_grace,
        }
    }

    async fn commit(&self, commit: WriteCommit) -> Result<(), QueryError> {
        if let Err(e) = self.catalog.commit_write(&commit).await {
            // Delete the files only if the write is certainly not part of
            // the table: it is still pending (a commit removes that record
            // in the same transaction). A losing CTAS deletes only its own.
            match self.catalog.metastore().write_pending(&commit.write_id).await {
                Ok(true) => {
                    let files: Vec<String> = commit.files.iter().map(|f| f.path.clone()).collect();
                    let failed = self.delete_urls(files).await;
                    if failed.is_empty() {
                        let _ = self.catalog.metastore().end_write(&commit.write_id).await;
                    }
                }
                Ok(false) => {
                    tracing::warn!(write = %commit.write_id, "a commit reported an error but is not pending; its files stay")
                }
                Err(e2) => {
                    tracing::warn!(write = %commit.write_id, "cannot tell whether a failed commit is pending ({e2}); the start-up sweep decides")
                }
            }
            return Err(e.into());
        }
        if self.gc_grace.is_zero() {
            self.collect_garbage().await;
        }
        Ok(())
    }

    async fn fill(
        &self,
        guard: &mut WriteGuard,
        input: Option<SendableRecordBatchStream>,
    ) -> Result<WriteOutcome, QueryError> {
        let writer = guard
            .writer
            .as_mut()
            .ok_or_else(|| QueryError::new(ErrorKind::Internal, "no writer"))?;
        if let Some(input) = input {
            writer.write_stream(input).await?;
        }
        writer.finish().await
    }

    fn commit_of(
        &self,
        table: &Table,
        mode: WriteMode,
        write_id: &str,
        url: &url::Url,
        outcome: WriteOutcome,
    ) -> WriteCommit {
        let mut partitions: Vec<Partition> = outcome
            .partitions()
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|values| self.partition(table, url, values))
            .collect();
        let kind = match mode {
            WriteMode::Create { table, replace } => CommitKind::Create { table, replace },
            WriteMode::Append => CommitKind::Append {
                database: table.database.clone(),
                name: table.name.clone(),
                table_id: table.id.clone(),
            },
            WriteMode::Overwrite { static_partition } => {
                let expected_version = table.version;
                let scope = if table.partition_columns.is_empty() {
                    None
                } else if let Some(values) = static_partition {
                    if !partitions.iter().any(|p| p.values == values) {
                        partitions.push(self.partition(table, url, values.clone()));
                    }
                    Some(vec![values])
                } else {
                    Some(outcome.partitions())
                };
                CommitKind::Overwrite {
                    database: table.database.clone(),
                    name: table.name.clone(),
                    table_id: table.id.clone(),
                    expected_version,
                    partitions: scope,
                }
            }
        };
        WriteCommit {
            write_id: write_id.to_owned(),
            kind,
            partitions,
            files: outcome.files,
            garbage_after_unix: self.garbage_after(),
        }
    }

    fn partition(&self, table: &Table, url: &url::Url, values: Vec<String>) -> Partition {
        let dirs = partition_dirs(&table.partition_columns, &values);
        Partition {
            location: crate::table::child_url(url, &dirs).to_string(),
            values,
            listed: false,
        }
    }

    /// Deletes objects by URL; returns the URLs that could not be deleted.
    async fn delete_urls(&self, urls: Vec<String>) -> Vec<String> {
        let mut failed = Vec::new();
        // store name → (store, [(path, url)])
        let mut by_store: std::collections::BTreeMap<String, StoreBatch> = Default::default();
        for u in urls {
            match self.store_of(&u) {
                Ok((store, _, path)) => {
                    let key = format!("{store}");
                    by_store
                        .entry(key)
                        .or_insert_with(|| (store, Vec::new()))
                        .1
                        .push((path, u));
                }
                Err(e) => {
                    tracing::warn!(url = %u, "cannot delete: {e}");
                    failed.push(u);
                }
            }
        }
        for (_, (store, entries)) in by_store {
            let left = delete_all(&store, entries.iter().map(|(p, _)| p.clone()).collect()).await;
            failed.extend(entries.into_iter().filter(|(p, _)| left.contains(p)).map(|(_, u)| u));
        }
        failed
    }

    /// Deletes garbage whose grace period is over; what cannot be deleted
    /// now stays on record for the next round.
    pub async fn collect_garbage(&self) {
        let due = match self.catalog.metastore().due_garbage(unix_now()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("cannot read garbage: {e}");
                return;
            }
        };
        if due.is_empty() {
            return;
        }
        let paths: Vec<String> = due.into_iter().map(|g| g.path).collect();
        let failed = self.delete_urls(paths.clone()).await;
        let deleted: Vec<String> = paths.into_iter().filter(|p| !failed.contains(p)).collect();
        if let Err(e) = self.catalog.metastore().forget_garbage(&deleted).await {
            tracing::warn!("cannot forget deleted garbage: {e}");
        }
    }

    /// The writes a crash left pending. Read at start-up, before this
    /// gateway begins any write, so [`Self::sweep`] never touches its own.
    /// On a catalog shared with other gateways, their writes under way are
    /// pending too: only writes started over [`SHARED_WRITE_TIMEOUT`] ago
    /// are taken for interrupted there.
    pub async fn interrupted_writes(&self) -> Result<Vec<PendingWrite>, QueryError> {
        let metastore = self.catalog.metastore();
        let pending = metastore.pending_writes().await?;
        if !metastore.shared() {
            return Ok(pending);
        }
        let cutoff = unix_now().saturating_sub(SHARED_WRITE_TIMEOUT.as_secs());
        Ok(pending.into_iter().filter(|w| w.started_unix <= cutoff).collect())
    }

    /// Deletes the files of `writes` (interrupted by a crash) and forgets
    /// them; a write whose files cannot all be deleted now stays pending for
    /// the next start. Returns the files deleted.
    pub async fn sweep(&self, writes: Vec<PendingWrite>) -> usize {
        let mut deleted = 0;
        for w in writes {
            match self.sweep_one(&w).await {
                Ok(n) => {
                    deleted += n;
                    tracing::info!(write = %w.write_id, location = %w.location, files = n, "removed the files of an interrupted write");
                }
                Err(e) => {
                    tracing::warn!(write = %w.write_id, location = %w.location, "cannot sweep an interrupted write now: {e}")
                }
            }
        }
        self.collect_garbage().await;
        deleted
    }

    async fn sweep_one(&self, w: &PendingWrite) -> Result<usize, QueryError> {
        let (store, _, path) = self.store_of(&w.location)?;
        let marker = format!("part-{}-", w.write_id);
        let files: Vec<Path> = store
            .list(Some(&path))
            .try_filter(|m| futures::future::ready(m.location.filename().is_some_and(|n| n.starts_with(&marker))))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| QueryError::new(ErrorKind::Internal, format!("list {}: {e}", w.location)))?;
        let n = files.len();
        let failed = delete_all(&store, files).await;
        if !failed.is_empty() {
            return Err(QueryError::new(
                ErrorKind::Internal,
                format!("{} file(s) could not be deleted", failed.len()),
            ));
        }
        self.catalog.metastore().end_write(&w.write_id).await?;
        Ok(n)
    }

    /// Deletes due garbage every few seconds until `shutdown`.
    pub fn spawn_collector(self: &Arc<Self>, shutdown: CancellationToken) {
        let this = Arc::clone(self);
        let every = self.gc_grace.clamp(Duration::from_secs(1), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => this.collect_garbage().await,
                }
            }
        });
    }
}
