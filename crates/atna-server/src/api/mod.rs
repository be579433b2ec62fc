//! The REST API (`/v1`), health probes and `/openapi.json`.

pub mod audit;
pub mod auth;
pub mod credentials;
pub mod dto;
pub mod forward_auth;
pub mod health;
pub mod keys;
pub mod openapi;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch, post};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::ApiError;
use crate::AppState;

fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(health::metrics))
}

/// What the metrics listener serves (`metrics_listen`): `/metrics` and nothing else.
pub fn metrics_only() -> Router<AppState> {
    metrics_router().fallback(not_found)
}

/// The API routes; `/metrics` too unless `metrics_listen` moves it to a listener of its own.
pub fn router(state: &AppState) -> Router<AppState> {
    // The body limit sits only on routes that read a body, so the Bearer-only routes (the hot path) skip it.
    let limit = DefaultBodyLimit::max(state.settings.max_body_bytes);
    // 1,000 whole keys are over the API's usual limit.
    let holders = DefaultBodyLimit::max(credentials::BODY_LIMIT);
    let routes = if state.settings.metrics_listen.is_none() { metrics_router() } else { Router::new() };
    // The Bearer management routes: a rate-limited key's allowed answers carry its RateLimit headers.
    let managed = Router::new()
        .route("/v1/keys", get(keys::list).merge(post(keys::create).layer(limit)))
        .route("/v1/keys/{id}", get(keys::get).delete(keys::delete).merge(patch(keys::patch).layer(limit)))
        .route("/v1/keys/{id}/roll", post(keys::roll).layer(limit))
        .route("/v1/keys/{id}/usage", get(keys::usage))
        .route("/v1/audit", get(audit::list))
        .route_layer(axum::middleware::from_fn(crate::limits::rate_headers));
    routes
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/openapi.json", get(openapi::json))
        .route("/v1/whoami", get(auth::whoami))
        .route("/v1/keys/verify", post(auth::verify).layer(limit))
        .merge(managed)
        .route("/v1/credentials/status", post(credentials::status).layer(holders))
        .route("/v1/credentials/revoke", post(credentials::revoke).layer(holders))
        .route("/v1/forward-auth", any(forward_auth::forward_auth))
        .route("/v1/forward-auth/{*rest}", any(forward_auth::forward_auth))
        .merge(crate::leaks::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

/// Unknown addresses: a problem document for programs, the dashboard's "Not found" page for a browser (one that
/// asks for HTML) anywhere outside `/v1`.
async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    let browser =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/html"));
    let api = uri.path() == "/v1" || uri.path().starts_with("/v1/");
    if browser && !api {
        return crate::dashboard::not_found_page();
    }
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "There is nothing at this address; see /openapi.json.")
        .into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "This address does not accept this method.")
}
