//! Running queries: a plan that reads lake tables (and nothing that lives
//! only in the gateway) is a Ballista job on the cluster; everything else
//! (`SELECT 1`, pg_catalog, system tables, EXPLAIN) runs in the gateway. The
//! first batch is awaited before the result is returned, so errors and
//! cancellation surface before any row is sent; the stream then ends with
//! 57014 when the statement is cancelled and cancels its job when dropped.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt};

use super::{Engine, QueryOutput};
use crate::cluster::Cluster;
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;
use crate::table::{LakeTable, ScanLog};

impl Engine {
    /// Runs a query plan; lake reads go to the cluster.
    pub(super) async fn query(
        &self,
        session: &Session,
        state: &SessionState,
        plan: LogicalPlan,
    ) -> Result<QueryOutput, QueryError> {
        if matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
            return self.explain(session, state, plan).await;
        }
        let optimized = state.optimize(&plan)?;
        self.query_optimized(session, state, optimized, None).await
    }

    /// Runs a prepared query without parameters, planned at the session's
    /// current catalog generation and settings, reusing what its earlier
    /// executions kept (`plan_cache::Reuse`).
    pub(super) async fn query_prepared(
        &self,
        session: &Session,
        state: &SessionState,
        plan: &LogicalPlan,
        reuse: &super::plan_cache::Reuse,
    ) -> Result<QueryOutput, QueryError> {
        if let Some((physical, task_ctx)) = reuse.local() {
            if session.result_parts() > 0 {
                return Ok(not_in_parts(plan));
            }
            let token = session.begin_statement();
            let physical = datafusion::physical_plan::execution_plan::reset_plan_states(physical)?;
            let stream = execute_stream(physical, task_ctx)?;
            return self.first_batch(session, token, stream, self.job_guard(None)).await;
        }
        if matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) || !super::plan_cache::reusable(plan) {
            return self.query(session, state, plan.clone()).await;
        }
        let optimized = match reuse.optimized() {
            Some(p) => p,
            None => reuse.keep_optimized(state.optimize(plan)?),
        };
        self.query_optimized(session, state, optimized, Some(reuse)).await
    }

    /// Runs an optimized query plan; `reuse` keeps the physical plan of one
    /// that reads no table (its next executions skip planning).
    async fn query_optimized(
        &self,
        session: &Session,
        state: &SessionState,
        optimized: LogicalPlan,
        reuse: Option<&super::plan_cache::Reuse>,
    ) -> Result<QueryOutput, QueryError> {
        let token = session.begin_statement();
        self.check_incarnations(&optimized)?;
        let on_cluster = self.may_run_on_cluster(session, &optimized);
        let parts = session.result_parts();
        if parts > 0 && !on_cluster {
            return Ok(not_in_parts(&optimized));
        }
        let (stream, guard) = if on_cluster {
            let schema = Arc::new(optimized.schema().as_arrow().clone());
            let spec = super::distributed::JobSpec {
                cluster: self.cluster.clone(),
                plan: optimized,
                schema: Arc::clone(&schema),
                config: state.config().clone(),
                session_id: state.session_id().to_owned(),
                token: token.clone(),
                query: session.current_query(),
            };
            if parts > 0 {
                return self.split(session, spec, parts).await;
            }
            let (stream, current) = super::distributed::run(spec);
            let stream: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(schema, stream));
            (stream, self.job_guard(Some(current)))
        } else {
            // `optimized` is final: plan it physically without optimizing again.
            let physical = state.query_planner().create_physical_plan(&optimized, state).await?;
            let task_ctx = state.task_ctx();
            if let Some(reuse) = reuse
                && super::plan_cache::reads_no_table(&optimized)
            {
                reuse.keep_local(Arc::clone(&physical), Arc::clone(&task_ctx));
            }
            (execute_stream(physical, task_ctx)?, self.job_guard(None))
        };
        self.first_batch(session, token, stream, guard).await
    }

    /// Whether `plan` (a query) goes to the cluster in `session`.
    pub(super) fn may_run_on_cluster(&self, session: &Session, plan: &LogicalPlan) -> bool {
        session.guc(crate::session::EXECUTION_GUC).as_deref() != Some("gateway")
            && runs_on_cluster(plan, &self.cluster_functions)
    }

    pub(super) fn job_guard(&self, current: Option<super::distributed::CurrentJob>) -> JobGuard {
        JobGuard {
            current,
            cluster: self.cluster.clone(),
            finished: false,
        }
    }

    /// Awaits the first batch of a statement's stream, so errors and
    /// cancellation surface before any row is sent.
    pub(super) async fn first_batch(
        &self,
        session: &Session,
        token: tokio_util::sync::CancellationToken,
        stream: SendableRecordBatchStream,
        guard: JobGuard,
    ) -> Result<QueryOutput, QueryError> {
        let schema = stream.schema();
        let mut stream = Box::pin(guarded(stream, token.clone(), session.canceller(), guard)).peekable();
        let first = tokio::select! {
            biased;
            () = token.cancelled() => return Err(session.cancelled_error()),
            first = std::pin::Pin::new(&mut stream).peek() => first.map(|r| r.as_ref().map(|_| ()).map_err(|e| QueryError::new(ErrorKind::DataException, e.to_string()))),
        };
        if let Some(Err(_)) = first {
            // Take the real error out of the stream, keeping its class.
            if let Some(Err(e)) = stream.next().await {
                return Err(e.into());
            }
        }
        Ok(QueryOutput::Rows {
            schema: Arc::clone(&schema),
            stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
        })
    }

    /// EXPLAIN [ANALYZE], in the gateway, plus one `lake_scan` row per lake
    /// table scan: partitions and files chosen out of the total.
    async fn explain(
        &self,
        session: &Session,
        state: &SessionState,
        plan: LogicalPlan,
    ) -> Result<QueryOutput, QueryError> {
        // Its metrics would count the rows a row policy hides (the scan's
        // output_rows, the policy filter's selectivity).
        if matches!(plan, LogicalPlan::Analyze(_)) && behind_boundary(&plan) {
            return Err(QueryError::new(
                ErrorKind::InsufficientPrivilege,
                "EXPLAIN ANALYZE is not available on tables read under row policies",
            ));
        }
        let token = session.begin_statement();
        let log = Arc::new(ScanLog::default());
        let mut state = state.clone();
        state.config_mut().set_extension(Arc::clone(&log));
        let physical = state.create_physical_plan(&plan).await?;
        let schema = physical.schema();
        let batches: Vec<RecordBatch> = tokio::select! {
            biased;
            () = token.cancelled() => return Err(session.cancelled_error()),
            r = execute_stream(physical, state.task_ctx())?.try_collect::<Vec<_>>() => r?,
        };
        let reports = log.reports();
        let mut out = batches;
        if !reports.is_empty() && schema.fields().len() == 2 {
            let kinds: Vec<&str> = reports.iter().map(|_| "lake_scan").collect();
            let lines: Vec<String> = reports.iter().map(ToString::to_string).collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(StringArray::from(kinds)), Arc::new(StringArray::from(lines))],
            )
            .map_err(|e| QueryError::new(ErrorKind::Internal, e.to_string()))?;
            out.push(batch);
        }
        let stream = futures::stream::iter(out.into_iter().map(Ok));
        Ok(QueryOutput::Rows {
            schema: Arc::clone(&schema),
            stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
        })
    }

    /// The rows of a query plan, as a stream (for CTAS and INSERT).
    pub(super) async fn rows_of(
        &self,
        session: &Session,
        state: &SessionState,
        plan: LogicalPlan,
    ) -> Result<SendableRecordBatchStream, QueryError> {
        match self.query(session, state, plan).await? {
            QueryOutput::Rows { stream, .. } => Ok(stream),
            other => Err(QueryError::new(
                ErrorKind::Internal,
                format!("expected rows, got {other:?}"),
            )),
        }
    }
}

impl Engine {
    /// Refuses a plan whose lake tables were dropped or replaced since it was
    /// made (40001: run it again) rather than reading a dead incarnation.
    fn check_incarnations(&self, plan: &LogicalPlan) -> Result<(), QueryError> {
        let mut stale = None;
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Ok(p) = source_as_provider(&scan.source)
                && let Some(lake) = p.downcast_ref::<LakeTable>()
            {
                let t = lake.table();
                if self
                    .catalog
                    .table(&t.database, &t.name)
                    .is_none_or(|now| now.id != t.id)
                {
                    stale = Some(t.qualified());
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        match stale {
            Some(name) => Err(crate::catalog::CatalogError::TableChanged(name).into()),
            None => Ok(()),
        }
    }
}

/// A query goes to the cluster when it reads at least one lake table and
/// nothing that lives only in the gateway: no system or in-memory tables, no
/// function the scheduler and executors do not have (the gateway's
/// Postgres functions: `json_build_object`, `current_setting`, ...).
fn runs_on_cluster(plan: &LogicalPlan, cluster_functions: &std::collections::HashSet<String>) -> bool {
    if matches!(plan, LogicalPlan::DescribeTable(_)) {
        return false;
    }
    let (mut lake, mut other) = (0usize, 0usize);
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            match source_as_provider(&scan.source) {
                Ok(p) if p.is::<LakeTable>() => lake += 1,
                _ => other += 1,
            }
        }
        node.apply_expressions(|e| {
            datafusion::common::tree_node::TreeNode::apply(e, |e| {
                if let datafusion::logical_expr::Expr::ScalarFunction(f) = e
                    && !cluster_functions.contains(f.func.name())
                {
                    other += 1;
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    lake > 0 && other == 0
}

/// Whether `plan` reads a table under a row policy.
fn behind_boundary(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Extension(e) = node
            && sluice_lake::secure::is_boundary(e.node.as_any())
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// A query asked for in parts that runs in the gateway: not run now.
fn not_in_parts(plan: &LogicalPlan) -> QueryOutput {
    QueryOutput::Parts {
        schema: Arc::new(plan.schema().as_arrow().clone()),
        parts: None,
    }
}

/// Cancels the cluster job of a query whose results are abandoned.
pub(super) struct JobGuard {
    current: Option<super::distributed::CurrentJob>,
    cluster: Cluster,
    finished: bool,
}

impl JobGuard {
    /// The job ended and its results are wanted: nothing to cancel.
    pub(super) fn disarm(mut self) {
        self.finished = true;
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(job) = self.current.as_ref().and_then(|c| c.handle()) {
            let cluster = self.cluster.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { cluster.cancel_job(&job).await });
            }
        }
    }
}

/// Wraps a result stream so the statement's cancel token ends it with
/// SQLSTATE 57014, and an abandoned stream cancels its cluster job.
fn guarded(
    inner: SendableRecordBatchStream,
    token: tokio_util::sync::CancellationToken,
    canceller: crate::session::Canceller,
    guard: JobGuard,
) -> impl futures::Stream<Item = datafusion::error::Result<RecordBatch>> + Send {
    futures::stream::unfold(Some((inner, token, canceller, guard)), |state| async move {
        let (mut inner, token, canceller, mut guard) = state?;
        tokio::select! {
            biased;
            () = token.cancelled() => {
                Some((Err(DataFusionError::External(Box::new(canceller.error()))), None))
            }
            item = inner.next() => match item {
                None => {
                    guard.finished = true;
                    None
                }
                Some(Err(e)) => Some((Err(e), None)),
                Some(Ok(b)) => Some((Ok(b), Some((inner, token, canceller, guard)))),
            }
        }
    })
}
