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
