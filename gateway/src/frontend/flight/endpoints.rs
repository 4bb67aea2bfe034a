//! A statement's FlightInfo — one endpoint whose DoGet runs the query, or
//! one endpoint per part of a result already produced (the session option
//! `endpoints`) — and how its batches are encoded (the session option
//! `compression`: LZ4 frame or zstd IPC bodies).
//!
//! Every endpoint's ticket is the statement's signed handle; a part's also
//! carries the part, so any gateway with the key serves it. Parts expire
//! with the job's results (`expiration_time`): reading one later is
//! refused as UNAVAILABLE, and the client runs the query again.

use std::time::SystemTime;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::ipc::CompressionType;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use prost::Message;
use tonic::{Response, Status};

use super::{FlightSqlServer, internal};
use crate::auth::Purpose;
use crate::query::ResultParts;
use sluice_proto::{FlightSession, StatementHandle};

/// The encoder of a statement's results, with the session's compression.
pub(super) fn encoder(session: Option<&FlightSession>) -> Result<FlightDataEncoderBuilder, Status> {
    let codec = match session.and_then(|s| s.compression.as_deref()) {
        None => None,
        Some("lz4_frame") => Some(CompressionType::LZ4_FRAME),
        Some("zstd") => Some(CompressionType::ZSTD),
        Some(other) => return Err(Status::invalid_argument(format!("unknown compression \"{other}\""))),
    };
    let options = IpcWriteOptions::default()
        .try_with_compression(codec)
        .map_err(internal)?;
    Ok(FlightDataEncoderBuilder::new().with_options(options))
}

impl FlightSqlServer {
    fn ticket(&self, handle: &StatementHandle) -> Ticket {
        let ticket = TicketStatementQuery {
            statement_handle: self.seal(Purpose::Ticket, handle),
        };
        Ticket::new(ticket.as_any().encode_to_vec())
    }

    /// The FlightInfo of a planned statement: one endpoint, or one per part.
    pub(super) fn statement_info(
        &self,
        schema: &Schema,
        handle: StatementHandle,
        parts: Option<ResultParts>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(internal)?
            .with_descriptor(descriptor);
        let Some(parts) = parts else {
            return Ok(Response::new(
                info.with_endpoint(FlightEndpoint::new().with_ticket(self.ticket(&handle))),
            ));
        };
        let expires = prost_types::Timestamp::from(SystemTime::now() + parts.kept_for);
        let ordered = parts.parts.len() == 1;
        let mut info = info
            .with_ordered(ordered)
            .with_total_records(parts.rows.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)))
            .with_total_bytes(parts.bytes.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)));
        for part in parts.parts {
            let mut handle = handle.clone();
            handle.result_part = part;
            info = info.with_endpoint(
                FlightEndpoint::new()
                    .with_ticket(self.ticket(&handle))
                    .with_expiration_time(expires),
            );
        }
        Ok(Response::new(info))
    }
}
