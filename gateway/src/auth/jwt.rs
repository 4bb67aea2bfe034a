//! JWT bearer tokens from an identity provider (jsonwebtoken). One key, and
//! the algorithms pinned to its kind: an HMAC secret verifies HS256/384/512
//! only, an RSA public key RS256/384/512 and PS256/384/512 only, an EC key
//! ES256/384 only — so a token signed with a public key used as an HMAC
//! secret, or with `alg: none`, is refused. `exp` is required, `nbf`, `iss`
//! and `aud` are checked when configured (60 s leeway for clock skew). The
//! user is the `user_claim` claim (default `sub`).

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::AuthError;

/// Where the key comes from, as configured.
#[derive(Clone)]
pub enum JwtKey {
    /// A shared secret (HS*).
    Secret(Vec<u8>),
    /// A PEM public key (RSA or EC).
    PublicPem(Vec<u8>),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKey::Secret(_) => f.write_str("Secret(<redacted>)"),
            JwtKey::PublicPem(_) => f.write_str("PublicPem"),
        }
    }
}

/// The JWT settings of the gateway's config.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub user_claim: String,
}

/// Verifies JWTs against one key.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    user_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// A key that cannot verify anything.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

impl JwtVerifier {
    pub fn new(settings: &JwtSettings) -> Result<Self, KeyError> {
        use Algorithm::*;
        let (key, algorithms) = match &settings.key {
            JwtKey::Secret(secret) => {
                if secret.len() < 32 {
                    return Err(KeyError("the JWT secret must be at least 32 bytes".into()));
                }
                (DecodingKey::from_secret(secret), vec![HS256, HS384, HS512])
            }
            JwtKey::PublicPem(pem) => match DecodingKey::from_rsa_pem(pem) {
                Ok(k) => (k, vec![RS256, RS384, RS512, PS256, PS384, PS512]),
                Err(_) => match DecodingKey::from_ec_pem(pem) {
                    Ok(k) => (k, vec![ES256, ES384]),
                    Err(e) => return Err(KeyError(format!("not an RSA or EC public key in PEM: {e}"))),
                },
            },
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &settings.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &settings.issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(JwtVerifier {
            key,
            validation,
            user_claim: settings.user_claim.clone(),
        })
    }

    /// The user a valid token names.
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &self.key, &self.validation)
                .map_err(|e| {
                    tracing::debug!(target: "sluice::auth", "JWT refused: {e}");
                    AuthError::InvalidToken
                })?;
        match data.claims.get(&self.user_claim) {
            Some(serde_json::Value::String(user)) if !user.is_empty() => Ok(user.clone()),
            _ => Err(AuthError::InvalidToken),
        }
    }
}

/// Whether `s` has the shape of a JWT (three base64url parts, the first a
/// JSON header); the authenticator's own tokens never do.
pub fn looks_like_jwt(s: &str) -> bool {
    use base64::Engine as _;
    let mut parts = s.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .is_some_and(|h| h.get("alg").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier(issuer: Option<&str>, audience: Option<&str>) -> JwtVerifier {
        JwtVerifier::new(&JwtSettings {
            key: JwtKey::Secret(SECRET.to_vec()),
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
            user_claim: "sub".into(),
        })
        .unwrap()
    }

    fn token(claims: serde_json::Value, alg: Algorithm) -> String {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn claims_are_checked() {
        let v = verifier(Some("idp"), Some("sluice"));
        let good = serde_json::json!({"sub": "alice", "exp": now() + 600, "iss": "idp", "aud": "sluice"});
        let t = token(good.clone(), Algorithm::HS256);
        assert!(looks_like_jwt(&t));
        assert_eq!(v.verify(&t).unwrap(), "alice");
        for bad in [
            serde_json::json!({"sub": "alice", "exp": now() - 3600, "iss": "idp", "aud": "sluice"}),
            serde_json::json!({"sub": "alice", "iss": "idp", "aud": "sluice"}),
            serde_json::json!({"sub": "alice", "exp": now() + 600, "iss": "other", "aud": "sluice"}),
            serde_json::json!({"sub": "alice", "exp": now() + 600, "iss": "idp", "aud": "else"}),
            serde_json::json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 3600, "iss": "idp", "aud": "sluice"}),
            serde_json::json!({"exp": now() + 600, "iss": "idp", "aud": "sluice"}),
        ] {
            assert!(v.verify(&token(bad.clone(), Algorithm::HS256)).is_err(), "{bad}");
        }
    }

    #[test]
    fn algorithms_are_pinned_and_none_is_refused() {
        use base64::Engine as _;
        let v = verifier(None, None);
        let claims = serde_json::json!({"sub": "alice", "exp": now() + 600});
        // alg none: header and claims, empty signature
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        );
        assert!(v.verify(&none).is_err());
        // a token whose header claims RS256, MACed with the secret
        let t = token(claims.clone(), Algorithm::HS256);
        let (_, rest) = t.split_once('.').unwrap();
        let forged = format!("{}.{rest}", b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#));
        assert!(v.verify(&forged).is_err());
        // tampered claims
        let (head, rest) = t.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let evil = b64.encode(serde_json::json!({"sub": "admin", "exp": now() + 600}).to_string());
        assert!(v.verify(&format!("{head}.{evil}.{sig}")).is_err());
        assert!(
            JwtVerifier::new(&JwtSettings {
                key: JwtKey::Secret(b"short".to_vec()),
                issuer: None,
                audience: None,
                user_claim: "sub".into()
            })
            .is_err()
        );
        assert!(!looks_like_jwt("abc.def"));
    }
}
