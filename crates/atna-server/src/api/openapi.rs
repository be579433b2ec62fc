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
    modifiers(&BearerAuth, &HeadRefusals),
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

/// The answers any operation may get before atna reads the request: a head hyper refuses to parse
/// (`serve::bare`), added to every operation that does not document that status already.
struct HeadRefusals;

impl Modify for HeadRefusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let refusals = [
            ("400", "The request is not valid HTTP/1.1 (`malformed_request`)"),
            ("414", "The URL is longer than 65,534 bytes (`uri_too_long`)"),
            (
                "431",
                "The request head is too large: more than 100 header fields, or over 400 KB with its URL \
                 (`request_header_fields_too_large`)",
            ),
        ];
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in operations.into_iter().flatten() {
                for (status, description) in refusals {
                    op.responses.responses.entry(status.to_owned()).or_insert_with(|| {
                        let problem = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
                        ResponseBuilder::new()
                            .description(description)
                            .content("application/problem+json", problem)
                            .build()
                            .into()
                    });
                }
            }
        }
    }
}

/// Serves the document.
pub async fn json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
