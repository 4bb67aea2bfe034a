//! The answer to a connection over `--max-connections`: PostgreSQL's
//! `FATAL 53300 sorry, too many clients already`, sent after the client's
//! start-up packet (and, when it asks for SSL and the port has a
//! certificate, over TLS), so every driver reports the real reason instead
//! of a dropped connection.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Codes of the special start-up packets.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Longest start-up packet read (PostgreSQL's limit is 10,000 bytes).
const MAX_STARTUP: u32 = 10_000;

/// Answers `socket` with 53300 and closes it (within 10 s, whatever the
/// client does).
pub(super) async fn too_many_clients(socket: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
    let _ = tokio::time::timeout(Duration::from_secs(10), answer(socket, tls)).await;
}

async fn answer(mut socket: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<()> {
    loop {
        let (code, _) = packet(&mut socket).await?;
        match (code, &tls) {
            (SSL_REQUEST, Some(acceptor)) => {
                socket.write_all(b"S").await?;
                let mut stream = acceptor.accept(socket).await?;
                packet(&mut stream).await?;
                return send(&mut stream).await;
            }
            (SSL_REQUEST | GSSENC_REQUEST, _) => socket.write_all(b"N").await?,
            // A cancel request is answered by closing, as PostgreSQL does.
            (CANCEL_REQUEST, _) => return Ok(()),
            _ => return send(&mut socket).await,
        }
    }
}

/// Reads one start-up packet: its code (protocol version or request code)
/// and its length.
async fn packet<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(u32, u32)> {
    let len = s.read_u32().await?;
    if !(8..=MAX_STARTUP).contains(&len) {
        return Err(std::io::Error::other("bad start-up packet length"));
    }
    let code = s.read_u32().await?;
    let mut rest = vec![0u8; (len - 8) as usize];
    s.read_exact(&mut rest).await?;
    Ok((code, len))
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S) -> std::io::Result<()> {
    s.write_all(&error_response()).await?;
    s.flush().await?;
    s.shutdown().await
}

/// `ErrorResponse` FATAL 53300.
fn error_response() -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_plain_client_reads_53300_after_its_startup_packet() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            too_many_clients(socket, None).await;
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        // SSLRequest first: refused with 'N', then a v3 start-up packet
        client.write_all(&8u32.to_be_bytes()).await.unwrap();
        client.write_all(&SSL_REQUEST.to_be_bytes()).await.unwrap();
        let mut n = [0u8; 1];
        client.read_exact(&mut n).await.unwrap();
        assert_eq!(&n, b"N");
        let params = b"user\0u\0\0";
        client
            .write_all(&(8 + params.len() as u32).to_be_bytes())
            .await
            .unwrap();
        client.write_all(&196_608u32.to_be_bytes()).await.unwrap();
        client.write_all(params).await.unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, error_response());
        assert!(String::from_utf8_lossy(&reply).contains("53300"));
        server.await.unwrap();
    }
}
