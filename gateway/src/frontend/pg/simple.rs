//! The simple query protocol, one statement at a time: each statement of a
//! query string runs only after the previous one's results were sent, so
//! `SELECT * FROM t; DROP TABLE t` reads before it drops, and a
//! CancelRequest reaches the statement that is running. (pgwire's default
//! runs every statement first and sends their results afterwards.)

use std::fmt::Debug;

use futures::{Sink, SinkExt};
use pgwire::api::copy::send_copy_out_response;
use pgwire::api::portal::Format;
use pgwire::api::query::{send_execution_response, send_query_response, send_ready_for_query};
use pgwire::api::results::Response;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::simplequery::Query;

use super::{Queries, error_info, log_statement_error, session_of, to_response};

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
        let parsed = match self.handler.parse(&sql) {
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
            let response = match self.handler.run(&session, p).await {
                Ok(output) => to_response(client, output, &Format::UnifiedText).await?,
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
                Response::CopyOut(result) => send_copy_out_response(client, result).await?,
                Response::CopyIn(_) | Response::CopyBoth(_) => {
                    client
                        .feed(PgWireBackendMessage::ErrorResponse(
                            error_info(crate::error::QueryError::unsupported("COPY FROM STDIN")).into(),
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
