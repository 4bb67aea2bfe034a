//! The connection's socket with its flushes deferred while a batch of the
//! client's messages is being answered. pgwire flushes after nearly every
//! message it sends (ParseComplete, BindComplete, RowDescription,
//! CommandComplete, ReadyForQuery each `send`), so one extended-protocol
//! statement cost five socket writes and as many client wake-ups; PostgreSQL
//! writes once, when it runs out of input. While `hold` is on, writes
//! collect in a buffer that goes out when it reaches [`HOLD_LIMIT`] (so a
//! large result still streams, in big writes) or when the connection loop
//! releases it, which it does once no complete message is left to read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held before they are written anyway.
pub(super) const HOLD_LIMIT: usize = 64 * 1024;

pub(super) struct Deferred<S> {
    inner: S,
    held: BytesMut,
    hold: bool,
}

impl<S> Deferred<S> {
    pub(super) fn new(inner: S) -> Self {
        Deferred {
            inner,
            held: BytesMut::new(),
            hold: false,
        }
    }

    /// Holds (`true`) or lets go of (`false`) what is written; a flush after
    /// letting go writes what was held.
    pub(super) fn hold(&mut self, hold: bool) {
        self.hold = hold;
    }
}

impl<S: AsyncWrite + Unpin> Deferred<S> {
    /// Writes out everything held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deferred<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deferred<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.held.len() >= HOLD_LIMIT || (!this.hold && !this.held.is_empty()) {
            ready!(this.poll_drain(cx))?;
        }
        if this.hold {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.hold && this.held.len() < HOLD_LIMIT {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Whether `buf` (bytes read but not yet decoded) starts with a whole
/// message (type byte, length, body): then the loop answers it before
/// writing anything.
pub(super) fn whole_message_waiting(buf: &[u8]) -> bool {
    buf.len() >= 5 && buf.len() > u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn held_writes_leave_together_when_released() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut d = Deferred::new(a);
        d.hold(true);
        d.write_all(b"one").await.expect("write");
        d.flush().await.expect("flush");
        d.write_all(b"two").await.expect("write");
        d.flush().await.expect("flush");
        let mut buf = [0u8; 16];
        let nothing = tokio::time::timeout(std::time::Duration::from_millis(50), b.read(&mut buf)).await;
        assert!(nothing.is_err(), "nothing leaves while held");
        d.hold(false);
        d.flush().await.expect("flush");
        let n = b.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"onetwo");
    }

    #[tokio::test]
    async fn a_large_held_result_still_streams() {
        let (a, mut b) = tokio::io::duplex(1 << 22);
        let mut d = Deferred::new(a);
        d.hold(true);
        let chunk = vec![7u8; 10_000];
        for _ in 0..10 {
            d.write_all(&chunk).await.expect("write");
            d.flush().await.expect("flush");
        }
        let mut got = vec![0u8; HOLD_LIMIT];
        b.read_exact(&mut got)
            .await
            .expect("the first 64 KiB left while still held");
    }

    #[test]
    fn whole_messages_are_told_from_partial_ones() {
        // Sync: 'S', length 4.
        assert!(whole_message_waiting(b"S\0\0\0\x04"));
        assert!(!whole_message_waiting(b"S\0\0\0"));
        // A Query message whose body has not fully arrived.
        assert!(!whole_message_waiting(b"Q\0\0\0\x10SELECT"));
        assert!(whole_message_waiting(b"Q\0\0\0\x09SELECT"));
    }
}
