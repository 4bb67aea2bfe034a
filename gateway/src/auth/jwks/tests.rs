//! JWK Sets: which keys are taken, `kid` selection, `alg` pinning, and the
//! refetch rate limit against a tiny local HTTP server that counts requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::auth::jwt::{JwtKey, JwtSettings, JwtVerifier};

// Test-only keys.
const RSA_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCjcaqFbNi/6PYV
hFu/d/MLEWiTeJd54GworDvEagbYA+wOv/7NiddRGbcpQ6ys2etMLepCYLzHPwTO
isdXX/f3G6waL0gr+PMq+dAWDih6kxR898fpNlvO63rxcsJ1pIWqRrgsNyDVicFX
MRWtj4JvFspbxCIIn6Ce/9QcKoMtU3UhNpLr65N7GCQFqZ3QqLbi1pkzji6QRqtJ
TAtSGx6Ki9Squ7C83Iib5rX15rEPN7ApJkrDzXRe0RAl9Hjcim+ldPpUudGgCc5g
vTapyYVk6MXsnKQqgUIDagZJa/iT4+OmszOSSnNQUryAzhsLsAT0U+STQULlypep
cRukjmWhAgMBAAECggEAUJWz7hoXGjPp1P0P4WzqK6xXI9LC2KgCm+EjjLl8C1iP
tEwMfNm4DDgCGznPMuA1B7fhtv2MRi63l4BMPbPHBhKiPbzPOEMD3c4SvzUW1yya
Xu0qJz2ScYif8tjSsP8/mg9JMh+yNCa56Vv9pLfLpysU9b7Tyu2tW4emVIbPa3Je
+IIbdfZ5kg0m2XvClclq24UCpYDx1I5piDmdXZKc51OcHdRXfEDSc/JjQ3PUlonK
xpvSOZLNjbIvHXePtkQEOz1Yd5Ge71xClFGSOFiAthfPRRJOejVVGEGroOKMgvaI
ZUaDM3cA166axMFbAQ4ZC/CJThMdB6eRwqVf6+TlawKBgQDaj6r8oyeg5vcNxE5X
MP2OYXE3KZPknQpVh3j3gM4TApVz6g/tG6ZMbrTFVCV0D/hOoGnGpt8VUTXmQWgS
GoSAFFz3MW0OTR9yOXHgQPjMB9RxlYCEFV/sWfDOuO+QRiCT0kpEJpkhN8mmlC++
8DaNZBHPpxXos2vseOP/QjLH4wKBgQC/cQCf1ZxJX/L0STP6pTLVBnMhocA0ljXP
XElz4stXAq8RGVZgIvddB5FbxFMR3wsEkRoXcW4DBRlqjVe37DOS+xscwaMLW0nD
x+eVWPPULEqr/0hup7VTs1C1pQs1r5xsuqJk8PIbBi/loxBcRTveJ0JEFssy0LDe
4hOUxj1rqwKBgQC9d6AlxJZ9ANwYvh2frmOQQ16vEEcZ/x1PSdKO1MVQa4P96WGH
DdobFjl1et3BAHskRiGMSWrIgw8znW3Hi99jXMO+ssU0iZ0CG1RhsFE+Jmd/U7gG
SLVQIiQEQQPEUVa6bqlc7Q0AY+lWk83UO08/QQnDtrfic2/SnnYf+VYmOwKBgQCx
OK4ISNnmPxGNPVsGE/oLpG3eW3uv8sIblOZWhkQQ52YjYR5J3vS5RTE2D3eLGrx7
XMwXmaTq3MSbk/75P4q67QQ7SbJi5/5QZHWpFvCZoOr7cFagQVamBmCX1xKaf1hC
ez+sTDUD+WVLovmZQWpbjGJW3/b5sqGZoxXXavEfAwKBgAE79i6ddeXjdBuNdatf
JdrDJQAEQ/6Gm/mQZEXuKx/oQY0VpnKEmkrU2YIT6oF/D7oLcWhQuxom5ftQtE6j
H5DVKMaYdCLEPejagZN/nK5mLbbIXNCoGteaDMwFmNjTXZJ3+WBrXap8e7GHkprH
K865Yk2Bm7CpagVfSEweBzPt
-----END PRIVATE KEY-----
";
const RSA_N: &str = "o3GqhWzYv-j2FYRbv3fzCxFok3iXeeBsKKw7xGoG2APsDr_-zYnXURm3KUOsrNnrTC3qQmC8xz8EzorHV1_39xusGi9IK_jzKvnQFg4oepMUfPfH6TZbzut68XLCdaSFqka4LDcg1YnBVzEVrY-CbxbKW8QiCJ-gnv_UHCqDLVN1ITaS6-uTexgkBamd0Ki24taZM44ukEarSUwLUhseiovUqruwvNyIm-a19eaxDzewKSZKw810XtEQJfR43IpvpXT6VLnRoAnOYL02qcmFZOjF7JykKoFCA2oGSWv4k-PjprMzkkpzUFK8gM4bC7AE9FPkk0FC5cqXqXEbpI5loQ";
const EC_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPIvzu02I+ApUwgYa
0R08mEeJam1R1oCiwUBlMXbapAOhRANCAAQNEFOv/6zlJnYs7MS80TlWZPM2X6Uv
QfpORyyVGeHhdKIsO0UCjQQm3aqLNA65TFbnfFfYlkaSoafKo5U3zXcR
-----END PRIVATE KEY-----
";
const EC_X: &str = "DRBTr_-s5SZ2LOzEvNE5VmTzNl-lL0H6TkcslRnh4XQ";
const EC_Y: &str = "oiw7RQKNBCbdqos0DrlMVud8V9iWRpKhp8qjlTfNdxE";
/// base64url of "0123456789abcdef0123456789abcdef"
const OCT_K: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";

fn rsa(kid: Option<&str>, alg: Option<&str>) -> serde_json::Value {
    let mut k = json!({"kty": "RSA", "use": "sig", "n": RSA_N, "e": "AQAB"});
    if let Some(kid) = kid {
        k["kid"] = json!(kid);
    }
    if let Some(alg) = alg {
        k["alg"] = json!(alg);
    }
    k
}

fn ec(kid: &str) -> serde_json::Value {
    json!({"kty": "EC", "kid": kid, "crv": "P-256", "x": EC_X, "y": EC_Y})
}

fn oct(kid: &str) -> serde_json::Value {
    json!({"kty": "oct", "kid": kid, "k": OCT_K})
}

fn set(keys: Vec<serde_json::Value>) -> String {
    json!({ "keys": keys }).to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &json!({"sub": "alice", "exp": now() + 600}), key).unwrap()
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PEM.as_bytes()).unwrap()
}

/// A JWK Set server: answers every request with `state` and counts them.
struct Server {
    url: url::Url,
    hits: Arc<AtomicUsize>,
    state: Arc<std::sync::Mutex<(u16, String)>>,
}

impl Server {
    async fn start(body: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}/jwks.json", listener.local_addr().unwrap())).unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(std::sync::Mutex::new((200, body)));
        let (h, s) = (Arc::clone(&hits), Arc::clone(&state));
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (hits, state) = (Arc::clone(&h), Arc::clone(&s));
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    hits.fetch_add(1, SeqCst);
                    let (status, body) = state.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(response.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Server { url, hits, state }
    }

    fn hits(&self) -> usize {
        self.hits.load(SeqCst)
    }

    fn serve(&self, status: u16, body: String) {
        *self.state.lock().unwrap() = (status, body);
    }
}

async fn verifier(server: &Server) -> JwtVerifier {
    let v = JwtVerifier::new(&JwtSettings {
        key: JwtKey::Jwks {
            url: server.url.clone(),
            ttl: DEFAULT_TTL,
        },
        issuer: None,
        audience: None,
        user_claim: "sub".into(),
        roles_claim: None,
    })
    .unwrap();
    v.prime().await;
    v
}

#[test]
fn rsa_and_ec_keys_are_taken_and_oct_keys_refused() {
    let mut p521 = ec("p521");
    p521["crv"] = json!("P-521");
    let mut enc = rsa(Some("enc"), None);
    enc["use"] = json!("enc");
    let body = set(vec![
        rsa(Some("k1"), None),
        ec("e1"),
        oct("h1"),
        rsa(Some("confused"), Some("HS256")),
        rsa(Some("oaep"), Some("RSA-OAEP")),
        rsa(Some("ec-alg"), Some("ES256")),
        enc,
        p521,
        rsa(Some("dup"), None),
        ec("dup"),
        rsa(None, None),
        json!({"kty": "XYZ", "kid": "odd"}),
    ]);
    let parsed = parse_set(body.as_bytes()).unwrap();
    let mut kids: Vec<_> = parsed.by_kid.keys().cloned().collect();
    kids.sort();
    assert_eq!(kids, ["e1", "k1"]);
    assert_eq!(parsed.by_kid["k1"].algorithms.len(), 6);
    assert!(parsed.by_kid["k1"].algorithms.iter().all(|a| ASYMMETRIC.contains(a)));
    assert_eq!(parsed.by_kid["e1"].algorithms, [Algorithm::ES256]);
    assert!(parsed.sole.is_none());
    let why = |kid: &str| {
        parsed
            .refused
            .iter()
            .find(|(k, _)| k.as_deref() == Some(kid))
            .map(|(_, w)| w.clone())
            .unwrap()
    };
    assert_eq!(why("h1"), RefusedKey::Symmetric);
    assert_eq!(why("confused"), RefusedKey::AlgMismatch(KeyAlgorithm::HS256));
    assert_eq!(why("oaep"), RefusedKey::AlgMismatch(KeyAlgorithm::RSA_OAEP));
    assert_eq!(why("ec-alg"), RefusedKey::AlgMismatch(KeyAlgorithm::ES256));
    assert_eq!(why("enc"), RefusedKey::NotForSigning);
    assert_eq!(why("p521"), RefusedKey::Unsupported);
    assert_eq!(why("dup"), RefusedKey::DuplicateKid);
    assert!(matches!(why("odd"), RefusedKey::Invalid(_)));
    assert!(
        parsed
            .refused
            .iter()
            .any(|(k, w)| k.is_none() && *w == RefusedKey::NoKid)
    );
    // An oct key alone is still refused, and not documents are errors.
    let only_oct = parse_set(set(vec![oct("h1")]).as_bytes()).unwrap();
    assert!(only_oct.by_kid.is_empty() && only_oct.sole.is_none());
    assert!(parse_set(b"{\"nokeys\": []}").is_err());
    assert!(parse_set(b"<html>").is_err());
}

#[tokio::test]
async fn kid_selects_the_key_and_alg_is_pinned() {
    let server = Server::start(set(vec![
        rsa(Some("k1"), Some("RS256")),
        rsa(Some("k2"), None),
        ec("e1"),
        oct("h1"),
    ]))
    .await;
    let v = verifier(&server).await;
    assert_eq!(server.hits(), 1, "fetched at start");
    let (rsa_key, ec_key) = (rsa_key(), ec_key());
    assert_eq!(
        v.verify(&token(Algorithm::RS256, Some("k1"), &rsa_key))
            .await
            .unwrap()
            .user,
        "alice"
    );
    assert_eq!(
        v.verify(&token(Algorithm::PS384, Some("k2"), &rsa_key))
            .await
            .unwrap()
            .user,
        "alice"
    );
    assert_eq!(
        v.verify(&token(Algorithm::ES256, Some("e1"), &ec_key))
            .await
            .unwrap()
            .user,
        "alice"
    );
    for (what, t) in [
        ("k1's alg is RS256", token(Algorithm::PS256, Some("k1"), &rsa_key)),
        ("e1 is an EC key", token(Algorithm::RS256, Some("e1"), &rsa_key)),
        ("k1 is an RSA key", token(Algorithm::ES256, Some("k1"), &ec_key)),
        ("no kid among several keys", token(Algorithm::RS256, None, &rsa_key)),
        (
            "the oct key is not taken",
            token(
                Algorithm::HS256,
                Some("h1"),
                &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            ),
        ),
        (
            "RSA key confusion",
            token(
                Algorithm::HS256,
                Some("k1"),
                &EncodingKey::from_secret(RSA_N.as_bytes()),
            ),
        ),
    ] {
        assert!(v.verify(&t).await.is_err(), "{what}");
    }
    // Only the kid-less token looked the set up again.
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_sole_key_verifies_tokens_without_kid() {
    let server = Server::start(set(vec![rsa(None, None)])).await;
    let v = verifier(&server).await;
    assert_eq!(
        v.verify(&token(Algorithm::RS256, None, &rsa_key())).await.unwrap().user,
        "alice"
    );
    assert!(
        v.verify(&token(Algorithm::RS256, Some("k1"), &rsa_key()))
            .await
            .is_err()
    );
    let server = Server::start(set(vec![rsa(Some("k1"), None)])).await;
    let v = verifier(&server).await;
    assert_eq!(
        v.verify(&token(Algorithm::RS256, None, &rsa_key())).await.unwrap().user,
        "alice"
    );
    assert_eq!(
        v.verify(&token(Algorithm::RS256, Some("k1"), &rsa_key()))
            .await
            .unwrap()
            .user,
        "alice"
    );
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let server = Server::start(set(vec![rsa(Some("k1"), None)])).await;
    let interval = Duration::from_secs(2);
    let jwks = Jwks::with_interval(server.url.clone(), DEFAULT_TTL, interval).unwrap();
    jwks.prime().await;
    assert_eq!(server.hits(), 1);
    assert!(jwks.key(Some("k1")).await.is_some());
    // A flood of random kids: one refetch, shared by whoever waited on it.
    let kids: Vec<String> = (0..50).map(|i| format!("random-{i}")).collect();
    let found = futures::future::join_all(kids.iter().map(|k| jwks.key(Some(k)))).await;
    assert!(found.iter().all(Option::is_none));
    assert_eq!(server.hits(), 2);
    // Rotation: the new key shows after the interval, the old one is gone.
    server.serve(200, set(vec![rsa(Some("k9"), None)]));
    assert!(jwks.key(Some("k9")).await.is_none());
    assert_eq!(server.hits(), 2, "rate-limited");
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    assert!(jwks.key(Some("k9")).await.is_some());
    assert_eq!(server.hits(), 3);
    assert!(jwks.key(Some("k1")).await.is_none(), "a key no longer in the set");
    // A failed fetch keeps the cached keys.
    server.serve(500, String::new());
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    assert!(jwks.key(Some("other")).await.is_none());
    assert_eq!(server.hits(), 4);
    assert!(jwks.key(Some("k9")).await.is_some());
}

#[tokio::test]
async fn a_failed_start_up_fetch_and_expired_keys_are_fetched_again() {
    let server = Server::start(String::new()).await;
    server.serve(503, String::new());
    let jwks = Jwks::with_interval(server.url.clone(), Duration::from_millis(300), Duration::ZERO).unwrap();
    jwks.prime().await;
    assert_eq!(server.hits(), 1);
    server.serve(200, set(vec![rsa(Some("k1"), None)]));
    assert!(
        jwks.key(Some("k1")).await.is_some(),
        "the start-up fetch does not hold refetches back"
    );
    assert_eq!(server.hits(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(jwks.key(Some("k1")).await.is_some());
    assert_eq!(server.hits(), 3, "the TTL ran out");
}
