//! Results in parts: a query that reads lake tables run to the end of its
//! cluster job, and its result partitions split into parts that separate
//! readers fetch at once (Flight SQL endpoints). A part is self-contained —
//! where its partitions wait and the result's schema — so any gateway of
//! the cluster reads it; front ends carry it signed and never look inside.
//! Parts are readable until Ballista removes the job's results
//! ([`crate::cluster::RESULTS_KEPT`] after the job ended).

use std::io::Cursor;
use std::sync::Arc;

use ballista_core::serde::protobuf::PartitionLocation as ProtoLocation;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::ParamValues;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::TryStreamExt;
use prost::Message;

use super::distributed::{self, JobSpec};
use super::{Engine, Prepared, QueryHandler, QueryOutput, ResultParts};
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;

/// One part as it travels (inside a signed Flight ticket).
#[derive(Clone, PartialEq, prost::Message)]
struct Part {
    /// The result partitions of the part.
    #[prost(message, repeated, tag = "1")]
    locations: Vec<ProtoLocation>,
    /// The result's schema: an Arrow IPC stream with no batches.
    #[prost(bytes = "vec", tag = "2")]
    schema_ipc: Vec<u8>,
}

fn internal(e: impl std::fmt::Display) -> QueryError {
    QueryError::new(ErrorKind::Internal, e.to_string())
}

fn schema_ipc(schema: &SchemaRef) -> Result<Vec<u8>, QueryError> {
    let mut writer = StreamWriter::try_new(Vec::new(), schema).map_err(internal)?;
    writer.finish().map_err(internal)?;
    writer.into_inner().map_err(internal)
}

fn gone(e: impl std::fmt::Display) -> DataFusionError {
    tracing::warn!("a result part could not be read: {e}");
    DataFusionError::External(Box::new(QueryError::new(
        ErrorKind::Unavailable,
        "this part of the result is no longer available (its executor left, or it was read too late); run the query again",
    )))
}

impl Engine {
    /// [`QueryHandler::execute_in_parts`].
    pub(super) async fn execute_parts(
        &self,
        session: &Session,
        prepared: &Prepared,
        params: Option<ParamValues>,
        parts: u32,
    ) -> Result<QueryOutput, QueryError> {
        let on_cluster = prepared.plan.as_ref().is_some_and(|plan| {
            super::plan_cache::is_query(plan)
                && !matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_))
                && self.may_run_on_cluster(session, plan)
        });
        if !on_cluster {
            // Not run now: its rows are streamed when asked for.
            return Ok(QueryOutput::Parts {
                schema: Arc::clone(&prepared.schema),
                parts: None,
            });
        }
        session.set_result_parts(parts.max(1));
        let r = self.execute(session, prepared, params).await;
        session.set_result_parts(0);
        r
    }

    /// Runs `spec`'s job to its end and splits its results into `n` parts.
    pub(super) async fn split(&self, session: &Session, spec: JobSpec, n: u32) -> Result<QueryOutput, QueryError> {
        let schema = Arc::clone(&spec.schema);
        // Cancels the job if the caller goes away before it ends.
        let current = distributed::CurrentJob::default();
        let guard = self.job_guard(Some(current.clone()));
        let split = distributed::split(spec, current, n as usize).await;
        guard.disarm();
        let Some(split) = split? else {
            return Err(session.cancelled_error());
        };
        let schema_ipc = schema_ipc(&schema)?;
        let parts = split
            .parts
            .into_iter()
            .map(|locations| {
                Part {
                    locations,
                    schema_ipc: schema_ipc.clone(),
                }
                .encode_to_vec()
            })
            .collect();
        Ok(QueryOutput::Parts {
            schema,
            parts: Some(ResultParts {
                parts,
                rows: split.rows,
                bytes: split.bytes,
                kept_for: crate::cluster::RESULTS_KEPT,
            }),
        })
    }

    /// [`QueryHandler::read_part`].
    pub(super) async fn read_one_part(&self, session: &Session, part: &[u8]) -> Result<QueryOutput, QueryError> {
        let part =
            Part::decode(part).map_err(|_| QueryError::new(ErrorKind::InvalidParameter, "malformed result part"))?;
        let schema = StreamReader::try_new(Cursor::new(part.schema_ipc), None)
            .map_err(|_| QueryError::new(ErrorKind::InvalidParameter, "malformed result part"))?
            .schema();
        let token = session.begin_statement();
        let stream = self
            .cluster()
            .read_finished(part.locations, Arc::clone(&schema))
            .map_err(gone)?
            .map_err(gone);
        let stream = Box::pin(RecordBatchStreamAdapter::new(schema, stream));
        self.first_batch(session, token, stream, self.job_guard(None)).await
    }
}
