//! Who may connect, knowing nothing of wire protocols: password checks (and
//! the SCRAM secret derived from the password), loopback trust for the
//! password-less bootstrap, and signed tokens (Flight bearer tokens and
//! tickets) that any gateway holding the same key can verify.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::AdminAuth;

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
}

/// SCRAM-SHA-256 stored key material for one user.
#[derive(Debug, Clone)]
pub struct ScramSecret {
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

/// SCRAM iteration count (Postgres' default).
pub const SCRAM_ITERATIONS: usize = 4096;

/// Authenticates users and signs/verifies tokens.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// True when no password is configured and loopback clients are trusted.
    fn is_trust(&self) -> bool;
    /// Trust login (no password) for `user` connecting from `peer`.
    fn trust(&self, user: &str, peer: IpAddr) -> Result<Principal, AuthError>;
    /// The SCRAM secret of `user` (for the Postgres SASL exchange).
    fn scram_secret(&self, user: &str) -> Result<ScramSecret, AuthError>;
    /// Checks a cleartext password (Flight Basic auth).
    fn verify_password(&self, user: &str, password: &str, peer: Option<IpAddr>) -> Result<Principal, AuthError>;
    /// Issues a bearer token for `principal`.
    fn issue_token(&self, principal: &Principal) -> String;
    /// Verifies a bearer token.
    fn verify_token(&self, token: &str) -> Result<Principal, AuthError>;
    /// Signs an opaque payload (tickets, prepared-statement handles).
    fn sign(&self, payload: &[u8]) -> Vec<u8>;
    /// Verifies and strips a signature made by [`Authenticator::sign`].
    fn open(&self, signed: &[u8]) -> Option<Vec<u8>>;
}

/// The bootstrap administrator as the only user (roles and grants come later).
pub struct StaticAuthenticator {
    admin_user: String,
    password: Option<(String, ScramSecret)>,
    key: Vec<u8>,
    token_ttl: Duration,
}

impl std::fmt::Debug for StaticAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticAuthenticator")
            .field("admin_user", &self.admin_user)
            .finish_non_exhaustive()
    }
}

impl StaticAuthenticator {
    /// `key` signs tokens; gateways that share it accept each other's tokens.
    pub fn new(admin_user: &str, auth: &AdminAuth, key: Vec<u8>) -> Self {
        let password = match auth {
            AdminAuth::Password(p) => {
                let salt: [u8; 16] = rand::random();
                let salted_password = pgwire::api::auth::sasl::scram::gen_salted_password(p, &salt, SCRAM_ITERATIONS);
                Some((
                    p.clone(),
                    ScramSecret {
                        salt: salt.to_vec(),
                        salted_password,
                    },
                ))
            }
            AdminAuth::LoopbackTrust => None,
        };
        StaticAuthenticator {
            admin_user: admin_user.to_owned(),
            password,
            key,
            token_ttl: Duration::from_secs(12 * 3600),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator for StaticAuthenticator {
    fn is_trust(&self) -> bool {
        self.password.is_none()
    }

    fn trust(&self, user: &str, peer: IpAddr) -> Result<Principal, AuthError> {
        if self.password.is_some() || user != self.admin_user {
            return Err(AuthError::InvalidCredentials(user.to_owned()));
        }
        if !peer.is_loopback() {
            return Err(AuthError::NotPermitted(user.to_owned()));
        }
        Ok(Principal { user: user.to_owned() })
    }

    fn scram_secret(&self, user: &str) -> Result<ScramSecret, AuthError> {
        match &self.password {
            Some((_, secret)) if user == self.admin_user => Ok(secret.clone()),
            _ => Err(AuthError::InvalidCredentials(user.to_owned())),
        }
    }

    fn verify_password(&self, user: &str, password: &str, peer: Option<IpAddr>) -> Result<Principal, AuthError> {
        match &self.password {
            None => self.trust(user, peer.unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            Some((p, _)) if user == self.admin_user && constant_time_eq(p.as_bytes(), password.as_bytes()) => {
                Ok(Principal { user: user.to_owned() })
            }
            Some(_) => Err(AuthError::InvalidCredentials(user.to_owned())),
        }
    }

    fn issue_token(&self, principal: &Principal) -> String {
        let expires = SystemTime::now()
            .checked_add(self.token_ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        // A nonce makes each login's token its own (Flight sessions are
        // keyed by it): `expires.nonce:user`.
        let nonce: u64 = rand::random();
        let payload = format!("{expires}.{nonce:016x}:{}", principal.user);
        URL_SAFE_NO_PAD.encode(self.sign(payload.as_bytes()))
    }

    fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| AuthError::InvalidToken)?;
        let payload = self.open(&raw).ok_or(AuthError::InvalidToken)?;
        let payload = String::from_utf8(payload).map_err(|_| AuthError::InvalidToken)?;
        let (stamp, user) = payload.split_once(':').ok_or(AuthError::InvalidToken)?;
        let expires = stamp.split_once('.').map_or(stamp, |(e, _nonce)| e);
        let expires: u64 = expires.parse().map_err(|_| AuthError::InvalidToken)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(u64::MAX, |d| d.as_secs());
        if now >= expires {
            return Err(AuthError::InvalidToken);
        }
        Ok(Principal { user: user.to_owned() })
    }

    fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(payload);
        let tag = mac.finalize().into_bytes();
        let mut out = Vec::with_capacity(payload.len() + tag.len());
        out.extend_from_slice(&tag);
        out.extend_from_slice(payload);
        out
    }

    fn open(&self, signed: &[u8]) -> Option<Vec<u8>> {
        if signed.len() < 32 {
            return None;
        }
        let (tag, payload) = signed.split_at(32);
        let mut mac = self.mac();
        mac.update(payload);
        mac.verify_slice(tag).ok()?;
        Some(payload.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> StaticAuthenticator {
        StaticAuthenticator::new("admin", &AdminAuth::Password("s3cret".into()), b"k".to_vec())
    }

    #[test]
    fn passwords_and_tokens() {
        let a = auth();
        assert!(a.verify_password("admin", "s3cret", None).is_ok());
        assert!(matches!(
            a.verify_password("admin", "nope", None),
            Err(AuthError::InvalidCredentials(_))
        ));
        assert!(matches!(
            a.verify_password("eve", "s3cret", None),
            Err(AuthError::InvalidCredentials(_))
        ));
        let t = a.issue_token(&Principal { user: "admin".into() });
        assert_eq!(a.verify_token(&t).unwrap().user, "admin");
        assert_ne!(
            t,
            a.issue_token(&Principal { user: "admin".into() }),
            "each login gets its own token"
        );
        let other = StaticAuthenticator::new("admin", &AdminAuth::Password("s3cret".into()), b"other".to_vec());
        assert!(other.verify_token(&t).is_err(), "a token from another key is refused");
        let mut forged = URL_SAFE_NO_PAD.decode(&t).unwrap();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(a.verify_token(&URL_SAFE_NO_PAD.encode(forged)).is_err());
    }

    #[test]
    fn trust_is_loopback_only() {
        let a = StaticAuthenticator::new("sluice", &AdminAuth::LoopbackTrust, b"k".to_vec());
        assert!(a.trust("sluice", "127.0.0.1".parse().unwrap()).is_ok());
        assert!(matches!(
            a.trust("sluice", "10.1.2.3".parse().unwrap()),
            Err(AuthError::NotPermitted(_))
        ));
        assert!(a.trust("other", "127.0.0.1".parse().unwrap()).is_err());
    }
}
