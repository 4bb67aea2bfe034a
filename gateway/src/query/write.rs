//! Writes query results as a managed table's files: zstd-compressed Parquet,
//! Hive-style `key=value` directories for partition columns.
//!
//! Files are written under a private staging directory first and moved into
//! the table's location only when the whole stream has been written, so a
//! failed or cancelled write leaves nothing visible to readers.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{ErrorKind, QueryError};

/// Hive's name for a NULL partition value.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// What a write produced.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub rows: u64,
    pub files: usize,
    /// Values of each partition written to, in partition-column order.
    pub partitions: Vec<Vec<String>>,
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

struct Writers {
    staging: PathBuf,
    file_schema: SchemaRef,
    props: WriterProperties,
    write_id: String,
    open: BTreeMap<Vec<String>, ArrowWriter<File>>,
}

impl Writers {
    fn write(&mut self, key: Vec<String>, partition_cols: &[String], batch: RecordBatch) -> Result<(), QueryError> {
        if !self.open.contains_key(&key) {
            let mut dir = self.staging.clone();
            for (col, v) in partition_cols.iter().zip(&key) {
                dir.push(format!("{col}={}", escape_partition_value(v)));
            }
            std::fs::create_dir_all(&dir).map_err(|e| io_err("create staging directory", e))?;
            let path = dir.join(format!("part-{}.zstd.parquet", self.write_id));
            let file = File::create(&path).map_err(|e| io_err("create data file", e))?;
            let writer = ArrowWriter::try_new(file, Arc::clone(&self.file_schema), Some(self.props.clone()))
                .map_err(|e| io_err("open parquet writer", e))?;
            self.open.insert(key.clone(), writer);
        }
        let writer = self.open.get_mut(&key).ok_or_else(|| io_err("writer", "missing"))?;
        writer.write(&batch).map_err(|e| io_err("write parquet", e))
    }
}

/// Streams `input` (columns in `table_schema` order: data columns, then
/// partition columns) into new files of the table at `table_dir`.
pub async fn write_table(
    mut input: SendableRecordBatchStream,
    table_dir: &Path,
    staging_root: &Path,
    table_schema: SchemaRef,
    partition_cols: &[String],
) -> Result<WriteOutcome, QueryError> {
    let write_id = uuid::Uuid::new_v4().simple().to_string();
    let staging = staging_root.join(&write_id);
    std::fs::create_dir_all(&staging).map_err(|e| io_err("create staging directory", e))?;
    let result = async {
        let n_data = table_schema.fields().len() - partition_cols.len();
        let file_schema = Arc::new(Schema::new(table_schema.fields()[..n_data].to_vec()));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| io_err("zstd", e))?))
            .build();
        let mut writers = Writers {
            staging: staging.clone(),
            file_schema,
            props,
            write_id: write_id.clone(),
            open: BTreeMap::new(),
        };
        let mut rows = 0u64;
        while let Some(batch) = input.next().await {
            let batch = conform(batch?, &table_schema)?;
            rows += batch.num_rows() as u64;
            if batch.num_rows() == 0 {
                continue;
            }
            tokio::task::block_in_place(|| split_and_write(&mut writers, partition_cols, n_data, batch))?;
        }
        let partitions: Vec<Vec<String>> = writers.open.keys().cloned().collect();
        let files = writers.open.len();
        tokio::task::block_in_place(|| {
            for (_, w) in std::mem::take(&mut writers.open) {
                w.close().map_err(|e| io_err("finish parquet file", e))?;
            }
            Ok::<_, QueryError>(())
        })?;
        Ok(WriteOutcome {
            rows,
            files,
            partitions,
        })
    }
    .await;
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    // Commit: move every staged file into the table directory. Each rename is
    // atomic; a reader sees a file whole or not at all.
    let commit = publish(&staging, &staging, table_dir);
    let _ = std::fs::remove_dir_all(&staging);
    commit?;
    Ok(outcome)
}

fn publish(root: &Path, dir: &Path, table_dir: &Path) -> Result<(), QueryError> {
    std::fs::create_dir_all(table_dir).map_err(|e| io_err("create table directory", e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| io_err("read staging directory", e))? {
        let entry = entry.map_err(|e| io_err("read staging directory", e))?;
        let path = entry.path();
        let rel = path.strip_prefix(root).map_err(|e| io_err("staging path", e))?;
        if path.is_dir() {
            publish(root, &path, table_dir)?;
        } else {
            let target = table_dir.join(rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_err("create partition directory", e))?;
            }
            std::fs::rename(&path, &target).map_err(|e| io_err("publish data file", e))?;
        }
    }
    Ok(())
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
                cast(c, f.data_type())
                    .map_err(|e| QueryError::new(ErrorKind::DataException, format!("column \"{}\": {e}", f.name())))
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| QueryError::new(ErrorKind::DataException, e.to_string()))
}

fn split_and_write(
    writers: &mut Writers,
    partition_cols: &[String],
    n_data: usize,
    batch: RecordBatch,
) -> Result<(), QueryError> {
    let data = batch
        .project(&(0..n_data).collect::<Vec<_>>())
        .map_err(|e| io_err("project", e))?;
    if partition_cols.is_empty() {
        return writers.write(Vec::new(), partition_cols, data);
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
    for (key, rows) in groups {
        let indices = UInt32Array::from(rows);
        let columns = data
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io_err("split partition", e))?;
        let part = RecordBatch::try_new(data.schema(), columns).map_err(|e| io_err("split partition", e))?;
        writers.write(key, partition_cols, part)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_hive() {
        assert_eq!(escape_partition_value("a/b=c"), "a%2Fb%3Dc");
        assert_eq!(escape_partition_value("plain value"), "plain value");
    }
}
