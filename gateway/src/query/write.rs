//! Writes query results as Parquet files of a managed table, on any object
//! store: Hive-style `key=value` directories for partition columns, file
//! names carrying the write id (`part-<write>-<n>.<codec>.parquet`).
//!
//! Memory and file handles stay bounded however many partitions a write
//! touches: at most [`WriteSettings::max_open_files`] files are open at once
//! (the least recently used is finished to make room, and a later row of its
//! partition starts a new file), each buffers at most one row group of
//! [`ROW_GROUP_BYTES`], and a file is rolled over at
//! [`WriteSettings::target_file_bytes`].
//!
//! This module only writes files; `super::managed` decides when they become
//! part of a table. [`TableWriter::abort`] deletes every file it started.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{CastOptions, cast_with_options, take};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::catalog::{DataFile, NULL_PARTITION};
use crate::error::{ErrorKind, QueryError};

const STRICT: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: FormatOptions::new(),
};

/// Buffered bytes of one open file before its row group is flushed.
pub const ROW_GROUP_BYTES: usize = 32 << 20;

/// Compression of written Parquet files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Zstd,
    Snappy,
    Uncompressed,
}

impl Codec {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "zstd" => Some(Codec::Zstd),
            "snappy" => Some(Codec::Snappy),
            "none" | "uncompressed" => Some(Codec::Uncompressed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Snappy => "snappy",
            Codec::Uncompressed => "none",
        }
    }

    fn parquet(self) -> Compression {
        match self {
            Codec::Zstd => Compression::ZSTD(ZstdLevel::default()),
            Codec::Snappy => Compression::SNAPPY,
            Codec::Uncompressed => Compression::UNCOMPRESSED,
        }
    }
}

/// How managed-table files are written (config defaults, per-table
/// properties override compression and row-group size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSettings {
    pub codec: Codec,
    /// Most rows in one row group.
    pub row_group_rows: usize,
    /// Files open at once in one write.
    pub max_open_files: usize,
    /// A file is finished once it holds this many bytes.
    pub target_file_bytes: usize,
}

impl Default for WriteSettings {
    fn default() -> Self {
        WriteSettings {
            codec: Codec::Zstd,
            row_group_rows: 1 << 20,
            max_open_files: 64,
            target_file_bytes: 256 << 20,
        }
    }
}

fn io_err(what: &str, e: impl std::fmt::Display) -> QueryError {
    QueryError::new(ErrorKind::Internal, format!("{what}: {e}"))
}

/// Escapes a partition value for a directory name (Hive's escaping).
pub fn escape_partition_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c.is_control() || "\"#%'*/:=?\\\x7f{[]^".contains(c) {
            for b in c.to_string().bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The directory names of a partition (`k=escaped(v)`).
pub fn partition_dirs(cols: &[String], values: &[String]) -> Vec<String> {
    cols.iter()
        .zip(values)
        .map(|(c, v)| format!("{c}={}", escape_partition_value(v)))
        .collect()
}

struct OpenFile {
    writer: AsyncArrowWriter<BufWriter>,
    url: String,
    rows: u64,
    /// Use counter value at last write (least recently used is closed first).
    last_use: u64,
}

/// Files of one write in progress.
pub struct TableWriter {
    store: Arc<dyn ObjectStore>,
    /// The table's directory URL (as stored in the catalog).
    table_url: url::Url,
    write_id: String,
    partition_cols: Vec<String>,
    table_schema: SchemaRef,
    file_schema: SchemaRef,
    props: WriterProperties,
    settings: WriteSettings,
    open: BTreeMap<Vec<String>, OpenFile>,
    /// Every object this write started, for [`TableWriter::abort`].
    started: Vec<Path>,
    done: Vec<DataFile>,
    seq: usize,
    uses: u64,
    rows: u64,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("table_url", &self.table_url.as_str())
            .field("write_id", &self.write_id)
            .field("open", &self.open.len())
            .finish()
    }
}

/// What a finished write produced.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub rows: u64,
    pub files: Vec<DataFile>,
}

impl WriteOutcome {
    /// Distinct partitions written to.
    pub fn partitions(&self) -> Vec<Vec<String>> {
        let mut p: Vec<Vec<String>> = self.files.iter().map(|f| f.partition.clone()).collect();
        p.sort();
        p.dedup();
        p
    }
}

impl TableWriter {
    /// A writer of files under `table_url` (a directory URL) in `store`.
    /// `table_schema` is the table's: data columns, then `partition_cols`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        table_url: url::Url,
        write_id: &str,
        table_schema: SchemaRef,
        partition_cols: &[String],
        settings: WriteSettings,
    ) -> Self {
        let n_data = table_schema.fields().len() - partition_cols.len();
        let file_schema = Arc::new(Schema::new(table_schema.fields()[..n_data].to_vec()));
        let props = WriterProperties::builder()
            .set_compression(settings.codec.parquet())
            .set_max_row_group_row_count(Some(settings.row_group_rows.max(1)))
            .build();
        TableWriter {
            store,
            table_url,
            write_id: write_id.to_owned(),
            partition_cols: partition_cols.to_vec(),
            table_schema,
            file_schema,
            props,
            settings,
            open: BTreeMap::new(),
            started: Vec::new(),
            done: Vec::new(),
            seq: 0,
            uses: 0,
            rows: 0,
        }
    }

    /// Writes the whole stream; on error the caller must [`Self::abort`].
    /// The input runs in its own task, a couple of batches ahead, so
    /// producing rows (decoding COPY data, running the query) and encoding
    /// Parquet use two cores.
    pub async fn write_stream(&mut self, input: SendableRecordBatchStream) -> Result<(), QueryError> {
        let mut input = datafusion::physical_plan::common::spawn_buffered(input, 2);
        while let Some(batch) = input.next().await {
            let batch = conform(batch?, &self.table_schema)?;
            if batch.num_rows() > 0 {
                self.write(batch).await?;
            }
        }
        Ok(())
    }

    /// Writes one batch in table-schema order.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), QueryError> {
        self.rows += batch.num_rows() as u64;
        for (key, part) in self.split(batch)? {
            self.write_part(key, part).await?;
        }
        Ok(())
    }

    fn split(&self, batch: RecordBatch) -> Result<Vec<(Vec<String>, RecordBatch)>, QueryError> {
        let n_data = self.file_schema.fields().len();
        let data = batch
            .project(&(0..n_data).collect::<Vec<_>>())
            .map_err(|e| io_err("project", e))?;
        if self.partition_cols.is_empty() {
            return Ok(vec![(Vec::new(), data)]);
        }
        let options = FormatOptions::default();
        let formatters = (n_data..batch.num_columns())
            .map(|i| ArrayFormatter::try_new(batch.column(i).as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io_err("format partition value", e))?;
        let mut groups: BTreeMap<Vec<String>, Vec<u32>> = BTreeMap::new();
        for row in 0..batch.num_rows() {
            let key = (n_data..batch.num_columns())
                .zip(&formatters)
                .map(|(i, f)| {
                    if batch.column(i).is_null(row) {
                        NULL_PARTITION.to_owned()
                    } else {
                        f.value(row).to_string()
                    }
                })
                .collect();
            groups.entry(key).or_default().push(row as u32);
        }
        groups
            .into_iter()
            .map(|(key, rows)| {
                let indices = UInt32Array::from(rows);
                let columns = data
                    .columns()
                    .iter()
                    .map(|c| take(c.as_ref(), &indices, None))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| io_err("split partition", e))?;
                let part = RecordBatch::try_new(data.schema(), columns).map_err(|e| io_err("split partition", e))?;
                Ok((key, part))
            })
            .collect()
    }

    async fn write_part(&mut self, key: Vec<String>, batch: RecordBatch) -> Result<(), QueryError> {
        if !self.open.contains_key(&key) {
            if self.open.len() >= self.settings.max_open_files.max(1)
                && let Some(lru) = self.open.iter().min_by_key(|(_, f)| f.last_use).map(|(k, _)| k.clone())
            {
                self.finish_file(&lru).await?;
            }
            self.open_file(&key)?;
        }
        self.uses += 1;
        let uses = self.uses;
        let file = self.open.get_mut(&key).ok_or_else(|| io_err("writer", "missing"))?;
        file.last_use = uses;
        file.rows += batch.num_rows() as u64;
        file.writer
            .write(&batch)
            .await
            .map_err(|e| io_err("write parquet", e))?;
        if file.writer.in_progress_size() >= ROW_GROUP_BYTES {
            file.writer.flush().await.map_err(|e| io_err("write parquet", e))?;
        }
        if file.writer.bytes_written() + file.writer.in_progress_size() >= self.settings.target_file_bytes {
            self.finish_file(&key).await?;
        }
        Ok(())
    }

    fn open_file(&mut self, key: &[String]) -> Result<(), QueryError> {
        self.seq += 1;
        let mut dirs = partition_dirs(&self.partition_cols, key);
        let name = format!(
            "part-{}-{:05}.{}.parquet",
            self.write_id,
            self.seq,
            self.settings.codec.name()
        );
        dirs.push(name);
        let url = crate::table::child_url(&self.table_url, &dirs);
        // child_url makes a directory URL; a file has no trailing slash. The
        // object path is derived from the URL exactly as readers derive it.
        let url = url.as_str().trim_end_matches('/').to_owned();
        let path = sluice_lake::store::resolve(&url, &Default::default())
            .map_err(|e| io_err("file location", e))?
            .path;
        let sink = BufWriter::new(Arc::clone(&self.store), path.clone());
        let writer = AsyncArrowWriter::try_new(sink, Arc::clone(&self.file_schema), Some(self.props.clone()))
            .map_err(|e| io_err("open parquet writer", e))?;
        self.started.push(path);
        self.open.insert(
            key.to_vec(),
            OpenFile {
                writer,
                url,
                rows: 0,
                last_use: self.uses,
            },
        );
        Ok(())
    }

    async fn finish_file(&mut self, key: &[String]) -> Result<(), QueryError> {
        let Some(mut file) = self.open.remove(key) else {
            return Ok(());
        };
        file.writer
            .finish()
            .await
            .map_err(|e| io_err("finish parquet file", e))?;
        self.done.push(DataFile {
            partition: key.to_vec(),
            path: file.url,
            size: file.writer.bytes_written() as u64,
            rows: file.rows,
        });
        Ok(())
    }

    /// Finishes every open file. The writer keeps its record of started
    /// files, so [`Self::abort`] still deletes them if the write is given up.
    pub async fn finish(&mut self) -> Result<WriteOutcome, QueryError> {
        let keys: Vec<Vec<String>> = self.open.keys().cloned().collect();
        for key in keys {
            self.finish_file(&key).await?;
        }
        Ok(WriteOutcome {
            rows: self.rows,
            files: self.done.clone(),
        })
    }

    /// Deletes every file this write started (finished or not) and aborts
    /// unfinished multipart uploads. Returns the objects that could not be
    /// deleted.
    pub async fn abort(mut self) -> Vec<Path> {
        for (_, file) in std::mem::take(&mut self.open) {
            let mut sink = file.writer.into_inner();
            if let Err(e) = sink.abort().await {
                tracing::debug!(file = %file.url, "aborting an unfinished upload: {e}");
            }
        }
        delete_all(&self.store, std::mem::take(&mut self.started)).await
    }
}

/// Deletes objects, treating those already gone as deleted. Returns the
/// paths that could not be deleted (their owners keep them on record and try
/// again later).
pub async fn delete_all(store: &Arc<dyn ObjectStore>, paths: Vec<Path>) -> Vec<Path> {
    let mut failed = Vec::new();
    for p in paths {
        match store.delete(&p).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(path = %p, "could not delete: {e}");
                failed.push(p);
            }
        }
    }
    failed
}

/// Casts a batch to `schema`'s types and names by position (used for table
/// writes and for Flight results, whose schema was announced up front).
pub(crate) fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, QueryError> {
    if batch.schema() == *schema {
        return Ok(batch);
    }
    if batch.num_columns() != schema.fields().len() {
        return Err(QueryError::new(
            ErrorKind::DataException,
            format!(
                "expected {} columns, got {}",
                schema.fields().len(),
                batch.num_columns()
            ),
        ));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                // Strict: a value that does not fit the column is an error,
                // never a silent NULL.
                cast_with_options(c, f.data_type(), &STRICT)
                    .map_err(|e| QueryError::new(ErrorKind::DataException, format!("column \"{}\": {e}", f.name())))
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| QueryError::new(ErrorKind::DataException, e.to_string()))
}

#[cfg(test)]
mod tests;
