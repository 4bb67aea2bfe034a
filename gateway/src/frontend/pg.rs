//! Postgres wire protocol (pgwire): startup with SCRAM-SHA-256 or loopback
//! trust, simple and extended query, text and binary results (arrow-pg
//! encoders), CancelRequest, TLS.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, Weak};

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::into_pg_type;
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::datatypes::Schema;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::DEFAULT_NAME;
use pgwire::api::auth::DefaultServerParameterProvider;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::Entry;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::startup::ParameterStatus;

mod array_param;
mod copy;
mod copy_in;
mod deferred;
mod encode;
mod login;
mod present;
mod refuse;
mod server;
mod simple;

pub use server::PgServer;

use crate::error::{ErrorKind, QueryError};
use crate::query::{Prepared, QueryHandler, QueryOutput};
use crate::session::Session;

/// Settings echoed to the client as `ParameterStatus` when `SET` changes them.
const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "timezone",
    "standard_conforming_strings",
    "search_path",
];

fn pg_error(e: QueryError) -> PgWireError {
    // A statement ended by the shutdown ends its session too (pgwire
    // closes the connection after a FATAL), as in PostgreSQL.
    let severity = if e.kind == ErrorKind::AdminShutdown {
        "FATAL"
    } else {
        "ERROR"
    };
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_owned(),
        e.sqlstate().to_owned(),
        e.message,
    )))
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".to_owned(), code.to_owned(), message)))
}

/// The session of a connection, stored in pgwire's per-connection extensions.
struct SessionSlot(Arc<Session>);

/// Unregisters a connection from the cancel registry when it closes.
struct CancelRegistration {
    key: (i32, Bytes),
    registry: Arc<CancelRegistry>,
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        self.registry
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// Maps (pid, secret key) of live connections to their sessions.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<(i32, Bytes), Weak<Session>>>,
}

impl CancelRegistry {
    /// Ends the running statement of every live session with 57P01 (at the end of
    /// the shutdown timeout); answers how many sessions there were.
    fn terminate_all(&self) -> usize {
        crate::session::terminate_all(self.map.lock().unwrap_or_else(|e| e.into_inner()).values())
    }
}

#[async_trait]
impl CancelHandler for CancelRegistry {
    async fn on_cancel_request(&self, req: CancelRequest) {
        let session = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(req.pid, req.secret_key.to_bytes()))
            .and_then(Weak::upgrade);
        if let Some(s) = session {
            tracing::info!(session_id = s.id(), "cancel request");
            s.cancel_current();
        }
    }
}

fn session_of<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Session>> {
    client
        .session_extensions()
        .get::<SessionSlot>()
        .map(|s| Arc::clone(&s.0))
        .ok_or_else(|| pg_error(QueryError::new(ErrorKind::Internal, "no session on this connection")))
}

fn parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = crate::PG_SERVER_VERSION.to_owned();
    p.date_style = "ISO, MDY".to_owned();
    p.search_path = "\"default\", public".to_owned();
    p
}

/// Prepared statement as pgwire stores it.
type Stmt = Arc<Prepared>;

#[derive(Debug)]
struct Parser {
    handler: Arc<dyn QueryHandler>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Stmt;

    async fn parse_sql<C>(&self, client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Stmt>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = session_of(client)?;
        Ok(Some(self.handler.prepare(&session, sql).await.map_err(pg_error)?))
    }

    fn get_parameter_types(&self, stmt: &Stmt) -> PgWireResult<Vec<Type>> {
        stmt.param_types
            .iter()
            .map(|t| match t {
                Some(t) => into_pg_type(t),
                // Untyped `$n`: text, coerced by the planner.
                None => Ok(Type::TEXT),
            })
            .collect()
    }

    fn get_result_schema(&self, stmt: &Stmt, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        present::pg_fields(&stmt.schema, format.unwrap_or(&Format::UnifiedText))
    }
}

/// Simple and extended query handling for one server.
struct Queries {
    handler: Arc<dyn QueryHandler>,
    parser: Arc<Parser>,
}

fn encode_rows(
    schema: &Schema,
    stream: datafusion::execution::SendableRecordBatchStream,
    format: &Format,
    presentation: present::Presentation,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(present::pg_fields(schema, format)?);
    let f = Arc::clone(&fields);
    let wire = present::wire_fields(schema, &fields);
    let rows = stream
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<pgwire::messages::data::DataRow>> + Send + Sync> =
                match batch
                    .map_err(|e| pg_error(QueryError::from(e)))
                    .and_then(|b| presentation.apply(b, &f))
                {
                    Ok(b) => match encode::data_rows(&b, &wire) {
                        Ok(rows) => Box::new(rows.into_iter().map(Ok)),
                        Err(e) => Box::new(std::iter::once(Err(e))),
                    },
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
            stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}

/// How the connection's session shows values.
fn presentation_of<C: ClientInfo>(client: &C) -> PgWireResult<present::Presentation> {
    session_of(client).map(|s| present::Presentation::new(s.guc("timezone"), s.guc("extra_float_digits")))
}

fn command_tag(tag: &str) -> Tag {
    let parts: Vec<&str> = tag.split(' ').collect();
    match parts.as_slice() {
        ["INSERT", oid, n] => match (oid.parse(), n.parse()) {
            (Ok(oid), Ok(n)) => Tag::new("INSERT").with_oid(oid).with_rows(n),
            _ => Tag::new(tag),
        },
        [cmd, n] if n.parse::<usize>().is_ok() => Tag::new(cmd).with_rows(n.parse().unwrap_or(0)),
        _ => Tag::new(tag),
    }
}

impl Queries {
    async fn to_response<C>(&self, client: &mut C, output: QueryOutput, format: &Format) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let presentation = || presentation_of(client);
        Ok(match output {
            QueryOutput::CopyIn {
                schema,
                target,
                options,
            } => Response::CopyIn(self.start_copy_in(client, schema, target, options).await?),
            QueryOutput::Rows { schema, stream } => {
                Response::Query(encode_rows(&schema, stream, format, presentation()?)?)
            }
            QueryOutput::Fetched { schema, stream } => {
                let mut response = encode_rows(&schema, stream, format, presentation()?)?;
                response.set_command_tag("FETCH");
                Response::Query(response)
            }
            QueryOutput::CopyOut {
                schema,
                stream,
                options,
            } => Response::CopyOut(copy::copy_out(&schema, stream, &options, presentation()?)?.response),
            QueryOutput::Command { tag } => Response::Execution(command_tag(&tag)),
            QueryOutput::TransactionStart => Response::TransactionStart(Tag::new("BEGIN")),
            QueryOutput::TransactionEnd { tag } => Response::TransactionEnd(Tag::new(&tag)),
            QueryOutput::SettingChanged { name, value } => {
                if let Some(reported) = REPORTED.iter().find(|r| **r == name) {
                    let shown = match *reported {
                        "datestyle" => "DateStyle",
                        "intervalstyle" => "IntervalStyle",
                        "timezone" => "TimeZone",
                        other => other,
                    };
                    client
                        .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                            shown.to_owned(),
                            value,
                        )))
                        .await?;
                }
                Response::Execution(Tag::new("SET"))
            }
            QueryOutput::Empty => Response::EmptyQuery,
            // Only Flight asks for results in parts.
            QueryOutput::Parts { .. } => {
                return Err(pg_error(QueryError::new(
                    ErrorKind::Internal,
                    "a result in parts reached the Postgres front end",
                )));
            }
        })
    }
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn on_query<C>(&self, client: &mut C, query: pgwire::messages::simplequery::Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.simple_query(client, query).await
    }

    /// Not used: [`Queries::simple_query`] runs statements one at a time.
    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(pg_error(QueryError::new(
            ErrorKind::Internal,
            "simple queries run one statement at a time",
        )))
    }
}

fn error_info(e: QueryError) -> ErrorInfo {
    ErrorInfo::new("ERROR".to_owned(), e.sqlstate().to_owned(), e.message)
}

fn log_statement_error(e: &QueryError, sql: &str) {
    let sql: String = sql.chars().take(200).collect();
    match e.kind {
        ErrorKind::Internal => tracing::warn!(sqlstate = e.sqlstate(), %sql, "statement failed: {}", e.message),
        _ => tracing::debug!(sqlstate = e.sqlstate(), %sql, "statement failed: {}", e.message),
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = Stmt;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    /// Streams the rows of an `Execute` without a row limit straight to the
    /// client. pgwire's default collects a portal's rows into memory before
    /// sending them; limited fetches (cursors, `fetchSize`) still take that
    /// path.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Stmt>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(p)) => p,
            _ => return self._on_execute(client, message).await,
        };
        let streams = message.max_rows == 0
            && !portal.statement.statement.schema.fields().is_empty()
            && matches!(*portal.state().lock().await, PortalExecutionState::Initial)
            && matches!(client.state(), PgWireConnectionState::ReadyForQuery);
        if !streams {
            return self._on_execute(client, message).await;
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let result = async {
            let Response::Query(mut response) =
                ExtendedQueryHandler::do_query(self, client, portal.as_ref(), 0).await?
            else {
                return Err(pg_error(QueryError::new(ErrorKind::Internal, "query produced no rows")));
            };
            let tag = response.command_tag().to_owned();
            let mut rows = 0;
            while let Some(row) = response.data_rows().next().await {
                client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                rows += 1;
            }
            *portal.state().lock().await = PortalExecutionState::Finished;
            client
                .send(PgWireBackendMessage::CommandComplete(
                    Tag::new(&tag).with_rows(rows).into(),
                ))
                .await?;
            Ok(())
        }
        .await;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        result
    }

    /// A DECLAREd cursor is a portal too: clients (psycopg's server-side
    /// cursors) describe it by name.
    async fn on_describe<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::extendedquery::Describe,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Stmt>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME).to_owned();
        if message.target_type == pgwire::messages::extendedquery::TARGET_TYPE_BYTE_PORTAL
            && client.portal_store().get_portal(&name).is_none()
        {
            let session = session_of(client)?;
            if let Some(schema) = self.handler.cursor_schema(&session, &name).await {
                let fields = present::pg_fields(&schema, &Format::UnifiedText)?;
                pgwire::api::query::send_describe_response(client, &DescribePortalResponse::new(fields)).await?;
                return Ok(());
            }
        }
        self._on_describe(client, message).await
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Stmt>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Stmt>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let server = self.parser.get_parameter_types(&target.statement)?;
        let params = (0..target.parameter_types.len().max(server.len()))
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| server.get(i).cloned())
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        let fields = self.parser.get_result_schema(&target.statement, None)?;
        Ok(DescribeStatementResponse::new(params, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        target: &Portal<Stmt>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Stmt>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = self
            .parser
            .get_result_schema(&target.statement.statement, Some(&target.result_column_format))?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Stmt>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Stmt>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        let prepared = &portal.statement.statement;
        let params = if prepared.param_types.is_empty() && portal.parameter_len() == 0 {
            None
        } else {
            let inferred: Vec<Option<&datafusion::arrow::datatypes::DataType>> =
                prepared.param_types.iter().map(Option::as_ref).collect();
            let mut params = deserialize_parameters(portal, &inferred)?;
            array_param::fix_text_arrays(portal, &mut params)?;
            Some(params)
        };
        let output = self
            .handler
            .execute(&session, prepared, params)
            .await
            .inspect_err(|e| log_statement_error(e, &prepared.sql))
            .map_err(pg_error)?;
        self.to_response(client, output, &portal.result_column_format).await
    }
}
