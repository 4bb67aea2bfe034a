//! `COPY table FROM STDIN`: the client's CopyData messages are decoded into
//! Arrow batches (`decode`, `binary`) and streamed into
//! [`QueryHandler::ingest`], which writes them as one atomic commit. The
//! ingest runs in its own task from CopyInResponse on; CopyData feeds it
//! through a bounded channel (back-pressure instead of buffering), CopyDone
//! ends the stream and waits for the commit, CopyFail, a CancelRequest or a
//! lost connection aborts it, so no partial data is ever visible.

mod binary;
mod decode;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::{CopyResponse, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Queries, pg_error, session_of};
use crate::error::{ErrorKind, QueryError};
use crate::query::copy::{CopyFormat, CopyOptions};
use crate::query::ingest::IngestTarget;

/// CopyData messages in flight between the connection and the ingest.
const CHANNEL_DEPTH: usize = 16;

enum Message {
    Data(Bytes),
    Done,
    Fail(String),
}

/// The COPY FROM running on a connection.
struct Running {
    tx: mpsc::Sender<Message>,
    ingest: JoinHandle<Result<u64, QueryError>>,
}

/// Per-connection slot of the running COPY FROM (pgwire's session
/// extensions cannot remove a value, so the slot holds an `Option`).
#[derive(Default)]
struct CopySlot(Mutex<Option<Running>>);

impl Queries {
    /// Starts the ingest of a COPY FROM and answers with CopyInResponse.
    pub(super) async fn start_copy_in<C: ClientInfo>(
        &self,
        client: &C,
        schema: SchemaRef,
        target: IngestTarget,
        options: CopyOptions,
    ) -> PgWireResult<CopyResponse> {
        let session = session_of(client)?;
        let columns = schema.fields().len();
        let decoder = decode::Decoder::new(Arc::clone(&schema), &options).map_err(pg_error)?;
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        // The COPY is the session's statement now: a CancelRequest ends it.
        let token = session.begin_statement();
        let stream = batches(schema, decoder, rx, token);
        let handler = Arc::clone(&self.handler);
        let ingest = tokio::spawn(async move { handler.ingest(&session, target, stream).await });
        let slot = client.session_extensions().get_or_insert_with(CopySlot::default);
        if let Some(old) = slot.0.lock().await.replace(Running { tx, ingest }) {
            old.ingest.abort();
        }
        let format = if options.format == CopyFormat::Binary { 1 } else { 0 };
        Ok(CopyResponse::new(format, columns, futures::stream::empty()))
    }
}

/// The decoded batches of the data the channel brings. Only an explicit
/// CopyDone ends the stream cleanly; a channel closed without it (the
/// connection was lost) or a cancelled statement is an error, so the
/// ingest commits nothing.
fn batches(
    schema: SchemaRef,
    decoder: decode::Decoder,
    rx: mpsc::Receiver<Message>,
    token: CancellationToken,
) -> SendableRecordBatchStream {
    let to_df = |e: QueryError| DataFusionError::External(Box::new(e));
    let stream = futures::stream::unfold(Some((rx, decoder, token)), move |state| async move {
        let (mut rx, mut decoder, token) = state?;
        loop {
            if token.is_cancelled() {
                return Some((Err(to_df(QueryError::cancelled())), None));
            }
            if let Some(batch) = decoder.ready_batch() {
                return Some((batch.map_err(to_df), Some((rx, decoder, token))));
            }
            let message = tokio::select! {
                biased;
                () = token.cancelled() => return Some((Err(to_df(QueryError::cancelled())), None)),
                message = rx.recv() => message,
            };
            let failed = match message {
                Some(Message::Data(data)) => match decoder.feed(&data) {
                    Ok(()) => continue,
                    Err(e) => e,
                },
                Some(Message::Done) => {
                    return match decoder.finish() {
                        Ok(Some(batch)) => Some((Ok(batch), None)),
                        Ok(None) => None,
                        Err(e) => Some((Err(to_df(e)), None)),
                    };
                }
                Some(Message::Fail(reason)) => {
                    QueryError::new(ErrorKind::Cancelled, format!("COPY from stdin failed: {reason}"))
                }
                None => QueryError::new(ErrorKind::Cancelled, "COPY from stdin ended without CopyDone"),
            };
            return Some((Err(to_df(failed)), None));
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

impl Queries {
    async fn take_copy<C: ClientInfo>(client: &C) -> Option<Running> {
        let slot = client.session_extensions().get::<CopySlot>()?;
        slot.0.lock().await.take()
    }

    async fn finish_copy(running: Running, last: Message) -> Result<u64, QueryError> {
        // The ingest may have stopped already (bad data): its error wins.
        let _ = running.tx.send(last).await;
        drop(running.tx);
        match running.ingest.await {
            Ok(result) => result,
            Err(e) => Err(QueryError::new(
                ErrorKind::Internal,
                format!("COPY ingest task failed: {e}"),
            )),
        }
    }
}

#[async_trait]
impl CopyHandler for Queries {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(slot) = client.session_extensions().get::<CopySlot>()
            && let Some(running) = slot.0.lock().await.as_ref()
        {
            // A closed channel means the ingest already failed; its error
            // is reported at CopyDone, as PostgreSQL reports it after the
            // client's data.
            let _ = running.tx.send(Message::Data(copy_data.data)).await;
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(running) = Self::take_copy(client).await else {
            return Err(pg_error(QueryError::new(
                ErrorKind::Internal,
                "CopyDone without a COPY in progress",
            )));
        };
        let rows = Self::finish_copy(running, Message::Done).await.map_err(pg_error)?;
        let tag = Tag::new("COPY").with_rows(usize::try_from(rows).unwrap_or(usize::MAX));
        client.send(PgWireBackendMessage::CommandComplete(tag.into())).await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let reason = fail.message;
        if let Some(running) = Self::take_copy(client).await {
            let _ = Self::finish_copy(running, Message::Fail(reason.clone())).await;
        }
        pg_error(QueryError::new(
            ErrorKind::Cancelled,
            format!("COPY from stdin failed: {reason}"),
        ))
    }
}
