//! Flight SQL bulk ingest (`CommandStatementIngest`, what ADBC's
//! `adbc_ingest` sends): the command's options mapped to an
//! [`IngestTarget`], the uploaded `FlightData` turned into a record-batch
//! stream the query handler writes as it arrives.

use arrow_flight::error::FlightError;
use arrow_flight::sql::CommandStatementIngest;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt};
use tonic::Status;

use crate::catalog::CATALOG_NAME;
use crate::query::ingest::{IfExists, IfMissing, IngestTarget};

/// Where and how to ingest; refuses what Sluice does not have (temporary
/// tables, transactions, other catalogs).
pub(super) fn target(cmd: &CommandStatementIngest) -> Result<IngestTarget, Status> {
    if cmd.temporary {
        return Err(Status::invalid_argument("Sluice has no temporary tables"));
    }
    if cmd.transaction_id.is_some() {
        return Err(Status::invalid_argument(
            "Sluice has no Flight SQL transactions: every ingest commits on its own",
        ));
    }
    if let Some(catalog) = &cmd.catalog
        && catalog != CATALOG_NAME
    {
        return Err(Status::not_found(format!("catalog \"{catalog}\" does not exist")));
    }
    if cmd.table.is_empty() {
        return Err(Status::invalid_argument("ingest needs a table name"));
    }
    let options = cmd.table_definition_options.unwrap_or_default();
    let if_missing = match TableNotExistOption::try_from(options.if_not_exist) {
        Ok(TableNotExistOption::Fail) => IfMissing::Fail,
        Ok(TableNotExistOption::Create | TableNotExistOption::Unspecified) => IfMissing::Create,
        Err(_) => return Err(Status::invalid_argument("unknown if_not_exist option")),
    };
    let if_exists = match TableExistsOption::try_from(options.if_exists) {
        Ok(TableExistsOption::Append) => IfExists::Append,
        Ok(TableExistsOption::Replace) => IfExists::Replace,
        Ok(TableExistsOption::Fail | TableExistsOption::Unspecified) => IfExists::Fail,
        Err(_) => return Err(Status::invalid_argument("unknown if_exists option")),
    };
    Ok(IngestTarget {
        schema: cmd.schema.clone(),
        table: cmd.table.clone(),
        if_missing,
        if_exists,
    })
}

/// The uploaded batches as a stream, read as the writer pulls them.
pub(super) async fn batches(input: PeekableFlightDataStream) -> Result<SendableRecordBatchStream, Status> {
    let mut decoded =
        arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(input.map_err(FlightError::from));
    let first = decoded
        .next()
        .await
        .transpose()
        .map_err(|e| Status::invalid_argument(format!("cannot read the ingested data: {e}")))?;
    let schema = match (&first, decoded.schema()) {
        (Some(b), _) => b.schema(),
        (None, Some(s)) => std::sync::Arc::clone(s),
        (None, None) => return Err(Status::invalid_argument("the ingested data has no schema")),
    };
    let rest = decoded.map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)));
    let stream = futures::stream::iter(first.map(Ok)).chain(rest);
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
}
