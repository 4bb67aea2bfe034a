//! The audit trail: one JSON line per statement — who ran what, when, from
//! which address over which protocol, its outcome (SQLSTATE), the rows and
//! bytes it returned and how long it took — refused statements included.
//! Lines are appended to `--audit-log` by one writer task (statements never
//! wait on the disk) and read back as `system.audit` (superusers only, as
//! all of `system`). Passwords in the text (`PASSWORD '...'`) are replaced
//! before a line is written.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use async_trait::async_trait;
use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::Stream;
use serde::{Deserialize, Serialize};

use super::history::{End, History, Query};
use crate::error::QueryError;
use crate::session::Session;

/// Where a session's client is: its protocol and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub protocol: &'static str,
    pub peer: Option<IpAddr>,
}

impl ClientAddr {
    /// A session opened by the gateway itself (tests, demo data).
    pub const INTERNAL: ClientAddr = ClientAddr {
        protocol: "internal",
        peer: None,
    };
}

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Microseconds since the Unix epoch when the statement arrived.
    pub time_us: i64,
    pub user: String,
    pub protocol: String,
    pub client_addr: Option<String>,
    pub session_id: u64,
    pub statement: String,
    /// `ok`, `error`, or `incomplete` (the client stopped reading).
    pub outcome: String,
    pub sqlstate: String,
    /// The error the client was sent, if any.
    pub message: Option<String>,
    pub rows: u64,
    /// Bytes of Arrow data returned (before wire encoding).
    pub bytes: u64,
    pub duration_ms: f64,
}

/// Longest statement text kept in a record.
const MAX_STATEMENT: usize = 16 * 1024;

/// How long the writer lets records gather after a write: under load the
/// log is written a hundred times a second, not once per statement, and a
/// statement never wakes a thread.
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

enum Message {
    Record(Box<Record>),
    /// Answered once everything sent before it is in the file.
    Sync(tokio::sync::oneshot::Sender<()>),
}

/// The audit log: records go to a writer thread appending to one file.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: std::sync::mpsc::Sender<Message>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Record(_) => "Record",
            Message::Sync(_) => "Sync",
        })
    }
}

impl AuditLog {
    /// Appends to `path` (created mode 0600 if missing) from a background
    /// thread.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .await?
            .into_std()
            .await;
        let (tx, rx) = std::sync::mpsc::channel();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("sluice-audit".into())
            .spawn(move || write_records(file, &rx, &shown))?;
        Ok(AuditLog {
            tx,
            path: Arc::new(path.to_owned()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, record: Record) {
        // Fails only once the writer is gone (the process is ending).
        let _ = self.tx.send(Message::Record(Box::new(record)));
    }

    /// Returns once every record sent before is in the file.
    pub async fn sync(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Message::Sync(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The writer thread: everything queued goes out in one write, then
/// records gather for [`GATHER`]; it ends when every sender is gone.
fn write_records(mut file: std::fs::File, rx: &std::sync::mpsc::Receiver<Message>, shown: &str) {
    use std::io::Write;
    let mut buf = Vec::new();
    let mut synced = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while next.is_some() {
            buf.clear();
            while let Some(message) = next {
                match message {
                    Message::Record(record) => {
                        if serde_json::to_writer(&mut buf, &record).is_ok() {
                            buf.push(b'\n');
                        }
                    }
                    Message::Sync(done) => synced.push(done),
                }
                next = rx.try_recv().ok();
            }
            if let Err(e) = file.write_all(&buf) {
                tracing::error!(path = shown, "audit log write failed: {e}");
            }
            for done in synced.drain(..) {
                let _ = done.send(());
            }
            std::thread::sleep(GATHER);
            next = rx.try_recv().ok();
        }
    }
}

/// A statement under way: registered in the query history when it arrives,
/// ended (history, metrics and audit line) once, when its outcome is known
/// or when it is dropped unfinished (`abandoned` / audit `incomplete`).
#[derive(Debug)]
pub struct Pending {
    query: Arc<Query>,
    history: Arc<History>,
    log: Option<AuditLog>,
    done: bool,
}

impl Pending {
    /// Registers one statement of `session` (its text redacted).
    pub fn begin(history: &Arc<History>, log: Option<&AuditLog>, session: &Session, statement: &str) -> Pending {
        Pending {
            query: history.begin(session, redact(statement)),
            history: Arc::clone(history),
            log: log.cloned(),
            done: false,
        }
    }

    /// The query's entry in the history.
    pub fn query(&self) -> &Arc<Query> {
        &self.query
    }

    /// Ends the statement: `ok` with `rows`, or its error.
    pub fn finish(mut self, outcome: Result<u64, &QueryError>) {
        match outcome {
            Ok(rows) => {
                self.query.set_rows(rows);
                self.end(End::Finished, None);
            }
            Err(e) => self.end(End::of(e), Some(e)),
        }
    }

    fn end(&mut self, how: End, error: Option<&QueryError>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.history.end(&self.query, how, error);
        let Some(log) = &self.log else { return };
        let q = &self.query;
        log.write(Record {
            time_us: q.started.timestamp_micros(),
            user: q.user.clone(),
            protocol: q.protocol.to_owned(),
            client_addr: q.client_addr.clone(),
            session_id: q.session_id,
            statement: q.text.clone(),
            outcome: match how {
                End::Finished => "ok",
                End::Failed | End::Cancelled => "error",
                End::Abandoned => "incomplete",
            }
            .to_owned(),
            sqlstate: error.map_or("00000", QueryError::sqlstate).into(),
            message: error.map(|e| e.message.clone()),
            rows: q.rows(),
            bytes: q.bytes(),
            duration_ms: q.elapsed_s() * 1e3,
        });
    }

    /// Forgets the statement: it was not run (a query asked for in parts
    /// that runs in the gateway is run, and recorded, at its DoGet).
    pub fn withdraw(mut self) {
        self.done = true;
        self.history.withdraw(&self.query);
    }

    /// Counts what `stream` returns and ends the statement with the stream.
    pub fn stream(self, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        Box::pin(Audited {
            schema: stream.schema(),
            inner: stream,
            pending: self,
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.end(End::Abandoned, None);
    }
}

/// A result stream that ends its statement when it ends (or is dropped
/// before its end: abandoned).
struct Audited {
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    pending: Pending,
}

impl Stream for Audited {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = match std::task::ready!(self.inner.as_mut().poll_next(cx)) {
            Some(Ok(batch)) => {
                let bytes = batch
                    .columns()
                    .iter()
                    .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
                    .sum::<u64>();
                self.pending.query.add_output(batch.num_rows() as u64, bytes);
                Some(Ok(batch))
            }
            Some(Err(e)) => {
                // Classified once here; the client gets the same error back.
                let error = QueryError::from(e);
                self.pending.end(End::of(&error), Some(&error));
                Some(Err(datafusion::error::DataFusionError::External(Box::new(error))))
            }
            None => {
                self.pending.end(End::Finished, None);
                None
            }
        };
        Poll::Ready(item)
    }
}

impl RecordBatchStream for Audited {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// The statement with every `PASSWORD '...'` literal replaced.
pub fn redact(statement: &str) -> String {
    static PASSWORD: OnceLock<regex::Regex> = OnceLock::new();
    let re = PASSWORD.get_or_init(|| {
        regex::Regex::new(r"(?i)(\bpassword(?:\s+|\s*=\s*))(?:E?'(?:[^'\\]|''|\\.)*'?|\$\$.*?(?:\$\$|$))")
            .unwrap_or_else(|e| unreachable!("a fixed pattern: {e}"))
    });
    let mut out = re.replace_all(statement, "${1}'***'").into_owned();
    if out.len() > MAX_STATEMENT {
        let mut cut = MAX_STATEMENT;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// `system.audit`: the audit log's complete lines, read at each scan.
#[derive(Debug)]
pub struct AuditTable {
    log: AuditLog,
    schema: SchemaRef,
}

impl AuditTable {
    pub fn new(log: &AuditLog) -> Self {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("time", ts, false),
            Field::new("user_name", DataType::Utf8, false),
            Field::new("protocol", DataType::Utf8, false),
            Field::new("client_addr", DataType::Utf8, true),
            Field::new("session_id", DataType::UInt64, false),
            Field::new("statement", DataType::Utf8, false),
            Field::new("outcome", DataType::Utf8, false),
            Field::new("sqlstate", DataType::Utf8, false),
            Field::new("message", DataType::Utf8, true),
            Field::new("rows", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new("duration_ms", DataType::Float64, false),
        ]));
        AuditTable {
            log: log.clone(),
            schema,
        }
    }

    fn batch(&self, records: &[Record]) -> datafusion::error::Result<RecordBatch> {
        let text = |f: fn(&Record) -> &str| Arc::new(StringArray::from_iter_values(records.iter().map(f)));
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(records.iter().map(|r| r.time_us))
                        .with_timezone("+00:00"),
                ),
                text(|r| &r.user),
                text(|r| &r.protocol),
                Arc::new(StringArray::from_iter(records.iter().map(|r| r.client_addr.as_deref()))),
                Arc::new(UInt64Array::from_iter_values(records.iter().map(|r| r.session_id))),
                text(|r| &r.statement),
                text(|r| &r.outcome),
                text(|r| &r.sqlstate),
                Arc::new(StringArray::from_iter(records.iter().map(|r| r.message.as_deref()))),
                Arc::new(UInt64Array::from_iter_values(records.iter().map(|r| r.rows))),
                Arc::new(UInt64Array::from_iter_values(records.iter().map(|r| r.bytes))),
                Arc::new(Float64Array::from_iter_values(records.iter().map(|r| r.duration_ms))),
            ],
        )?)
    }
}

#[async_trait]
impl super::system::Rows for AuditTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn rows(&self) -> datafusion::error::Result<RecordBatch> {
        // The statements before this one are in the file first.
        self.log.sync().await;
        let text = match tokio::fs::read(self.log.path()).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(datafusion::error::DataFusionError::IoError(e)),
        };
        // Complete lines only: the writer may be half-way through one.
        let complete = &text[..text.iter().rposition(|b| *b == b'\n').unwrap_or(0)];
        let records: Vec<Record> = complete
            .split(|b| *b == b'\n')
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect();
        self.batch(&records)
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        for (sql, want) in [
            ("CREATE USER a PASSWORD 'x''y'", "CREATE USER a PASSWORD '***'"),
            (
                "alter role a with login password 'p' superuser",
                "alter role a with login password '***' superuser",
            ),
            (
                "CREATE USER a PASSWORD E'a\\'b' LOGIN",
                "CREATE USER a PASSWORD '***' LOGIN",
            ),
            ("ALTER USER a PASSWORD $$secret$$", "ALTER USER a PASSWORD '***'"),
            ("CREATE USER a PASSWORD 'unterminated", "CREATE USER a PASSWORD '***'"),
            ("SELECT 'password' AS c", "SELECT 'password' AS c"),
        ] {
            assert_eq!(redact(sql), want, "{sql}");
        }
        let long = "x".repeat(super::MAX_STATEMENT + 10);
        assert!(redact(&long).len() <= super::MAX_STATEMENT + 3);
    }
}
