//! The CSS and JS, compiled into the binary and served with long cache lifetimes. Their URLs carry a hash of the
//! content, so a new build never serves stale files.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");
const ICON: &str = include_str!("../../assets/icon.svg");

fn versioned(stem: &str, ext: &str, content: &str) -> String {
    let h = Sha256::digest(content.as_bytes());
    let short: String = h.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("/assets/{stem}.{short}.{ext}")
}

static CSS_URL: LazyLock<String> = LazyLock::new(|| versioned("app", "css", CSS));
static JS_URL: LazyLock<String> = LazyLock::new(|| versioned("app", "js", JS));
static ICON_URL: LazyLock<String> = LazyLock::new(|| versioned("icon", "svg", ICON));

/// The stylesheet's URL.
pub fn css_url() -> &'static str {
    &CSS_URL
}

/// The script's URL.
pub fn js_url() -> &'static str {
    &JS_URL
}

/// The icon's URL.
pub fn icon_url() -> &'static str {
    &ICON_URL
}

pub fn router() -> Router {
    Router::new().route("/assets/{file}", get(serve))
}

async fn serve(Path(file): Path<String>) -> Response {
    let path = format!("/assets/{file}");
    let (body, mime) = if path == *CSS_URL {
        (CSS, "text/css; charset=utf-8")
    } else if path == *JS_URL {
        (JS, "text/javascript; charset=utf-8")
    } else if path == *ICON_URL {
        (ICON, "image/svg+xml")
    } else {
        return (StatusCode::NOT_FOUND, [(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"))])
            .into_response();
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response()
}
