//! Extractors that turn requests into typed inputs, answering bad input with our own problem documents.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::verify::{KeyEntry, Verdict};
use crate::AppState;

/// The client's address: the peer, or with `trust_forwarded_for` the last `X-Forwarded-For` hop (the one our own
/// proxy appended; earlier entries are whatever the client claimed).
pub fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    client_ip_of(&parts.headers, peer, trust_forwarded_for)
}

/// [`client_ip`] from the headers and the peer's address.
pub fn client_ip_of(headers: &HeaderMap, peer: Option<IpAddr>, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|s| s.trim().parse::<IpAddr>().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    peer
}

/// The client's address, as [`client_ip`] finds it.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, state.settings.trust_forwarded_for)))
    }
}

/// The text after `Bearer ` in the Authorization header. The scheme is case-insensitive (RFC 9110).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::missing_credentials());
    };
    let value = value.to_str().map_err(|_| {
        ApiError::invalid_key(atna_domain::VerifyCode::Malformed, Some("The Authorization header is not ASCII.".into()))
    })?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError {
            code: "credentials_unsupported_scheme",
            detail: "Use the Bearer scheme: `Authorization: Bearer <key>`.".into(),
            ..ApiError::missing_credentials()
        });
    }
    Ok(token.trim())
}

/// A caller authenticated by a valid API key.
pub struct Caller(pub Arc<KeyEntry>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let started = std::time::Instant::now();
        let ip = client_ip(parts, state.settings.trust_forwarded_for);
        let result = authenticate(state, &parts.headers, ip).await;
        let outcome = result.as_ref().map_or_else(|e| e.code, |_| "allowed");
        state.verifier.metrics().check(crate::metrics::Entry::Api, outcome, started.elapsed());
        result.map(Caller)
    }
}

/// Checks the request's Bearer key and the key's IP allowlist: the key's cache entry when it may be used, else the
/// 401 (or 403 `ip_not_allowed`, or 503) to answer. Counts a use only when it answers the entry.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
) -> Result<Arc<KeyEntry>, ApiError> {
    let token = bearer_token(headers)?;
    match state.verifier.check_timed(token).await? {
        (Verdict::Valid(entry), now) => {
            // A refused request consumes nothing: the use is counted only once the key's rules admit it.
            crate::gate::admit_ip(&entry, ip)?;
            state.verifier.count_use_at(&entry, now, ip);
            Ok(entry)
        }
        (Verdict::Invalid { code, malformed, .. }, _) => {
            Err(ApiError::invalid_key(code, malformed.map(|m| m.to_string())))
        }
    }
}

impl Caller {
    /// Refuses callers without a scope.
    pub fn require(&self, scope: &'static str) -> Result<(), ApiError> {
        if self.0.record.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::insufficient_scope(scope))
        }
    }
}

/// `Json<T>` whose rejections are our problem documents: 400 for broken JSON, 415 for a missing content type,
/// 413 for a body over the limit, 422 for JSON of the wrong shape (including unknown fields).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// serde's messages name our Rust types (`expected struct CreateKey with 3 elements`): say "a JSON object" instead, so
/// an error reads in the API's terms and shows nothing of the implementation.
fn public_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("struct ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "struct ".len()..];
        let name_len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        if name_len == 0 {
            out.push_str("struct ");
            rest = after;
            continue;
        }
        out.push_str("a JSON object");
        rest = &after[name_len..];
        // "with 3 elements" describes the struct's fields as a sequence: meaningless to a client.
        if let Some(tail) = rest.strip_prefix(" with ") {
            if let Some(end) = tail.find(" elements").or_else(|| tail.find(" element")) {
                if tail[..end].bytes().all(|b| b.is_ascii_digit()) {
                    let skip = if tail[end..].starts_with(" elements") { " elements".len() } else { " element".len() };
                    rest = &tail[end + skip..];
                }
            }
        }
    }
    out.push_str(rest);
    out
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => ApiError::unprocessable("invalid_body", public_message(&e.body_text())),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request("invalid_json", e.body_text()),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send a JSON body with `Content-Type: application/json`.",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The request body is larger than this server accepts.",
        ),
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

#[cfg(test)]
mod tests {
    use super::public_message;

    #[test]
    fn serde_messages_do_not_name_rust_types() {
        assert_eq!(
            public_message("invalid type: sequence, expected struct CreateKey with 3 elements at line 1 column 1"),
            "invalid type: sequence, expected a JSON object at line 1 column 1"
        );
        assert_eq!(public_message("expected struct VerifyRequest"), "expected a JSON object");
        assert_eq!(public_message("missing field `name`"), "missing field `name`");
        assert_eq!(public_message("struct "), "struct ");
    }
}
