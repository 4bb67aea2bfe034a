//! `POST /v1/statement` on the HTTP port: one SQL statement per request,
//! for serverless functions and scripts that speak neither Postgres nor
//! gRPC. The body is the SQL text (or JSON `{"sql": "..."}`); the caller
//! authenticates as on the Flight port (`Authorization: Basic` over TLS or
//! from loopback, `Bearer` with a JWT or a Flight token).
//!
//! Results stream as they are computed: `Accept:
//! application/vnd.apache.arrow.stream` gives an Arrow IPC stream, anything
//! else JSON — `{"query_id", "columns": [{"name", "type"}], "rows": [{..},
//! ...], "row_count"}`, or `{"query_id", "command", "row_count"}` for a
//! statement without rows. An error before the first byte is a JSON
//! `{"error": {"sqlstate", "message"}}` with an HTTP status from the same
//! SQLSTATE the other protocols send; once rows are flowing, JSON ends with
//! that `"error"` member and an Arrow stream is cut short. The statement's
//! id (`system.queries`) is the `X-Sluice-Query-Id` header.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use crate::auth::Authenticator;
use crate::error::{ErrorKind, QueryError};
use crate::frontend::credentials::{self, CredentialError};
use crate::query::audit::ClientAddr;
use crate::query::{QueryHandler, QueryOutput};

/// The Arrow IPC stream media type.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// What the endpoint needs.
#[derive(Clone)]
pub struct Rest {
    pub auth: Arc<dyn Authenticator>,
    pub handler: Arc<dyn QueryHandler>,
    /// The port serves TLS (passwords may travel from anywhere).
    pub tls: bool,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest").field("tls", &self.tls).finish_non_exhaustive()
    }
}

/// The HTTP status of an error, from its kind.
fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidPassword => StatusCode::UNAUTHORIZED,
        ErrorKind::InsufficientPrivilege => StatusCode::FORBIDDEN,
        ErrorKind::UndefinedTable | ErrorKind::UndefinedSchema => StatusCode::NOT_FOUND,
        ErrorKind::Cancelled => StatusCode::CONFLICT,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::FeatureNotSupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::AdminShutdown | ErrorKind::ResourcesExhausted | ErrorKind::NoCapacity | ErrorKind::Unavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn error_body(e: &QueryError) -> serde_json::Value {
    serde_json::json!({ "error": { "sqlstate": e.sqlstate(), "message": e.message } })
}

fn refuse(e: &QueryError) -> Response {
    let mut r = (status(e.kind), error_body(e).to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if e.kind == ErrorKind::InvalidPassword {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"sluice\", charset=\"UTF-8\""),
        );
    }
    r
}

/// The SQL of a request body: JSON `{"sql": ...}` or the text itself.
fn sql_of(headers: &HeaderMap, body: &[u8]) -> Result<String, QueryError> {
    let bad = |m: &str| QueryError::new(ErrorKind::Syntax, m);
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let sql = if json {
        #[derive(serde::Deserialize)]
        struct Statement {
            sql: String,
        }
        serde_json::from_slice::<Statement>(body)
            .map_err(|_| bad("expected a JSON body {\"sql\": \"...\"}"))?
            .sql
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|_| QueryError::new(ErrorKind::InvalidEncoding, "the body is not UTF-8"))?
    };
    if sql.trim().is_empty() {
        return Err(bad("the request holds no SQL statement"));
    }
    Ok(sql)
}

impl Rest {
    /// Serves one `POST /v1/statement`.
    pub async fn statement(&self, peer: IpAddr, headers: HeaderMap, body: Bytes) -> Response {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "http_statement",
            %peer,
            user = tracing::field::Empty,
            session_id = tracing::field::Empty
        );
        match self.answer(peer, &headers, &body).instrument(span).await {
            Ok(r) => r,
            Err(e) => refuse(&e),
        }
    }

    async fn answer(&self, peer: IpAddr, headers: &HeaderMap, body: &[u8]) -> Result<Response, QueryError> {
        let auth_error = |m: &str| QueryError::new(ErrorKind::InvalidPassword, m);
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| auth_error("credentials required"))?
            .to_str()
            .map_err(|_| auth_error("malformed authorization header"))?;
        if value.starts_with("Basic ") && !credentials::password_allowed(self.tls, peer) {
            return Err(auth_error("passwords are accepted over TLS or from loopback only"));
        }
        let principal = credentials::authenticate(self.auth.as_ref(), value, Some(peer), "http")
            .await
            .map_err(|e| match e {
                CredentialError::Auth(_) => auth_error("authentication failed"),
                other => auth_error(&other.to_string()),
            })?;
        let sql = sql_of(headers, body)?;
        let client = ClientAddr {
            protocol: "http",
            peer: Some(peer),
        };
        let session = self.handler.open_session(&principal.user, &principal.roles, client)?;
        tracing::Span::current()
            .record("user", principal.user.as_str())
            .record("session_id", session.id());
        let prepared = self.handler.prepare(&session, &sql).await?;
        let output = self.handler.execute(&session, &prepared, None).await?;
        let query_id = session.guc("sluice.query_id").unwrap_or_default();
        let arrow = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(ARROW_STREAM));
        let mut response = match output {
            QueryOutput::Rows { schema, stream } | QueryOutput::Fetched { schema, stream } => {
                if arrow {
                    arrow_response(schema, stream)
                } else {
                    json_rows(&query_id, schema, stream)
                }
            }
            ref command @ QueryOutput::Command { ref tag } => {
                let rows = command.command_rows();
                let command = tag.split(' ').next().unwrap_or_default();
                json_value(serde_json::json!({ "query_id": query_id, "command": command, "row_count": rows }))
            }
            QueryOutput::TransactionStart | QueryOutput::TransactionEnd { .. } | QueryOutput::SettingChanged { .. } => {
                json_value(serde_json::json!({ "query_id": query_id, "command": "OK", "row_count": 0 }))
            }
            QueryOutput::Empty => json_value(serde_json::json!({ "query_id": query_id, "row_count": 0 })),
            QueryOutput::CopyIn { .. } | QueryOutput::CopyOut { .. } => {
                return Err(QueryError::unsupported("COPY over /v1/statement"));
            }
            // Only Flight asks for results in parts.
            QueryOutput::Parts { .. } => {
                return Err(QueryError::new(
                    crate::error::ErrorKind::Internal,
                    "a result in parts reached the HTTP front end",
                ));
            }
        };
        if let Ok(v) = HeaderValue::from_str(&query_id) {
            response.headers_mut().insert("x-sluice-query-id", v);
        }
        Ok(response)
    }
}

fn json_value(v: serde_json::Value) -> Response {
    let mut r = v.to_string().into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Rows as JSON objects, streamed batch by batch.
fn json_rows(query_id: &str, schema: SchemaRef, stream: SendableRecordBatchStream) -> Response {
    let columns: Vec<serde_json::Value> = schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({ "name": f.name(), "type": f.data_type().to_string() }))
        .collect();
    let head = format!(
        "{{\"query_id\":{},\"columns\":{},\"rows\":[",
        serde_json::Value::from(query_id),
        serde_json::Value::from(columns)
    );
    let state = (stream, 0u64, true, false);
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) }).chain(
        futures::stream::unfold(state, |(mut stream, count, first, done)| async move {
            if done {
                return None;
            }
            match stream.next().await {
                Some(Ok(batch)) => {
                    let (bytes, first) = match json_batch(&batch, first) {
                        Ok(b) => b,
                        Err(e) => {
                            let tail = format!("],\"error\":{}}}", error_body(&e)["error"]);
                            return Some((Ok(Bytes::from(tail)), (stream, count, first, true)));
                        }
                    };
                    let count = count + batch.num_rows() as u64;
                    Some((Ok(bytes), (stream, count, first, false)))
                }
                Some(Err(e)) => {
                    let e = QueryError::from(e);
                    let tail = format!("],\"row_count\":{count},\"error\":{}}}", error_body(&e)["error"]);
                    Some((Ok(Bytes::from(tail)), (stream, count, first, true)))
                }
                None => Some((
                    Ok(Bytes::from(format!("],\"row_count\":{count}}}"))),
                    (stream, count, first, true),
                )),
            }
        }),
    );
    let mut r = Body::from_stream(body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// One batch as comma-separated JSON objects (NULLs written out); answers
/// whether the next batch is still the first with rows.
fn json_batch(batch: &RecordBatch, first: bool) -> Result<(Bytes, bool), QueryError> {
    if batch.num_rows() == 0 {
        return Ok((Bytes::new(), first));
    }
    let mut writer = datafusion::arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, datafusion::arrow::json::writer::JsonArray>(Vec::new());
    writer
        .write(batch)
        .and_then(|()| writer.finish())
        .map_err(|e| QueryError::from(datafusion::error::DataFusionError::from(e)))?;
    let array = writer.into_inner();
    // `[{..},{..}]` → `{..},{..}`, after a comma unless first.
    let inner = array.get(1..array.len().saturating_sub(1)).unwrap_or_default();
    let mut out = Vec::with_capacity(inner.len() + 1);
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(inner);
    Ok((Bytes::from(out), false))
}

/// Rows as an Arrow IPC stream, one message per batch.
fn arrow_response(schema: SchemaRef, stream: SendableRecordBatchStream) -> Response {
    let encoded = futures::stream::unfold(
        Some((stream, None::<StreamWriter<Vec<u8>>>, schema)),
        |state| async move {
            let (mut stream, writer, schema) = state?;
            let mut writer = match writer {
                Some(w) => w,
                None => match StreamWriter::try_new(Vec::new(), &schema) {
                    Ok(w) => w,
                    Err(e) => return Some((Err(std::io::Error::other(e)), None)),
                },
            };
            match stream.next().await {
                Some(Ok(batch)) => {
                    if let Err(e) = writer.write(&batch) {
                        return Some((Err(std::io::Error::other(e)), None));
                    }
                    let bytes = std::mem::take(writer.get_mut());
                    Some((Ok(Bytes::from(bytes)), Some((stream, Some(writer), schema))))
                }
                // Cut short: the client's reader reports a truncated stream.
                Some(Err(e)) => Some((Err(std::io::Error::other(QueryError::from(e).message)), None)),
                None => {
                    let _ = writer.finish();
                    let bytes = std::mem::take(writer.get_mut());
                    Some((Ok(Bytes::from(bytes)), None))
                }
            }
        },
    );
    let mut r = Body::from_stream(encoded).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ARROW_STREAM));
    r
}
