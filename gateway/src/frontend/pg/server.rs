//! The Postgres listener and each connection's message loop.
//!
//! The loop is pgwire's own (`process_socket`) with one addition: when the
//! gateway starts shutting down, a session that is between statements is
//! told `FATAL 57P01 terminating connection due to administrator command`
//! (one still logging in: `57P03 the database system is shutting down`) and
//! closed, while a running statement finishes first. After
//! `--shutdown-timeout` the statements still running are cancelled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::ErrorInfo;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::deferred::{Deferred, whole_message_waiting};
use super::{CancelRegistry, Parser, Queries, Stmt, login, parameters, refuse};
use crate::auth::Authenticator;
use crate::catalog::CATALOG_NAME;
use crate::query::QueryHandler;

/// How long a client may take to log in (pgwire's own limit).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long cancelled statements get to report their error before the
/// server stops waiting for their connections.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// The handlers of one connection (SASL state is per connection).
struct Handlers {
    startup: Arc<login::Startup>,
    queries: Arc<Queries>,
    cancel: Arc<CancelRegistry>,
}

/// The Postgres wire server.
pub struct PgServer {
    pub auth: Arc<dyn Authenticator>,
    pub handler: Arc<dyn QueryHandler>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The certificate the acceptor presents, for SCRAM channel binding.
    pub certs: Option<Arc<crate::tls::CertStore>>,
    /// Refuse sessions that did not negotiate TLS.
    pub require_tls: bool,
    pub max_connections: usize,
    /// How long running statements may take to finish once shutdown starts.
    pub shutdown_timeout: Duration,
    /// Open connections (a metric).
    pub connections: prometheus::IntGauge,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("tls", &self.tls.is_some())
            .field("require_tls", &self.require_tls)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl PgServer {
    /// Serves `listener` until `shutdown`; then closes idle sessions, lets
    /// running statements finish within the shutdown timeout, cancels the
    /// rest and returns once their connections closed (or the grace ran out).
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) {
        let cancel = Arc::new(CancelRegistry::default());
        let queries = Arc::new(Queries {
            handler: Arc::clone(&self.handler),
            parser: Arc::new(Parser {
                handler: Arc::clone(&self.handler),
            }),
        });
        let limit = Arc::new(tokio::sync::Semaphore::new(self.max_connections));
        let tracker = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (socket, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("pg accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                tracing::warn!(%peer, max = self.max_connections, "too many connections; refusing with 53300");
                tracker.spawn(refuse::too_many_clients(socket, self.tls.clone()));
                continue;
            };
            let handlers = Handlers {
                startup: Arc::new(self.startup(Arc::clone(&cancel))),
                queries: Arc::clone(&queries),
                cancel: Arc::clone(&cancel),
            };
            let tls = self.tls.clone();
            let span = tracing::info_span!(
                "pg_connection",
                %peer,
                user = tracing::field::Empty,
                database = tracing::field::Empty,
                session_id = tracing::field::Empty
            );
            let draining = shutdown.clone();
            let open = crate::frontend::OpenConnection::new(&self.connections);
            tracker.spawn(
                async move {
                    if let Err(e) = serve(socket, tls, handlers, draining).await {
                        tracing::debug!("connection ended with error: {e}");
                    }
                    drop((permit, open));
                }
                .instrument(span),
            );
        }
        drop(listener);
        tracker.close();
        let open = tracker.len();
        if open > 0 {
            tracing::info!(connections = open, timeout = ?self.shutdown_timeout, "pg: waiting for running statements");
        }
        if tokio::time::timeout(self.shutdown_timeout, tracker.wait())
            .await
            .is_err()
        {
            let n = cancel.terminate_all();
            tracing::warn!(
                statements = n,
                "pg: --shutdown-timeout reached; cancelling the statements still running"
            );
            if tokio::time::timeout(CANCEL_GRACE, tracker.wait()).await.is_err() {
                tracing::warn!(connections = tracker.len(), "pg: connections still open; closing them");
            }
        }
    }

    fn startup(&self, cancel: Arc<CancelRegistry>) -> login::Startup {
        login::Startup::new(
            Arc::clone(&self.auth),
            Arc::clone(&self.handler),
            cancel,
            parameters(),
            self.certs.as_ref().and_then(|c| login::cert_hash(&c.cert_pem())),
            self.require_tls,
        )
    }

    /// Address helper for logs.
    pub fn describe(addr: SocketAddr, tls: bool) -> String {
        format!(
            "postgres://{addr}/{CATALOG_NAME}{}",
            if tls { "?sslmode=require" } else { "" }
        )
    }
}

/// One connection: pgwire's message loop, ended by `draining` whenever the
/// session is between statements.
async fn serve(
    socket: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handlers: Handlers,
    draining: CancellationToken,
) -> std::io::Result<()> {
    let deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(deadline);
    let negotiated = tokio::select! {
        () = &mut deadline => return Ok(()),
        s = negotiate_tls::<Stmt>(socket, tls) => s?,
    };
    let Some(socket) = negotiated else {
        return Ok(());
    };
    // The same connection with its flushes deferred (deferred.rs).
    let parts = socket.into_parts();
    let mut deferred = FramedParts::new(Deferred::new(parts.io), parts.codec);
    deferred.read_buf = parts.read_buf;
    deferred.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(deferred);
    let Handlers {
        startup,
        queries,
        cancel,
    } = handlers;
    loop {
        let logging_in = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        );
        let idle = logging_in || matches!(socket.state(), PgWireConnectionState::ReadyForQuery);
        let msg = tokio::select! {
            biased;
            () = draining.cancelled(), if idle => {
                let (code, text) = if logging_in {
                    ("57P03", "the database system is shutting down")
                } else {
                    ("57P01", "terminating connection due to administrator command")
                };
                let info = ErrorInfo::new("FATAL".to_owned(), code.to_owned(), text.to_owned());
                // The client may be gone already; the connection closes either way.
                let _ = socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await;
                return socket.close().await;
            }
            () = &mut deadline, if logging_in => None,
            msg = socket.next() => msg,
        };
        let Some(Ok(msg)) = msg else { break };
        // Terminate: close at once (asyncpg waits for the server to drop it).
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        // Answers are held until no whole message is left to read (one
        // write per batch of messages, as PostgreSQL writes); a client's
        // Flush and everything before login go out at once.
        let hold = !logging_in && !matches!(msg, PgWireFrontendMessage::Flush(_));
        socket.get_mut().hold(hold);
        if let Err(e) = process_message(
            msg,
            &mut socket,
            Arc::clone(&startup),
            Arc::clone(&queries),
            Arc::clone(&queries),
            Arc::clone(&queries),
            Arc::clone(&cancel),
        )
        .await
        {
            process_error(&mut socket, e, is_extended).await?;
        }
        // A client's Flush is answered even where pgwire skips it (a failed
        // extended statement awaiting its Sync ignores every message).
        if !hold || !whole_message_waiting(socket.read_buffer()) {
            socket.get_mut().hold(false);
            socket.flush().await?;
        }
    }
    Ok(())
}
