//! Bulk ingest of an Arrow stream into a managed table (Flight SQL
//! `CommandStatementIngest`, what `adbc_ingest` sends): create the table
//! from the stream's schema, append to it, or replace it — each one atomic
//! commit of the managed-table write protocol, streamed (the gateway holds
//! one batch at a time).

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::ScalarValue;
use datafusion::datasource::provider_as_source;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{LogicalPlanBuilder, cast, col, lit};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;

use super::Engine;
use crate::catalog::TableKind;
use crate::catalog::provider::decode_schema;
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;

/// What to do when the target table does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    Create,
    Fail,
}

/// What to do when it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    Fail,
    Append,
    Replace,
}

/// Where a bulk ingest writes.
#[derive(Debug, Clone)]
pub struct IngestTarget {
    /// The session's current schema when `None`.
    pub schema: Option<String>,
    pub table: String,
    pub if_missing: IfMissing,
    pub if_exists: IfExists,
}

/// The ingested stream as a one-shot table source.
struct Once {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for Once {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Once")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PartitionStream for Once {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        match self.stream.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(s) => s,
            None => Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.schema),
                futures::stream::once(async {
                    Err(datafusion::error::DataFusionError::Execution(
                        "the ingested stream was already read".to_owned(),
                    ))
                }),
            )),
        }
    }
}

impl Engine {
    pub(super) async fn ingest_stream(
        &self,
        session: &Session,
        target: IngestTarget,
        stream: SendableRecordBatchStream,
    ) -> Result<u64, QueryError> {
        let state = session.state();
        let db = target
            .schema
            .clone()
            .unwrap_or_else(|| state.config_options().catalog.default_schema.clone());
        let name = target.table.clone();
        // A table the user cannot see is missing for it (and creating one
        // by that name then fails as a duplicate in the catalog).
        let table = self
            .catalog
            .table(&db, &name)
            .filter(|t| self.visible_or_missing(session, t).is_ok());
        if let Some(t) = &table {
            match target.if_exists {
                IfExists::Replace => self.require_owner(session, t)?,
                _ => self.require_on_table(session, t, crate::access::Privilege::Insert)?,
            }
        }
        let Some(table) = table else {
            return match target.if_missing {
                IfMissing::Create => {
                    self.require_create_in(session, &db)?;
                    let schema = stream.schema();
                    self.write_new_table(Some(session.user().to_owned()), &db, &name, schema, stream, false)
                        .await
                }
                IfMissing::Fail => Err(QueryError::new(
                    ErrorKind::UndefinedTable,
                    format!("relation \"{db}.{name}\" does not exist"),
                )),
            };
        };
        match target.if_exists {
            IfExists::Fail => Err(QueryError::new(
                ErrorKind::DuplicateTable,
                format!("relation \"{db}.{name}\" already exists"),
            )),
            IfExists::Replace => {
                if table.kind != TableKind::Managed {
                    return Err(QueryError::unsupported(format!(
                        "replacing {} \"{db}.{name}\" by ingest",
                        table.kind.describe()
                    )));
                }
                let schema = stream.schema();
                self.write_new_table(Some(session.user().to_owned()), &db, &name, schema, stream, true)
                    .await
            }
            IfExists::Append => {
                // The stream's columns by name, cast to the table's types.
                let columns = decode_schema(&table.arrow_schema)?;
                let incoming = stream.schema();
                let source = StreamingTable::try_new(
                    Arc::clone(&incoming),
                    vec![Arc::new(Once {
                        schema: Arc::clone(&incoming),
                        stream: Mutex::new(Some(stream)),
                    })],
                )?;
                // PostgreSQL's INSERT with a column list: a table column the
                // data lacks is NULL; a column the table lacks is an error.
                if let Some(extra) = incoming
                    .fields()
                    .iter()
                    .find(|f| columns.field_with_name(f.name()).is_err())
                {
                    return Err(QueryError::new(
                        ErrorKind::UndefinedColumn,
                        format!("column \"{}\" of relation \"{db}.{name}\" does not exist", extra.name()),
                    ));
                }
                let mut exprs = Vec::with_capacity(columns.fields().len());
                for field in columns.fields() {
                    let value = if incoming.field_with_name(field.name()).is_ok() {
                        col(format!("\"{}\"", field.name()))
                    } else {
                        lit(ScalarValue::Null)
                    };
                    exprs.push(cast(value, field.data_type().clone()).alias(field.name()));
                }
                let plan = LogicalPlanBuilder::scan("ingest", provider_as_source(Arc::new(source)), None)?
                    .project(exprs)?
                    .build()?;
                Ok(self
                    .insert(session, &state, &db, &name, plan, None)
                    .await?
                    .command_rows())
            }
        }
    }
}
