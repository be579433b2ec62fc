//! Server-side sessions: a random 256-bit token in the `atna_session` cookie (HttpOnly, SameSite=Lax, Secure over
//! HTTPS), stored only as its SHA-256, with idle and absolute timeouts.

use std::net::IpAddr;
use std::time::Duration;

use atna_domain::UserId;
use atna_store::{NewSession, StoreError, User};
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use super::pages::DashError;
use super::{random_token, DashState};
use crate::clock;
use crate::extract::forwarded_trusted;

/// The session cookie.
pub const COOKIE: &str = "atna_session";

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The SHA-256 of a session token: what the store keeps.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether the request came over HTTPS. atna itself speaks plain HTTP, so this is only ever known from a proxy's
/// `X-Forwarded-Proto`, which is believed only from a trusted proxy (`trusted`).
pub fn is_https(headers: &HeaderMap, trusted: bool) -> bool {
    trusted
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next_back())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value with the dashboard's attributes. `max_age: None` deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Option<Duration>, secure: bool) -> HeaderValue {
    // Round up: a sub-second lifetime must not turn into `Max-Age=0`, which deletes the cookie.
    let age = max_age.map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    let secure = if secure { "; Secure" } else { "" };
    let v = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={age}{secure}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("invalid=1; Max-Age=0"))
}

/// Starts a session for `user`; returns the `Set-Cookie` header value that carries it.
pub async fn start(s: &DashState, user: UserId, secure: bool) -> Result<HeaderValue, StoreError> {
    let token = random_token();
    let now = clock::now();
    let settings = &s.app.settings;
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    s.app
        .store
        .create_session(NewSession {
            token_hash: hash_token(&token),
            user,
            csrf: random_token(),
            created_at: now,
            idle_expires_at: now.saturating_add(ms(settings.session_idle_timeout)),
            absolute_expires_at: now.saturating_add(ms(settings.session_absolute_timeout)),
        })
        .await?;
    Ok(set_cookie(COOKIE, &token, Some(settings.session_absolute_timeout), secure))
}

/// A signed-in person: their user record, the session's CSRF token, and the session's hash (to end it).
pub struct SignedIn {
    pub user: User,
    pub csrf: String,
    pub token_hash: [u8; 32],
    /// Whether the request came over HTTPS (for the cookies this request may set).
    pub secure: bool,
}

impl SignedIn {
    /// Checks a submitted CSRF token against the session's, in constant time.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), DashError> {
        if super::csrf::tokens_match(&self.csrf, submitted) {
            Ok(())
        } else {
            Err(DashError::csrf())
        }
    }
}

enum Lookup {
    None,
    Found(Box<SignedIn>),
    Failed(StoreError),
}

async fn lookup(parts: &Parts, s: &DashState) -> Lookup {
    let Some(token) = cookie(&parts.headers, COOKIE).filter(|t| !t.is_empty()) else { return Lookup::None };
    let hash = hash_token(token);
    let now = clock::now();
    let session = match s.app.store.session(&hash, now).await {
        Ok(Some(session)) => session,
        Ok(None) => return Lookup::None,
        Err(e) => return Lookup::Failed(e),
    };
    if session.user.disabled {
        let _ = s.app.store.delete_session(&hash).await;
        return Lookup::None;
    }
    // Push the idle deadline, but write at most about once a minute per session.
    let idle = i64::try_from(s.app.settings.session_idle_timeout.as_millis()).unwrap_or(i64::MAX);
    let last_touch = session.idle_expires_at.saturating_sub(idle);
    if now - last_touch > (idle / 10).min(60_000) {
        let next = now.saturating_add(idle).min(session.absolute_expires_at);
        if let Err(e) = s.app.store.touch_session(&hash, next).await {
            tracing::warn!(error = %e, "session not touched");
        }
    }
    let secure = is_https(&parts.headers, forwarded_trusted(&parts.extensions, &s.app.settings));
    Lookup::Found(Box::new(SignedIn { user: session.user, csrf: session.csrf, token_hash: hash, secure }))
}

impl FromRequestParts<DashState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &DashState) -> Result<Self, Response> {
        match lookup(parts, s).await {
            Lookup::Found(si) => Ok(*si),
            // Not signed in (or the session ended): go sign in.
            Lookup::None => Err(Redirect::to("/login").into_response()),
            Lookup::Failed(e) => Err(DashError::from(e).into_response()),
        }
    }
}

impl OptionalFromRequestParts<DashState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &DashState) -> Result<Option<Self>, Response> {
        match lookup(parts, s).await {
            Lookup::Found(si) => Ok(Some(*si)),
            Lookup::None => Ok(None),
            Lookup::Failed(e) => Err(DashError::from(e).into_response()),
        }
    }
}

/// A signed-in administrator. Anyone else gets the same 404 page as for an address that does not exist.
pub struct Admin(pub SignedIn);

impl FromRequestParts<DashState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &DashState) -> Result<Self, Response> {
        let si = <SignedIn as FromRequestParts<DashState>>::from_request_parts(parts, s).await?;
        if si.user.is_admin {
            Ok(Admin(si))
        } else {
            Err(DashError::not_found().into_response())
        }
    }
}

/// The client's address, as the API sees it (`X-Forwarded-For` only from a trusted proxy).
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<DashState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &DashState) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(crate::extract::client_ip(parts, &s.app.settings)))
    }
}

/// Whether the request came over HTTPS, as [`is_https`] decides.
pub struct Https(pub bool);

impl FromRequestParts<DashState> for Https {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &DashState) -> Result<Self, Self::Rejection> {
        Ok(Https(is_https(&parts.headers, forwarded_trusted(&parts.extensions, &s.app.settings))))
    }
}

/// Whether the peer is a trusted proxy, so its `X-Forwarded-Host` and `X-Forwarded-Proto` are believed.
pub struct Forwarded(pub bool);

impl FromRequestParts<DashState> for Forwarded {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &DashState) -> Result<Self, Self::Rejection> {
        Ok(Forwarded(forwarded_trusted(&parts.extensions, &s.app.settings)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; atna_session=abc ; b=2"));
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn https_is_only_believed_from_a_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(is_https(&h, true));
        assert!(!is_https(&h, false));
        let v = set_cookie(COOKIE, "t", Some(Duration::from_secs(60)), true);
        assert_eq!(v, "atna_session=t; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure");
    }
}
