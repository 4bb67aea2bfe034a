//! The gateway's catalog served as a Hive Metastore (`--hms-listen`), so
//! Spark, Hive, Trino and Python HMS clients read and write it.
//!
//! The Thrift types and per-call messages are the `hive_metastore` crate's
//! (generated from Hive's `hive_metastore.thrift`); the connection loop is
//! written here: binary protocol on a buffered (unframed) transport, as Hive's
//! own clients speak by default. Each message is read whole and checked
//! first (`message`: lengths, nesting, UTF-8), then decoded by method name,
//! answered by [`calls`], and a call Sluice does not serve gets a Thrift
//! `TApplicationException` (UNKNOWN_METHOD), never a dropped connection.
//!
//! There is no authentication in this protocol without SASL: the endpoint
//! listens on loopback only (checked at start) and acts with the bootstrap
//! administrator's rights, as the pg port trusts loopback without a password.

mod calls;
pub(crate) mod convert;
mod filter;
mod lenient;
mod message;

use std::sync::Arc;

use bytes::BytesMut;
use hive_metastore::{ThriftHiveMetastoreRequestRecv, ThriftHiveMetastoreResponseSend};
use pilota::thrift::binary::{TAsyncBinaryProtocol, TBinaryProtocol};
use pilota::thrift::{
    ApplicationException, ApplicationExceptionKind, Message, TAsyncInputProtocol, TMessageIdentifier, TMessageType,
    TOutputProtocol, ThriftException,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use volo_thrift::EntryMessage;

pub use self::calls::Metastore as HmsService;

/// Serves `listener` until `shutdown`; each connection in a task of its own.
pub async fn serve(listener: TcpListener, service: Arc<HmsService>, shutdown: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("hms: accept failed: {e}");
                    continue;
                }
            },
        };
        let service = Arc::clone(&service);
        let shutdown = shutdown.clone();
        let span = tracing::info_span!("hms_connection", %peer);
        tokio::spawn(
            async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    r = connection(stream, &service) => if let Err(e) = r {
                        tracing::debug!("hms connection ended: {e}");
                    },
                }
            }
            .instrument(span),
        );
    }
}

/// What a request is answered with.
enum Answer {
    Reply(Box<ThriftHiveMetastoreResponseSend>),
    Exception(ApplicationException),
}

async fn connection(stream: TcpStream, service: &HmsService) -> Result<(), ConnectionError> {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let mut pending = BytesMut::new();
    loop {
        // A whole, checked message (see `message`), or the end.
        let bytes = match message::read(&mut read, &mut pending).await {
            Ok(bytes) => bytes,
            Err(message::MessageError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut input = TAsyncBinaryProtocol::new(&bytes[..]);
        let ident = input.read_message_begin().await?;
        tracing::debug!(call = %ident.name, "hms call");
        let decoded = match lenient::decode(&mut input, &ident.name).await {
            Some(decoded) => decoded,
            None => ThriftHiveMetastoreRequestRecv::decode_async(&mut input, &ident).await,
        };
        let answer = match decoded {
            Ok(request) => match service.call(request).await {
                Some(response) => Answer::Reply(Box::new(response)),
                None => Answer::Exception(ApplicationException::new(
                    ApplicationExceptionKind::UNKNOWN_METHOD,
                    format!("Sluice's metastore does not serve {}", ident.name),
                )),
            },
            // A method Hive's interface does not have.
            Err(ThriftException::Application(e)) => Answer::Exception(e),
            // The message was whole: answer and read the next one.
            Err(e) => Answer::Exception(ApplicationException::new(
                ApplicationExceptionKind::PROTOCOL_ERROR,
                format!("cannot decode the arguments of {}: {e}", ident.name),
            )),
        };
        let mut buf = BytesMut::new();
        let mut out = TBinaryProtocol::new(&mut buf, false);
        match answer {
            Answer::Reply(response) => {
                out.write_message_begin(&TMessageIdentifier::new(
                    ident.name.clone(),
                    TMessageType::Reply,
                    ident.sequence_number,
                ))?;
                response.encode(&mut out)?;
            }
            Answer::Exception(e) => {
                tracing::info!(call = %ident.name, "hms: refused: {}", e.message());
                out.write_message_begin(&TMessageIdentifier::new(
                    ident.name.clone(),
                    TMessageType::Exception,
                    ident.sequence_number,
                ))?;
                Message::encode(&e, &mut out)?;
            }
        }
        out.write_message_end()?;
        write.write_all(&buf).await?;
    }
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("{0}")]
    Message(#[from] message::MessageError),
    #[error("{0}")]
    Thrift(#[from] ThriftException),
    #[error("writing the answer: {0}")]
    Io(#[from] std::io::Error),
}
