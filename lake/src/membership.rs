//! Cluster membership: who may talk to the scheduler and to executors.
//!
//! Every cluster channel (executor → scheduler registration and polling,
//! gateway → scheduler job submission, anyone → executor Flight for shuffle
//! and result partitions) is mutual TLS. The trust root is derived from the
//! cluster secret (`SLUICE_CLUSTER_SECRET`): HMAC-SHA256 of the secret seeds
//! an Ed25519 CA key, so every process that knows the secret computes the same
//! CA, and each process signs a fresh leaf certificate (name
//! [`CLUSTER_SERVER_NAME`], server and client auth) with it at start. A peer
//! without the secret cannot present a certificate that chains to the CA and
//! is refused during the handshake; the refusal is logged with its address.
//!
//! Operators distribute one secret (a Kubernetes Secret) instead of a PKI;
//! rotating it means restarting the cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::{EndpointOverrideFn, SessionConfigExt};
use datafusion::prelude::SessionConfig;
use hmac::{Hmac, Mac};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519, SerialNumber,
};
use sha2::Sha256;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;

/// The DNS name in every member's certificate; clients verify it instead of
/// the address they dialled (executors are reached by IP or pod name).
pub const CLUSTER_SERVER_NAME: &str = "sluice-cluster";

/// Shortest accepted cluster secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// How long a peer may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors building cluster credentials.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("the cluster secret must be at least {MIN_SECRET_LEN} bytes")]
    SecretTooShort,
    #[error("cannot build cluster certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the client certificate verifier: {0}")]
    Verifier(String),
}

/// The cluster secret from a flag value or a file (trailing whitespace
/// trimmed), length-checked. `Err` carries the flag at fault and why.
pub fn load_secret(
    value: Option<String>,
    file: Option<&std::path::Path>,
) -> Result<Option<Vec<u8>>, (&'static str, String)> {
    let secret = match (value, file) {
        (Some(s), _) => s.into_bytes(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| ("--cluster-secret-file", format!("cannot read {}: {e}", path.display())))?
            .trim_end()
            .as_bytes()
            .to_vec(),
        (None, None) => return Ok(None),
    };
    if secret.len() < MIN_SECRET_LEN {
        return Err(("--cluster-secret", format!("must be at least {MIN_SECRET_LEN} bytes")));
    }
    Ok(Some(secret))
}

/// Credentials of one cluster member: the shared CA and this process's leaf.
#[derive(Clone)]
pub struct ClusterCredentials {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    leaf_pem: String,
    leaf_der: CertificateDer<'static>,
    key_pem: String,
    key_der: Arc<PrivatePkcs8KeyDer<'static>>,
}

impl std::fmt::Debug for ClusterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCredentials").finish_non_exhaustive()
    }
}

impl ClusterCredentials {
    /// Derives the cluster CA from `secret` and issues this process a leaf.
    pub fn from_secret(secret: &[u8]) -> Result<Self, MembershipError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(MembershipError::SecretTooShort);
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"sluice cluster CA v1");
        let seed = mac.finalize().into_bytes();
        let ca_key = KeyPair::from_pkcs8_der_and_sign_algo(&ed25519_pkcs8(&seed), &PKCS_ED25519)?;

        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Sluice cluster CA");
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        ca_params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        ca_params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        ca_params.serial_number = Some(SerialNumber::from(1u64));
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params = CertificateParams::new(vec![CLUSTER_SERVER_NAME.to_owned()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Sluice cluster member");
        leaf_params.distinguished_name = dn;
        leaf_params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        leaf_params.not_before = now - time::Duration::hours(1);
        leaf_params.not_after = now + time::Duration::days(3650);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

        Ok(ClusterCredentials {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            leaf_pem: leaf.pem(),
            leaf_der: leaf.der().clone(),
            key_pem: leaf_key.serialize_pem(),
            key_der: Arc::new(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        })
    }

    /// Credentials from a fresh random secret: for a cluster that lives in
    /// one process (the embedded default), where no one else needs it.
    pub fn ephemeral() -> Result<Self, MembershipError> {
        let secret: [u8; 32] = rand_bytes();
        Self::from_secret(&secret)
    }

    /// rustls server configuration that requires a member certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, MembershipError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| MembershipError::Verifier(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.leaf_der.clone()],
                PrivateKeyDer::Pkcs8(self.key_der.as_ref().clone_key()),
            )?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// tonic client TLS: trust the cluster CA, present this member's leaf.
    pub fn client_tls(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .identity(tonic::transport::Identity::from_pem(&self.leaf_pem, &self.key_pem))
            .domain_name(CLUSTER_SERVER_NAME)
    }

    /// Ballista's hook for every gRPC endpoint it dials (scheduler, shuffle
    /// and result fetches, the scheduler's calls to executors): adds the
    /// member TLS configuration. The scheduler dials executors at
    /// `http://` whatever its TLS setting, and tonic speaks TLS only to
    /// `https://`, so such an endpoint is rebuilt for `https://` (with
    /// control-call timeouts: these carry no data).
    pub fn endpoint_override(&self) -> EndpointOverrideFn {
        let tls = self.client_tls();
        Arc::new(move |endpoint: tonic::transport::Endpoint| {
            let endpoint = match endpoint.uri().scheme_str() {
                Some("http") => {
                    let authority = endpoint.uri().authority().map(ToString::to_string).unwrap_or_default();
                    tonic::transport::Endpoint::from_shared(format!("https://{authority}"))?
                        .connect_timeout(Duration::from_secs(5))
                        .timeout(Duration::from_secs(20))
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(10))
                        .keep_alive_timeout(Duration::from_secs(20))
                }
                _ => endpoint,
            };
            Ok(endpoint.tls_config(tls.clone())?)
        })
    }

    /// `config` set up so Ballista dials cluster members over mutual TLS.
    pub fn apply(&self, config: SessionConfig) -> SessionConfig {
        config
            .with_ballista_use_tls(true)
            .with_ballista_override_create_grpc_client_endpoint(self.endpoint_override())
    }
}

/// Accepts TLS connections on `listener`, yielding only peers that presented
/// a member certificate; others are logged and dropped. Handshakes run
/// concurrently so a slow or hostile peer does not hold up the others.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    service: &'static str,
) -> impl futures::Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<TlsStream<TcpStream>>>(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(service, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // gRPC answers in several small writes; with Nagle's algorithm
            // each waits for the peer's delayed ACK (40 ms on Linux). tonic
            // sets this only on listeners it binds itself.
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let sender = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = sender.send(Ok(tls)).await;
                    }
                    // A connection closed before saying anything is a TCP
                    // probe (Kubernetes, the gateway's liveness check).
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        tracing::debug!(service, %peer, "connection closed before the TLS handshake");
                    }
                    Ok(Err(e)) => refused(service, peer, &e.to_string()),
                    Err(_) => refused(service, peer, "TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                break;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

fn refused(service: &str, peer: SocketAddr, why: &str) {
    tracing::warn!(service, %peer, "refused a connection without valid cluster credentials: {why}");
}

/// PKCS#8 v1 wrapping of a raw Ed25519 seed (RFC 8410).
fn ed25519_pkcs8(seed: &[u8]) -> PrivatePkcs8KeyDer<'static> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(&seed[..32]);
    PrivatePkcs8KeyDer::from(der)
}

fn rand_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut out)
        .expect("system randomness");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn handshake(server: &ClusterCredentials, client_secret: Option<&[u8]>) -> bool {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = Box::pin(incoming(listener, server.server_config().unwrap(), "test"));
        let server_ca = server.ca_der.clone();
        let client_secret = client_secret.map(<[u8]>::to_vec);
        let client = tokio::spawn(async move {
            // The client trusts the server's CA; what varies is the
            // certificate it presents.
            let mut roots = rustls::RootCertStore::empty();
            roots.add(server_ca).unwrap();
            let builder =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .unwrap()
                    .with_root_certificates(roots);
            let config = match client_secret {
                Some(secret) => {
                    let me = ClusterCredentials::from_secret(&secret).unwrap();
                    builder
                        .with_client_auth_cert(vec![me.leaf_der.clone()], PrivateKeyDer::Pkcs8(me.key_der.clone_key()))
                        .unwrap()
                }
                None => builder.with_no_client_auth(),
            };
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from(CLUSTER_SERVER_NAME).unwrap();
            match connector.connect(name, tcp).await {
                Ok(mut tls) => {
                    let _ = tls.write_all(b"ping").await;
                    let mut buf = [0u8; 4];
                    tls.read_exact(&mut buf).await.is_ok()
                }
                Err(_) => false,
            }
        });
        let server_side = tokio::spawn(async move {
            if let Some(Ok(mut tls)) = futures::StreamExt::next(&mut accepted).await {
                let mut buf = [0u8; 4];
                tls.read_exact(&mut buf).await.unwrap();
                tls.write_all(&buf).await.unwrap();
            }
        });
        let connected = client.await.unwrap();
        server_side.abort();
        connected
    }

    #[tokio::test]
    async fn same_secret_is_a_member_other_secrets_are_refused() {
        let secret = b"correct horse battery staple";
        let server = ClusterCredentials::from_secret(secret).unwrap();
        assert!(handshake(&server, Some(secret)).await, "same secret must connect");
        assert!(
            !handshake(&server, Some(b"another secret of length")).await,
            "other secret must be refused"
        );
        assert!(!handshake(&server, None).await, "no client certificate must be refused");
    }

    #[test]
    fn short_secrets_are_rejected() {
        assert!(matches!(
            ClusterCredentials::from_secret(b"short"),
            Err(MembershipError::SecretTooShort)
        ));
    }

    #[test]
    fn the_ca_is_a_function_of_the_secret() {
        let a = ClusterCredentials::from_secret(b"0123456789abcdef").unwrap();
        let b = ClusterCredentials::from_secret(b"0123456789abcdef").unwrap();
        assert_eq!(a.ca_der, b.ca_der);
        assert_ne!(a.leaf_der, b.leaf_der);
    }
}
