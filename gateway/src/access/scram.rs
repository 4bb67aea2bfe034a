//! SCRAM-SHA-256 verifiers (RFC 5802 / 7677), the only form in which Sluice
//! stores a password: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
//! as PostgreSQL writes them in `pg_authid.rolpassword`. The verifier proves a
//! password or a SCRAM client proof without holding anything a client could
//! log in with (the salted password is not kept).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Iterations of new verifiers (PostgreSQL's default).
pub const ITERATIONS: u32 = 4096;

/// A stored SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// A verifier that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("not a SCRAM-SHA-256 verifier")]
pub struct BadVerifier;

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `Hi(password, salt, i)`: PBKDF2-HMAC-SHA-256 with one output block.
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password.as_bytes(), &first);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password.as_bytes(), &u);
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Verifier {
    /// A new verifier of `password` with a random salt.
    pub fn new(password: &str) -> Self {
        let salt: [u8; 16] = rand::random();
        Self::with_salt(password, &salt, ITERATIONS)
    }

    pub fn with_salt(password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// Parses PostgreSQL's text form.
    pub fn parse(text: &str) -> Result<Self, BadVerifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$").ok_or(BadVerifier)?;
        let (params, keys) = rest.split_once('$').ok_or(BadVerifier)?;
        let (iterations, salt) = params.split_once(':').ok_or(BadVerifier)?;
        let (stored, server) = keys.split_once(':').ok_or(BadVerifier)?;
        let key = |s: &str| -> Result<[u8; 32], BadVerifier> {
            STANDARD
                .decode(s)
                .map_err(|_| BadVerifier)?
                .try_into()
                .map_err(|_| BadVerifier)
        };
        let iterations: u32 = iterations.parse().map_err(|_| BadVerifier)?;
        if iterations == 0 {
            return Err(BadVerifier);
        }
        Ok(Verifier {
            iterations,
            salt: STANDARD.decode(salt).map_err(|_| BadVerifier)?,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// PostgreSQL's text form.
    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }

    /// Checks a cleartext password (Flight Basic auth, `ALTER ... PASSWORD`
    /// checks): derives the stored key again and compares.
    pub fn verify_password(&self, password: &str) -> bool {
        let salted = salted_password(password, &self.salt, self.iterations);
        let stored = sha256(&hmac(&salted, b"Client Key"));
        constant_time_eq(&stored, &self.stored_key)
    }

    /// Checks a SCRAM client proof over `auth_message`; on success returns
    /// the server signature the client expects in `server-final-message`.
    pub fn verify_proof(&self, auth_message: &str, proof: &[u8]) -> Option<[u8; 32]> {
        let client_signature = hmac(&self.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return None;
        }
        let client_key: Vec<u8> = proof.iter().zip(client_signature.iter()).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&sha256(&client_key), &self.stored_key) {
            return None;
        }
        Some(hmac(&self.server_key, auth_message.as_bytes()))
    }

    /// A verifier for a user that does not exist: salt and keys derived from
    /// `secret` and the name, so the exchange looks the same for every name
    /// and always fails.
    pub fn decoy(secret: &[u8], user: &str) -> Self {
        let salt = hmac(secret, format!("decoy-salt:{user}").as_bytes());
        Verifier {
            iterations: ITERATIONS,
            salt: salt[..16].to_vec(),
            stored_key: hmac(secret, format!("decoy-stored:{user}").as_bytes()),
            server_key: hmac(secret, format!("decoy-server:{user}").as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example: user "user", password "pencil".
    #[test]
    fn rfc_7677_exchange_verifies() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::with_salt("pencil", &salt, 4096);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final_bare = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{client_first_bare},{server_first},{client_final_bare}");
        let proof = STANDARD.decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").unwrap();
        let signature = v.verify_proof(&auth, &proof).expect("the RFC's proof verifies");
        assert_eq!(
            STANDARD.encode(signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let mut forged = proof.clone();
        forged[0] ^= 1;
        assert!(v.verify_proof(&auth, &forged).is_none());
    }

    #[test]
    fn text_form_round_trips_and_checks_passwords() {
        let v = Verifier::new("s3cret");
        let parsed = Verifier::parse(&v.to_text()).unwrap();
        assert_eq!(parsed, v);
        assert!(parsed.verify_password("s3cret"));
        assert!(!parsed.verify_password("s3cret "));
        assert!(Verifier::parse("md5abc").is_err());
        assert!(Verifier::parse("SCRAM-SHA-256$0:AAAA$AAAA:AAAA").is_err());
        assert!(
            !format!("{v:?}").contains(&STANDARD.encode(v.stored_key)),
            "Debug shows no key"
        );
    }
}
