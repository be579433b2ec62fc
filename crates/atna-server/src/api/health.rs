//! Liveness and readiness for load balancers and orchestrators.

use axum::extract::State;
use axum::Json;

use super::dto::Health;
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;

/// The process is up (the database is not asked: see `/readyz`).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn live(State(s): State<AppState>) -> Json<Health> {
    Json(Health { status: "ok", backend: s.store.backend() })
}

/// The store answers: this node can serve.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Health),
    (status = 503, description = "The database is not reachable", body = Problem, content_type = "application/problem+json"),
))]
pub async fn ready(State(s): State<AppState>) -> ApiResult<Json<Health>> {
    s.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready");
        ApiError::unavailable()
    })?;
    Ok(Json(Health { status: "ready", backend: s.store.backend() }))
}

/// Prometheus metrics (text exposition format): key checks by entry point and outcome, their latency, the key cache,
/// database errors on the verification path, usage flushes and change-feed lag. No key, secret or e-mail address is
/// in it; it does show traffic volumes, so bind it to a private address with `metrics_listen` in production.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4"),
))]
pub async fn metrics(State(s): State<AppState>) -> impl axum::response::IntoResponse {
    let v = &s.verifier;
    let text = v.metrics().render(v.cached(), v.feed_read_at(), crate::clock::now());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}
