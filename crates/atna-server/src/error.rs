//! The one error type of the HTTP layer, rendered as `application/problem+json` (RFC 9457) with a stable `code`.

use std::borrow::Cow;

use atna_domain::VerifyCode;
use atna_store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer: status, stable machine-readable code, and a sentence that says what to do.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: Cow<'static, str>,
    /// `WWW-Authenticate` value, for 401 and 403 answers (RFC 6750).
    pub challenge: Option<Cow<'static, str>>,
    /// `Retry-After` in seconds, for 429 answers.
    pub retry_after: Option<u64>,
    /// `RateLimit-Policy` and `RateLimit` values, for a rate-limited key's 429.
    pub rate_headers: Option<Box<(HeaderValue, HeaderValue)>>,
}

/// The problem document (RFC 9457).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:atna:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short summary of the problem type.
    pub title: &'static str,
    pub status: u16,
    /// What went wrong and what to do about it.
    pub detail: String,
    /// Stable machine-readable code, e.g. `key_revoked`.
    pub code: &'static str,
}

const INVALID_TOKEN: &str = r#"Bearer realm="atna", error="invalid_token""#;

impl ApiError {
    /// An error with a status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self { status, code, detail: detail.into(), challenge: None, retry_after: None, rate_headers: None }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    /// No key of this caller has that ID (also when it belongs to someone else: never a revealing 403).
    pub fn no_such_key() -> Self {
        Self::new(StatusCode::NOT_FOUND, "key_not_found", "You have no API key with this Credential ID.")
    }

    /// A request without usable credentials.
    pub fn missing_credentials() -> Self {
        Self {
            challenge: Some(Cow::Borrowed(r#"Bearer realm="atna""#)),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "credentials_missing",
                "Send your API key in the Authorization header: `Authorization: Bearer <key>`.",
            )
        }
    }

    /// A presented key that is not good.
    pub fn invalid_key(code: VerifyCode, detail: Option<String>) -> Self {
        let c = match code {
            VerifyCode::Malformed => "key_malformed",
            VerifyCode::NotFound => "key_not_found",
            VerifyCode::InvalidSecret => "key_invalid_secret",
            VerifyCode::Expired => "key_expired",
            VerifyCode::Revoked => "key_revoked",
            VerifyCode::IpNotAllowed => "ip_not_allowed",
            VerifyCode::InsufficientScope => "insufficient_scope",
            VerifyCode::RateLimited => "rate_limited",
            VerifyCode::UsageExceeded => "usage_exceeded",
            VerifyCode::Disabled | VerifyCode::Valid => "key_disabled",
        };
        let detail = detail.map_or(Cow::Borrowed(code.explain()), Cow::Owned);
        Self { challenge: Some(Cow::Borrowed(INVALID_TOKEN)), ..Self::new(StatusCode::UNAUTHORIZED, c, detail) }
    }

    /// The key is good but may not be used from the client's address (or the address is unknown and the key has an
    /// allowlist). The address is not echoed: the client knows it, and logs should not fill with it twice.
    pub fn ip_not_allowed() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "ip_not_allowed",
            "This API key may not be used from your IP address: it only works from the addresses in its IP allowlist.",
        )
    }

    /// The key is good but has used up its rate limit for now: `Retry-After` says when one request will pass.
    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        Self {
            retry_after: Some(retry_after_seconds),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "This API key has made too many requests (see its rate limit); try again in {retry_after_seconds} s."
                ),
            )
        }
    }

    /// The key is good but its usage quota is used up; `Retry-After` says when it is refilled, if it ever is.
    pub fn usage_exceeded(refill_in_seconds: Option<u64>) -> Self {
        let detail = match refill_in_seconds {
            Some(s) => format!("This API key's usage quota is used up; it is refilled in {s} s."),
            None => "This API key's usage quota is used up; create a key with a new quota.".to_owned(),
        };
        Self { retry_after: refill_in_seconds, ..Self::new(StatusCode::TOO_MANY_REQUESTS, "usage_exceeded", detail) }
    }

    /// The key is good but lacks a scope.
    pub fn insufficient_scope(scope: &'static str) -> Self {
        Self {
            challenge: Some(Cow::Borrowed(r#"Bearer realm="atna", error="insufficient_scope", scope="keys:manage""#)),
            ..Self::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("This API key lacks the `{scope}` scope. Create a key with it to manage keys over the API."),
            )
        }
    }

    /// The key is good but lacks scopes that the gateway requires for this request.
    pub fn missing_scopes(missing: &[&str]) -> Self {
        let list = missing.join(" ");
        // Scopes are `[a-z0-9_.:-]` by construction when held; a required one may be anything the configuration
        // says, so only characters that may stand inside a quoted string go into the challenge.
        let quoted: String =
            list.chars().filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\' || *c == ' ').collect();
        Self {
            challenge: Some(Cow::Owned(format!(
                r#"Bearer realm="atna", error="insufficient_scope", scope="{quoted}""#
            ))),
            ..Self::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("This API key lacks the scopes this request needs: {}.", missing.join(", ")),
            )
        }
    }

    /// A 500: one code, `internal_error`, whether a handler gave up or a panic was caught (`serve::guard`).
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong on our side; try again.")
    }

    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The database is not reachable; try again shortly.")
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                Self::new(StatusCode::CONFLICT, "conflict", format!("{what} already exists."))
            }
            StoreError::Database(msg) => {
                tracing::error!(error = %msg, "store unavailable");
                Self::unavailable()
            }
            StoreError::Corrupt(msg) => {
                tracing::error!(error = %msg, "corrupt record");
                Self::internal()
            }
            // Only `atna import` meets these; no request does.
            e @ (StoreError::NotEmpty | StoreError::InvalidSnapshot(_)) => {
                tracing::error!(error = %e, "unexpected store error");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, status = self.status.as_u16(), "request failed");
        }
        let body = Problem {
            type_: format!("urn:atna:problem:{}", self.code),
            title: self.title(),
            status: self.status.as_u16(),
            detail: self.detail.into_owned(),
            code: self.code,
        };
        let mut res = (self.status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(c) = self.challenge {
            let value = match c {
                Cow::Borrowed(s) => Ok(HeaderValue::from_static(s)),
                Cow::Owned(s) => HeaderValue::try_from(s),
            };
            if let Ok(v) = value {
                h.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(rate) = self.rate_headers {
            let (policy, state) = *rate;
            h.insert(crate::limits::POLICY_HEADER, policy);
            h.insert(crate::limits::STATE_HEADER, state);
        }
        res
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod internal_code_tests {
    use super::*;

    #[test]
    fn every_500_has_one_code() {
        let e = ApiError::internal();
        assert_eq!((e.status, e.code), (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"));
    }
}
