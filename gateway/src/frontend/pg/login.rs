//! Start-up of one Postgres connection: database check, then loopback trust
//! (the password-less bootstrap administrator) or SCRAM-SHA-256 (RFC 5802 /
//! 7677, with `tls-server-end-point` channel binding under TLS) against the
//! stored verifier, then the session.
//!
//! The SCRAM exchange is Sluice's own: pgwire's needs the salted password,
//! and Sluice keeps only verifiers (StoredKey, ServerKey). Unknown users run
//! the same exchange against a decoy verifier and fail at the proof, so the
//! reply does not tell whether a user exists. Failed attempts wait as the
//! authenticator's throttle says before they are answered.

use std::fmt::Debug;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::{CancelRegistration, CancelRegistry, SessionSlot, fatal, pg_error};
use crate::access::scram::Verifier;
use crate::auth::{Attempt, AuthError, Authenticator, Method};
use crate::catalog::CATALOG_NAME;
use crate::query::QueryHandler;

const SCRAM: &str = "SCRAM-SHA-256";
const SCRAM_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Where the exchange of one connection stands.
enum State {
    Initial,
    /// `AuthenticationSASL` sent.
    AwaitFirst {
        user: String,
        verifier: Verifier,
        real: bool,
    },
    /// `AuthenticationCleartextPassword` sent: a JWT or the password.
    AwaitPassword {
        user: String,
    },
    /// `server-first-message` sent.
    AwaitFinal {
        user: String,
        verifier: Verifier,
        real: bool,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        /// The channel-binding data the client must echo in `c=`.
        binding: Vec<u8>,
    },
    Done,
}

pub(super) struct Startup {
    pub(super) auth: Arc<dyn Authenticator>,
    pub(super) handler: Arc<dyn QueryHandler>,
    pub(super) cancel: Arc<CancelRegistry>,
    pub(super) params: DefaultServerParameterProvider,
    /// SHA-256 of the server certificate (DER), for channel binding.
    pub(super) cert_hash: Option<Vec<u8>>,
    /// Refuse sessions that did not negotiate TLS (`--require-tls`).
    pub(super) require_tls: bool,
    state: Mutex<State>,
}

/// SHA-256 of the first certificate of a PEM chain (`tls-server-end-point`
/// for certificates signed with SHA-256 or weaker hashes, RFC 5929).
pub(super) fn cert_hash(pem: &[u8]) -> Option<Vec<u8>> {
    let mut reader = std::io::BufReader::new(pem);
    let first = rustls_pemfile::certs(&mut reader).next()?.ok()?;
    Some(Sha256::digest(first.as_ref()).to_vec())
}

fn invalid(message: &str) -> PgWireError {
    fatal("08P01", format!("invalid SCRAM exchange: {message}"))
}

fn password_failed(user: &str) -> PgWireError {
    fatal("28P01", format!("password authentication failed for user \"{user}\""))
}

impl Startup {
    pub(super) fn new(
        auth: Arc<dyn Authenticator>,
        handler: Arc<dyn QueryHandler>,
        cancel: Arc<CancelRegistry>,
        params: DefaultServerParameterProvider,
        cert_hash: Option<Vec<u8>>,
        require_tls: bool,
    ) -> Self {
        Startup {
            auth,
            handler,
            cancel,
            params,
            cert_hash,
            require_tls,
            state: Mutex::new(State::Initial),
        }
    }

    /// Opens the engine session of a client that logged in, holding the
    /// `roles` its login claims.
    fn open_session<C: ClientInfo>(&self, client: &C, roles: &[String]) -> PgWireResult<()> {
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        let client_addr = crate::query::audit::ClientAddr {
            protocol: "pg",
            peer: Some(client.socket_addr().ip()),
        };
        let session = self.handler.open_session(&user, roles, client_addr).map_err(pg_error)?;
        let span = tracing::Span::current();
        span.record("user", user.as_str());
        span.record("session_id", session.id());
        if let Some(app) = client.metadata().get("application_name") {
            session.set_guc("application_name", app);
        }
        let (pid, secret) = client.pid_and_secret_key();
        let key = (pid, secret.to_bytes());
        self.cancel
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), Arc::downgrade(&session));
        client.session_extensions().insert(CancelRegistration {
            key,
            registry: Arc::clone(&self.cancel),
        });
        client.session_extensions().insert(SessionSlot(session));
        tracing::info!(user, "session opened");
        Ok(())
    }

    async fn finish<C>(&self, client: &mut C, roles: &[String]) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret) = RandomPidSecretKeyGenerator::default().generate(client);
        client.set_pid_and_secret_key(pid, secret);
        self.open_session(client, roles)?;
        finish_authentication(client, &self.params).await
    }

    fn attempt<'a>(&self, method: &'static str, user: &'a str, client: &impl ClientInfo) -> Attempt<'a> {
        Attempt {
            protocol: "pg",
            method,
            user,
            peer: Some(client.socket_addr().ip()),
        }
    }

    /// A failed attempt: waits out the throttle, records, and fails.
    async fn refuse(&self, attempt: Attempt<'_>, error: AuthError) -> PgWireResult<()> {
        let delay = self.auth.delay(attempt.user, attempt.peer);
        self.auth.record(attempt, Err(&error));
        tokio::time::sleep(delay).await;
        Err(match error {
            AuthError::NotPermitted(_) => fatal("28000", error.to_string()),
            _ => password_failed(attempt.user),
        })
    }
}

/// `server-first-message` for a client nonce.
fn server_first(client_nonce: &str, verifier: &Verifier) -> (String, String) {
    let ours: [u8; 18] = rand::random();
    let nonce = format!("{client_nonce}{}", STANDARD.encode(ours));
    let message = format!(
        "r={nonce},s={},i={}",
        STANDARD.encode(&verifier.salt),
        verifier.iterations
    );
    (nonce, message)
}

/// Splits `client-first-message` into the GS2 header (with its trailing
/// comma), the bare message and the client nonce.
fn parse_client_first(data: &[u8]) -> Result<(String, String, String, bool), PgWireError> {
    let text = std::str::from_utf8(data).map_err(|_| invalid("not UTF-8"))?;
    let mut parts = text.splitn(3, ',');
    let flag = parts.next().ok_or_else(|| invalid("empty message"))?;
    let authzid = parts.next().ok_or_else(|| invalid("no GS2 header"))?;
    let bare = parts.next().ok_or_else(|| invalid("no client-first-message-bare"))?;
    let binds = match flag {
        "n" | "y" => false,
        "p=tls-server-end-point" => true,
        _ => return Err(invalid("unsupported channel binding")),
    };
    if !authzid.is_empty() {
        return Err(invalid("authorization identities are not supported"));
    }
    let nonce = bare
        .split(',')
        .find_map(|a| a.strip_prefix("r="))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("no client nonce"))?;
    Ok((format!("{flag},{authzid},"), bare.to_owned(), nonce.to_owned(), binds))
}

#[async_trait::async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self.step(client, message).await {
            // PostgreSQL closes the connection after a FATAL error; pgwire
            // 0.41 would send ReadyForQuery after it, which clients reject
            // as a protocol violation. Send the error and close here.
            Err(PgWireError::UserError(info)) if info.is_fatal() => {
                client.send(PgWireBackendMessage::ErrorResponse((*info).into())).await?;
                client.close().await?;
                Err(PgWireError::IoError(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "connection closed after a FATAL error",
                )))
            }
            other => other,
        }
    }
}

impl Startup {
    /// One message of the start-up exchange.
    async fn step<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut state = self.state.lock().await;
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                let user = startup.parameters.get("user").cloned().unwrap_or_default();
                let database = startup
                    .parameters
                    .get("database")
                    .cloned()
                    .unwrap_or_else(|| user.clone());
                tracing::Span::current().record("database", database.as_str());
                if self.require_tls && !client.is_secure() {
                    // PostgreSQL's answer for a `hostssl`-only server (28000).
                    tracing::warn!(target: "sluice::auth", user, peer = %client.socket_addr().ip(), "plaintext session refused: TLS is required");
                    return Err(fatal(
                        "28000",
                        "this server requires TLS: connect with sslmode=require (or verify-full)".to_owned(),
                    ));
                }
                if database != CATALOG_NAME {
                    return Err(fatal("3D000", format!("database \"{database}\" does not exist")));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                let peer = client.socket_addr().ip();
                match self.auth.method(&user, peer, client.is_secure()) {
                    Method::Password => {
                        client
                            .send(PgWireBackendMessage::Authentication(Authentication::CleartextPassword))
                            .await?;
                        *state = State::AwaitPassword { user };
                        Ok(())
                    }
                    Method::Trust => {
                        let attempt = self.attempt("trust", &user, client);
                        if let Err(e) = self.auth.trust(&user, peer) {
                            return self.refuse(attempt, e).await;
                        }
                        self.auth.record(attempt, Ok(()));
                        *state = State::Done;
                        self.finish(client, &[]).await
                    }
                    Method::Scram => {
                        let (verifier, real) = self.auth.scram_verifier(&user);
                        let mut mechanisms = vec![SCRAM.to_owned()];
                        if client.is_secure() && self.cert_hash.is_some() {
                            mechanisms.insert(0, SCRAM_PLUS.to_owned());
                        }
                        client
                            .send(PgWireBackendMessage::Authentication(Authentication::SASL(mechanisms)))
                            .await?;
                        *state = State::AwaitFirst { user, verifier, real };
                        Ok(())
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => match std::mem::replace(&mut *state, State::Done) {
                State::AwaitPassword { user } => {
                    let secret = msg.into_password()?.password;
                    let peer = client.socket_addr().ip();
                    let jwt = crate::auth::jwt::looks_like_jwt(&secret);
                    let attempt = self.attempt(if jwt { "jwt" } else { "password" }, &user, client);
                    let outcome = if jwt {
                        // The startup user must be the one the token names.
                        self.auth.verify_jwt(&secret).await.and_then(|p| {
                            if p.user == user {
                                Ok(p)
                            } else {
                                Err(AuthError::InvalidToken)
                            }
                        })
                    } else {
                        self.auth.verify_password(&user, &secret, Some(peer))
                    };
                    match outcome {
                        Ok(principal) => {
                            tokio::time::sleep(self.auth.delay(&user, attempt.peer)).await;
                            self.auth.record(attempt, Ok(()));
                            self.finish(client, &principal.roles).await
                        }
                        Err(e) => self.refuse(attempt, e).await,
                    }
                }
                State::AwaitFirst { user, verifier, real } => {
                    let initial = msg.into_sasl_initial_response()?;
                    let plus = match initial.auth_method.as_str() {
                        SCRAM => false,
                        SCRAM_PLUS if client.is_secure() && self.cert_hash.is_some() => true,
                        other => return Err(invalid(&format!("mechanism {other} was not offered"))),
                    };
                    let data = initial.data.ok_or_else(|| invalid("empty client-first-message"))?;
                    let (gs2, client_first_bare, client_nonce, binds) = parse_client_first(&data)?;
                    if binds != plus {
                        return Err(invalid("channel binding does not match the mechanism"));
                    }
                    let mut binding = gs2.into_bytes();
                    if plus && let Some(hash) = &self.cert_hash {
                        binding.extend_from_slice(hash);
                    }
                    let (nonce, server_first) = server_first(&client_nonce, &verifier);
                    client
                        .send(PgWireBackendMessage::Authentication(Authentication::SASLContinue(
                            server_first.clone().into(),
                        )))
                        .await?;
                    *state = State::AwaitFinal {
                        user,
                        verifier,
                        real,
                        client_first_bare,
                        server_first,
                        nonce,
                        binding,
                    };
                    Ok(())
                }
                State::AwaitFinal {
                    user,
                    verifier,
                    real,
                    client_first_bare,
                    server_first,
                    nonce,
                    binding,
                } => {
                    let response = msg.into_sasl_response()?;
                    let text = std::str::from_utf8(&response.data).map_err(|_| invalid("not UTF-8"))?;
                    let (without_proof, proof) = text.rsplit_once(",p=").ok_or_else(|| invalid("no proof"))?;
                    let proof = STANDARD.decode(proof).map_err(|_| invalid("proof is not base64"))?;
                    let mut attrs = without_proof.split(',');
                    let channel = attrs
                        .next()
                        .and_then(|c| c.strip_prefix("c="))
                        .and_then(|c| STANDARD.decode(c).ok())
                        .ok_or_else(|| invalid("no channel binding"))?;
                    if attrs.next().and_then(|r| r.strip_prefix("r=")) != Some(nonce.as_str()) {
                        return Err(invalid("nonce mismatch"));
                    }
                    if channel != binding {
                        return Err(invalid("channel binding mismatch"));
                    }
                    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                    let attempt = self.attempt("scram-sha-256", &user, client);
                    match verifier.verify_proof(&auth_message, &proof) {
                        Some(signature) if real => {
                            // The throttle holds back successes too: a correct
                            // guess must not answer sooner than a wrong one.
                            tokio::time::sleep(self.auth.delay(&user, attempt.peer)).await;
                            self.auth.record(attempt, Ok(()));
                            let last = format!("v={}", STANDARD.encode(signature));
                            client
                                .send(PgWireBackendMessage::Authentication(Authentication::SASLFinal(
                                    last.into(),
                                )))
                                .await?;
                            self.finish(client, &[]).await
                        }
                        _ => self.refuse(attempt, AuthError::InvalidCredentials(user.clone())).await,
                    }
                }
                State::Initial | State::Done => Err(invalid("unexpected authentication message")),
            },
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_is_split_as_rfc_5802_says() {
        let (gs2, bare, nonce, binds) = parse_client_first(b"n,,n=,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(
            (gs2.as_str(), bare.as_str(), nonce.as_str(), binds),
            ("n,,", "n=,r=rOprNGfwEbeRWgbNEkqO", "rOprNGfwEbeRWgbNEkqO", false)
        );
        assert!(parse_client_first(b"p=tls-server-end-point,,n=,r=x").unwrap().3);
        assert!(parse_client_first(b"p=tls-unique,,n=,r=x").is_err());
        assert!(parse_client_first(b"n,a=admin,n=,r=x").is_err());
        assert!(parse_client_first(b"n,,n=").is_err());
    }
}
