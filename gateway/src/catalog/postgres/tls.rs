//! TLS to a PostgreSQL catalog, with libpq's meanings: the URL's `sslmode`
//! (`prefer`, the default, or `require`) decides whether the connection is
//! encrypted; with `--catalog-ca-file` the server's certificate must chain
//! to that CA and name the host (libpq's `verify-full`), without it the
//! connection is encrypted but the server is not authenticated (libpq's
//! `require`), and the gateway says so at start.

use std::path::Path;
use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

use crate::catalog::CatalogError;

/// Accepts any certificate (signatures still checked): encryption without
/// authentication, libpq's `sslmode=require`.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS connector for the catalog: verifying against `ca_file`, or not
/// verifying when there is none.
pub(super) fn connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, CatalogError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| CatalogError::Storage(format!("catalog TLS: {e}")))?;
    let config = match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                CatalogError::Storage(format!("--catalog-ca-file: cannot read {}: {e}", path.display()))
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| CatalogError::Storage(format!("--catalog-ca-file: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| CatalogError::Storage(format!("--catalog-ca-file: {e}")))?;
            }
            if roots.is_empty() {
                return Err(CatalogError::Storage(format!(
                    "--catalog-ca-file: {} holds no PEM certificate",
                    path.display()
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}
