//! The gateway's server certificate, shared by the pg, Flight and HTTP
//! ports and reloadable: [`CertStore::reload`] (on SIGHUP) swaps the
//! certificate new handshakes present, while open sessions keep theirs.
//! Also the TLS accept loop for the ports that are TLS from the first byte
//! (Flight, HTTP): handshakes run concurrently, each under a timeout, so a
//! slow or silent client holds up nobody else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// A certificate or key that cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The certificate and key as loaded from their files.
struct Loaded {
    key: Arc<CertifiedKey>,
    /// PEM of the chain, for SCRAM channel binding.
    cert_pem: Arc<[u8]>,
}

/// The current certificate, and where it is read from.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads `cert` (PEM chain) and `key` (PEM private key).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = read(cert, key, &provider)?;
        Ok(Arc::new(CertStore {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            provider,
            current: RwLock::new(Arc::new(loaded)),
        }))
    }

    /// Reads the files again; on any error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = read(&self.cert_path, &self.key_path, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    fn current(&self) -> Arc<Loaded> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// PEM of the certificate chain new handshakes present.
    pub fn cert_pem(&self) -> Arc<[u8]> {
        Arc::clone(&self.current().cert_pem)
    }

    /// An acceptor presenting the current certificate at each handshake,
    /// offering `alpn` (e.g. `h2` for gRPC).
    pub fn acceptor(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(self))));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.current().key))
    }
}

fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|e| TlsError(format!("read {}: {e}", cert.display())))?;
    let key_pem = std::fs::read(key).map_err(|e| TlsError(format!("read {}: {e}", key.display())))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("parse {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("no certificate in {}", cert.display())));
    }
    let private = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError(format!("parse {}: {e}", key.display())))?
        .ok_or_else(|| TlsError(format!("no private key in {}", key.display())))?;
    let key = CertifiedKey::from_der(certs, private, provider)
        .map_err(|e| TlsError(format!("{} and {}: {e}", cert.display(), key.display())))?;
    Ok(Loaded {
        key: Arc::new(key),
        cert_pem: cert_pem.into(),
    })
}

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections on `listener` until `shutdown` and hands out
/// those whose TLS handshake completed, with their peer address.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shutdown: CancellationToken,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (socket, peer) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = socket.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send((stream, peer)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.cert.pem()).unwrap();
        std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn reload_swaps_the_certificate_and_keeps_it_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "one");
        let store = CertStore::load(&cert, &key).unwrap();
        let first = store.cert_pem();
        let (c2, k2) = write_pair(dir.path(), "two");
        std::fs::copy(&c2, &cert).unwrap();
        std::fs::copy(&k2, &key).unwrap();
        store.reload().unwrap();
        assert_ne!(store.cert_pem(), first, "new handshakes get the new certificate");
        let second = store.cert_pem();
        std::fs::write(&key, "not a key").unwrap();
        assert!(store.reload().is_err());
        assert_eq!(store.cert_pem(), second, "a bad file leaves the current certificate");
        // a key that does not match the certificate is refused
        std::fs::copy(dir.path().join("one.key"), &key).unwrap();
        assert!(store.reload().is_err());
    }
}
