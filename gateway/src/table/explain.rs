//! What a scan chose, for `EXPLAIN`: the gateway plans an EXPLAIN with a
//! [`ScanLog`] in the session config, every [`super::LakeTable`] scan writes
//! a [`ScanReport`] into it, and the EXPLAIN output gains one row per scan.

use std::sync::Mutex;

/// One lake table scan as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub table: String,
    pub partitions_chosen: usize,
    pub partitions_total: usize,
    pub files_chosen: usize,
    /// Known when every partition's files are in the manifest (managed
    /// tables); external tables list only the partitions they read.
    pub files_total: Option<usize>,
    /// The partition filters the choice was made with.
    pub filters: Vec<String>,
}

impl std::fmt::Display for ScanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: partitions {} of {}, files {}",
            self.table, self.partitions_chosen, self.partitions_total, self.files_chosen
        )?;
        match self.files_total {
            Some(total) => write!(f, " of {total}")?,
            None => write!(f, " (pruned partitions not listed)")?,
        }
        if !self.filters.is_empty() {
            write!(f, "; partition filters: {}", self.filters.join(" AND "))?;
        }
        Ok(())
    }
}

/// Collects the [`ScanReport`]s of one planning.
#[derive(Debug, Default)]
pub struct ScanLog(Mutex<Vec<ScanReport>>);

impl ScanLog {
    pub(super) fn push(&self, report: ScanReport) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(report);
    }

    /// The reports so far, in planning order.
    pub fn reports(&self) -> Vec<ScanReport> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
