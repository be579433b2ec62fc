//! CSRF defences: a per-session token in a hidden field of every state-changing form (compared in constant time), a
//! double-submit cookie for the forms used before there is a session (sign-in, first-run setup), and a same-origin
//! check on every non-GET request.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::pages::DashError;
use super::DashState;

/// The pre-session CSRF cookie.
pub const LOGIN_COOKIE: &str = "atna_login_csrf";

/// Whether two tokens are equal (and not empty), in time independent of where they differ.
pub fn tokens_match(expected: &str, submitted: &str) -> bool {
    !expected.is_empty()
        && expected.len() == submitted.len()
        && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

/// The `scheme://host` part of an `Origin` or `Referer` value, lowercased.
fn origin_host(v: &str) -> Option<String> {
    let rest = v.strip_prefix("http://").or_else(|| v.strip_prefix("https://"))?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Whether a request's `Origin` (or, without one, `Referer`) names this very host: the `Host` header, or behind a
/// trusted proxy (`trusted`) also `X-Forwarded-Host`. Requests with neither `Origin` nor `Referer` (old
/// clients, scripts) pass: the CSRF token still protects them.
pub fn same_origin(headers: &HeaderMap, trusted: bool) -> bool {
    let host_of = |name: &str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.split(',').next_back())
            .map(|h| h.trim().to_ascii_lowercase())
    };
    let host = host_of(header::HOST.as_str());
    let forwarded = if trusted { host_of("x-forwarded-host") } else { None };
    if host.is_none() && forwarded.is_none() {
        return false;
    }
    let source = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER));
    match source {
        None => true,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(origin_host)
            .is_some_and(|o| host.as_deref() == Some(o.as_str()) || forwarded.as_deref() == Some(o.as_str())),
    }
}

/// Middleware: refuses state-changing requests that come from another site.
pub async fn same_origin_only(State(s): State<DashState>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || same_origin(req.headers(), crate::extract::forwarded_trusted(req.extensions(), &s.app.settings)) {
        next.run(req).await
    } else {
        DashError::cross_origin().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", ""));
        assert!(!tokens_match("", ""));
    }

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h, false));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h, false));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h, false));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h, false));
        h.remove(header::ORIGIN);
        h.insert(header::REFERER, HeaderValue::from_static("http://127.0.0.1:8080/keys/new"));
        assert!(same_origin(&h, false));
        h.insert(header::REFERER, HeaderValue::from_static("http://127.0.0.1:8080.evil.example/"));
        assert!(!same_origin(&h, false));

        // Behind a proxy that rewrites Host, its X-Forwarded-Host counts, but only when the proxy is trusted.
        h.remove(header::REFERER);
        h.insert(header::ORIGIN, HeaderValue::from_static("https://keys.example.com"));
        h.insert("x-forwarded-host", HeaderValue::from_static("keys.example.com"));
        assert!(same_origin(&h, true));
        assert!(!same_origin(&h, false));
    }
}
