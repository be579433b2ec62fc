//! What every request goes through, the `GET /v1/whoami` fast path included: a deadline (`request_timeout`), after
//! which the client gets a 503 instead of waiting on, say, an exhausted database pool; and a panic catcher, so a bug
//! in a handler answers 500 (and is logged) instead of dropping the connection.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use crate::error::ApiError;

/// Which kind of answer a request expects when something goes wrong: a problem document or an HTML page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// The REST API, health checks, metrics and the OpenAPI document: `application/problem+json`.
    Api,
    /// The dashboard: an HTML error page.
    Dashboard,
}

impl Face {
    /// The face a request path belongs to.
    pub fn of(path: &str) -> Self {
        let api = path == "/v1"
            || path.starts_with("/v1/")
            || matches!(path, "/healthz" | "/readyz" | "/openapi.json" | "/metrics");
        if api {
            Face::Api
        } else {
            Face::Dashboard
        }
    }

    fn timed_out(self) -> Response {
        match self {
            Face::Api => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                "The request took too long to answer; try again shortly.",
            )
            .into_response(),
            Face::Dashboard => crate::dashboard::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "This took too long",
                "The server could not answer in time. Try again in a moment.",
            ),
        }
    }

    fn panicked(self) -> Response {
        match self {
            Face::Api => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong on our side; try again.",
            )
            .into_response(),
            Face::Dashboard => crate::dashboard::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Something went wrong on our side. Try again; if it keeps happening, tell your administrator.",
            ),
        }
    }
}

/// Runs a request's handling with a deadline and a panic catcher. Costs nothing for a request answered on its first
/// poll (a cached key check is): the timer is only created if `handle` has to wait.
pub async fn guarded(face: Face, limit: Duration, handle: impl Future<Output = Response>) -> Response {
    match Deadline::new(AssertUnwindSafe(handle).catch_unwind(), limit).await {
        Some(Ok(res)) => res,
        Some(Err(panic)) => {
            tracing::error!(panic = panic_message(&*panic), "a request handler panicked; answered 500");
            face.panicked()
        }
        None => {
            tracing::warn!(limit_ms = limit.as_millis() as u64, "a request took too long; answered 503");
            face.timed_out()
        }
    }
}

/// Runs a request's handling with a panic catcher only, for handlers that keep their own time (the reverse proxy,
/// whose uploads may take as long as they take).
pub async fn unwound(face: Face, handle: impl Future<Output = Response>) -> Response {
    match AssertUnwindSafe(handle).catch_unwind().await {
        Ok(res) => res,
        Err(panic) => {
            tracing::error!(panic = panic_message(&*panic), "a request handler panicked; answered 500");
            face.panicked()
        }
    }
}

pin_project_lite::pin_project! {
    /// `tokio::time::timeout` with the timer created lazily, at the first `Pending`.
    struct Deadline<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        limit: Duration,
    }
}

impl<F> Deadline<F> {
    fn new(inner: F, limit: Duration) -> Self {
        Self { inner, sleep: None, limit }
    }
}

impl<F: Future> Future for Deadline<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(v) = this.inner.poll(cx) {
            return Poll::Ready(Some(v));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.limit)));
        }
        match this.sleep.as_pin_mut().map(|s| s.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_get_problem_documents_and_the_rest_pages() {
        for p in ["/v1", "/v1/whoami", "/v1/keys/x", "/healthz", "/readyz", "/openapi.json", "/metrics"] {
            assert_eq!(Face::of(p), Face::Api, "{p}");
        }
        for p in ["/", "/keys", "/login", "/v1x", "/assets/app.css"] {
            assert_eq!(Face::of(p), Face::Dashboard, "{p}");
        }
    }
}
