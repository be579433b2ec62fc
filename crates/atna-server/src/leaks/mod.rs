//! Reports from secret scanners that found keys in public: GitHub's secret-scanning partner endpoint, GitLab's
//! partner API, and self-managed GitLab's Token Revocation API. Each report is checked (a signature over the raw
//! body, or a pre-shared token) before anything is parsed; every token that is a key of this installation is
//! `true_positive` and gets the `leak_action` (revoke by default), recorded once per key and place (a replay changes
//! nothing), audited as `key.leaked` and logged on the `atna::leaks` target for operators to alert on.

pub mod public_keys;
mod report;

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use atna_store::LeakAction;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;
pub use public_keys::{KeySource, PublicKeys, SignatureError};
pub use report::{Feedback, GithubToken, GitlabToken, RevocableTokenTypes, RevokeToken};

/// The leak endpoints' own body limit: 1,000 tokens are about 250 KB, over the API's 64 KiB.
pub const MAX_REPORT_BYTES: usize = 1 << 20;
/// Most `POST /v1/revoke_tokens` requests a node answers per minute before it says 429.
pub const REVOKE_TOKENS_PER_MINUTE: u32 = 60;

/// What the leak endpoints are told at start.
#[derive(Clone, Default)]
pub struct LeakSettings {
    /// GitHub's public keys (`github_public_keys`); `None`: `/v1/leaks/github` is off.
    pub github_public_keys: Option<KeySource>,
    /// GitLab's public keys (`gitlab_public_keys`); `None`: `/v1/leaks/gitlab` is off.
    pub gitlab_public_keys: Option<KeySource>,
    /// The token self-managed GitLab sends to the Token Revocation API (`gitlab_revocation_token`); `None`: off.
    pub gitlab_revocation_token: Option<String>,
    /// What happens to a reported live key (`leak_action`).
    pub action: LeakAction,
}

impl std::fmt::Debug for LeakSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeakSettings")
            .field("github_public_keys", &self.github_public_keys)
            .field("gitlab_public_keys", &self.gitlab_public_keys)
            .field("gitlab_revocation_token", &self.gitlab_revocation_token.as_ref().map(|_| "[redacted]"))
            .field("action", &self.action)
            .finish()
    }
}

/// The running state of the leak endpoints.
pub struct Leaks {
    github: Option<PublicKeys>,
    gitlab: Option<PublicKeys>,
    /// The current minute (Unix minutes) and the `revoke_tokens` requests counted in it.
    minute: AtomicI64,
    in_minute: AtomicU32,
}

impl Leaks {
    /// Reads the configured public keys.
    pub async fn new(s: &LeakSettings) -> Self {
        let github = match &s.github_public_keys {
            Some(src) => Some(PublicKeys::new("github", src.clone()).await),
            None => None,
        };
        let gitlab = match &s.gitlab_public_keys {
            Some(src) => Some(PublicKeys::new("gitlab", src.clone()).await),
            None => None,
        };
        Self { github, gitlab, minute: AtomicI64::new(0), in_minute: AtomicU32::new(0) }
    }

    /// Counts a `revoke_tokens` request; false when this minute's allowance is spent.
    fn admit_revocation(&self, now: i64) -> bool {
        let minute = now / 60_000;
        if self.minute.swap(minute, Ordering::AcqRel) != minute {
            self.in_minute.store(0, Ordering::Release);
        }
        self.in_minute.fetch_add(1, Ordering::AcqRel) < REVOKE_TOKENS_PER_MINUTE
    }
}

/// The leak routes, with their own body limit.
pub fn router() -> Router<AppState> {
    let limit = DefaultBodyLimit::max(MAX_REPORT_BYTES);
    Router::new()
        .route("/v1/leaks/github", post(github).layer(limit))
        .route("/v1/leaks/gitlab", post(gitlab).layer(limit))
        .route("/v1/revocable_token_types", get(revocable_token_types))
        .route("/v1/revoke_tokens", post(revoke_tokens).layer(limit))
}

fn disabled(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "leak_endpoint_disabled",
        format!("This endpoint is off: set `{what}` to turn it on (see docs/leaks.md)."),
    )
}

/// The body, or the answer for one that is too large or unreadable.
fn body(scanner: &str, b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|r| {
        tracing::warn!(target: "atna::leaks", scanner, status = r.status().as_u16(), "leak report refused: unreadable or over 1 MiB");
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "A leak report may be at most 1 MiB.")
        } else {
            ApiError::bad_request("leak_report_invalid", "The request body could not be read.")
        }
    })
}

/// Checks the signature headers `<prefix>-Public-Key-Identifier` / `-Signature` over the raw body. Every failure gets
/// one answer; the log says which it was.
async fn check_signature(scanner: &str, keys: &PublicKeys, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let header = |name: &str| headers.get(format!("{scanner}-public-key-{name}")).and_then(|v| v.to_str().ok());
    let outcome = match (header("identifier"), header("signature")) {
        (Some(id), Some(sig)) => keys.verify(id, sig, body).await,
        _ => Err(SignatureError::Missing),
    };
    outcome.map_err(|e| {
        tracing::warn!(target: "atna::leaks", scanner, reason = %e, "leak report refused: bad signature; nothing was revoked");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "leak_signature_invalid",
            "The report's signature does not verify with the scanner's public keys; nothing was done.",
        )
    })
}

fn broken_json(scanner: &str, e: &serde_json::Error) -> ApiError {
    tracing::warn!(target: "atna::leaks", scanner, error = %e, "leak report refused: not the expected JSON; nothing was revoked");
    ApiError::bad_request("leak_report_invalid", format!("The report is not a JSON array of tokens: {e}"))
}

/// GitHub's secret-scanning partner endpoint.
#[utoipa::path(post, path = "/v1/leaks/github", tag = "leaks",
    request_body(content = Vec<GithubToken>, description = "Tokens GitHub found, signed with ECDSA P-256/SHA-256 over the raw body"),
    params(("Github-Public-Key-Identifier" = String, Header, description = "Which of GitHub's public keys signed the body"),
           ("Github-Public-Key-Signature" = String, Header, description = "Base64 ASN.1 DER signature of the raw body")),
    responses(
        (status = 200, description = "One label per token: `true_positive` when it is a key of this installation", body = Vec<Feedback>),
        (status = 400, description = "`leak_report_invalid`: not a JSON array of tokens", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`leak_signature_invalid`: missing, unknown or wrong signature", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`leak_endpoint_disabled`: `github_public_keys` is not set", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body_too_large`: over 1 MiB", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn github(State(state): State<AppState>, headers: HeaderMap, b: Result<Bytes, BytesRejection>) -> Response {
    let Some(keys) = state.leaks.github.as_ref() else { return disabled("github_public_keys").into_response() };
    let run = async {
        let bytes = body("github", b)?;
        check_signature("github", keys, &headers, &bytes).await?;
        let tokens: Vec<GithubToken> = serde_json::from_slice(&bytes).map_err(|e| broken_json("github", &e))?;
        let found: Vec<(&str, &str)> =
            tokens.iter().map(|t| (t.token.as_str(), t.url.as_deref().unwrap_or(""))).collect();
        let labels = report::act(&state, "github", &found).await?;
        Ok::<_, ApiError>(Json(report::feedback(&tokens, &labels)))
    };
    run.await.into_response()
}

/// GitLab's partner API: the same check; GitLab reads only the status.
#[utoipa::path(post, path = "/v1/leaks/gitlab", tag = "leaks",
    request_body(content = Vec<GitlabToken>, description = "Tokens GitLab found, signed with ECDSA P-256/SHA-256 over the raw body"),
    params(("Gitlab-Public-Key-Identifier" = String, Header, description = "Which of GitLab's public keys signed the body"),
           ("Gitlab-Public-Key-Signature" = String, Header, description = "Base64 ASN.1 DER signature of the raw body")),
    responses(
        (status = 204, description = "Acknowledged (false positives too)"),
        (status = 400, description = "`leak_report_invalid`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`leak_signature_invalid`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`leak_endpoint_disabled`: `gitlab_public_keys` is not set", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body_too_large`", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn gitlab(State(state): State<AppState>, headers: HeaderMap, b: Result<Bytes, BytesRejection>) -> Response {
    let Some(keys) = state.leaks.gitlab.as_ref() else { return disabled("gitlab_public_keys").into_response() };
    let run = async {
        let bytes = body("gitlab", b)?;
        check_signature("gitlab", keys, &headers, &bytes).await?;
        let tokens: Vec<GitlabToken> = serde_json::from_slice(&bytes).map_err(|e| broken_json("gitlab", &e))?;
        let found: Vec<(&str, &str)> =
            tokens.iter().map(|t| (t.token.as_str(), t.url.as_deref().unwrap_or(""))).collect();
        report::act(&state, "gitlab", &found).await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT)
    };
    run.await.into_response()
}

/// Self-managed GitLab authenticates with the pre-shared token in `Authorization` (with or without `Bearer `).
fn check_revocation_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.settings.leaks.gitlab_revocation_token.as_deref() else {
        return Err(disabled("gitlab_revocation_token"));
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let given = given.strip_prefix("Bearer ").or_else(|| given.strip_prefix("bearer ")).unwrap_or(given).trim();
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return Ok(());
    }
    tracing::warn!(target: "atna::leaks", scanner = "gitlab-self-managed", "token revocation refused: wrong or missing token");
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "revocation_token_invalid",
        "Send the configured gitlab_revocation_token in the Authorization header.",
    ))
}

/// Self-managed GitLab's Token Revocation API: the token types this installation revokes.
#[utoipa::path(get, path = "/v1/revocable_token_types", tag = "leaks",
    responses(
        (status = 200, description = "The `type` values `/v1/revoke_tokens` takes", body = RevocableTokenTypes),
        (status = 401, description = "`revocation_token_invalid`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`leak_endpoint_disabled`: `gitlab_revocation_token` is not set", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn revocable_token_types(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = check_revocation_token(&state, &headers) {
        return e.into_response();
    }
    Json(RevocableTokenTypes::of(&state.verifier.format())).into_response()
}

/// Self-managed GitLab's Token Revocation API: revoke leaked tokens. Idempotent.
#[utoipa::path(post, path = "/v1/revoke_tokens", tag = "leaks",
    request_body(content = Vec<RevokeToken>, description = "Tokens GitLab found"),
    responses(
        (status = 204, description = "Done (tokens that are no key of this installation change nothing)"),
        (status = 400, description = "`leak_report_invalid`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`revocation_token_invalid`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`leak_endpoint_disabled`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body_too_large`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: more than 60 requests this minute", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn revoke_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        check_revocation_token(&state, &headers)?;
        if !state.leaks.admit_revocation(crate::clock::now()) {
            tracing::warn!(target: "atna::leaks", scanner = "gitlab-self-managed", "token revocation refused: rate limited");
            let detail = "Too many requests; retry in a minute.";
            return Err(ApiError {
                retry_after: Some(60),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
            });
        }
        let bytes = body("gitlab-self-managed", b)?;
        let tokens: Vec<RevokeToken> =
            serde_json::from_slice(&bytes).map_err(|e| broken_json("gitlab-self-managed", &e))?;
        let found: Vec<(&str, &str)> =
            tokens.iter().map(|t| (t.token.as_str(), t.location.as_deref().unwrap_or(""))).collect();
        report::act(&state, "gitlab-self-managed", &found).await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}
