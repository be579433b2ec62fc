//! `/v1/forward-auth`: the question a gateway asks on every request of its clients (nginx `auth_request`, Caddy
//! `forward_auth`, Traefik `ForwardAuth`, Envoy `ext_authz`). Any method, no body; `/v1/forward-auth/{*rest}` too,
//! because Envoy appends the client's path to its `path_prefix`.
//!
//! 200 (never 204: Envoy accepts only 200) with the key's identity in `X-Atna-*` headers for the proxy to copy to the
//! upstream; 401 without a good key; 403 when the client is outside the key's IP allowlist or the key lacks a scope the
//! configuration requires; 429 when its rate limit or quota is used up (with `Retry-After`); 503 only when atna cannot
//! decide. Every answer carries `X-Atna-Status` (nginx turns any
//! sub-request status but 2xx/401/403 into a 500; its configuration reads this header to give the client the real one)
//! and `Cache-Control: no-store` (a cached answer would outlive a revocation).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, Problem};
use crate::extract::{bearer_token, client_ip_of};
use crate::gate::{self, Requirements};
use crate::metrics::Entry;
use crate::verify::{KeyEntry, Verdict};
use crate::AppState;

pub use gate::STATUS_HEADER;

/// Ask whether a request may pass (for gateways).
#[utoipa::path(method(get, post, put, delete, patch, head, options, trace), path = "/v1/forward-auth", tag = "gateway", security(("bearer" = [])),
    params(
        ("scope" = Option<Vec<String>>, Query, description = "A scope the key must hold (repeatable; all must be held). Set by the gateway's configuration."),
        ("X-Atna-Require-Scope" = Option<String>, Header, description = "Scopes the key must hold, space- or comma-separated (for gateways that add headers instead of a query string)."),
        ("X-API-Key" = Option<String>, Header, description = "The key, for clients that cannot set `Authorization` (the header names are configurable)."),
    ),
    responses(
        (status = 200, description = "Allowed. Empty body; `X-Atna-Key-Id`, `X-Atna-Key-Name`, `X-Atna-Owner-Id`, `X-Atna-Owner-Email` and `X-Atna-Scopes` (percent-encoded UTF-8) say whose key it is; for a key with a rate limit, `RateLimit-Policy` and `RateLimit` (IETF draft) say what is left",
            headers(("RateLimit-Policy" = String, description = "`\"default\";q=<limit>;w=<period seconds>`"), ("RateLimit" = String, description = "`\"default\";r=<left>;t=<seconds>`"))),
        (status = 400, description = "Unreadable requirements (too many, too long)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, or a key that is not good; `code` says which", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`ip_not_allowed`: the client's address is outside the key's IP allowlist; `insufficient_scope`: the key lacks a required scope", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (the key's rate limit) or `usage_exceeded` (its quota), with `Retry-After`", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 503, description = "atna cannot decide (the database is not reachable)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn forward_auth(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    forward_auth_direct(&s, &uri, &headers, peer.ip(), s.settings.trusts_peer(peer.ip())).await
}

/// Whether `path` is forward-auth's (the connection's front service answers it without the router).
pub fn is_forward_auth(path: &str) -> bool {
    path.strip_prefix("/v1/forward-auth").is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The answer, for the router and for the connection's front service alike.
/// `peer_trusted` is [`Settings::trusts_peer`](crate::Settings::trusts_peer) of `peer`.
pub async fn forward_auth_direct(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    peer: IpAddr,
    peer_trusted: bool,
) -> Response {
    let started = std::time::Instant::now();
    let result = decide(state, uri, headers, peer, peer_trusted).await;
    state.verifier.metrics().checked(Entry::ForwardAuth, started, &result);
    match result {
        Ok(res) => res,
        Err(e) => {
            let mut res = e.into_response();
            let status = HeaderValue::from(res.status().as_u16());
            let h = res.headers_mut();
            h.insert(STATUS_HEADER, status);
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            res
        }
    }
}

async fn decide(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    peer: IpAddr,
    peer_trusted: bool,
) -> Result<Response, ApiError> {
    let key = presented_key(headers, &state.settings.api_key_headers)?;
    let requirements = Requirements::read(uri.query(), headers)?;
    let ip = Some(client_ip_of(headers, peer, peer_trusted, &state.settings.trusted_proxies));
    let (entry, admitted) = authorize(state, key, &requirements, &gate::Context::read(headers, ip)).await?;
    // Every identity header on every 200, even empty: a proxy that copies them always overwrites a client's copy.
    let mut res = Response::new(axum::body::Body::empty());
    *res.headers_mut() = entry.identity().allowed(admitted.rate_values(&entry));
    Ok(res)
}

/// The decision of the gateway entry points (forward-auth and the reverse proxy): verify the key, apply its rules and
/// the requirements, and count the use only if all of that said yes.
pub(crate) async fn authorize(
    state: &AppState,
    key: &str,
    requirements: &Requirements<'_>,
    ctx: &gate::Context<'_>,
) -> Result<(Arc<KeyEntry>, gate::Admitted), ApiError> {
    let (verdict, now) = state.verifier.check(key).await?;
    let entry = match verdict {
        Verdict::Valid(entry) => entry,
        Verdict::Invalid { code, malformed, .. } => {
            return Err(ApiError::invalid_key(code, malformed.map(|m| m.to_string())))
        }
    };
    let admitted = gate::admit(&entry, requirements, ctx, state.verifier.limits(), now)
        .map_err(|e| gate::counted(&state.verifier, &entry, now, e))?;
    state.verifier.count_use(&entry, now, ctx.ip);
    Ok((entry, admitted))
}

/// The key: `Authorization: Bearer …` first, else the first configured key header (`X-API-Key` by default). A
/// request with neither is `credentials_missing`; one whose `Authorization` uses another scheme (and no key header)
/// is `credentials_unsupported_scheme`.
pub(crate) fn presented_key<'h>(headers: &'h HeaderMap, key_headers: &[HeaderName]) -> Result<&'h str, ApiError> {
    let bearer = headers.get(header::AUTHORIZATION).map(|_| bearer_token(headers));
    if let Some(Ok(key)) = bearer {
        return Ok(key);
    }
    for name in key_headers {
        if let Some(v) = headers.get(name) {
            return v.to_str().map(str::trim).map_err(|_| {
                ApiError::invalid_key(
                    atna_domain::VerifyCode::Malformed,
                    Some(format!("The {name} header is not ASCII.")),
                )
            });
        }
    }
    match bearer {
        Some(Err(e)) => Err(e),
        _ => Err(ApiError::missing_credentials()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paths_it_answers() {
        for p in ["/v1/forward-auth", "/v1/forward-auth/", "/v1/forward-auth/api/invoices"] {
            assert!(is_forward_auth(p), "{p}");
        }
        for p in ["/v1/forward-authx", "/v1/forward", "/v1/whoami", "/forward-auth"] {
            assert!(!is_forward_auth(p), "{p}");
        }
    }

    #[test]
    fn the_key_comes_from_bearer_first_then_the_key_headers() {
        let names = [HeaderName::from_static("x-api-key")];
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h, &names).unwrap_err().code, "credentials_missing");
        h.insert("x-api-key", HeaderValue::from_static(" k1 "));
        assert_eq!(presented_key(&h, &names).unwrap(), "k1");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpwdw=="));
        assert_eq!(presented_key(&h, &names).unwrap(), "k1", "the upstream's own Basic auth is left alone");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k2"));
        assert_eq!(presented_key(&h, &names).unwrap(), "k2");
        h.remove("x-api-key");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpwdw=="));
        assert_eq!(presented_key(&h, &names).unwrap_err().code, "credentials_unsupported_scheme");
    }
}
