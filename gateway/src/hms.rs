//! The gateway's catalog served as a Hive Metastore (`--hms-listen`), so
//! Spark, Hive, Trino and Python HMS clients read and write it.
//!
//! The Thrift types and per-call messages are the `hive_metastore` crate's
//! (generated from Hive's `hive_metastore.thrift`); the connection loop is
//! written here: binary protocol on a buffered (unframed) transport, as Hive's
//! own clients speak by default. Each request is decoded by method name,
//! answered by [`calls`], and a call Sluice does not serve gets a Thrift
//! `TApplicationException` (UNKNOWN_METHOD), never a dropped connection.
//!
//! There is no authentication in this protocol without SASL: the endpoint
//! listens on loopback only (checked at start) and acts with the bootstrap
//! administrator's rights, as the pg port trusts loopback without a password.

mod calls;
mod convert;
mod filter;
mod lenient;

use std::sync::Arc;

use bytes::BytesMut;
use hive_metastore::{ThriftHiveMetastoreRequestRecv, ThriftHiveMetastoreResponseSend};
use pilota::thrift::binary::{TAsyncBinaryProtocol, TBinaryProtocol};
use pilota::thrift::{
    ApplicationException, ApplicationExceptionKind, Message, TAsyncInputProtocol, TMessageIdentifier, TMessageType,
    TOutputProtocol, TType, ThriftException,
};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
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
        tokio::spawn(async move {
            let span = tracing::info_span!("hms_connection", %peer);
            let _e = span.enter();
            tokio::select! {
                () = shutdown.cancelled() => {}
                r = connection(stream, &service) => if let Err(e) = r {
                    tracing::debug!("hms connection ended: {e}");
                },
            }
        });
    }
}

/// What a request is answered with.
enum Answer {
    Reply(Box<ThriftHiveMetastoreResponseSend>),
    Exception(ApplicationException),
}

async fn connection(stream: TcpStream, service: &HmsService) -> Result<(), ThriftException> {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut input = TAsyncBinaryProtocol::new(BufReader::new(read));
    loop {
        // A closed connection ends here.
        let ident = input.read_message_begin().await?;
        tracing::debug!(call = %ident.name, "hms call");
        let decoded = match lenient::decode(&mut input, &ident.name).await {
            Some(decoded) => decoded,
            None => ThriftHiveMetastoreRequestRecv::decode_async(&mut input, &ident).await,
        };
        let answer = match decoded {
            Ok(request) => {
                input.read_message_end().await?;
                match service.call(request).await {
                    Some(response) => Answer::Reply(Box::new(response)),
                    None => Answer::Exception(ApplicationException::new(
                        ApplicationExceptionKind::UNKNOWN_METHOD,
                        format!("Sluice's metastore does not serve {}", ident.name),
                    )),
                }
            }
            // A method Hive's interface does not have: skip its arguments.
            Err(ThriftException::Application(e)) => {
                input.skip(TType::Struct).await?;
                input.read_message_end().await?;
                Answer::Exception(e)
            }
            Err(e) => return Err(e),
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
        write.write_all(&buf).await.map_err(ThriftException::from)?;
    }
}
