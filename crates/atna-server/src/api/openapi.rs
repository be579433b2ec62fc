//! The OpenAPI 3.1 document, generated from the handlers and types so it cannot drift from them.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{audit, auth, dto, forward_auth, health, keys};
use crate::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(title = "atna", description = "Self-hosted API keys: manage keys and verify `Authorization: Bearer <key>`."),
    paths(auth::whoami, auth::verify, keys::create, keys::list, keys::get, keys::delete, keys::roll, keys::patch,
        audit::list, forward_auth::forward_auth,
        health::live, health::ready, health::metrics),
    components(schemas(
        dto::Owner, dto::WhoAmI, dto::Key, dto::CreatedKey, dto::KeyList, dto::CreateKey, dto::VerifyRequest,
        dto::VerifyResponse, dto::Health, dto::RollKey, dto::RolledKey, dto::KeyMergePatch,
        crate::audit::AuditEventJson, crate::audit::AuditActor, crate::audit::AuditList, Problem
    )),
    modifiers(&BearerAuth),
    tags((name = "keys", description = "Manage your API keys (needs the `keys:manage` scope)"),
         (name = "audit", description = "Your audit trail (needs the `keys:manage` scope)"),
         (name = "auth", description = "Check API keys"),
         (name = "gateway", description = "Forward-auth for nginx, Caddy, Traefik and Envoy (every method is accepted; `/v1/forward-auth/{rest}` too)"),
         (name = "health", description = "Probes")),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        }
    }
}

/// Serves the document.
pub async fn json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
