//! The Flight SQL listener: connections counted against
//! `--flight-max-connections` (calls on connections beyond it are answered
//! `RESOURCE_EXHAUSTED`, gRPC's "too many connections"), and shutdown in
//! two steps: stop accepting and let calls in flight finish within
//! `--shutdown-timeout`, then cancel the DoGets still streaming.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::{Request, Status};

use super::{FlightSqlServer, service};

/// How long cancelled DoGets get to end before the server stops waiting.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Connection limits and shutdown of the Flight server.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
    /// Open connections (a metric).
    pub connections: prometheus::IntGauge,
}

/// What a call learns about its connection (a request extension).
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnInfo {
    pub(super) peer: SocketAddr,
    /// The connection came over the cap: its calls are refused.
    over_cap: bool,
}

/// A client connection holding its place under the cap while it is open.
struct Conn<IO> {
    io: IO,
    info: ConnInfo,
    _permit: Option<OwnedSemaphorePermit>,
    _open: crate::frontend::OpenConnection,
}

impl<IO> Connected for Conn<IO> {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Conn<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Conn<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Refuses every call of a connection over the cap.
fn refuse_over_cap(max: usize) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| match req.extensions().get::<ConnInfo>() {
        Some(c) if c.over_cap => Err(Status::resource_exhausted(format!(
            "too many connections: this gateway serves at most {max} Flight SQL connections \
             (--flight-max-connections)"
        ))),
        _ => Ok(req),
    }
}

impl FlightSqlServer {
    /// Serves `listener` until `shutdown`; then stops accepting, lets calls
    /// in flight finish within the shutdown timeout, cancels the DoGets
    /// still streaming and returns.
    pub async fn run(
        self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> Result<(), tonic::transport::Error> {
        let running = Arc::clone(&self.running);
        let service = FlightServiceServer::new(service::Service(self)).max_decoding_message_size(64 * 1024 * 1024);
        let router = tonic::transport::Server::builder()
            .layer(tonic::service::InterceptorLayer::new(refuse_over_cap(
                limits.max_connections,
            )))
            .add_service(service);
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let (max, gauge) = (limits.max_connections, limits.connections.clone());
        let admit = move |peer: SocketAddr| {
            let permit = Arc::clone(&slots).try_acquire_owned().ok();
            if permit.is_none() {
                tracing::warn!(%peer, max, "too many Flight connections; refusing calls with RESOURCE_EXHAUSTED");
            }
            let over_cap = permit.is_none();
            (
                ConnInfo { peer, over_cap },
                permit,
                crate::frontend::OpenConnection::new(&gauge),
            )
        };
        let drained = shutdown.clone().cancelled_owned();
        let mut serve: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> = match tls {
            // TLS only: the handshakes run in `tls::incoming`, with the
            // certificate current at each one (reloaded on SIGHUP).
            Some(acceptor) => {
                let rx = crate::tls::incoming(listener, acceptor, shutdown.clone());
                let incoming = futures::stream::unfold((rx, admit), |(mut rx, admit)| async move {
                    let (io, peer) = rx.recv().await?;
                    let (info, permit, open) = admit(peer);
                    let conn = Conn {
                        io,
                        info,
                        _permit: permit,
                        _open: open,
                    };
                    Some((Ok::<_, std::io::Error>(conn), (rx, admit)))
                });
                Box::pin(router.serve_with_incoming_shutdown(incoming, drained))
            }
            None => {
                let incoming = futures::stream::unfold((listener, admit), |(l, admit)| async move {
                    let r = l.accept().await.map(|(io, peer)| {
                        let _ = io.set_nodelay(true);
                        let (info, permit, open) = admit(peer);
                        Conn {
                            io,
                            info,
                            _permit: permit,
                            _open: open,
                        }
                    });
                    Some((r, (l, admit)))
                });
                Box::pin(router.serve_with_incoming_shutdown(incoming, drained))
            }
        };
        let overdue = async {
            shutdown.cancelled().await;
            tokio::time::sleep(limits.shutdown_timeout).await;
        };
        tokio::select! {
            r = &mut serve => return r,
            () = overdue => {}
        }
        let n = running.terminate_all();
        tracing::warn!(
            streams = n,
            "flight: --shutdown-timeout reached; cancelling the calls still running"
        );
        match tokio::time::timeout(CANCEL_GRACE, serve).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("flight: calls still open; closing them");
                Ok(())
            }
        }
    }
}
