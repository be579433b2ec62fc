//! Public endpoints for whoever holds a key, found somewhere (`atna scan --check --server`): ask whether keys are
//! live (`/v1/credentials/status`) and revoke them (`/v1/credentials/revoke`, in the spirit of GitHub's
//! `POST /credentials/revoke`). Neither takes a key in `Authorization`: the keys are in the body, whole.
//!
//! Holding the whole key is the proof: a key whose secret does not match is answered `unknown`, like a key that never
//! existed, so a Credential ID alone (public, shown in logs) reveals nothing. Revocation is always answered 202,
//! whatever the keys were. Both are rate-limited per address ([`crate::per_address`]), count no use of any key and
//! spend no quota.

use atna_domain::{KeyStatus, ParsedKey};
use atna_store::{Actor, AuthRecord};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ClientIp};
use crate::service;
use crate::AppState;

/// Most keys in one request.
pub const MAX_KEYS: usize = 1000;
/// Body limit of these routes: 1,000 keys of up to 200 characters, quoted, fit.
pub const BODY_LIMIT: usize = 256 * 1024;

/// Keys found somewhere, whole.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRequest {
    /// Whole keys (`<prefix>_<id>_<secret>_<checksum>`), at most 1,000.
    pub keys: Vec<String>,
}

/// What is known about one key.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialStatus {
    /// The Credential ID the key embeds, when it is well-formed (`null` otherwise).
    pub credential_id: Option<String>,
    /// `live` (a key of this installation, not deleted: it may still be disabled or expired), `deleted`, or
    /// `unknown` (malformed, no such key, or a secret that does not match).
    pub status: &'static str,
}

/// The answer, one entry per key, in the request's order.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialStatuses {
    pub keys: Vec<CredentialStatus>,
}

/// The key's record, only if `key` is well-formed and its secret matches: anything else is "unknown".
/// The key's record when it is a key of this installation (one of its issued prefixes) and the secret matches.
async fn matching(s: &AppState, parsed: Option<&ParsedKey<'_>>) -> ApiResult<Option<AuthRecord>> {
    let Some(parsed) = parsed else { return Ok(None) };
    let Some(rec) = s.store.auth_record(&parsed.id).await? else { return Ok(None) };
    Ok(rec.hash.matches(&parsed.hash()).then_some(rec))
}

/// The rate limit and the size rule, checked before any key is looked at. Returns the answer to send instead.
fn refused(s: &AppState, ip: Option<std::net::IpAddr>, body: &CredentialsRequest) -> Result<(), ApiError> {
    if let Some(ip) = ip {
        if let Err(wait) = s.holder_limit.admit(ip, std::time::Instant::now()) {
            let secs = wait.as_secs().max(1);
            let detail = format!("Too many requests from your address; try again in {secs} s.");
            // `retry_after` makes the answer carry `Retry-After`, as every other 429 does.
            return Err(ApiError {
                retry_after: Some(secs),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
            });
        }
    }
    if body.keys.len() > MAX_KEYS {
        let detail = format!("Send at most {MAX_KEYS} keys per request.");
        return Err(ApiError::unprocessable("too_many_keys", detail));
    }
    Ok(())
}

/// Whether found keys are live: for each key, `live`, `deleted` or `unknown`. Only the whole key gets an answer
/// (a wrong secret is `unknown`); no use is counted and no quota spent.
#[utoipa::path(post, path = "/v1/credentials/status", tag = "leaks", request_body = CredentialsRequest,
    responses(
        (status = 200, body = CredentialStatuses),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON without a `keys` array of strings, or `too_many_keys` (over 1,000)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many requests from this address; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not reachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn status(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<CredentialsRequest>,
) -> Response {
    if let Err(e) = refused(&s, ip, &body) {
        return e.into_response();
    }
    let format = s.verifier.format();
    let mut keys = Vec::with_capacity(body.keys.len());
    for key in &body.keys {
        let parsed = format.parse(key).ok();
        let credential_id = parsed.as_ref().map(|p| p.id.to_string());
        let status = match matching(&s, parsed.as_ref()).await {
            Ok(Some(rec)) if rec.key.status == KeyStatus::Revoked => "deleted",
            Ok(Some(_)) => "live",
            Ok(None) => "unknown",
            Err(e) => return e.into_response(),
        };
        keys.push(CredentialStatus { credential_id, status });
    }
    Json(CredentialStatuses { keys }).into_response()
}

/// Revoke found keys: every live key of this installation among them is deleted at once, everywhere, and the
/// deletion is recorded in its owner's audit trail. Always 202, whatever the keys were (live, deleted, unknown or
/// malformed), so the answer tells nothing about them; the keys are revoked by the time it is sent.
#[utoipa::path(post, path = "/v1/credentials/revoke", tag = "leaks", request_body = CredentialsRequest,
    responses(
        (status = 202, description = "Accepted: the live keys among them are revoked"),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON without a `keys` array of strings, or `too_many_keys` (over 1,000)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many requests from this address; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not reachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<CredentialsRequest>,
) -> Response {
    if let Err(e) = refused(&s, ip, &body) {
        return e.into_response();
    }
    let format = s.verifier.format();
    let now = clock::now();
    let mut revoked = 0usize;
    for key in &body.keys {
        let rec = match matching(&s, format.parse(key).ok().as_ref()).await {
            Ok(Some(rec)) if rec.key.status != KeyStatus::Revoked => rec,
            Ok(_) => continue,
            Err(e) => return e.into_response(),
        };
        // The key revoked itself: whoever held it acted, and the owner's audit trail says so.
        let actor = Actor::Key { user: rec.key.owner, key: rec.key.id };
        match service::delete_key(s.store.as_ref(), Some(&s.verifier), None, &rec.key.id, &actor.into(), now).await {
            Ok(Some(_)) => revoked += 1,
            Ok(None) => {}
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    if revoked > 0 {
        tracing::warn!(revoked, "keys revoked by their holder (POST /v1/credentials/revoke)");
    }
    StatusCode::ACCEPTED.into_response()
}
