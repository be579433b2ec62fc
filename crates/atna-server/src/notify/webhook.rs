//! Webhook delivery, signed with the Standard Webhooks scheme: `webhook-id` (the outbox entry's ID, the same on every
//! retry), `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature` (`v1,` and the base64
//! HMAC-SHA256 of `id.timestamp.body` under the base64-decoded part of the `whsec_` secret).

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ssrf;

/// The prefix of signing secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("{SECRET_PREFIX}{}", B64.encode(b))
}

/// The `webhook-signature` value for one attempt. `None` when the secret is not `whsec_` and base64.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = B64.decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret)).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// How one webhook request ended. Never holds the response body: receivers are the user's, and what they answer is
/// not shown back (status and timing only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub elapsed: Duration,
}

impl Outcome {
    /// A 2xx answer.
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Sends one signed request to `url` through the SSRF guard (unless `allow_private`), following no redirect.
pub async fn send(url: &str, secret: &str, id: &str, body: &str, timeout: Duration, allow_private: bool) -> Outcome {
    let started = Instant::now();
    let fail = |e: String| Outcome { status: None, error: Some(e), elapsed: started.elapsed() };
    let target = match ssrf::resolve(url, allow_private).await {
        Ok(t) => t,
        Err(e) => return fail(e.to_string()),
    };
    let timestamp = chrono::Utc::now().timestamp();
    let Some(signature) = sign(secret, id, timestamp, body) else {
        return fail("the signing secret is not a whsec_ secret".into());
    };
    // Pinned to the checked address: the client does not resolve the host again.
    let client = match reqwest::Client::builder()
        .resolve(&target.host, target.addr)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .user_agent(concat!("atna-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot make an HTTP client: {e}")),
    };
    let res = client
        .post(target.url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .await;
    match res {
        Ok(r) => {
            let status = r.status().as_u16();
            // The body is dropped unread.
            let error = (!(200..300).contains(&status)).then(|| format!("the webhook answered HTTP {status}"));
            Outcome { status: Some(status), error, elapsed: started.elapsed() }
        }
        Err(e) if e.is_timeout() => fail(format!("no answer within {} s", timeout.as_secs_f32())),
        Err(e) if e.is_connect() => fail("could not connect to the webhook".into()),
        Err(_) => fail("the webhook request failed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        let sig = sign(secret, id, 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(sign("whsec_not base64!", id, 1, body).is_none());
        let fresh = new_secret();
        assert!(fresh.starts_with("whsec_") && B64.decode(&fresh[6..]).unwrap().len() == 32);
    }
}
