//! Who may connect, knowing nothing of wire protocols: the bootstrap
//! administrator and the catalog's login roles (SCRAM verifiers only),
//! loopback trust for the password-less bootstrap, throttling of failed
//! attempts and a log line for every attempt, and signed tokens (Flight
//! bearer tokens and tickets) that any gateway holding the same key can
//! verify.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::access::RoleDef;
use crate::access::scram::Verifier;
use crate::config::AdminAuth;

pub mod jwks;
pub mod jwt;
mod throttle;
pub use throttle::Throttle;

type HmacSha256 = Hmac<Sha256>;

/// Errors of authentication. The contract:
/// * [`AuthError::InvalidCredentials`]: unknown user or wrong password; the
///   client is told only that authentication failed.
/// * [`AuthError::NotPermitted`]: the method is not allowed from there
///   (password-less login from a non-loopback address).
/// * [`AuthError::InvalidToken`]: a token that is malformed, forged or expired.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password authentication failed for user \"{0}\"")]
    InvalidCredentials(String),
    #[error("no password is configured; user \"{0}\" may connect from loopback only")]
    NotPermitted(String),
    #[error("invalid or expired token")]
    InvalidToken,
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    /// Where the user connected from, when the front end knows it.
    pub peer: Option<IpAddr>,
    /// Roles the identity provider grants this login (`--jwt-roles-claim`);
    /// those the catalog knows are held for the session, as if granted.
    pub roles: Vec<String>,
}

impl Principal {
    pub fn new(user: impl Into<String>) -> Self {
        Principal {
            user: user.into(),
            peer: None,
            roles: Vec::new(),
        }
    }
}

/// How a Postgres client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The password-less bootstrap administrator on loopback.
    Trust,
    /// SCRAM-SHA-256 against a stored verifier.
    Scram,
    /// A cleartext password message holding either a JWT or the user's
    /// password (JWTs configured, and the connection is TLS or loopback).
    Password,
}

/// Finds a role of the catalog by name (the current snapshot's).
pub type RoleLookup = Arc<dyn Fn(&str) -> Option<RoleDef> + Send + Sync>;

/// Authenticates users and signs/verifies tokens.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// How `user` connecting from `peer` must authenticate.
    fn method(&self, user: &str, peer: IpAddr, tls: bool) -> Method;
    /// Verifies a JWT from the identity provider (`--jwt-*`).
    async fn verify_jwt(&self, token: &str) -> Result<Principal, AuthError>;
    /// Trust login (no password) for `user` connecting from `peer`.
    fn trust(&self, user: &str, peer: IpAddr) -> Result<Principal, AuthError>;
    /// The verifier a SCRAM exchange for `user` runs against, and whether it
    /// is real: for an unknown user, one without a password or one that may
    /// not log in, a decoy that no proof satisfies, so the exchange looks
    /// the same as for a real user.
    fn scram_verifier(&self, user: &str) -> (Verifier, bool);
    /// Checks a cleartext password (Flight Basic auth).
    fn verify_password(&self, user: &str, password: &str, peer: Option<IpAddr>) -> Result<Principal, AuthError>;
    /// How much longer an attempt of `user` from `peer` must wait before it
    /// is answered (grows with the pair's failures in a row).
    fn delay(&self, user: &str, peer: Option<IpAddr>) -> Duration;
    /// Records (and logs) the outcome of an attempt.
    fn record(&self, attempt: Attempt<'_>, outcome: Result<(), &AuthError>);
    /// Issues a bearer token for `principal`.
    fn issue_token(&self, principal: &Principal) -> String;
    /// Verifies a bearer token.
    fn verify_token(&self, token: &str) -> Result<Principal, AuthError>;
    /// Signs an opaque payload for one `purpose`, stamped with the time.
    fn sign(&self, purpose: Purpose, payload: &[u8]) -> Vec<u8>;
    /// Verifies and strips a signature made by [`Authenticator::sign`] for
    /// the same `purpose`, no older than the purpose's [`Purpose::max_age`].
    fn open(&self, purpose: Purpose, signed: &[u8]) -> Option<Vec<u8>>;
}

/// What a signed value is for. Each purpose signs with its own key (derived
/// from the token key), so one kind can never be replayed as another: a
/// bearer token is not a ticket, a ticket is not a prepared handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Flight bearer tokens (handshake / Basic auth).
    BearerToken,
    /// Flight `TicketStatementQuery` handles, redeemed by DoGet.
    Ticket,
    /// Flight prepared-statement handles.
    PreparedHandle,
    /// Flight session options carried after the bearer token.
    Session,
}

impl Purpose {
    const ALL: [Purpose; 4] = [
        Purpose::BearerToken,
        Purpose::Ticket,
        Purpose::PreparedHandle,
        Purpose::Session,
    ];

    fn label(self) -> &'static [u8] {
        match self {
            Purpose::BearerToken => b"sluice/v1/bearer-token",
            Purpose::Ticket => b"sluice/v1/ticket",
            Purpose::PreparedHandle => b"sluice/v1/prepared-handle",
            Purpose::Session => b"sluice/v1/flight-session",
        }
    }

    /// How long after signing a value is accepted. A ticket is redeemed
    /// right after GetFlightInfo; tokens, sessions and prepared handles live
    /// as long as a client's login.
    pub fn max_age(self) -> Duration {
        match self {
            Purpose::Ticket => Duration::from_secs(3600),
            Purpose::BearerToken | Purpose::PreparedHandle | Purpose::Session => TOKEN_TTL,
        }
    }
}

/// Lifetime of bearer tokens.
const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);
/// Clock skew tolerated between gateways sharing a key.
const SKEW: u64 = 60;
/// Bytes of a signature envelope before the payload: tag, then issue time.
const ENVELOPE: usize = 32 + 8;

/// One authentication attempt, for the log and the throttle.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub protocol: &'static str,
    pub method: &'static str,
    pub user: &'a str,
    pub peer: Option<IpAddr>,
}

/// The bootstrap administrator (from the configuration) and the catalog's
/// roles that may log in.
pub struct CatalogAuthenticator {
    admin_user: String,
    /// `None`: loopback trust for the administrator.
    admin_verifier: Option<Verifier>,
    roles: RoleLookup,
    /// The token key: decoy verifiers are derived from it.
    key: Vec<u8>,
    /// One signing key per [`Purpose`], derived from `key`.
    purpose_keys: [[u8; 32]; 4],
    throttle: Throttle,
    jwt: Option<jwt::JwtVerifier>,
}

impl std::fmt::Debug for CatalogAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogAuthenticator")
            .field("admin_user", &self.admin_user)
            .finish_non_exhaustive()
    }
}

impl CatalogAuthenticator {
    /// `key` signs tokens; gateways that share it accept each other's
    /// tokens. `roles` reads the catalog's current roles.
    pub fn new(admin_user: &str, auth: &AdminAuth, key: Vec<u8>, roles: RoleLookup) -> Self {
        let admin_verifier = match auth {
            AdminAuth::Password(p) => Some(Verifier::new(p)),
            AdminAuth::LoopbackTrust => None,
        };
        CatalogAuthenticator {
            admin_user: admin_user.to_owned(),
            admin_verifier,
            roles,
            purpose_keys: Purpose::ALL.map(|p| derive(&key, p.label())),
            key,
            throttle: Throttle::default(),
            jwt: None,
        }
    }

    /// Also accepts JWTs verified by `jwt`.
    pub fn with_jwt(mut self, jwt: jwt::JwtVerifier) -> Self {
        self.jwt = Some(jwt);
        self
    }

    fn mac(&self, purpose: Purpose) -> HmacSha256 {
        // `ALL` lists the purposes in declaration order.
        HmacSha256::new_from_slice(&self.purpose_keys[purpose as usize])
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    /// `tag || issued || payload`, the tag over the rest with `purpose`'s key.
    fn sign_at(&self, purpose: Purpose, issued: u64, payload: &[u8]) -> Vec<u8> {
        let issued = issued.to_be_bytes();
        let mut mac = self.mac(purpose);
        mac.update(&issued);
        mac.update(payload);
        let tag = mac.finalize().into_bytes();
        let mut out = Vec::with_capacity(ENVELOPE + payload.len());
        out.extend_from_slice(&tag);
        out.extend_from_slice(&issued);
        out.extend_from_slice(payload);
        out
    }

    /// The stored verifier of a user that may log in.
    fn verifier(&self, user: &str) -> Option<Verifier> {
        if user == self.admin_user {
            return self.admin_verifier.clone();
        }
        (self.roles)(user).filter(|r| r.login).and_then(|r| r.verifier)
    }

    /// May `user` still log in (tokens outlive role changes)?
    fn may_log_in(&self, user: &str) -> bool {
        user == self.admin_user || (self.roles)(user).is_some_and(|r| r.login)
    }
}

#[async_trait::async_trait]
impl Authenticator for CatalogAuthenticator {
    fn method(&self, user: &str, peer: IpAddr, tls: bool) -> Method {
        if user == self.admin_user && self.admin_verifier.is_none() {
            Method::Trust
        } else if self.jwt.is_some() && (tls || peer.is_loopback()) {
            Method::Password
        } else {
            Method::Scram
        }
    }

    async fn verify_jwt(&self, token: &str) -> Result<Principal, AuthError> {
        let jwt = self.jwt.as_ref().ok_or(AuthError::InvalidToken)?;
        let identity = jwt.verify(token).await?;
        // A role of the catalog that may not log in stays out; a user the
        // catalog does not know gets PUBLIC's rights (and its claimed roles').
        if (self.roles)(&identity.user).is_some_and(|r| !r.login) {
            return Err(AuthError::InvalidToken);
        }
        Ok(Principal {
            roles: identity.roles,
            ..Principal::new(identity.user)
        })
    }

    fn trust(&self, user: &str, peer: IpAddr) -> Result<Principal, AuthError> {
        if self.admin_verifier.is_some() || user != self.admin_user {
            return Err(AuthError::InvalidCredentials(user.to_owned()));
        }
        if !peer.is_loopback() {
            return Err(AuthError::NotPermitted(user.to_owned()));
        }
        Ok(Principal::new(user.to_owned()))
    }

    fn scram_verifier(&self, user: &str) -> (Verifier, bool) {
        match self.verifier(user) {
            Some(v) => (v, true),
            None => (Verifier::decoy(&self.key, user), false),
        }
    }

    fn verify_password(&self, user: &str, password: &str, peer: Option<IpAddr>) -> Result<Principal, AuthError> {
        if user == self.admin_user && self.admin_verifier.is_none() {
            return self.trust(user, peer.unwrap_or(IpAddr::from([0, 0, 0, 0])));
        }
        // Unknown users pay the same key derivation as known ones.
        let (verifier, real) = self.scram_verifier(user);
        if verifier.verify_password(password) && real {
            Ok(Principal::new(user.to_owned()))
        } else {
            Err(AuthError::InvalidCredentials(user.to_owned()))
        }
    }

    fn delay(&self, user: &str, peer: Option<IpAddr>) -> Duration {
        self.throttle.delay(user, peer)
    }

    fn record(&self, attempt: Attempt<'_>, outcome: Result<(), &AuthError>) {
        let peer = attempt.peer.map(|p| p.to_string()).unwrap_or_default();
        match outcome {
            Ok(()) => {
                self.throttle.succeeded(attempt.user, attempt.peer);
                tracing::info!(
                    target: "sluice::auth",
                    protocol = attempt.protocol,
                    method = attempt.method,
                    user = attempt.user,
                    peer,
                    "authentication succeeded"
                );
            }
            Err(e) => {
                let failures = self.throttle.failed(attempt.user, attempt.peer);
                tracing::warn!(
                    target: "sluice::auth",
                    protocol = attempt.protocol,
                    method = attempt.method,
                    user = attempt.user,
                    peer,
                    failures,
                    reason = %e,
                    "authentication failed"
                );
            }
        }
    }

    fn issue_token(&self, principal: &Principal) -> String {
        // A nonce makes each login's token its own (Flight sessions are
        // keyed by it): `nonce:user`; the envelope carries the issue time.
        let nonce: u64 = rand::random();
        let payload = format!("{nonce:016x}:{}", principal.user);
        URL_SAFE_NO_PAD.encode(self.sign(Purpose::BearerToken, payload.as_bytes()))
    }

    fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| AuthError::InvalidToken)?;
        let payload = self.open(Purpose::BearerToken, &raw).ok_or(AuthError::InvalidToken)?;
        let payload = String::from_utf8(payload).map_err(|_| AuthError::InvalidToken)?;
        let (_nonce, user) = payload.split_once(':').ok_or(AuthError::InvalidToken)?;
        if !self.may_log_in(user) {
            return Err(AuthError::InvalidToken);
        }
        Ok(Principal::new(user.to_owned()))
    }

    fn sign(&self, purpose: Purpose, payload: &[u8]) -> Vec<u8> {
        self.sign_at(purpose, unix_now(), payload)
    }

    fn open(&self, purpose: Purpose, signed: &[u8]) -> Option<Vec<u8>> {
        if signed.len() < ENVELOPE {
            return None;
        }
        let (tag, rest) = signed.split_at(32);
        let mut mac = self.mac(purpose);
        mac.update(rest);
        mac.verify_slice(tag).ok()?;
        let (issued, payload) = rest.split_at(8);
        let issued = u64::from_be_bytes(issued.try_into().ok()?);
        let now = unix_now();
        let fresh = issued <= now.saturating_add(SKEW) && now.saturating_sub(issued) < purpose.max_age().as_secs();
        fresh.then(|| payload.to_vec())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(u64::MAX, |d| d.as_secs())
}

/// The key of one purpose: HMAC-SHA256(token key, label).
fn derive(key: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(label);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::scram::Verifier;

    fn roles() -> RoleLookup {
        Arc::new(|name: &str| match name {
            "alice" => Some(RoleDef {
                name: "alice".into(),
                login: true,
                superuser: false,
                verifier: Some(Verifier::new("wonder")),
            }),
            "staff" => Some(RoleDef {
                name: "staff".into(),
                login: false,
                superuser: false,
                verifier: Some(Verifier::new("wonder")),
            }),
            _ => None,
        })
    }

    fn auth() -> CatalogAuthenticator {
        CatalogAuthenticator::new("admin", &AdminAuth::Password("s3cret".into()), b"k".to_vec(), roles())
    }

    #[test]
    fn passwords_and_tokens() {
        let a = auth();
        assert!(a.verify_password("admin", "s3cret", None).is_ok());
        assert!(a.verify_password("alice", "wonder", None).is_ok(), "a catalog user");
        assert!(
            a.verify_password("staff", "wonder", None).is_err(),
            "a role without LOGIN"
        );
        assert!(matches!(
            a.verify_password("admin", "nope", None),
            Err(AuthError::InvalidCredentials(_))
        ));
        assert!(matches!(
            a.verify_password("eve", "s3cret", None),
            Err(AuthError::InvalidCredentials(_))
        ));
        let (_, real) = a.scram_verifier("eve");
        assert!(!real, "unknown users get a decoy");
        assert_eq!(
            a.scram_verifier("eve").0.salt,
            a.scram_verifier("eve").0.salt,
            "the decoy is stable, as a real verifier is"
        );
        let t = a.issue_token(&Principal::new("admin"));
        assert_eq!(a.verify_token(&t).unwrap().user, "admin");
        assert_ne!(
            t,
            a.issue_token(&Principal::new("admin")),
            "each login gets its own token"
        );
        let gone = a.issue_token(&Principal::new("bob"));
        assert!(a.verify_token(&gone).is_err(), "a token of a dropped user is refused");
        let other = CatalogAuthenticator::new(
            "admin",
            &AdminAuth::Password("s3cret".into()),
            b"other".to_vec(),
            roles(),
        );
        assert!(other.verify_token(&t).is_err(), "a token from another key is refused");
        let mut forged = URL_SAFE_NO_PAD.decode(&t).unwrap();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(a.verify_token(&URL_SAFE_NO_PAD.encode(forged)).is_err());
    }

    #[test]
    fn each_purpose_has_its_own_key_and_lifetime() {
        let a = auth();
        let signed = a.sign(Purpose::Ticket, b"payload");
        assert_eq!(a.open(Purpose::Ticket, &signed).as_deref(), Some(&b"payload"[..]));
        for other in [Purpose::BearerToken, Purpose::PreparedHandle, Purpose::Session] {
            assert!(a.open(other, &signed).is_none(), "a ticket opened as {other:?}");
        }
        let token = URL_SAFE_NO_PAD.decode(a.issue_token(&Principal::new("admin"))).unwrap();
        assert!(
            a.open(Purpose::Ticket, &token).is_none(),
            "a bearer token opened as a ticket"
        );
        let stale = unix_now() - Purpose::Ticket.max_age().as_secs() - 1;
        let old = a.sign_at(Purpose::Ticket, stale, b"payload");
        assert!(a.open(Purpose::Ticket, &old).is_none(), "an expired ticket");
        // the same age is still fine for a prepared handle, which lives longer
        let handle = a.sign_at(Purpose::PreparedHandle, stale, b"payload");
        assert!(a.open(Purpose::PreparedHandle, &handle).is_some());
        let early = a.sign_at(Purpose::Ticket, unix_now() + 3600, b"payload");
        assert!(a.open(Purpose::Ticket, &early).is_none(), "issued in the future");
    }

    #[test]
    fn trust_is_loopback_only() {
        let a = CatalogAuthenticator::new("sluice", &AdminAuth::LoopbackTrust, b"k".to_vec(), roles());
        assert_eq!(a.method("sluice", "127.0.0.1".parse().unwrap(), false), Method::Trust);
        assert_eq!(a.method("alice", "127.0.0.1".parse().unwrap(), false), Method::Scram);
        assert!(a.trust("sluice", "127.0.0.1".parse().unwrap()).is_ok());
        assert!(matches!(
            a.trust("sluice", "10.1.2.3".parse().unwrap()),
            Err(AuthError::NotPermitted(_))
        ));
        assert!(a.trust("other", "127.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn failures_slow_down_that_user_and_address_only() {
        let a = auth();
        let peer = Some("10.0.0.9".parse().unwrap());
        let attempt = Attempt {
            protocol: "test",
            method: "password",
            user: "alice",
            peer,
        };
        assert_eq!(a.delay("alice", peer), Duration::ZERO);
        let e = AuthError::InvalidCredentials("alice".into());
        for _ in 0..3 {
            a.record(attempt, Err(&e));
        }
        let d3 = a.delay("alice", peer);
        a.record(attempt, Err(&e));
        assert!(
            a.delay("alice", peer) > d3 && d3 > Duration::ZERO,
            "grows with each failure"
        );
        assert_eq!(a.delay("bob", peer), Duration::ZERO);
        assert_eq!(a.delay("alice", Some("10.0.0.8".parse().unwrap())), Duration::ZERO);
        a.record(attempt, Ok(()));
        assert_eq!(a.delay("alice", peer), Duration::ZERO, "a success forgets the failures");
    }
}
