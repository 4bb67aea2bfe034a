//! The `system` schema: live views of the gateway's own state, answered in
//! the gateway (never a cluster job). `system.executors` lists the executors
//! registered with the embedded scheduler; `system.tasks` the stages of the
//! running queries' cluster jobs with their progress. (`system.queries` and
//! `system.audit` live with the history and the audit log.)

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, StringArray, TimestampSecondArray, UInt16Array, UInt32Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::cluster::Cluster;

/// Name of the schema.
pub const SYSTEM_SCHEMA: &str = "system";

/// The rows of a live view, computed at each scan.
#[async_trait]
pub trait Rows: std::fmt::Debug + Send + Sync {
    fn schema(&self) -> SchemaRef;
    async fn rows(&self) -> Result<RecordBatch>;
}

/// A `system` view: a [`Rows`] source as a DataFusion table.
#[derive(Debug)]
pub struct LiveView<R>(pub R);

#[async_trait]
impl<R: Rows + 'static> TableProvider for LiveView<R> {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.0.rows().await?;
        MemTable::try_new(self.0.schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// `system.executors`: one row per registered executor.
#[derive(Debug)]
pub struct ExecutorsTable {
    cluster: Cluster,
    schema: SchemaRef,
}

impl ExecutorsTable {
    pub fn new(cluster: Cluster) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("executor_id", DataType::Utf8, false),
            Field::new("host", DataType::Utf8, false),
            Field::new("port", DataType::UInt16, false),
            Field::new("task_slots", DataType::UInt32, false),
            Field::new("state", DataType::Utf8, false),
            Field::new(
                "last_heartbeat",
                DataType::Timestamp(TimeUnit::Second, Some("+00:00".into())),
                true,
            ),
        ]));
        ExecutorsTable { cluster, schema }
    }
}

#[async_trait]
impl Rows for ExecutorsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn rows(&self) -> Result<RecordBatch> {
        let executors = self.cluster.executors_now().await;
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                Arc::new(StringArray::from_iter_values(executors.iter().map(|e| e.id.as_str()))),
                Arc::new(StringArray::from_iter_values(executors.iter().map(|e| e.host.as_str()))),
                Arc::new(UInt16Array::from_iter_values(executors.iter().map(|e| e.port))),
                Arc::new(UInt32Array::from_iter_values(executors.iter().map(|e| e.task_slots))),
                Arc::new(StringArray::from_iter_values(
                    executors.iter().map(|e| e.state.as_str()),
                )),
                Arc::new(
                    TimestampSecondArray::from(
                        executors
                            .iter()
                            .map(|e| e.last_heartbeat_unix.map(|t| t as i64))
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("+00:00"),
                ),
            ],
        )?)
    }
}

/// `system.tasks`: one row per stage of every running query's cluster job.
#[derive(Debug)]
pub struct TasksTable {
    cluster: Cluster,
    history: Arc<super::history::History>,
    schema: SchemaRef,
}

impl TasksTable {
    pub fn new(cluster: Cluster, history: Arc<super::history::History>) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("query_id", DataType::Utf8, false),
            Field::new("job_id", DataType::Utf8, false),
            Field::new("stage_id", DataType::UInt32, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("attempt", DataType::UInt32, false),
            Field::new("partitions", DataType::UInt32, false),
            Field::new("done", DataType::UInt32, false),
            Field::new("running", DataType::UInt32, false),
            Field::new("rows", DataType::UInt64, true),
            Field::new("bytes", DataType::UInt64, true),
            Field::new("consumers", DataType::Utf8, false),
        ]));
        TasksTable {
            cluster,
            history,
            schema,
        }
    }
}

#[async_trait]
impl Rows for TasksTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn rows(&self) -> Result<RecordBatch> {
        let mut rows = Vec::new();
        for q in self.history.running() {
            let Some(job) = q.snapshot().job_id else {
                continue;
            };
            for stage in self.cluster.job_stages(&job).await.unwrap_or_default() {
                rows.push((q.id.clone(), job.clone(), stage));
            }
        }
        let u32s = |f: &dyn Fn(&crate::cluster::StageProgress) -> usize| {
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|(_, _, s)| f(s) as u32)))
        };
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|(q, _, _)| q.as_str()))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|(_, j, _)| j.as_str()))),
                u32s(&|s| s.stage_id),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(_, _, s)| s.state.as_str()),
                )),
                u32s(&|s| s.attempt),
                u32s(&|s| s.partitions),
                u32s(&|s| s.done),
                u32s(&|s| s.running),
                Arc::new(UInt64Array::from_iter(
                    rows.iter().map(|(_, _, s)| s.rows.map(|r| r as u64)),
                )),
                Arc::new(UInt64Array::from_iter(rows.iter().map(|(_, _, s)| s.bytes))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|(_, _, s)| {
                    s.consumers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                }))),
            ],
        )?)
    }
}
