//! Checking keys: `/v1/whoami` for a client about its own key, `/v1/keys/verify` for services that check keys
//! themselves.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use atna_domain::VerifyCode;

use std::borrow::Cow;

use super::dto::{
    allowlist_json, Owner, QuotaRule, QuotaStatus, RateLimitStatus, VerifyRequest, VerifyResponse, WhoAmI,
};
use crate::clock::to_datetime;
use crate::error::ApiError;
use crate::error::{ApiResult, Problem};
use crate::extract::{authenticate, client_ip_of, ApiJson, Caller, ClientIp};
use crate::gate::Admitted;
use crate::gate::{self, Requirements, MAX_REQUIRED_SCOPES, MAX_SCOPE_LEN};
use crate::metrics::Entry;
use crate::verify::{KeyEntry, Verdict};
use crate::AppState;

/// The key that made this request: its ID, name, owner and scopes.
#[utoipa::path(get, path = "/v1/whoami", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = WhoAmI, headers(
            ("RateLimit-Policy" = String, description = "For a key with a rate limit: `\"default\";q=<limit>;w=<period seconds>`"),
            ("RateLimit" = String, description = "For a key with a rate limit: `\"default\";r=<requests left now>;t=<seconds until the allowance is whole>`"),
        )),
        (status = 401, description = "Missing, malformed, unknown, wrong, expired, disabled or deleted key; `code` says which",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`ip_not_allowed`: the key has an IP allowlist and the client's address is not in it (or cannot be known)",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: the key's rate limit is used up for now; `usage_exceeded`: its quota is used up. `Retry-After` says when to try again (absent for a quota that is never refilled)",
            body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
pub async fn whoami(Caller(entry, admitted): Caller) -> Response {
    whoami_response(&entry, &admitted)
}

/// `GET /v1/whoami` without the router: [`App`](crate::App) answers the hottest route directly (see `app::Front`).
/// Same answers as [`whoami`], byte for byte. `peer_trusted` is [`Settings::trusts_peer`](crate::Settings::trusts_peer)
/// of `peer`, decided once per connection.
pub async fn whoami_direct(state: &AppState, headers: &HeaderMap, peer: IpAddr, peer_trusted: bool) -> Response {
    let started = std::time::Instant::now();
    let ip = Some(client_ip_of(headers, peer, peer_trusted, &state.settings.trusted_proxies));
    let result = authenticate(state, headers, ip).await;
    state.verifier.metrics().checked(Entry::Whoami, started, &result);
    let mut res = match result {
        Ok((entry, admitted)) => whoami_response(&entry, &admitted),
        Err(e) => e.into_response(),
    };
    res.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

fn whoami_response(entry: &KeyEntry, admitted: &Admitted) -> Response {
    // Serialised once, on the key's first whoami since it was loaded into the cache.
    let mut res = ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], entry.whoami_json().clone())
        .into_response();
    admitted.write_headers(entry, res.headers_mut());
    res
}

/// Check a key. Always 200 with a verdict: the caller holds the key it asks about, so the answer tells it nothing it
/// could not learn by calling `/v1/whoami` with that key. With `ip` (else the caller's own address) the key's IP
/// allowlist is checked (`IP_NOT_ALLOWED`), with `scopes` that the key holds them all (`INSUFFICIENT_SCOPE`).
#[utoipa::path(post, path = "/v1/keys/verify", tag = "auth", request_body = VerifyRequest,
    responses(
        (status = 200, body = VerifyResponse),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON without a `key` string, an `ip` that is not an IP address, or too many or too long `scopes`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not reachable (a key not in this node's memory cannot be checked)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(
    State(s): State<AppState>,
    ClientIp(caller_ip): ClientIp,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> ApiResult<Json<VerifyResponse>> {
    let started = std::time::Instant::now();
    if body.scopes.len() > MAX_REQUIRED_SCOPES || body.scopes.iter().any(|sc| sc.len() > MAX_SCOPE_LEN) {
        return Err(ApiError::unprocessable(
            "invalid_requirements",
            format!("`scopes` names at most {MAX_REQUIRED_SCOPES} scopes of {MAX_SCOPE_LEN} bytes."),
        ));
    }
    // The address the key is being used from: the one the asking service names, else the asker's own.
    let ip = body.ip.or(caller_ip);
    let (verdict, now) = match s.verifier.check(&body.key).await {
        Ok(v) => v,
        Err(e) => {
            let e = ApiError::from(e);
            s.verifier.metrics().check(Entry::Verify, e.code, started.elapsed());
            return Err(e);
        }
    };
    // A good key's verdict once the gate has applied its rules (the same decision as every entry point's); a refused
    // key keeps its details (its secret matched).
    let mut admitted = Admitted::default();
    let mut retry_after = None;
    let verdict = match verdict {
        Verdict::Valid(entry) => {
            let req = Requirements { scopes: body.scopes.iter().map(|sc| Cow::Borrowed(sc.as_str())).collect() };
            match gate::admit(&entry, &req, &gate::Context::ip(ip), s.verifier.limits(), now) {
                Ok(a) => {
                    admitted = a;
                    Verdict::Valid(entry)
                }
                Err(e) => {
                    retry_after = e.retry_after;
                    // Every refusal of the gate names a verify code (`ip_not_allowed`, `insufficient_scope`, `rate_limited`, …).
                    let code = gate::refusal_code(e.code).unwrap_or(VerifyCode::InsufficientScope);
                    // A refusal by the key's rules is an attempt in its usage over time (never a use).
                    s.verifier.count_refusal(&entry, code, now);
                    Verdict::Invalid { code, malformed: None, entry: Some(entry) }
                }
            }
        }
        v => v,
    };
    let code = verdict.code();
    let outcome = match &verdict {
        Verdict::Valid(entry) => {
            // Counted only once every rule said yes: a refused check consumes nothing.
            s.verifier.count_use(entry, now, ip);
            "allowed"
        }
        Verdict::Invalid { code, .. } => ApiError::invalid_key(*code, None).code,
    };
    s.verifier.metrics().check(Entry::Verify, outcome, started.elapsed());
    let (entry, message) = match &verdict {
        Verdict::Valid(e) => (Some(e), code.explain().to_owned()),
        Verdict::Invalid { entry, malformed, .. } => {
            (entry.as_ref(), malformed.map_or_else(|| code.explain().to_owned(), |m| m.to_string()))
        }
    };
    let (rate_left, quota_left) = entry.map_or((None, None), |e| s.verifier.limits().peek(&e.record.id, now));
    Ok(Json(VerifyResponse {
        valid: matches!(verdict, Verdict::Valid(_)),
        code: code.as_str(),
        message,
        key_id: entry.map(|e| e.record.id.to_string()),
        name: entry.map(|e| e.record.name.to_string()),
        owner: entry.map(|e| Owner { id: e.record.owner, email: e.owner_email.to_string() }),
        scopes: entry.map(|e| e.record.scopes.iter().map(str::to_owned).collect()),
        expires_at: entry.and_then(|e| e.record.expires_at.map(to_datetime)),
        ip_allowlist: entry.and_then(|e| allowlist_json(&e.record.rules.ip_allowlist)),
        rate_limit: entry.and_then(|e| e.record.rules.rate_limit).map(|rl| RateLimitStatus {
            limit: i64::from(rl.limit()),
            period_seconds: i64::from(rl.period_seconds()),
            remaining: admitted.rate.map(|r| r.1).or(rate_left).unwrap_or(rl.limit()),
            reset_seconds: admitted.rate.map(|r| r.2),
        }),
        quota: entry.and_then(|e| e.record.rules.quota.as_ref()).map(|q| {
            let rule = QuotaRule::of(q, now);
            QuotaStatus {
                remaining: admitted.quota_left.or(quota_left).unwrap_or(rule.remaining).max(0),
                refill: rule.refill,
            }
        }),
        retry_after_seconds: retry_after,
    }))
}
