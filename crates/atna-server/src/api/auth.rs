//! Checking keys: `/v1/whoami` for a client about its own key, `/v1/keys/verify` for services that check keys
//! themselves.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::dto::{Owner, VerifyRequest, VerifyResponse, WhoAmI};
use crate::clock::to_datetime;
use crate::error::ApiError;
use crate::error::{ApiResult, Problem};
use crate::extract::{authenticate, client_ip_of, ApiJson, Caller, ClientIp};
use crate::metrics::Entry;
use crate::verify::{KeyEntry, Verdict};
use crate::AppState;

/// The key that made this request: its ID, name, owner and scopes.
#[utoipa::path(get, path = "/v1/whoami", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = WhoAmI),
        (status = 401, description = "Missing, malformed, unknown, wrong, expired, disabled or deleted key; `code` says which",
            body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn whoami(Caller(entry): Caller) -> Response {
    whoami_response(&entry)
}

/// `GET /v1/whoami` without the router: [`App`](crate::App) answers the hottest route directly (see `app::Front`).
/// Same answers as [`whoami`], byte for byte. `peer_trusted` is [`Settings::trusts_peer`](crate::Settings::trusts_peer)
/// of `peer`, decided once per connection.
pub async fn whoami_direct(state: &AppState, headers: &HeaderMap, peer: IpAddr, peer_trusted: bool) -> Response {
    let started = std::time::Instant::now();
    let ip = Some(client_ip_of(headers, peer, peer_trusted, &state.settings.trusted_proxies));
    let mut res = match authenticate(state, headers, ip).await {
        Ok(entry) => {
            state.verifier.metrics().check(Entry::Whoami, "allowed", started.elapsed());
            whoami_response(&entry)
        }
        Err(e) => {
            state.verifier.metrics().check(Entry::Whoami, e.code, started.elapsed());
            e.into_response()
        }
    };
    res.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

fn whoami_response(entry: &KeyEntry) -> Response {
    // Serialised once when the key was loaded into the cache.
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], entry.whoami_json.clone()).into_response()
}

/// Check a key. Always 200 with a verdict: the caller holds the key it asks about, so the answer tells it nothing it
/// could not learn by calling `/v1/whoami` with that key.
#[utoipa::path(post, path = "/v1/keys/verify", tag = "auth", request_body = VerifyRequest,
    responses(
        (status = 200, body = VerifyResponse),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON without a `key` string", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not reachable (a key not in this node's memory cannot be checked)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> ApiResult<Json<VerifyResponse>> {
    let started = std::time::Instant::now();
    let verdict = match s.verifier.verify(&body.key, ip).await {
        Ok(v) => v,
        Err(e) => {
            let e = ApiError::from(e);
            s.verifier.metrics().check(Entry::Verify, e.code, started.elapsed());
            return Err(e);
        }
    };
    let code = verdict.code();
    let outcome = match &verdict {
        Verdict::Valid(_) => "allowed",
        Verdict::Invalid { code, .. } => ApiError::invalid_key(*code, None).code,
    };
    s.verifier.metrics().check(Entry::Verify, outcome, started.elapsed());
    let (entry, message) = match &verdict {
        Verdict::Valid(e) => (Some(e), code.explain().to_owned()),
        Verdict::Invalid { entry, malformed, .. } => {
            (entry.as_ref(), malformed.map_or_else(|| code.explain().to_owned(), |m| m.to_string()))
        }
    };
    Ok(Json(VerifyResponse {
        valid: matches!(verdict, Verdict::Valid(_)),
        code: code.as_str(),
        message,
        key_id: entry.map(|e| e.record.id.to_string()),
        name: entry.map(|e| e.record.name.to_string()),
        owner: entry.map(|e| Owner { id: e.record.owner, email: e.owner_email.to_string() }),
        scopes: entry.map(|e| e.record.scopes.iter().map(str::to_owned).collect()),
        expires_at: entry.and_then(|e| e.record.expires_at.map(to_datetime)),
    }))
}
