//! Extractors that turn requests into typed inputs, answering bad input with our own problem documents.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::cidr::{self, Cidr};
use crate::error::ApiError;
use crate::verify::{KeyEntry, Verdict};
use crate::{AppState, Settings};

/// The client's address: the peer, or behind a trusted proxy (see [`Settings::trusts_peer`]) the right-most
/// `X-Forwarded-For` address that is not itself one of `trusted_proxies` (each proxy appends the address it saw;
/// entries left of the first untrusted one are whatever the client claimed).
pub fn client_ip(parts: &Parts, settings: &Settings) -> Option<IpAddr> {
    let peer = peer_ip(&parts.extensions)?;
    Some(client_ip_of(&parts.headers, peer, settings.trusts_peer(peer), &settings.trusted_proxies))
}

/// The TCP peer's address (the `ConnectInfo` the server puts on every request).
pub fn peer_ip(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Whether the request's forwarding headers (`X-Forwarded-Proto`, `X-Forwarded-Host`) are to be believed: only when
/// the TCP peer is a trusted proxy.
pub fn forwarded_trusted(extensions: &Extensions, settings: &Settings) -> bool {
    peer_ip(extensions).is_some_and(|p| settings.trusts_peer(p))
}

/// [`client_ip`] from the headers, the peer's address, whether the peer is trusted, and the trusted ranges.
/// Entries that are not addresses end the walk: the client is then the last proxy that passed the request on.
pub fn client_ip_of(headers: &HeaderMap, peer: IpAddr, peer_trusted: bool, proxies: &[Cidr]) -> IpAddr {
    if !peer_trusted {
        return peer;
    }
    let hops = headers.get_all("x-forwarded-for").iter().rev().flat_map(|v| v.as_bytes().rsplit(|&b| b == b','));
    let mut client = peer;
    for hop in hops {
        let Some(ip) = std::str::from_utf8(hop).ok().and_then(parse_hop) else {
            return client;
        };
        client = ip;
        if !cidr::any_contains(proxies, ip) {
            return ip;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (`1.2.3.4:5`, `[::1]:5`) as some proxies write.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>().ok().or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip())).map(|ip| ip.to_canonical())
}

/// The client's address, as [`client_ip`] finds it.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, &state.settings)))
    }
}

/// The text after `Bearer ` in the Authorization header. The scheme is case-insensitive (RFC 9110).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::missing_credentials());
    };
    // Bytes, not `to_str` (which checks every byte one by one): the key parser checks the token's characters anyway,
    // and this runs on every request.
    let value = value.as_bytes();
    let not_ascii = || {
        ApiError::invalid_key(atna_domain::VerifyCode::Malformed, Some("The Authorization header is not ASCII.".into()))
    };
    if !value.is_ascii() {
        return Err(not_ascii());
    }
    let (scheme, token) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &value[value.len()..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(ApiError {
            code: "credentials_unsupported_scheme",
            detail: "Use the Bearer scheme: `Authorization: Bearer <key>`.".into(),
            ..ApiError::missing_credentials()
        });
    }
    std::str::from_utf8(token).map(str::trim).map_err(|_| not_ascii())
}

/// A caller authenticated by a valid API key, and what the key's limits said.
pub struct Caller(pub Arc<KeyEntry>, pub crate::gate::Admitted);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let started = std::time::Instant::now();
        let ip = client_ip(parts, &state.settings);
        let result = authenticate(state, &parts.headers, ip).await;
        state.verifier.metrics().checked(crate::metrics::Entry::Api, started, &result);
        let (entry, admitted) = result?;
        if let Some(slot) = parts.extensions.get::<crate::limits::RateSlot>() {
            slot.fill(&admitted, &entry);
        }
        Ok(Caller(entry, admitted))
    }
}

/// Checks the request's Bearer key and the key's rules (IP allowlist, quota, rate limit): the key's cache entry when
/// it may be used, else the 401 (or 403 `ip_not_allowed`, 429 `rate_limited` / `usage_exceeded`, or 503) to answer.
/// Counts a use only when it answers the entry.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
) -> Result<(Arc<KeyEntry>, crate::gate::Admitted), ApiError> {
    let token = bearer_token(headers)?;
    match state.verifier.check(token).await? {
        (Verdict::Valid(entry), now) => {
            // A refused request consumes nothing: the use is counted only once the key's rules admit it.
            let none = crate::gate::Requirements::default();
            let admitted =
                crate::gate::admit(&entry, &none, &crate::gate::Context::ip(ip), state.verifier.limits(), now)
                    .map_err(|e| crate::gate::counted(&state.verifier, &entry, now, e))?;
            state.verifier.count_use(&entry, now, ip);
            Ok((entry, admitted))
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
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_client_is_the_rightmost_address_outside_the_trusted_proxies() {
        let proxies: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let peer = ip("10.0.0.1");
        let h = xff(&["6.6.6.6, 203.0.113.7, 10.1.1.1"]);
        assert_eq!(client_ip_of(&h, peer, true, &proxies), ip("203.0.113.7"), "proxy chain skipped, claim ignored");
        let h = xff(&["6.6.6.6", "203.0.113.7,10.1.1.1"]);
        assert_eq!(client_ip_of(&h, peer, true, &proxies), ip("203.0.113.7"), "several headers read as one list");
        assert_eq!(client_ip_of(&h, peer, false, &proxies), peer, "an untrusted peer's header is ignored");
        assert_eq!(client_ip_of(&HeaderMap::new(), peer, true, &proxies), peer, "no header: the peer");
        let h = xff(&["10.2.2.2, 10.1.1.1"]);
        assert_eq!(client_ip_of(&h, peer, true, &proxies), ip("10.2.2.2"), "all trusted: the left-most");
        let h = xff(&["203.0.113.7, garbage, 10.1.1.1"]);
        assert_eq!(client_ip_of(&h, peer, true, &proxies), ip("10.1.1.1"), "garbage ends the walk");
        let h = xff(&["[2001:db8::1]:4711, fd00::2"]);
        assert_eq!(client_ip_of(&h, peer, true, &proxies), ip("2001:db8::1"), "ports and IPv6 are read");
        let h = xff(&["203.0.113.7, 198.51.100.1"]);
        assert_eq!(client_ip_of(&h, peer, true, &[]), ip("198.51.100.1"), "the old setting: the last entry");
    }

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
