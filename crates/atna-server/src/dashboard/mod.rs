//! The web dashboard: server-rendered pages (askama templates compiled into the binary), a little CSS and JS served
//! from memory, server-side sessions, CSRF protection and login throttling. It is merged next to the REST API in
//! `app.rs` but carries its own layers, so nothing here slows down `/v1`.

mod account;
mod activity;
mod admin;
mod assets;
mod auth;
mod csrf;
mod device;
mod keys;
mod lifecycle;
mod pages;
mod reminders;
pub(crate) mod session;
mod slots;
mod throttle;
mod timefmt;
mod usage;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

/// The Content-Security-Policy of every dashboard page: no inline script or style, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; \
form-action 'self'; base-uri 'none'; object-src 'none'";

/// What the dashboard handlers share: the app's state. Everything several nodes must agree on (sessions, CSRF tokens,
/// sign-in throttling, form nonces, setup tokens) lives in the database, none of it here.
pub struct Dash {
    pub app: AppState,
    /// This node's argon2 slots (`password_hash_concurrency`), with their queues.
    pub slots: Arc<slots::PasswordSlots>,
}

/// The dashboard handlers' state.
#[derive(Clone)]
pub struct DashState(Arc<Dash>);

impl std::ops::Deref for DashState {
    type Target = Dash;
    fn deref(&self) -> &Dash {
        &self.0
    }
}

/// A fresh random token: 32 bytes from the OS CSPRNG, hex-encoded (256 bits).
pub fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The dashboard routes, with their state applied.
pub fn router(app: AppState) -> Router {
    let slots = slots::PasswordSlots::new(app.settings.password_hash_concurrency);
    let state = DashState(Arc::new(Dash { app, slots }));
    let pages = Router::new()
        .route("/", get(root))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/setup", get(auth::setup_page).post(auth::setup))
        .route("/keys", get(keys::list))
        .route("/keys/new", get(keys::new_form).post(keys::create))
        .route("/keys/{id}/delete", get(keys::confirm_delete).post(keys::delete))
        .route("/keys/{id}/roll", get(lifecycle::roll_form).post(lifecycle::roll))
        .route("/keys/{id}/edit", get(lifecycle::edit_form).post(lifecycle::edit))
        .route("/keys/{id}/disable", post(lifecycle::disable))
        .route("/keys/{id}/enable", post(lifecycle::enable))
        .route("/activity", get(activity::own))
        .route("/admin/activity", get(activity::all))
        .route("/admin/revoke", get(activity::revoke_preview).post(activity::revoke))
        .route("/account", get(account::page))
        .route("/account/password", post(account::change_password))
        .route("/account/sessions", post(account::sign_out_everywhere))
        .route("/account/webhook", post(reminders::set_mine))
        .route("/account/webhook/delete", post(reminders::delete_mine))
        .route("/reminders", get(reminders::list))
        .route("/admin/policy", get(reminders::policy))
        .route("/admin/webhook", post(reminders::set_installation))
        .route("/admin/webhook/delete", post(reminders::delete_installation))
        .route("/admin/users", get(admin::list).post(admin::create))
        .route("/admin/users/{id}/disable", post(admin::disable))
        .route("/admin/users/{id}/enable", post(admin::enable))
        .route("/help/secure-storage", get(pages::secure_storage))
        .route("/keys/{id}", get(usage::key_page))
        .method_not_allowed_fallback(pages::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), csrf::same_origin_only))
        .layer(DefaultBodyLimit::max(32 * 1024))
        .layer(middleware::from_fn_with_state(state.clone(), security_headers))
        .with_state(state);
    pages.merge(assets::router())
}

async fn root(signed_in: Option<session::SignedIn>) -> Response {
    match signed_in {
        Some(_) => Redirect::to("/keys").into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

/// `Strict-Transport-Security` for pages that came over HTTPS: browsers then use HTTPS for this host for a year.
/// Never sent over plain HTTP (browsers ignore it there, and it must not pin a host that has no HTTPS).
pub const HSTS: &str = "max-age=31536000";

/// Security headers on every dashboard page; pages hold private data, so none of them is cached.
async fn security_headers(State(s): State<DashState>, req: Request, next: Next) -> Response {
    let trusted = crate::extract::forwarded_trusted(req.extensions(), &s.app.settings);
    let https = session::is_https(req.headers(), trusted);
    let mut res = next.run(req).await;
    secure(&mut res);
    if https {
        res.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    res
}

/// A dashboard error page (with the security headers) for answers made outside the router: a request that took too
/// long, a handler that panicked.
pub fn error_page(status: StatusCode, heading: &'static str, message: &'static str) -> Response {
    let mut res = pages::DashError::new(status, heading, message).into_response();
    secure(&mut res);
    res
}

/// The dashboard's "Not found" page, for a person whose browser asked for an address that does not exist.
pub fn not_found_page() -> Response {
    let mut res = pages::DashError::not_found().into_response();
    secure(&mut res);
    res
}

fn secure(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: with `no-referrer` browsers send `Origin: null` on form posts.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
}
