//! The simple query protocol, one statement at a time: each statement of a
//! query string runs only after the previous one's results were sent, so
//! `SELECT * FROM t; DROP TABLE t` reads before it drops, and a
//! CancelRequest reaches the statement that is running. (pgwire's default
//! runs every statement first and sends their results afterwards.)

use std::fmt::Debug;

use futures::{Sink, SinkExt};
use pgwire::api::copy::{send_copy_in_response, send_copy_out_response};
use pgwire::api::portal::Format;
use pgwire::api::query::{send_execution_response, send_query_response, send_ready_for_query};
use pgwire::api::results::Response;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::simplequery::Query;

use crate::error::{ErrorKind, QueryError};
use crate::query::{Parsed, QueryOutput};

use super::{Queries, copy, error_info, log_statement_error, presentation_of, session_of};

impl Queries {
    pub(super) async fn simple_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let mut status = client.transaction_status();
        client.set_state(PgWireConnectionState::QueryInProgress);
        let session = session_of(client)?;
        let sql = query.query;
        let parsed = match self.handler.parse(&session, &sql).and_then(copy_in_last) {
            Ok(p) => p,
            Err(e) => {
                log_statement_error(&e, &sql);
                client
                    .feed(PgWireBackendMessage::ErrorResponse(error_info(e).into()))
                    .await?;
                status = status.to_error_state();
                Vec::new()
            }
        };
        for p in &parsed {
            let response = match self.handler.run(&session, &sql, p).await {
                // Sent here, to count its data rows in the command tag.
                Ok(QueryOutput::CopyOut {
                    schema,
                    stream,
                    options,
                }) => {
                    let copy = copy::copy_out(&schema, stream, &options, presentation_of(client)?)?;
                    copy::send_copy_out(client, copy).await?;
                    client.flush().await?;
                    continue;
                }
                Ok(output) => self.to_response(client, output, &Format::UnifiedText).await?,
                Err(e) => {
                    log_statement_error(&e, &sql);
                    Response::Error(Box::new(error_info(e)))
                }
            };
            let failed = matches!(response, Response::Error(_));
            match response {
                Response::EmptyQuery => {
                    client
                        .feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new()))
                        .await?;
                }
                Response::Query(results) => send_query_response(client, results, true).await?,
                Response::Execution(tag) => send_execution_response(client, tag).await?,
                Response::TransactionStart(tag) => {
                    send_execution_response(client, tag).await?;
                    status = status.to_in_transaction_state();
                }
                Response::TransactionEnd(tag) => {
                    send_execution_response(client, tag).await?;
                    status = status.to_idle_state();
                }
                Response::Error(e) => {
                    client.feed(PgWireBackendMessage::ErrorResponse((*e).into())).await?;
                    status = status.to_error_state();
                }
                // Not reached: COPY OUT is sent above.
                Response::CopyOut(result) => send_copy_out_response(client, result).await?,
                Response::CopyIn(result) => {
                    // The client's CopyData now goes to the copy handler,
                    // whose CopyDone answers with ReadyForQuery.
                    client.set_transaction_status(status);
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                    send_copy_in_response(client, result).await?;
                    return Ok(());
                }
                Response::CopyBoth(_) => {
                    client
                        .feed(PgWireBackendMessage::ErrorResponse(
                            error_info(QueryError::unsupported("COPY BOTH")).into(),
                        ))
                        .await?;
                    status = status.to_error_state();
                }
            }
            // A statement's output reaches the client before the next runs.
            client.flush().await?;
            if failed {
                break;
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        send_ready_for_query(client, status).await?;
        Ok(())
    }
}

/// A `COPY ... FROM STDIN` ends the statements of its query string (the
/// data that follows belongs to it).
fn copy_in_last(parsed: Vec<Parsed>) -> Result<Vec<Parsed>, QueryError> {
    let last = parsed.len().saturating_sub(1);
    if parsed.iter().take(last).any(|p| matches!(p, Parsed::CopyIn(_))) {
        return Err(QueryError::new(
            ErrorKind::FeatureNotSupported,
            "COPY FROM STDIN must be the last statement of a query string",
        ));
    }
    Ok(parsed)
}
