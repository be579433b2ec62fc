//! `GET /v1/audit`: the audit trail of the calling key's owner.

use atna_domain::scope::MANAGE_KEYS;
use atna_domain::CredentialId;
use atna_store::AuditQuery;
use axum::extract::{Query, State};
use axum::Json;

use super::dto::AuditParams;
use crate::audit::{cursor_after, parse_cursor, AuditEventJson, AuditList};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Caller;
use crate::AppState;

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

/// Your audit trail, newest first: what happened to your keys and your account, by whom, from where.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditParams),
    security(("bearer" = ["keys:manage"])),
    responses(
        (status = 200, body = AuditList),
        (status = 400, description = "Bad cursor, limit, key_id or time", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks `keys:manage`, or `ip_not_allowed`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not reachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditList>> {
    caller.require(MANAGE_KEYS)?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", format!("`limit` must be between 1 and {MAX_LIMIT}.")));
    }
    let after = match p.cursor.as_deref() {
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            ApiError::bad_request("invalid_cursor", "`cursor` must be a `next_cursor` from a previous page.")
        })?),
        None => None,
    };
    let key = match p.key_id.as_deref() {
        Some(k) => Some(
            CredentialId::parse(k)
                .map_err(|_| ApiError::bad_request("invalid_key_id", "`key_id` must be a Credential ID."))?,
        ),
        None => None,
    };
    let q = AuditQuery {
        owner: Some(caller.0.record.owner),
        key,
        action: p.kind.filter(|k| !k.is_empty()),
        since: p.since.map(|t| t.timestamp_millis()),
        until: p.until.map(|t| t.timestamp_millis()),
        after,
        limit,
    };
    let events = s.store.audit_page(&q).await?;
    let next_cursor = (events.len() as i64 == limit).then(|| events.last().map(cursor_after)).flatten();
    Ok(Json(AuditList { data: events.iter().map(AuditEventJson::new).collect(), next_cursor }))
}
