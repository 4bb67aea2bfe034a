//! JWT bearer tokens from an identity provider (jsonwebtoken). One key, and
//! the algorithms pinned to its kind: an HMAC secret verifies HS256/384/512
//! only, an RSA public key RS256/384/512 and PS256/384/512 only, an EC key
//! ES256/384 only — so a token signed with a public key used as an HMAC
//! secret, or with `alg: none`, is refused. `exp` is required, `nbf`, `iss`
//! and `aud` are checked when configured (60 s leeway for clock skew). The
//! user is the `user_claim` claim (default `sub`). Or a JWK Set
//! (`--jwt-jwks-url`, [`super::jwks`]): the token's `kid` picks the key, and
//! the key's kind (and its `alg`) the algorithms; never an HMAC key.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{AuthError, jwks};

/// Where the key comes from, as configured.
#[derive(Clone)]
pub enum JwtKey {
    /// A shared secret (HS*).
    Secret(Vec<u8>),
    /// A PEM public key (RSA or EC).
    PublicPem(Vec<u8>),
    /// An identity provider's JWK Set, fetched over HTTP(S); its keys are
    /// cached for `ttl`.
    Jwks { url: url::Url, ttl: Duration },
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKey::Secret(_) => f.write_str("Secret(<redacted>)"),
            JwtKey::PublicPem(_) => f.write_str("PublicPem"),
            JwtKey::Jwks { url, ttl } => f
                .debug_struct("Jwks")
                .field("url", &jwks::shown(url))
                .field("ttl", ttl)
                .finish(),
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
    /// The claim holding the login's roles (`--jwt-roles-claim`).
    pub roles_claim: Option<String>,
}

/// Who a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// The roles claim: a JSON array of strings, or one string of names
    /// separated by spaces or commas (OAuth `scope` style).
    pub roles: Vec<String>,
}

/// The keys tokens are verified against.
enum Keys {
    /// One configured key; `validation` holds its algorithms.
    One(DecodingKey),
    /// A JWK Set; each key brings its algorithms, `validation` holds the
    /// ones any key of a set may have.
    Set(Box<jwks::Jwks>),
}

/// Verifies JWTs against one key or a JWK Set.
pub struct JwtVerifier {
    keys: Keys,
    validation: Validation,
    user_claim: String,
    roles_claim: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("JwtVerifier");
        d.field("algorithms", &self.validation.algorithms);
        if let Keys::Set(set) = &self.keys {
            d.field("jwks", set);
        }
        d.finish_non_exhaustive()
    }
}

/// A key that cannot verify anything.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

impl JwtVerifier {
    /// Fetches nothing: a JWK Set is fetched by [`JwtVerifier::prime`].
    pub fn new(settings: &JwtSettings) -> Result<Self, KeyError> {
        use Algorithm::*;
        let (keys, algorithms) = match &settings.key {
            JwtKey::Secret(secret) => {
                if secret.len() < 32 {
                    return Err(KeyError("the JWT secret must be at least 32 bytes".into()));
                }
                (Keys::One(DecodingKey::from_secret(secret)), vec![HS256, HS384, HS512])
            }
            JwtKey::PublicPem(pem) => match DecodingKey::from_rsa_pem(pem) {
                Ok(k) => (Keys::One(k), vec![RS256, RS384, RS512, PS256, PS384, PS512]),
                Err(_) => match DecodingKey::from_ec_pem(pem) {
                    Ok(k) => (Keys::One(k), vec![ES256, ES384]),
                    Err(e) => return Err(KeyError(format!("not an RSA or EC public key in PEM: {e}"))),
                },
            },
            JwtKey::Jwks { url, ttl } => (
                Keys::Set(Box::new(
                    jwks::Jwks::new(url.clone(), *ttl).map_err(|e| KeyError(e.to_string()))?,
                )),
                jwks::ASYMMETRIC.to_vec(),
            ),
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
            keys,
            validation,
            user_claim: settings.user_claim.clone(),
            roles_claim: settings.roles_claim.clone(),
        })
    }

    /// Fetches a JWK Set's keys at start-up; a failure is logged, and
    /// tokens refetch later. Nothing to do for one configured key.
    pub async fn prime(&self) {
        if let Keys::Set(set) = &self.keys {
            set.prime().await;
        }
    }

    /// The user (and roles) a valid token names.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        fn refused(why: &dyn std::fmt::Display) -> AuthError {
            tracing::debug!(target: "sluice::auth", "JWT refused: {why}");
            AuthError::InvalidToken
        }
        type Claims = serde_json::Map<String, serde_json::Value>;
        let data = match &self.keys {
            Keys::One(key) => jsonwebtoken::decode::<Claims>(token, key, &self.validation),
            Keys::Set(set) => {
                let header = jsonwebtoken::decode_header(token).map_err(|e| refused(&e))?;
                // No lookup (nor refetch) for an algorithm no key may have.
                if !self.validation.algorithms.contains(&header.alg) {
                    return Err(refused(&"an algorithm no JWK Set key may have"));
                }
                let key = set
                    .key(header.kid.as_deref())
                    .await
                    .ok_or_else(|| refused(&"no key of the JWK Set matches the token's kid"))?;
                let mut validation = self.validation.clone();
                validation.algorithms.clone_from(&key.algorithms);
                jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            }
        }
        .map_err(|e| refused(&e))?;
        let user = match data.claims.get(&self.user_claim) {
            Some(serde_json::Value::String(user)) if !user.is_empty() => user.clone(),
            _ => return Err(AuthError::InvalidToken),
        };
        let roles = match self.roles_claim.as_ref().and_then(|c| data.claims.get(c)) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str())
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(serde_json::Value::String(names)) => names
                .split([' ', ','])
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Identity { user, roles })
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
            roles_claim: Some("groups".into()),
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

    #[tokio::test]
    async fn claims_are_checked() {
        let v = verifier(Some("idp"), Some("sluice"));
        let good = serde_json::json!({"sub": "alice", "exp": now() + 600, "iss": "idp", "aud": "sluice"});
        let t = token(good.clone(), Algorithm::HS256);
        assert!(looks_like_jwt(&t));
        assert_eq!(v.verify(&t).await.unwrap().user, "alice");
        let grouped = serde_json::json!({"sub": "bo", "exp": now() + 600, "iss": "idp", "aud": "sluice", "groups": ["a", "", 7, "b"]});
        assert_eq!(
            v.verify(&token(grouped, Algorithm::HS256)).await.unwrap().roles,
            ["a", "b"]
        );
        let scoped =
            serde_json::json!({"sub": "bo", "exp": now() + 600, "iss": "idp", "aud": "sluice", "groups": "a b,c"});
        assert_eq!(
            v.verify(&token(scoped, Algorithm::HS256)).await.unwrap().roles,
            ["a", "b", "c"]
        );
        for bad in [
            serde_json::json!({"sub": "alice", "exp": now() - 3600, "iss": "idp", "aud": "sluice"}),
            serde_json::json!({"sub": "alice", "iss": "idp", "aud": "sluice"}),
            serde_json::json!({"sub": "alice", "exp": now() + 600, "iss": "other", "aud": "sluice"}),
            serde_json::json!({"sub": "alice", "exp": now() + 600, "iss": "idp", "aud": "else"}),
            serde_json::json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 3600, "iss": "idp", "aud": "sluice"}),
            serde_json::json!({"exp": now() + 600, "iss": "idp", "aud": "sluice"}),
        ] {
            assert!(v.verify(&token(bad.clone(), Algorithm::HS256)).await.is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn algorithms_are_pinned_and_none_is_refused() {
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
        assert!(v.verify(&none).await.is_err());
        // a token whose header claims RS256, MACed with the secret
        let t = token(claims.clone(), Algorithm::HS256);
        let (_, rest) = t.split_once('.').unwrap();
        let forged = format!("{}.{rest}", b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#));
        assert!(v.verify(&forged).await.is_err());
        // tampered claims
        let (head, rest) = t.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let evil = b64.encode(serde_json::json!({"sub": "admin", "exp": now() + 600}).to_string());
        assert!(v.verify(&format!("{head}.{evil}.{sig}")).await.is_err());
        assert!(
            JwtVerifier::new(&JwtSettings {
                key: JwtKey::Secret(b"short".to_vec()),
                issuer: None,
                audience: None,
                user_claim: "sub".into(),
                roles_claim: None,
            })
            .is_err()
        );
        assert!(!looks_like_jwt("abc.def"));
    }
}
