//! Rendering glue: the page frame every template shares, rendering to a response, the HTML error page, and form
//! parsing that answers bad input with that page instead of a bare error.

use std::borrow::Cow;

use askama::Template;
use atna_store::StoreError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::assets;
use super::session::SignedIn;

/// What the frame around every page needs: the signed-in person (for the profile menu), the session's CSRF token
/// (for the log-out button), which menu entry is current, and the asset URLs.
pub struct Chrome {
    pub title: String,
    pub user: Option<UserView>,
    pub csrf: String,
    pub nav: &'static str,
    pub css: &'static str,
    pub js: &'static str,
    pub icon: &'static str,
}

/// The signed-in person as the header shows them.
pub struct UserView {
    pub email: String,
    pub initial: String,
    pub is_admin: bool,
}

impl Chrome {
    /// The frame for a signed-in page.
    pub fn signed_in(si: &SignedIn, nav: &'static str, title: impl Into<String>) -> Self {
        Self {
            user: Some(UserView {
                email: si.user.email.to_string(),
                initial: si
                    .user
                    .email
                    .as_str()
                    .chars()
                    .next()
                    .map(|c| c.to_uppercase().to_string())
                    .unwrap_or_default(),
                is_admin: si.user.is_admin,
            }),
            csrf: si.csrf.clone(),
            nav,
            ..Self::anonymous(title)
        }
    }

    /// The frame for a page seen before signing in.
    pub fn anonymous(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            user: None,
            csrf: String::new(),
            nav: "",
            css: assets::css_url(),
            js: assets::js_url(),
            icon: assets::icon_url(),
        }
    }
}

/// Renders a template as an HTML response.
pub fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], html)
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side; try again.").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    c: Chrome,
    status: u16,
    heading: &'a str,
    message: &'a str,
}

/// A dashboard error: rendered as an HTML page with a status, a heading and what to do.
#[derive(Debug)]
pub struct DashError {
    pub status: StatusCode,
    pub heading: &'static str,
    pub message: Cow<'static, str>,
}

impl DashError {
    pub fn new(status: StatusCode, heading: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self { status, heading, message: message.into() }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here. It may have been deleted, or the link is wrong.",
        )
    }

    pub fn no_such_key() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "No such API key",
            "You have no API key with this Credential ID. It may already have been deleted.",
        )
    }

    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "The form was not sent from this dashboard or is out of date. Go back, reload the page and try again.",
        )
    }

    pub fn cross_origin() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Request refused", "This request came from another site, so it was refused.")
    }

    pub fn bad_form(detail: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "The form could not be read", format!("Go back and try again. ({detail})"))
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Something went wrong on our side; try again.",
        )
    }
}

impl From<StoreError> for DashError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                Self::new(StatusCode::CONFLICT, "Already exists", format!("{what} already exists."))
            }
            StoreError::Database(msg) => {
                tracing::error!(error = %msg, "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Database unavailable",
                    "The database is not reachable; try again shortly.",
                )
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

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            c: Chrome::anonymous(self.heading),
            status: self.status.as_u16(),
            heading: self.heading,
            message: &self.message,
        };
        render(self.status, &page)
    }
}

/// Handler results.
pub type DashResult<T = Response> = Result<T, DashError>;

/// A URL-encoded form; unreadable input gets the 400 error page.
pub struct DashForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for DashForm<T> {
    type Rejection = DashError;

    async fn from_request(req: Request, state: &S) -> Result<Self, DashError> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(DashForm(v)),
            Err(e) => Err(DashError::bad_form(e.body_text())),
        }
    }
}

/// A query string; unreadable ones get the 400 error page.
pub struct DashQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for DashQuery<T> {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, DashError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(DashQuery(v)),
            Err(e) => Err(DashError::new(
                StatusCode::BAD_REQUEST,
                "This address is not valid",
                format!("Check the link and try again. ({})", e.body_text()),
            )),
        }
    }
}

/// The HTML 405 page (e.g. a bookmarked `/logout`, which only signs out through its button).
pub async fn method_not_allowed() -> DashError {
    DashError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Use the buttons on the page",
        "This address only works through its button or form in the dashboard.",
    )
}

#[derive(Template)]
#[template(path = "secure_storage.html")]
struct SecureStorage {
    c: Chrome,
}

/// The "Secure storage" help text (from the seed doc), linked from the page that shows a new secret.
pub async fn secure_storage(si: Option<SignedIn>) -> Response {
    let c = match &si {
        Some(si) => Chrome::signed_in(si, "keys", "Storing API keys securely"),
        None => Chrome::anonymous("Storing API keys securely"),
    };
    render(StatusCode::OK, &SecureStorage { c })
}
