//! A secret scanner's public keys (GitHub's or GitLab's) and the check of a request's signature: ECDSA P-256 with
//! SHA-256 over the raw body, the signature base64-encoded ASN.1 DER, the key named by an identifier header.
//!
//! Keys come from a file or an `https://` URL in GitHub's format
//! (`{"public_keys": [{"key_identifier": …, "key": "<PEM>", "is_current": …}]}`). They are read at start and again
//! when a request names an identifier not known yet, at most once per [`REFRESH_EVERY`]; a source that cannot be read
//! leaves the keys known so far, so an unknown identifier is refused (fail closed). A URL is fetched without
//! following redirects.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

/// How often an unknown identifier may cause the keys to be read again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// The most a key document may weigh.
const MAX_DOCUMENT: usize = 1 << 20;

/// Where a scanner's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Url(String),
}

impl KeySource {
    /// A setting's value: an `https://` URL, or a file path. `http://` is refused: the keys decide who may revoke
    /// keys, so they must not travel in clear.
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("https://") {
            reqwest::Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
            Ok(Self::Url(s.to_owned()))
        } else if lower.contains("://") {
            Err(format!("`{s}`: public keys are read from a file or an https:// URL only"))
        } else if s.is_empty() {
            Err("empty public keys setting".into())
        } else {
            Ok(Self::File(PathBuf::from(s)))
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Url(u) => f.write_str(u),
        }
    }
}

/// Why a signature was not accepted. Every kind gets the same answer; the log says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the identifier or signature header is missing")]
    Missing,
    #[error("the signature is not base64-encoded DER")]
    Malformed,
    #[error("no public key has this identifier")]
    UnknownKey,
    #[error("the signature does not verify")]
    Invalid,
}

#[derive(serde::Deserialize)]
struct Document {
    public_keys: Vec<DocumentKey>,
}

#[derive(serde::Deserialize)]
struct DocumentKey {
    key_identifier: String,
    key: String,
}

/// Reads a key document; keys that do not parse are skipped (and logged).
pub fn parse_document(scanner: &str, bytes: &[u8]) -> Result<HashMap<String, VerifyingKey>, String> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| format!("not a public key document: {e}"))?;
    let mut keys = HashMap::new();
    for k in doc.public_keys {
        match VerifyingKey::from_public_key_pem(k.key.trim()) {
            Ok(v) => {
                keys.insert(k.key_identifier, v);
            }
            Err(e) => tracing::warn!(
                target: "atna::leaks",
                scanner,
                key_identifier = %k.key_identifier,
                error = %e,
                "skipping a public key that is not a P-256 key in PEM form"
            ),
        }
    }
    Ok(keys)
}

struct Cached {
    keys: HashMap<String, VerifyingKey>,
    read_at: Option<Instant>,
}

/// One scanner's public keys.
pub struct PublicKeys {
    scanner: &'static str,
    source: KeySource,
    client: reqwest::Client,
    cached: tokio::sync::Mutex<Cached>,
}

impl PublicKeys {
    /// Keys of `scanner` (a name for logs) from `source`, read once now.
    pub async fn new(scanner: &'static str, source: KeySource) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let me = Self {
            scanner,
            source,
            client,
            cached: tokio::sync::Mutex::new(Cached { keys: HashMap::new(), read_at: None }),
        };
        let mut c = me.cached.lock().await;
        me.refresh(&mut c).await;
        drop(c);
        me
    }

    /// Checks `signature` (base64 DER) over `body` with the key named `key_id`.
    pub async fn verify(&self, key_id: &str, signature: &str, body: &[u8]) -> Result<(), SignatureError> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| SignatureError::Malformed)?;
        let sig = Signature::from_der(&der).map_err(|_| SignatureError::Malformed)?;
        let key = {
            let mut c = self.cached.lock().await;
            if !c.keys.contains_key(key_id) && c.read_at.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
                self.refresh(&mut c).await;
            }
            *c.keys.get(key_id).ok_or(SignatureError::UnknownKey)?
        };
        key.verify(body, &sig).map_err(|_| SignatureError::Invalid)
    }

    /// How many keys are known now.
    pub async fn known(&self) -> usize {
        self.cached.lock().await.keys.len()
    }

    async fn refresh(&self, c: &mut Cached) {
        c.read_at = Some(Instant::now());
        match self.read().await {
            Ok(keys) => {
                tracing::info!(target: "atna::leaks", scanner = self.scanner, source = %self.source, keys = keys.len(), "read public keys");
                c.keys = keys;
            }
            Err(e) => tracing::error!(
                target: "atna::leaks",
                scanner = self.scanner,
                source = %self.source,
                error = %e,
                "cannot read the scanner's public keys; reports signed with other keys are refused"
            ),
        }
    }

    async fn read(&self) -> Result<HashMap<String, VerifyingKey>, String> {
        let bytes = match &self.source {
            KeySource::File(path) => tokio::fs::read(path).await.map_err(|e| e.to_string())?,
            KeySource::Url(url) => {
                let res = self.client.get(url).send().await.map_err(|e| e.to_string())?;
                if !res.status().is_success() {
                    return Err(format!("{url} answered {}", res.status()));
                }
                let bytes = res.bytes().await.map_err(|e| e.to_string())?;
                bytes.to_vec()
            }
        };
        if bytes.len() > MAX_DOCUMENT {
            return Err(format!("the document is over {MAX_DOCUMENT} bytes"));
        }
        parse_document(self.scanner, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    fn document(id: &str, key: &SigningKey) -> String {
        let pem = key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        serde_json::json!({"public_keys": [{"key_identifier": id, "key": pem, "is_current": true}]}).to_string()
    }

    #[test]
    fn sources_parse() {
        assert_eq!(KeySource::parse("/etc/atna/github.json").unwrap(), KeySource::File("/etc/atna/github.json".into()));
        assert!(matches!(
            KeySource::parse("https://api.github.com/meta/public_keys/secret_scanning"),
            Ok(KeySource::Url(_))
        ));
        assert!(KeySource::parse("http://example.com/keys").is_err());
        assert!(KeySource::parse("ftp://example.com/keys").is_err());
        assert!(KeySource::parse("").is_err());
    }

    #[tokio::test]
    async fn signatures_verify_with_the_named_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let path = dir.path().join("keys.json");
        std::fs::write(&path, document("k1", &key)).unwrap();
        let keys = PublicKeys::new("test", KeySource::File(path.clone())).await;
        assert_eq!(keys.known().await, 1);
        let body = br#"[{"token":"x","type":"t","url":"u","source":"content"}]"#;
        let sig: p256::ecdsa::DerSignature = key.sign(body);
        let b64 = base64::engine::general_purpose::STANDARD.encode(sig.as_bytes());
        keys.verify("k1", &b64, body).await.unwrap();
        assert_eq!(keys.verify("k1", &b64, b"[]").await, Err(SignatureError::Invalid));
        assert_eq!(keys.verify("k1", "%%%", body).await, Err(SignatureError::Malformed));
        assert_eq!(keys.verify("k1", "AAAA", body).await, Err(SignatureError::Malformed));
        // An unknown identifier rereads the source once; a key added to the file later waits for the next window.
        assert_eq!(keys.verify("k2", &b64, body).await, Err(SignatureError::UnknownKey));
        std::fs::write(&path, document("k2", &key)).unwrap();
        assert_eq!(keys.verify("k2", &b64, body).await, Err(SignatureError::UnknownKey), "at most one read per window");
    }

    #[tokio::test]
    async fn an_unreadable_source_fails_closed() {
        let keys = PublicKeys::new("test", KeySource::Url("https://127.0.0.1:9/keys".into())).await;
        assert_eq!(keys.known().await, 0);
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let sig: p256::ecdsa::DerSignature = key.sign(b"[]");
        let b64 = base64::engine::general_purpose::STANDARD.encode(sig.as_bytes());
        assert_eq!(keys.verify("k1", &b64, b"[]").await, Err(SignatureError::UnknownKey));
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        assert_eq!(PublicKeys::new("test", KeySource::File(bad)).await.known().await, 0);
    }
}
