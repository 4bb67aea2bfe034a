//! Query history and control: every statement is registered when it
//! arrives and kept, once it ends, among the last `--query-history` ones.
//! `system.queries` lists them (running ones with their rows so far);
//! `sluice_cancel_query(id)` cancels one (its owner or a superuser); the
//! Prometheus statement metrics (by protocol and outcome) are counted here.
//!
//! A query id reads like Trino's: `20261207_031502_00042_k3x9q` (UTC start,
//! a sequence number, a random tail so ids differ across restarts).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::error::{ErrorKind, QueryError};
use crate::session::{Canceller, Session};

/// How a query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Finished,
    Failed,
    Cancelled,
    /// The client stopped reading before the last row.
    Abandoned,
}

impl End {
    /// How a statement that failed with `e` ended.
    pub fn of(e: &QueryError) -> End {
        match e.kind {
            ErrorKind::Cancelled | ErrorKind::AdminShutdown => End::Cancelled,
            _ => End::Failed,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            End::Finished => "finished",
            End::Failed => "failed",
            End::Cancelled => "cancelled",
            End::Abandoned => "abandoned",
        }
    }
}

#[derive(Debug, Clone)]
struct Ended {
    how: End,
    at: DateTime<Utc>,
    duration_s: f64,
    error: Option<String>,
    sqlstate: String,
}

/// One statement, running or ended.
#[derive(Debug)]
pub struct Query {
    pub id: String,
    pub user: String,
    pub protocol: &'static str,
    pub client_addr: Option<String>,
    pub session_id: u64,
    pub text: String,
    pub started: DateTime<Utc>,
    clock: Instant,
    canceller: Canceller,
    rows: AtomicU64,
    bytes: AtomicU64,
    reruns: AtomicU32,
    rerun_counter: prometheus::IntCounter,
    job: Mutex<Option<String>>,
    ended: Mutex<Option<Ended>>,
}

impl Query {
    /// Counts a batch returned to the client.
    pub fn add_output(&self, rows: u64, bytes: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Sets the row count of a command (`INSERT 0 5` → 5).
    pub fn set_rows(&self, rows: u64) {
        self.rows.store(rows, Ordering::Relaxed);
    }

    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Records the cluster job serving the query (the latest, after re-runs).
    pub fn set_job(&self, job: &str) {
        *self.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job.to_owned());
    }

    /// Counts a whole-job re-run.
    pub fn add_rerun(&self) {
        self.reruns.fetch_add(1, Ordering::Relaxed);
        self.rerun_counter.inc();
    }

    pub fn elapsed_s(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    fn ended(&self) -> Option<Ended> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The query's changing fields, read at once.
    pub fn snapshot(&self) -> Snapshot {
        let ended = self.ended();
        Snapshot {
            state: ended.as_ref().map_or("running", |e| e.how.as_str()),
            ended_at: ended.as_ref().map(|e| e.at),
            elapsed_s: ended.as_ref().map_or_else(|| self.elapsed_s(), |e| e.duration_s),
            reruns: self.reruns.load(Ordering::Relaxed),
            job_id: self.job.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            sqlstate: ended.as_ref().map(|e| e.sqlstate.clone()),
            error: ended.and_then(|e| e.error),
        }
    }
}

/// What [`Query::snapshot`] answers.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `running`, `finished`, `failed`, `cancelled` or `abandoned`.
    pub state: &'static str,
    pub ended_at: Option<DateTime<Utc>>,
    pub elapsed_s: f64,
    pub reruns: u32,
    pub job_id: Option<String>,
    pub sqlstate: Option<String>,
    pub error: Option<String>,
}

/// Statement metrics, by protocol.
#[derive(Debug, Clone)]
pub struct StatementMetrics {
    statements: IntCounterVec,
    duration: HistogramVec,
    rows: IntCounterVec,
    bytes: IntCounterVec,
    running: IntGauge,
    reruns: prometheus::IntCounter,
    plan_cache: IntCounterVec,
}

impl StatementMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let statements = IntCounterVec::new(
            Opts::new("statements_total", "Statements by protocol and outcome"),
            &["protocol", "outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("statement_duration_seconds", "Statement latency, arrival to last row").buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["protocol"],
        )?;
        let rows = IntCounterVec::new(
            Opts::new("result_rows_total", "Rows returned to clients"),
            &["protocol"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new("result_bytes_total", "Bytes of Arrow data returned to clients"),
            &["protocol"],
        )?;
        let running = IntGauge::new("statements_running", "Statements running now")?;
        let reruns = prometheus::IntCounter::new(
            "jobs_rerun_total",
            "Cluster jobs run again whole because their results were lost with an executor",
        )?;
        let plan_cache = IntCounterVec::new(
            Opts::new(
                "plan_cache_total",
                "Statements prepared: found planned in the session's plan cache (hit) or planned (miss)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(plan_cache.clone()))?;
        registry.register(Box::new(reruns.clone()))?;
        registry.register(Box::new(statements.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(rows.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(running.clone()))?;
        Ok(StatementMetrics {
            statements,
            duration,
            rows,
            bytes,
            running,
            reruns,
            plan_cache,
        })
    }

    /// Counts a statement prepared from the plan cache or planned anew.
    pub fn plan_cache(&self, hit: bool) {
        self.plan_cache
            .with_label_values(&[if hit { "hit" } else { "miss" }])
            .inc();
    }

    /// Metrics no registry reads (tests).
    pub fn unregistered() -> Self {
        StatementMetrics::new(&Registry::new()).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }

    fn observe(&self, q: &Query, how: End, duration_s: f64) {
        let outcome = match how {
            End::Finished => "ok",
            End::Failed => "error",
            End::Cancelled => "cancelled",
            End::Abandoned => "incomplete",
        };
        self.statements.with_label_values(&[q.protocol, outcome]).inc();
        let h: Histogram = self.duration.with_label_values(&[q.protocol]);
        h.observe(duration_s);
        self.rows.with_label_values(&[q.protocol]).inc_by(q.rows());
        self.bytes.with_label_values(&[q.protocol]).inc_by(q.bytes());
    }
}

/// Running queries and the last ended ones.
#[derive(Debug)]
pub struct History {
    running: Mutex<HashMap<String, Arc<Query>>>,
    ended: Mutex<VecDeque<Arc<Query>>>,
    keep: usize,
    next: AtomicU64,
    tail: String,
    metrics: StatementMetrics,
    schema: SchemaRef,
}

impl History {
    /// Keeps the last `keep` ended queries.
    pub fn new(keep: usize, metrics: StatementMetrics) -> Self {
        let tail: String = (0..5)
            .map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rand::random_range(0..32)]))
            .collect();
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("query_id", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("user_name", DataType::Utf8, false),
            Field::new("protocol", DataType::Utf8, false),
            Field::new("client_addr", DataType::Utf8, true),
            Field::new("session_id", DataType::UInt64, false),
            Field::new("query", DataType::Utf8, false),
            Field::new("started", ts.clone(), false),
            Field::new("ended", ts, true),
            Field::new("elapsed_s", DataType::Float64, false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new("reruns", DataType::UInt32, false),
            Field::new("job_id", DataType::Utf8, true),
            Field::new("sqlstate", DataType::Utf8, true),
            Field::new("error", DataType::Utf8, true),
        ]));
        History {
            running: Mutex::new(HashMap::new()),
            ended: Mutex::new(VecDeque::new()),
            keep,
            next: AtomicU64::new(1),
            tail,
            metrics,
            schema,
        }
    }

    pub fn metrics(&self) -> &StatementMetrics {
        &self.metrics
    }

    /// Registers a statement of `session` arriving now.
    pub fn begin(&self, session: &Session, text: String) -> Arc<Query> {
        let started = Utc::now();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let query = Arc::new(Query {
            id: format!("{}_{:05}_{}", started.format("%Y%m%d_%H%M%S"), n % 100_000, self.tail),
            user: session.user().to_owned(),
            protocol: session.client().protocol,
            client_addr: session.client().peer.map(|p| p.to_string()),
            session_id: session.id(),
            text,
            started,
            clock: Instant::now(),
            canceller: session.canceller(),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            reruns: AtomicU32::new(0),
            rerun_counter: self.metrics.reruns.clone(),
            job: Mutex::new(None),
            ended: Mutex::new(None),
        });
        self.metrics.running.inc();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(query.id.clone(), Arc::clone(&query));
        query
    }

    /// Forgets a running `query` that was not run after all (it is
    /// recorded again when it runs): no history entry, no metrics.
    pub fn withdraw(&self, query: &Arc<Query>) {
        if self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&query.id)
            .is_some()
        {
            self.metrics.running.dec();
        }
    }

    /// Ends `query` (once; later calls are ignored).
    pub fn end(&self, query: &Arc<Query>, how: End, error: Option<&QueryError>) {
        let duration_s = query.elapsed_s();
        {
            let mut ended = query.ended.lock().unwrap_or_else(|e| e.into_inner());
            if ended.is_some() {
                return;
            }
            *ended = Some(Ended {
                how,
                at: Utc::now(),
                duration_s,
                error: error.map(|e| e.message.clone()),
                sqlstate: error.map_or("00000", QueryError::sqlstate).to_owned(),
            });
        }
        self.metrics.running.dec();
        self.metrics.observe(query, how, duration_s);
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&query.id);
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended.push_back(Arc::clone(query));
        while ended.len() > self.keep {
            ended.pop_front();
        }
    }

    /// Running queries first (oldest first), then ended ones (newest first).
    pub fn list(&self) -> Vec<Arc<Query>> {
        let mut running = self.running();
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        running.extend(ended.iter().rev().cloned());
        running
    }

    /// The running queries, oldest first.
    pub fn running(&self) -> Vec<Arc<Query>> {
        let mut running: Vec<Arc<Query>> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        running.sort_by_key(|q| q.clock);
        running
    }

    /// Query `id`, running or among the ended ones kept.
    pub fn get(&self, id: &str) -> Option<Arc<Query>> {
        if let Some(q) = self.running.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Some(Arc::clone(q));
        }
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended.iter().rev().find(|q| q.id == id).cloned()
    }

    /// Cancels running query `id` for `caller`: its owner or a superuser.
    /// `Ok(false)`: it is not running (ended, or never was).
    pub fn cancel(&self, id: &str, caller: &str, superuser: bool) -> Result<bool, QueryError> {
        let query = self.running.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        let Some(query) = query else {
            return Ok(false);
        };
        if query.user != caller && !superuser {
            return Err(QueryError::new(
                ErrorKind::InsufficientPrivilege,
                "must be a superuser to cancel another user's query",
            ));
        }
        tracing::info!(query_id = id, by = caller, "query cancelled by sluice_cancel_query");
        query.canceller.cancel();
        Ok(true)
    }

    /// `system.queries` as a batch.
    fn batch(&self) -> datafusion::error::Result<RecordBatch> {
        let list = self.list();
        let snaps: Vec<Snapshot> = list.iter().map(|q| q.snapshot()).collect();
        let text = |f: &dyn Fn(&Query) -> &str| Arc::new(StringArray::from_iter_values(list.iter().map(|q| f(q))));
        let ts = |v: Vec<Option<i64>>| Arc::new(TimestampMicrosecondArray::from(v).with_timezone("+00:00"));
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                text(&|q| &q.id),
                Arc::new(StringArray::from_iter_values(snaps.iter().map(|s| s.state))),
                text(&|q| &q.user),
                text(&|q| q.protocol),
                Arc::new(StringArray::from_iter(list.iter().map(|q| q.client_addr.as_deref()))),
                Arc::new(UInt64Array::from_iter_values(list.iter().map(|q| q.session_id))),
                text(&|q| &q.text),
                ts(list.iter().map(|q| Some(q.started.timestamp_micros())).collect()),
                ts(snaps.iter().map(|s| s.ended_at.map(|t| t.timestamp_micros())).collect()),
                Arc::new(Float64Array::from_iter_values(snaps.iter().map(|s| s.elapsed_s))),
                Arc::new(UInt64Array::from_iter_values(list.iter().map(|q| q.rows()))),
                Arc::new(UInt64Array::from_iter_values(list.iter().map(|q| q.bytes()))),
                Arc::new(UInt32Array::from_iter_values(snaps.iter().map(|s| s.reruns))),
                Arc::new(StringArray::from_iter(snaps.iter().map(|s| s.job_id.as_deref()))),
                Arc::new(StringArray::from_iter(snaps.iter().map(|s| s.sqlstate.as_deref()))),
                Arc::new(StringArray::from_iter(snaps.iter().map(|s| s.error.as_deref()))),
            ],
        )?)
    }
}

/// `system.queries`: running and recent statements.
#[derive(Debug)]
pub struct QueriesTable(pub Arc<History>);

#[async_trait]
impl super::system::Rows for QueriesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.0.schema)
    }

    async fn rows(&self) -> datafusion::error::Result<RecordBatch> {
        self.0.batch()
    }
}
