//! Who may read `/metrics` and `/executors`: a client presenting the
//! metrics token (`--metrics-token-file`, for Prometheus), or a superuser
//! logged in with any credential the Flight port takes (Basic password,
//! JWT, Flight bearer token). A password travels only over TLS or from
//! loopback, as on the pg port; attempts are throttled and logged alike.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use sluice_lake::config::Secret;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use crate::auth::Authenticator;
use crate::frontend::credentials::{self, CredentialError};

/// What the guard checks against.
pub struct Access {
    pub auth: Arc<dyn Authenticator>,
    /// Whether a role is a superuser (the catalog's current answer).
    pub is_superuser: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    pub metrics_token: Option<Secret<String>>,
    /// The port serves TLS (passwords may travel from anywhere).
    pub tls: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("metrics_token", &self.metrics_token)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// The address a connection came from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Connections whose TLS handshake completed (see [`crate::tls::incoming`]).
pub(super) struct TlsListener {
    pub rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    pub local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(accepted) => accepted,
            // The accept loop stopped at shutdown; the server is stopping too.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut response = (status, format!("{message}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"sluice\", charset=\"UTF-8\""),
        );
    }
    response
}

/// Equal in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lets a request through only with the metrics token or a superuser login.
pub(super) async fn require(
    State(access): State<Arc<Access>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return refuse(StatusCode::UNAUTHORIZED, "credentials required");
    };
    let Ok(value) = value.to_str() else {
        return refuse(StatusCode::UNAUTHORIZED, "malformed authorization header");
    };
    if let (Some(token), Some(bearer)) = (&access.metrics_token, value.strip_prefix("Bearer "))
        && same(token.0.as_bytes(), bearer.trim().as_bytes())
    {
        return next.run(request).await;
    }
    if value.starts_with("Basic ") && !credentials::password_allowed(access.tls, peer.ip()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "passwords are accepted over TLS or from loopback only; use the metrics token",
        );
    }
    match credentials::authenticate(access.auth.as_ref(), value, Some(peer.ip()), "http").await {
        Ok(p) if (access.is_superuser)(&p.user) => next.run(request).await,
        Ok(p) => {
            tracing::warn!(target: "sluice::auth", user = p.user, peer = %peer.ip(), path = %request.uri().path(), "refused: not a superuser");
            refuse(StatusCode::FORBIDDEN, "a superuser or the metrics token is required")
        }
        Err(CredentialError::Auth(_)) => refuse(StatusCode::UNAUTHORIZED, "authentication failed"),
        Err(e) => refuse(StatusCode::UNAUTHORIZED, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_compares_whole_values() {
        assert!(super::same(b"token", b"token"));
        assert!(!super::same(b"token", b"tokem"));
        assert!(!super::same(b"token", b"token2"));
        assert!(!super::same(b"", b"x"));
    }
}
