//! The OpenAPI 3.1 document, generated from the handlers and types so it cannot drift from them.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{audit, auth, credentials, dto, forward_auth, health, keys};
use crate::error::Problem;
use crate::leaks;

#[derive(OpenApi)]
#[openapi(
    info(title = "atna", description = "Self-hosted API keys: manage keys and verify `Authorization: Bearer <key>`."),
    paths(auth::whoami, auth::verify, keys::create, keys::list, keys::get, keys::delete, keys::roll, keys::patch,
        keys::usage, audit::list, forward_auth::forward_auth, credentials::status, credentials::revoke, health::live,
        health::ready, health::metrics, leaks::github, leaks::gitlab, leaks::revocable_token_types,
        leaks::revoke_tokens),
    components(schemas(
        dto::Owner, dto::WhoAmI, dto::Key, dto::CreatedKey, dto::KeyList, dto::CreateKey, dto::VerifyRequest,
        dto::VerifyResponse, dto::Health, dto::RateLimitRule, dto::QuotaRule, dto::QuotaRefill, dto::RateLimitStatus,
        dto::QuotaStatus, dto::UsageSeries, dto::UsageBucket, dto::RollKey, dto::RolledKey, dto::KeyMergePatch,
        crate::audit::AuditEventJson, crate::audit::AuditActor, crate::audit::AuditList, credentials::CredentialsRequest,
        credentials::CredentialStatus, credentials::CredentialStatuses, Problem, leaks::GithubToken, leaks::GitlabToken,
        leaks::RevokeToken, leaks::Feedback, leaks::RevocableTokenTypes
    )),
    modifiers(&BearerAuth),
    tags((name = "keys", description = "Manage your API keys (needs the `keys:manage` scope)"),
         (name = "audit", description = "Your audit trail (needs the `keys:manage` scope)"),
         (name = "auth", description = "Check API keys"),
         (name = "gateway", description = "Forward-auth for nginx, Caddy, Traefik and Envoy (every method is accepted; `/v1/forward-auth/{rest}` too)"),
         (name = "leaks", description = "Leaked keys: reports from secret scanners (GitHub, GitLab) that found keys in public, and endpoints for whoever holds a key (found in a repository, a log, a paste) to ask whether it is live and revoke it. No `Authorization`: the whole keys are in the body"),
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
