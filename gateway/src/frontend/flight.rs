//! Arrow Flight SQL (arrow-flight `FlightSqlService`): Basic-auth handshake
//! returning a signed bearer token, statement query/update, prepared
//! statements with parameters, and the metadata commands ADBC and JDBC use.
//!
//! Tickets and prepared-statement handles are self-contained and signed
//! ([`sluice_proto::StatementHandle`]): any gateway with the same key serves a
//! DoGet without a lookup, and a forged or altered ticket is refused.

mod cancel;
mod endpoints;
mod info;
mod ingest;
mod listen;
mod params;
mod service;
mod session;
mod shown;

use cancel::{CANCEL_FLIGHT_INFO, no_transactions};
use endpoints::encoder;
use info::{sql_info, xdbc_info};
use params::{parameter_schema, params_from_ipc, params_of, params_to_ipc};
use session::{CLOSE_SESSION, GET_SESSION_OPTIONS, SET_SESSION_OPTIONS};
use shown::shown_schema;

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    ActionEndSavepointRequest, ActionEndTransactionRequest, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authenticator, Principal, Purpose};
use crate::catalog::CATALOG_NAME;
use crate::error::QueryError;
use crate::frontend::credentials;
use crate::query::write::conform;
use crate::query::{Prepared, QueryHandler, QueryOutput, ResultParts, positional_placeholders};
use crate::session::Session;
use sluice_proto::{FlightSession, StatementHandle};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub use listen::Limits;

/// The Flight SQL service.
#[derive(Clone)]
pub struct FlightSqlServer {
    auth: Arc<dyn Authenticator>,
    handler: Arc<dyn QueryHandler>,
    sql_info: Arc<SqlInfoData>,
    xdbc: Arc<XdbcTypeInfoData>,
    running: Arc<cancel::Running>,
    sessions: Arc<session::Sessions>,
}

impl std::fmt::Debug for FlightSqlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSqlServer")
            .field("handler", &self.handler)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn schema_ipc(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| internal(e))?;
    Ok(bytes)
}

/// Rows affected, from a completion tag (`INSERT 0 5` → 5).
fn affected(output: &QueryOutput) -> i64 {
    i64::try_from(output.command_rows()).unwrap_or(i64::MAX)
}

impl FlightSqlServer {
    pub fn new(auth: Arc<dyn Authenticator>, handler: Arc<dyn QueryHandler>) -> Result<Self, Status> {
        Ok(FlightSqlServer {
            auth,
            handler,
            sql_info: Arc::new(sql_info()?),
            xdbc: Arc::new(xdbc_info()?),
            running: Arc::new(cancel::Running::default()),
            sessions: Arc::new(session::Sessions::default()),
        })
    }

    /// The caller's principal. The future does not borrow the request (a
    /// streaming request body is not `Sync`).
    fn principal<T>(&self, req: &Request<T>) -> impl Future<Output = Result<Principal, Status>> + Send + '_ {
        let header = req
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization header"))
            .and_then(|h| {
                h.to_str()
                    .map(str::to_owned)
                    .map_err(|_| Status::unauthenticated("malformed authorization header"))
            });
        let peer = peer_ip(req);
        async move {
            credentials::authenticate(self.auth.as_ref(), &header?, peer, "flight")
                .await
                .map_err(|e| Status::unauthenticated(e.to_string()))
        }
    }

    /// The principal and the Flight session a request names.
    async fn caller<T>(&self, req: &Request<T>) -> Result<(Principal, Option<FlightSession>), Status> {
        let principal = self.principal(req).await?;
        let session = self.flight_session(req, &principal)?;
        Ok((principal, session))
    }

    /// Plans a statement written with Flight/JDBC `?` markers.
    async fn prepare(&self, session: &Session, sql: &str) -> Result<Arc<Prepared>, Status> {
        Ok(self.handler.prepare(session, &positional_placeholders(sql)).await?)
    }

    /// Signs `handle` as a ticket or a prepared-statement handle.
    fn seal(&self, purpose: Purpose, handle: &StatementHandle) -> bytes::Bytes {
        self.auth.sign(purpose, &handle.encode_to_vec()).into()
    }

    fn unseal(&self, purpose: Purpose, bytes: &[u8], principal: &Principal) -> Result<StatementHandle, Status> {
        let what = match purpose {
            Purpose::PreparedHandle => "prepared statement handle",
            _ => "ticket",
        };
        let payload = self
            .auth
            .open(purpose, bytes)
            .ok_or_else(|| Status::permission_denied(format!("{what} is invalid or expired")))?;
        let handle =
            StatementHandle::decode(payload.as_slice()).map_err(|_| Status::invalid_argument("malformed ticket"))?;
        if handle.user != principal.user {
            return Err(Status::permission_denied(format!("{what} was issued to another user")));
        }
        Ok(handle)
    }

    fn info(
        &self,
        schema: &Schema,
        ticket: bytes::Bytes,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(internal)?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// Plans a statement; non-queries run now (their FlightInfo has an
    /// empty schema and an `executed` ticket), queries run at DoGet — but a
    /// lake query of a session that accepts several endpoints runs now, its
    /// results split into parts (one endpoint each).
    async fn plan_statement(
        &self,
        principal: &Principal,
        options: Option<FlightSession>,
        sql: &str,
        params_ipc: Vec<u8>,
    ) -> Result<(SchemaRef, StatementHandle, Option<ResultParts>), Status> {
        let session = self.open_session(principal, options.as_ref()).await?;
        let prepared = self.prepare(&session, sql).await?;
        let mut handle = StatementHandle {
            sql: sql.to_owned(),
            params_ipc,
            user: principal.user.clone(),
            issued_at: now(),
            executed: false,
            session: options,
            result_part: Vec::new(),
        };
        let params = || params_from_ipc(&handle.params_ipc);
        if prepared.plan.is_none() || prepared.schema.fields().is_empty() {
            drop(self.handler.execute(&session, &prepared, params()?).await?);
            handle.executed = true;
        } else if let Some(n) = handle.session.as_ref().and_then(|s| s.endpoints).filter(|n| *n > 1) {
            // Anything but results in parts (a query that runs in the
            // gateway) was not run: it streams at DoGet.
            if let QueryOutput::Parts {
                schema,
                parts: Some(parts),
            } = self.handler.execute_in_parts(&session, &prepared, params()?, n).await?
            {
                return Ok((shown_schema(&schema, handle.session.as_ref()), handle, Some(parts)));
            }
        }
        Ok((shown_schema(&prepared.schema, handle.session.as_ref()), handle, None))
    }

    async fn stream_handle(
        &self,
        principal: &Principal,
        handle: StatementHandle,
        ticket: bytes::Bytes,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let encoder = encoder(handle.session.as_ref())?;
        if handle.executed {
            let stream = encoder
                .with_schema(Arc::new(Schema::empty()))
                .build(futures::stream::empty())
                .map_err(Status::from);
            return Ok(Response::new(Box::pin(stream)));
        }
        let session = self.open_session(principal, handle.session.as_ref()).await?;
        // Registered before planning, so a cancel finds it from the start.
        let registration = self.running.register(ticket, &session)?;
        // The schema the FlightInfo announced: the prepared statement's for
        // one run now, the result's own (carried in the part) for a part.
        let (announced, output) = if handle.result_part.is_empty() {
            let prepared = self.prepare(&session, &handle.sql).await?;
            let params = params_from_ipc(&handle.params_ipc)?;
            let output = self.handler.execute(&session, &prepared, params).await?;
            (Some(Arc::clone(&prepared.schema)), output)
        } else {
            (None, self.handler.read_part(&session, &handle.result_part).await?)
        };
        let QueryOutput::Rows { schema, stream } = output else {
            return Err(Status::internal("statement produced no rows"));
        };
        let schema = shown_schema(announced.as_ref().unwrap_or(&schema), handle.session.as_ref());
        let target = Arc::clone(&schema);
        // The DoGet schema must equal the FlightInfo schema, nullability included.
        let batches = stream.map(move |b| {
            let _registered = &registration;
            let b = b.map_err(|e| FlightError::Tonic(Box::new(Status::from(QueryError::from(e)))))?;
            conform(b, &target).map_err(|e| FlightError::Tonic(Box::new(Status::from(e))))
        });
        let stream = encoder.with_schema(schema).build(batches).map_err(Status::from);
        let mut response = Response::new(Box::pin(stream) as BoxStream<arrow_flight::FlightData>);
        // The statement's id in system.queries (for sluice_cancel_query).
        if let Some(id) = session
            .guc("sluice.query_id")
            .and_then(|id| MetadataValue::try_from(id).ok())
        {
            response.metadata_mut().insert("x-sluice-query-id", id);
        }
        Ok(response)
    }

    async fn metadata_batch(
        &self,
        batch: RecordBatch,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let schema = batch.schema();
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async move { Ok(batch) }))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    /// FlightInfo of a key command: Sluice tables have no keys, so the
    /// answer is always empty with the spec's `schema`.
    async fn empty_key_info(
        &self,
        schema: &Schema,
        command: impl ProstMessageExt + Send,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        self.info(schema, command.as_any().encode_to_vec().into(), request.into_inner())
    }

    /// DoGet of a key command: no rows, the spec's `schema`.
    async fn empty_key_rows(
        &self,
        schema: Schema,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        self.principal(&request).await?;
        self.metadata_batch(RecordBatch::new_empty(Arc::new(schema))).await
    }
}

/// Result schema of CommandGetPrimaryKeys (Flight SQL spec).
fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

/// Result schema of CommandGetExportedKeys/ImportedKeys/CrossReference.
fn foreign_keys_schema() -> Schema {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ])
}

fn peer_ip<T>(req: &Request<T>) -> Option<IpAddr> {
    req.extensions().get::<listen::ConnInfo>().map(|c| c.peer.ip())
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlServer {
    type FlightService = FlightSqlServer;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let principal = self.principal(&request).await?;
        let token = self.auth.issue_token(&principal);
        tracing::info!(user = principal.user, "flight handshake");
        let result = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let stream: Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>> =
            Box::pin(futures::stream::iter(vec![Ok(result)]));
        let mut resp = Response::new(stream);
        let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(internal)?;
        resp.metadata_mut().insert("authorization", value);
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (principal, options) = self.caller(&request).await?;
        let (schema, handle, parts) = self
            .plan_statement(&principal, options, &query.query, Vec::new())
            .await?;
        self.statement_info(&schema, handle, parts, request.into_inner())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        // A prepared statement runs with the session's options as they are
        // now (PostgreSQL re-plans one when search_path changes).
        let (principal, options) = self.caller(&request).await?;
        let handle = self.unseal(Purpose::PreparedHandle, &cmd.prepared_statement_handle, &principal)?;
        let (schema, handle, parts) = self
            .plan_statement(&principal, options, &handle.sql, handle.params_ipc)
            .await?;
        self.statement_info(&schema, handle, parts, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request).await?;
        let handle = self.unseal(Purpose::Ticket, &ticket.statement_handle, &principal)?;
        let raw = request.get_ref().ticket.clone();
        self.stream_handle(&principal, handle, raw).await
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let (principal, options) = self.caller(&request).await?;
        let mut handle = self.unseal(Purpose::PreparedHandle, &cmd.prepared_statement_handle, &principal)?;
        handle.session = options;
        let raw = request.get_ref().ticket.clone();
        self.stream_handle(&principal, handle, raw).await
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (principal, options) = self.caller(&request).await?;
        let session = self.open_session(&principal, options.as_ref()).await?;
        let prepared = self.prepare(&session, &cmd.query).await?;
        let out = self.handler.execute(&session, &prepared, None).await?;
        Ok(affected(&out))
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (principal, options) = self.caller(&request).await?;
        let session = self.open_session(&principal, options.as_ref()).await?;
        let target = ingest::target(&cmd)?;
        let stream = ingest::batches(request.into_inner()).await?;
        let rows = self.handler.ingest(&session, target, stream).await?;
        Ok(i64::try_from(rows).unwrap_or(i64::MAX))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let (principal, options) = self.caller(&request).await?;
        let session = self.open_session(&principal, options.as_ref()).await?;
        let prepared = self.prepare(&session, &query.query).await?;
        let handle = StatementHandle {
            sql: query.query.clone(),
            params_ipc: Vec::new(),
            user: principal.user.clone(),
            issued_at: now(),
            executed: false,
            // Executions use the session's options at the time (see
            // get_flight_info_prepared_statement), so the handle keeps none.
            session: None,
            result_part: Vec::new(),
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: self.seal(Purpose::PreparedHandle, &handle),
            dataset_schema: schema_ipc(&shown_schema(&prepared.schema, options.as_ref()))?,
            parameter_schema: schema_ipc(&parameter_schema(&prepared))?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let principal = self.principal(&request).await?;
        let mut handle = self.unseal(Purpose::PreparedHandle, &cmd.prepared_statement_handle, &principal)?;
        let batches: Vec<RecordBatch> = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        )
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("cannot read parameters: {e}")))?;
        let batch = batches.into_iter().find(|b| b.num_rows() > 0);
        handle.params_ipc = match batch {
            Some(b) => {
                params_of(&b)?;
                params_to_ipc(&b)?
            }
            None => Vec::new(),
        };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(self.seal(Purpose::PreparedHandle, &handle)),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (principal, options) = self.caller(&request).await?;
        let handle = self.unseal(Purpose::PreparedHandle, &cmd.prepared_statement_handle, &principal)?;
        let batches: Vec<RecordBatch> = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        )
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("cannot read parameters: {e}")))?;
        let session = self.open_session(&principal, options.as_ref()).await?;
        let prepared = self.prepare(&session, &handle.sql).await?;
        let mut total = 0;
        let param_rows: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        if param_rows.is_empty() {
            let out = self
                .handler
                .execute(&session, &prepared, params_from_ipc(&handle.params_ipc)?)
                .await?;
            return Ok(affected(&out));
        }
        for b in param_rows {
            for row in 0..b.num_rows() {
                let params = params_of(&b.slice(row, 1))?;
                let out = self.handler.execute(&session, &prepared, Some(params)).await?;
                total += affected(&out);
            }
        }
        Ok(total)
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        // Handles are self-contained: nothing is held server-side.
        self.principal(&request).await?;
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.into_builder().schema();
        self.info(&schema, query.as_any().encode_to_vec().into(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let mut b = query.into_builder();
        b.append(CATALOG_NAME);
        self.metadata_batch(b.build().map_err(internal)?).await
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.clone().into_builder().schema();
        self.info(&schema, query.as_any().encode_to_vec().into(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request).await?;
        let mut b = query.into_builder();
        for db in self.handler.schemas(&principal.user, &principal.roles) {
            b.append(CATALOG_NAME, db);
        }
        self.metadata_batch(b.build().map_err(internal)?).await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.clone().into_builder().schema();
        self.info(&schema, query.as_any().encode_to_vec().into(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request).await?;
        let mut b = query.into_builder();
        for t in self.handler.tables(&principal.user, &principal.roles) {
            b.append(CATALOG_NAME, &t.schema, &t.name, t.kind, &t.arrow_schema)
                .map_err(internal)?;
        }
        self.metadata_batch(b.build().map_err(internal)?).await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.into_builder().schema();
        self.info(&schema, query.as_any().encode_to_vec().into(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let mut b = query.into_builder();
        b.append("TABLE");
        b.append("VIEW");
        self.metadata_batch(b.build().map_err(internal)?).await
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.info(&schema, query.as_any().encode_to_vec().into(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let batch = query.into_builder(&self.sql_info).build().map_err(internal)?;
        self.metadata_batch(batch).await
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.into_builder(&self.xdbc).schema();
        self.info(&schema, query.as_any().encode_to_vec().into(), request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let batch = query.into_builder(&self.xdbc).build().map_err(internal)?;
        self.metadata_batch(batch).await
    }

    // Sluice tables have no primary or foreign keys: the key commands answer
    // with empty results of the schemas the Flight SQL spec defines (JDBC's
    // DatabaseMetaData treats UNIMPLEMENTED as fatal).
    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.empty_key_info(&primary_keys_schema(), query, request).await
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.empty_key_rows(primary_keys_schema(), request).await
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.empty_key_info(&foreign_keys_schema(), query, request).await
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.empty_key_rows(foreign_keys_schema(), request).await
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.empty_key_info(&foreign_keys_schema(), query, request).await
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.empty_key_rows(foreign_keys_schema(), request).await
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.empty_key_info(&foreign_keys_schema(), query, request).await
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.empty_key_rows(foreign_keys_schema(), request).await
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if matches!(
            request.get_ref().r#type.as_str(),
            SET_SESSION_OPTIONS | GET_SESSION_OPTIONS | CLOSE_SESSION
        ) {
            return self.do_session_action(request).await;
        }
        if request.get_ref().r#type != CANCEL_FLIGHT_INFO {
            return Err(Status::unimplemented(format!(
                "action \"{}\" is not supported",
                request.get_ref().r#type
            )));
        }
        let principal = self.principal(&request).await?;
        let cmd = CancelFlightInfoRequest::decode(request.get_ref().body.as_ref())
            .map_err(|_| Status::invalid_argument("malformed CancelFlightInfoRequest"))?;
        let info = cmd
            .info
            .ok_or_else(|| Status::invalid_argument("CancelFlightInfoRequest without a FlightInfo"))?;
        let status = self.cancel_info(&principal, &info)?;
        let body = CancelFlightInfoResult { status: status as i32 }.encode_to_vec();
        let result = arrow_flight::Result { body: body.into() };
        Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(result)]))))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        let action = |name: &str, description: &str| {
            Ok(ActionType {
                r#type: name.to_owned(),
                description: description.to_owned(),
            })
        };
        Some(vec![
            action(CANCEL_FLIGHT_INFO, "Cancel the query of a FlightInfo (stops its job)"),
            action(SET_SESSION_OPTIONS, "Set session options: catalog, schema, time_zone"),
            action(GET_SESSION_OPTIONS, "Get the session options"),
            action(CLOSE_SESSION, "Close the session (its options are dropped)"),
        ])
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let principal = self.principal(&request).await?;
        let info =
            FlightInfo::decode(query.info.as_ref()).map_err(|_| Status::invalid_argument("malformed FlightInfo"))?;
        // CancelResult (not exported by arrow-flight) numbers its values as
        // CancelStatus does.
        let status = self.cancel_info(&principal, &info)?;
        Ok(ActionCancelQueryResult { result: status as i32 })
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        self.principal(&request).await?;
        Err(no_transactions())
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.principal(&request).await?;
        Err(no_transactions())
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        self.principal(&request).await?;
        Err(no_transactions())
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.principal(&request).await?;
        Err(no_transactions())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
