//! The keys of `--jwt-jwks-url`: an identity provider's JWK Set (RFC 7517),
//! fetched over HTTP(S) and cached by `kid` in moka for a TTL (default 10
//! minutes). Only signature keys of a public kind are taken, each with the
//! algorithms its kind allows: RSA RS*/PS*, EC P-256 ES256 and P-384 ES384;
//! a key's `alg`, when given, narrows that to one (and an `alg` outside the
//! kind refuses the key). Symmetric (`oct`) keys are never taken: a JWK Set
//! is public, so an HMAC key from it would let anyone sign.
//!
//! A token whose `kid` is not cached refetches the set, at most once per
//! refetch interval (10 s) however many such tokens arrive; verifications
//! that wait while a fetch runs share its result. A failed fetch keeps the
//! cached keys (until their TTL). A token without `kid` is verified only
//! when the set holds exactly one key.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;

/// How long fetched keys are trusted without a refetch that lists them again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// The least time between two refetches caused by unknown `kid`s.
const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// The largest JWK Set read.
const MAX_BODY: usize = 1 << 20;

/// The algorithms a JWK Set's keys may verify: public-key ones only.
pub const ASYMMETRIC: [Algorithm; 8] = {
    use Algorithm::*;
    [RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384]
};

/// A fetch that brought no key set (the cached keys stay).
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("cannot fetch the JWK set: {0}")]
    Fetch(String),
    #[error("the JWK set's server answered HTTP {0}")]
    Status(u16),
    #[error("the JWK set is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("not a JWK set: {0}")]
    Parse(String),
}

/// Why a key of the set is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedKey {
    #[error("a symmetric (oct) key is never taken from a JWK set")]
    Symmetric,
    #[error("unsupported key type or curve")]
    Unsupported,
    #[error("its alg {0:?} does not fit its key type")]
    AlgMismatch(KeyAlgorithm),
    #[error("not a signature-verification key (use/key_ops)")]
    NotForSigning,
    #[error("its kid is not unique in the set")]
    DuplicateKid,
    #[error("no kid, in a set of several keys")]
    NoKid,
    #[error("unreadable: {0}")]
    Invalid(String),
}

/// A key of the set and the algorithms it may verify.
#[derive(Clone)]
pub struct JwksKey {
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for JwksKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKey").field("algorithms", &self.algorithms).finish()
    }
}

/// The key a JWK stands for, or why it is refused.
pub fn usable(jwk: &Jwk) -> Result<JwksKey, RefusedKey> {
    use Algorithm::*;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
        || jwk
            .common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err(RefusedKey::NotForSigning);
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            EllipticCurve::P521 | EllipticCurve::Ed25519 => return Err(RefusedKey::Unsupported),
        },
        AlgorithmParameters::OctetKey(_) => return Err(RefusedKey::Symmetric),
        AlgorithmParameters::OctetKeyPair(_) => return Err(RefusedKey::Unsupported),
    };
    let algorithms = match jwk.common.key_algorithm {
        None => kind,
        Some(alg) => {
            let pinned = match alg {
                KeyAlgorithm::RS256 => RS256,
                KeyAlgorithm::RS384 => RS384,
                KeyAlgorithm::RS512 => RS512,
                KeyAlgorithm::PS256 => PS256,
                KeyAlgorithm::PS384 => PS384,
                KeyAlgorithm::PS512 => PS512,
                KeyAlgorithm::ES256 => ES256,
                KeyAlgorithm::ES384 => ES384,
                _ => return Err(RefusedKey::AlgMismatch(alg)),
            };
            if !kind.contains(&pinned) {
                return Err(RefusedKey::AlgMismatch(alg));
            }
            vec![pinned]
        }
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| RefusedKey::Invalid(e.to_string()))?;
    Ok(JwksKey { key, algorithms })
}

/// A parsed JWK Set: the usable keys by `kid`, the set's only key (when it
/// has exactly one), and the refused keys (by `kid`, when they have one).
#[derive(Debug, Default)]
pub struct KeySet {
    pub by_kid: HashMap<String, JwksKey>,
    pub sole: Option<JwksKey>,
    pub refused: Vec<(Option<String>, RefusedKey)>,
}

/// Parses a JWK Set document; keys that cannot be used are listed in
/// `refused`, not errors (a set may hold encryption keys too).
pub fn parse_set(body: &[u8]) -> Result<KeySet, JwksError> {
    #[derive(serde::Deserialize)]
    struct Raw {
        keys: Vec<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| JwksError::Parse(e.to_string()))?;
    let total = raw.keys.len();
    let mut set = KeySet::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut parsed = Vec::with_capacity(total);
    for value in raw.keys {
        let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        if let Some(kid) = &kid {
            *seen.entry(kid.clone()).or_default() += 1;
        }
        let key = serde_json::from_value::<Jwk>(value)
            .map_err(|e| RefusedKey::Invalid(e.to_string()))
            .and_then(|jwk| usable(&jwk));
        parsed.push((kid, key));
    }
    for (kid, key) in parsed {
        match (kid, key) {
            (kid, Err(why)) => set.refused.push((kid, why)),
            (Some(kid), Ok(_)) if seen[&kid] > 1 => set.refused.push((Some(kid), RefusedKey::DuplicateKid)),
            (kid, Ok(key)) if total == 1 => {
                set.sole = Some(key.clone());
                if let Some(kid) = kid {
                    set.by_kid.insert(kid, key);
                }
            }
            (Some(kid), Ok(key)) => {
                set.by_kid.insert(kid, key);
            }
            (None, Ok(_)) => set.refused.push((None, RefusedKey::NoKid)),
        }
    }
    Ok(set)
}

/// Where a key is cached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot {
    Kid(String),
    /// The set's only key, for tokens without `kid`.
    Sole,
}

/// The cached key set of one URL.
pub struct Jwks {
    url: url::Url,
    client: reqwest::Client,
    keys: moka::future::Cache<Slot, Arc<JwksKey>>,
    /// When the last refetch began (the start-up fetch does not count).
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    /// Fetches done: a waiter that sees it move shares that fetch.
    fetches: AtomicU64,
    interval: Duration,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &shown(&self.url))
            .finish_non_exhaustive()
    }
}

/// A URL as logs may show it: no user info, no query.
pub fn shown(url: &url::Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    )
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl Jwks {
    pub fn new(url: url::Url, ttl: Duration) -> Result<Self, JwksError> {
        Self::with_interval(url, ttl, REFETCH_INTERVAL)
    }

    fn with_interval(url: url::Url, ttl: Duration, interval: Duration) -> Result<Self, JwksError> {
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if url.scheme() != "https" && !loopback {
            tracing::warn!(target: "sluice::auth", url = %shown(&url), "the JWK set is fetched without TLS: whoever can alter it can sign tokens");
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            // An https set stays https across redirects.
            .https_only(url.scheme() == "https")
            .user_agent(concat!("sluice-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwksError::Client(chain(&e)))?;
        Ok(Jwks {
            url,
            client,
            keys: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            last_refetch: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            interval,
        })
    }

    /// The start-up fetch (a failure is logged; tokens refetch later).
    pub async fn prime(&self) {
        let _guard = self.last_refetch.lock().await;
        self.fetch_and_store().await;
    }

    /// The key for a token's `kid` (None: the set's only key), refetching
    /// the set (rate-limited) when it is not cached.
    pub async fn key(&self, kid: Option<&str>) -> Option<Arc<JwksKey>> {
        let slot = kid.map_or(Slot::Sole, |k| Slot::Kid(k.to_owned()));
        if let Some(key) = self.keys.get(&slot).await {
            return Some(key);
        }
        self.refetch().await;
        self.keys.get(&slot).await
    }

    async fn refetch(&self) {
        let seen = self.fetches.load(Ordering::Acquire);
        let mut last = self.last_refetch.lock().await;
        if self.fetches.load(Ordering::Acquire) != seen {
            return; // a fetch finished while we waited: its keys are ours
        }
        if last.is_some_and(|t| t.elapsed() < self.interval) {
            return;
        }
        *last = Some(Instant::now());
        self.fetch_and_store().await;
    }

    /// Fetches the set and replaces the cached keys; a failure keeps them.
    async fn fetch_and_store(&self) {
        match self.fetch().await {
            Ok(set) => {
                for (kid, why) in &set.refused {
                    tracing::warn!(target: "sluice::auth", url = %shown(&self.url), kid = kid.as_deref().unwrap_or("-"), "JWK set key not used: {why}");
                }
                let keep: Vec<Slot> = set
                    .by_kid
                    .keys()
                    .map(|k| Slot::Kid(k.clone()))
                    .chain(set.sole.is_some().then_some(Slot::Sole))
                    .collect();
                for (slot, _) in self.keys.iter() {
                    if !keep.contains(&slot) {
                        self.keys.invalidate(slot.as_ref()).await;
                    }
                }
                let count = set.by_kid.len();
                if let Some(sole) = set.sole {
                    self.keys.insert(Slot::Sole, Arc::new(sole)).await;
                }
                for (kid, key) in set.by_kid {
                    self.keys.insert(Slot::Kid(kid), Arc::new(key)).await;
                }
                tracing::info!(target: "sluice::auth", url = %shown(&self.url), keys = count, "JWK set fetched");
            }
            Err(e) => {
                tracing::warn!(target: "sluice::auth", url = %shown(&self.url), "{e}; the cached keys stay");
            }
        }
        self.fetches.fetch_add(1, Ordering::Release);
    }

    async fn fetch(&self) -> Result<KeySet, JwksError> {
        let fetch = |e: reqwest::Error| JwksError::Fetch(chain(&e.without_url()));
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(fetch)?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        if response.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(JwksError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(JwksError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        parse_set(&body)
    }
}

#[cfg(test)]
mod tests;
