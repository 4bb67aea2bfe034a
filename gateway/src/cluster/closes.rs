//! Scheduler connections that say when they close.
//!
//! Every executor keeps an HTTP/2 connection to the scheduler open (it polls
//! and heartbeats over it). When an executor process dies, its kernel closes
//! that connection at once, long before a heartbeat is missed. Each accepted
//! connection is wrapped here so that its end is reported, with the peer's
//! address, to the loss watch (`watch.rs`), which then probes that host's
//! executors right away instead of at its next tick.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

/// An accepted scheduler connection that reports its peer when dropped.
#[derive(Debug)]
pub(super) struct Reporting {
    inner: TlsStream<TcpStream>,
    peer: Option<SocketAddr>,
    closed: mpsc::UnboundedSender<SocketAddr>,
}

impl Reporting {
    pub(super) fn new(inner: TlsStream<TcpStream>, closed: mpsc::UnboundedSender<SocketAddr>) -> Self {
        let peer = inner.get_ref().0.peer_addr().ok();
        Self { inner, peer, closed }
    }
}

impl Drop for Reporting {
    fn drop(&mut self) {
        if let Some(peer) = self.peer {
            // The watch may be gone at shutdown; nothing to report then.
            let _ = self.closed.send(peer);
        }
    }
}

impl Connected for Reporting {
    type ConnectInfo = <TlsStream<TcpStream> as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Reporting {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Reporting {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
