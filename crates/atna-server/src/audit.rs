//! The audit trail as the HTTP faces see it: where a request came from (for `Who`), and events as JSON.

use atna_store::{Actor, AuditEvent, Who, NO_USER};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::to_datetime;
use crate::dashboard::DashState;
use crate::AppState;

/// Where a request came from: the client's address (as [`crate::extract::client_ip`] finds it) and its user agent.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
}

impl Origin {
    fn of(parts: &Parts, settings: &crate::Settings) -> Self {
        let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Origin { ip: crate::extract::client_ip(parts, settings), user_agent }
    }

    /// The audit trail's `Who` for `actor` acting from here.
    pub fn who(&self, actor: Actor) -> Who {
        Who::new(actor, self.ip.map(|ip| ip.to_string()), self.user_agent.as_deref())
    }
}

impl FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Origin::of(parts, &s.settings))
    }
}

impl FromRequestParts<DashState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &DashState) -> Result<Self, Self::Rejection> {
        Ok(Origin::of(parts, &s.app.settings))
    }
}

/// Who acted, in an audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditActor {
    /// `user` (in the dashboard), `key` (an API key through the REST API), `operator` (the command line) or
    /// `anonymous` (someone not signed in: a failed sign-in).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The user who acted (in person or through their key); absent for the operator.
    pub user_id: Option<i64>,
    /// The Credential ID of the key that acted.
    pub key_id: Option<String>,
}

/// One event of the audit trail. Never holds a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventJson {
    /// Increases with every event recorded.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `key.created`, `key.rolled`, `key.edited`, `key.disabled`, `key.enabled`, `key.deleted`, `keys.revoked`,
    /// `session.signed_in`, `session.sign_in_failed`, `session.ended`, `password.changed`, `user.created`,
    /// `user.disabled`, `user.enabled` or `setup.completed`.
    pub kind: String,
    pub actor: AuditActor,
    /// The user the event is about (whose key or session); absent when none (a failed sign-in for an unknown address).
    pub user_id: Option<i64>,
    /// The key the event is about, where one applies.
    pub key_id: Option<String>,
    /// That key's name at the time.
    pub key_name: Option<String>,
    /// The client's address; absent for the command line.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// What else matters (what changed, the successor of a rolled key, how many keys a bulk revocation took).
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

impl AuditEventJson {
    pub fn new(e: &AuditEvent) -> Self {
        let kind = match e.actor {
            Actor::User(_) => "user",
            Actor::Key { .. } => "key",
            // The command line has no address; someone who is not signed in (a failed sign-in) has one.
            Actor::Operator if e.ip.is_some() => "anonymous",
            Actor::Operator => "operator",
        };
        Self {
            id: e.id,
            at: to_datetime(e.at),
            kind: e.action.clone(),
            actor: AuditActor {
                kind,
                user_id: e.actor.user().map(|u| u.0),
                key_id: e.actor.key().map(|k| k.to_string()),
            },
            user_id: (e.owner != NO_USER).then_some(e.owner.0),
            key_id: e.key_id.map(|k| k.to_string()),
            key_name: e.key_name.clone(),
            ip: e.ip.clone(),
            user_agent: e.user_agent.clone(),
            detail: e.detail.as_deref().and_then(|d| serde_json::from_str(d).ok()),
        }
    }
}

/// A page of audit events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub data: Vec<AuditEventJson>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The cursor after the last event of a page: `<at>.<id>`.
pub fn cursor_after(e: &AuditEvent) -> String {
    format!("{}.{}", e.at, e.id)
}

/// Reads a cursor back.
pub fn parse_cursor(c: &str) -> Option<(i64, i64)> {
    let (t, id) = c.split_once('.')?;
    Some((t.parse().ok()?, id.parse().ok()?))
}

/// Appends an event that no other change carries (sign-ins, sessions, passwords, users) at the current time.
pub async fn record(
    store: &dyn atna_store::Store,
    owner: atna_domain::UserId,
    who: Who,
    action: &'static str,
    detail: Option<serde_json::Value>,
) -> Result<(), atna_store::StoreError> {
    let event = atna_store::NewAuditEvent {
        at: crate::clock::now(),
        owner,
        who,
        action,
        key_id: None,
        key_name: None,
        detail: detail.map(|d| d.to_string()),
    };
    store.append_audit(&event).await
}
