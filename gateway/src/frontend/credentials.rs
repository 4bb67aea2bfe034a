//! The `authorization` header shared by Flight (gRPC metadata) and the HTTP
//! port: `Basic base64(user:password)`, `Bearer <JWT>` from the identity
//! provider, or `Bearer <token>[.<session>]` issued by a Flight login. Every
//! attempt that checks a secret waits out the throttle's delay and is
//! recorded, on every protocol alike.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::auth::{Attempt, AuthError, Authenticator, Principal};

/// Why an `authorization` value was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("unsupported authorization scheme")]
    Unsupported,
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Whether a password may be taken from `peer` on an HTTP port: over TLS,
/// or from loopback (as on the pg port).
pub fn password_allowed(tls: bool, peer: IpAddr) -> bool {
    tls || peer.is_loopback()
}

/// A bearer value's token and, after a `.`, its session (the token's
/// base64url alphabet has no `.`).
pub fn split_bearer(bearer: &str) -> (&str, Option<&str>) {
    // An identity provider's JWT is a token of its own (its dots are its
    // own); sessions then live by the token on this gateway.
    if crate::auth::jwt::looks_like_jwt(bearer) {
        return (bearer, None);
    }
    match bearer.split_once('.') {
        Some((token, session)) => (token, Some(session)),
        None => (bearer, None),
    }
}

/// The principal an `authorization` header value proves, for a client at
/// `peer` on `protocol` (the principal carries `peer`).
pub async fn authenticate(
    auth: &dyn Authenticator,
    header: &str,
    peer: Option<IpAddr>,
    protocol: &'static str,
) -> Result<Principal, CredentialError> {
    let mut principal = prove(auth, header, peer, protocol).await?;
    principal.peer = peer;
    Ok(principal)
}

async fn prove(
    auth: &dyn Authenticator,
    header: &str,
    peer: Option<IpAddr>,
    protocol: &'static str,
) -> Result<Principal, CredentialError> {
    if let Some(bearer) = header.strip_prefix("Bearer ") {
        let bearer = bearer.trim();
        if crate::auth::jwt::looks_like_jwt(bearer) {
            return Ok(jwt(auth, bearer, peer, protocol).await?);
        }
        let (token, _session) = split_bearer(bearer);
        return Ok(auth.verify_token(token)?);
    }
    if let Some(basic) = header.strip_prefix("Basic ") {
        let (user, password) = decode_basic(basic)?;
        return Ok(password_login(auth, &user, &password, peer, protocol).await?);
    }
    Err(CredentialError::Unsupported)
}

/// `user` and `password` of a Basic credential.
pub fn decode_basic(b64: &str) -> Result<(String, String), CredentialError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let malformed = || CredentialError::Malformed("basic credentials");
    let decoded = LENIENT.decode(b64.trim()).map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (user, password) = text.split_once(':').ok_or_else(malformed)?;
    Ok((user.to_owned(), password.to_owned()))
}

/// A JWT of the identity provider. Failures are throttled per address (the
/// user is not known before the token is).
pub async fn jwt(
    auth: &dyn Authenticator,
    token: &str,
    peer: Option<IpAddr>,
    protocol: &'static str,
) -> Result<Principal, AuthError> {
    const UNKNOWN: &str = "(jwt)";
    tokio::time::sleep(auth.delay(UNKNOWN, peer)).await;
    let outcome = auth.verify_jwt(token).await;
    let user = outcome.as_ref().map_or(UNKNOWN, |p| p.user.as_str());
    let attempt = Attempt {
        protocol,
        method: "jwt",
        user,
        peer,
    };
    auth.record(attempt, outcome.as_ref().map(|_| ()));
    outcome
}

/// A user's password. As on the pg port, every answer for a throttled pair
/// waits out its delay, right password or not, so guessing is slowed and a
/// right guess does not answer sooner than a wrong one.
pub async fn password_login(
    auth: &dyn Authenticator,
    user: &str,
    password: &str,
    peer: Option<IpAddr>,
    protocol: &'static str,
) -> Result<Principal, AuthError> {
    let attempt = Attempt {
        protocol,
        method: "basic",
        user,
        peer,
    };
    tokio::time::sleep(auth.delay(user, peer)).await;
    let outcome = auth.verify_password(user, password, peer);
    auth.record(attempt, outcome.as_ref().map(|_| ()));
    outcome
}
