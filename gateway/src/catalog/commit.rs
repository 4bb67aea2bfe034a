//! The types of the write commit protocol (see the module docs of
//! `crate::catalog`): committed files, pending writes, commits and the
//! garbage they leave.

use super::{Partition, Table};

/// A committed data file of a managed table.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFile {
    /// Values of the file's partition (empty for unpartitioned tables).
    pub partition: Vec<String>,
    /// Absolute URL of the file.
    pub path: String,
    pub size: u64,
    pub rows: u64,
}

/// A write under way: its files carry `write_id` in their names and live
/// under `location`.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingWrite {
    pub write_id: String,
    pub location: String,
    pub started_unix: u64,
}

/// What a committed write does to its table.
#[derive(Debug, Clone)]
pub enum CommitKind {
    /// CTAS / CREATE TABLE: the table appears with the write's files. With
    /// `replace`, an existing table of that name is replaced and its files
    /// become garbage.
    Create { table: Box<Table>, replace: bool },
    /// INSERT INTO: the files are added to table `table_id`.
    Append {
        database: String,
        name: String,
        table_id: String,
    },
    /// INSERT OVERWRITE: the files replace the table's files in `partitions`
    /// (all of them when `None`).
    /// The table must still be at `expected_version` (no write committed to
    /// it since this one started), or the commit fails: an overwrite must
    /// not discard rows it never saw.
    Overwrite {
        database: String,
        name: String,
        table_id: String,
        expected_version: u64,
        partitions: Option<Vec<Vec<String>>>,
    },
}

/// One atomic commit of a write.
#[derive(Debug, Clone)]
pub struct WriteCommit {
    pub write_id: String,
    pub kind: CommitKind,
    /// Partitions the files belong to, created if missing.
    pub partitions: Vec<Partition>,
    pub files: Vec<DataFile>,
    /// Files made garbage by this commit are deleted after this time.
    pub garbage_after_unix: u64,
}

/// Files to delete once their grace period has passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Garbage {
    pub path: String,
    pub delete_after_unix: u64,
}

/// How [`Metastore::alter_partitions`] treats partitions that already exist
/// (on add) or do not (on drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Error out.
    Strict,
    /// Skip them (`IF NOT EXISTS`, `IF EXISTS`, MSCK).
    Lenient,
}

/// What [`Metastore::alter_partitions`] changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionChange {
    pub added: usize,
    pub dropped: usize,
}

/// One change to a table's partitions: added and dropped together, on the
/// table incarnation `table_id` (else the change fails with
/// `TableChanged`). Dropped partitions' manifest files become garbage.
#[derive(Debug, Clone)]
pub struct PartitionEdit {
    pub database: String,
    pub name: String,
    pub table_id: String,
    pub add: Vec<Partition>,
    pub drop: Vec<Vec<String>>,
    pub strictness: Strictness,
    pub garbage_after_unix: u64,
}

impl PartitionEdit {
    /// An edit of `table` that changes nothing yet.
    pub fn of(table: &Table, strictness: Strictness, garbage_after_unix: u64) -> Self {
        PartitionEdit {
            database: table.database.clone(),
            name: table.name.clone(),
            table_id: table.id.clone(),
            add: Vec::new(),
            drop: Vec::new(),
            strictness,
            garbage_after_unix,
        }
    }
}
