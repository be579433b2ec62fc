//! Device cookies: a browser that signed in to an account before is recognised, so its sign-ins for that account
//! are exempt from the per-account throttling that strangers can drive up (see `throttle.rs`).
//!
//! The cookie holds a random 256-bit token; the database keeps only its SHA-256, bound to the user and an expiry.
//! A random token (rather than an HMAC over the user ID under a server key) makes each browser's cookie different,
//! so each gets its own failure counter, and lets housekeeping drop expired ones; every node sees the same table.

use std::time::Duration;

use atna_domain::UserId;
use atna_store::{Store, StoreResult};
use axum::http::{HeaderMap, HeaderValue};

use super::random_token;
use super::session::{cookie, hash_token, set_cookie};
use crate::clock;

/// The cookie's name.
pub const COOKIE: &str = "atna_device";
/// How long a browser is remembered after its latest sign-in from a new token.
pub const LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The hash of the device token the browser presents, if it looks like one.
pub fn presented(headers: &HeaderMap) -> Option<[u8; 32]> {
    cookie(headers, COOKIE).filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).map(hash_token)
}

/// Whether the presented token (if any) is a live one of `user`: returns its hash then.
pub async fn belongs_to(store: &dyn Store, hash: Option<[u8; 32]>, user: UserId) -> StoreResult<Option<[u8; 32]>> {
    let Some(hash) = hash else { return Ok(None) };
    Ok((store.device_token_user(&hash, clock::now()).await? == Some(user)).then_some(hash))
}

/// After a successful sign-in from a browser without a token of this user: records a new one and returns the
/// `Set-Cookie` value that gives it to the browser.
pub async fn issue(store: &dyn Store, user: UserId, secure: bool) -> StoreResult<HeaderValue> {
    let token = random_token();
    let expires = clock::now().saturating_add(LIFETIME.as_millis() as i64);
    store.add_device_token(&hash_token(&token), user, expires).await?;
    Ok(set_cookie(COOKIE, &token, Some(LIFETIME), secure))
}
