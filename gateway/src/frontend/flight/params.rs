//! Parameters of prepared statements: their schema, and the one-row Arrow
//! IPC batch that carries their values (kept inside signed handles).

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use tonic::Status;

use super::internal;
use crate::query::Prepared;

/// Schema of the parameters of a prepared statement, as Flight SQL wants it.
pub(super) fn parameter_schema(p: &Prepared) -> Schema {
    Schema::new(
        p.param_types
            .iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("${}", i + 1), t.clone().unwrap_or(DataType::Utf8), true))
            .collect::<Vec<_>>(),
    )
}

pub(super) fn params_to_ipc(batch: &RecordBatch) -> Result<Vec<u8>, Status> {
    let mut buf = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut buf, &batch.schema()).map_err(internal)?;
        w.write(batch).map_err(internal)?;
        w.finish().map_err(internal)?;
    }
    Ok(buf)
}

pub(super) fn params_from_ipc(bytes: &[u8]) -> Result<Option<ParamValues>, Status> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let mut reader = StreamReader::try_new(bytes, None).map_err(internal)?;
    let Some(batch) = reader.next().transpose().map_err(internal)? else {
        return Ok(None);
    };
    params_of(&batch).map(Some)
}

pub(super) fn params_of(batch: &RecordBatch) -> Result<ParamValues, Status> {
    if batch.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "exactly one row of parameters is supported, got {}",
            batch.num_rows()
        )));
    }
    let values = batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(ParamValues::List(values.into_iter().map(Into::into).collect()))
}
