//! Admin → Users: create users, disable them (their sessions end and their keys stop working at once), re-enable.
//! Only administrators get here; anyone else gets a 404.

use crate::audit::{self, Origin};
use askama::Template;
use atna_domain::{Email, Password, UserId};
use atna_store::{audit_kind, Actor};
use atna_store::{NewUser, StoreError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{hash_password, CsrfOnly};
use super::pages::{render, Chrome, DashError, DashForm, DashQuery, DashResult};
use super::session::{Admin, SignedIn};
use super::timefmt::absolute;
use super::DashState;
use crate::clock;

struct UserRow {
    id: i64,
    email: String,
    is_admin: bool,
    disabled: bool,
    created: String,
    is_me: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    c: Chrome,
    users: Vec<UserRow>,
    notice: String,
    error: String,
    email: String,
    admin: bool,
}

#[derive(Deserialize)]
pub struct Done {
    #[serde(default)]
    done: String,
    /// After a bulk revocation: how many keys it took.
    #[serde(default)]
    revoked: Option<u64>,
}

async fn page(
    s: &DashState,
    si: &SignedIn,
    status: StatusCode,
    notice: String,
    error: String,
    email: String,
    admin: bool,
) -> DashResult {
    let users = s
        .app
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| UserRow {
            id: u.id.0,
            email: u.email.to_string(),
            is_admin: u.is_admin,
            disabled: u.disabled,
            created: absolute(u.created_at),
            is_me: u.id == si.user.id,
        })
        .collect();
    let p = UsersPage { c: Chrome::signed_in(si, "users", "Users"), users, notice, error, email, admin };
    Ok(render(status, &p))
}

/// `GET /admin/users`.
pub async fn list(State(s): State<DashState>, Admin(si): Admin, DashQuery(q): DashQuery<Done>) -> DashResult {
    let notice = match q.done.as_str() {
        "created" => "User created. They can sign in now.",
        "disabled" => "User disabled: their sessions ended and their API keys stopped working.",
        "enabled" => "User re-enabled: their API keys work again.",
        _ => "",
    };
    let notice = match q.revoked {
        Some(n) => {
            format!("Revoked {n} {}: they stopped working on every server.", if n == 1 { "key" } else { "keys" })
        }
        None => notice.to_owned(),
    };
    page(&s, &si, StatusCode::OK, notice, String::new(), String::new(), false).await
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    admin: Option<String>,
}

/// `POST /admin/users`: creates a user.
pub async fn create(
    State(s): State<DashState>,
    Admin(si): Admin,
    origin: Origin,
    DashForm(f): DashForm<CreateForm>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    let admin = f.admin.is_some();
    let email_typed = f.email.trim().to_owned();
    let email = match Email::parse(&f.email) {
        Ok(e) => e,
        Err(e) => {
            return page(&s, &si, StatusCode::UNPROCESSABLE_ENTITY, String::new(), e.to_string(), email_typed, admin)
                .await
        }
    };
    let password = match Password::new(f.password) {
        Ok(p) => p,
        Err(e) => {
            return page(&s, &si, StatusCode::UNPROCESSABLE_ENTITY, String::new(), e.to_string(), email_typed, admin)
                .await
        }
    };
    let password_hash = hash_password(&s, password).await?;
    match s.app.store.create_user(NewUser { email, password_hash, is_admin: admin, created_at: clock::now() }).await {
        Ok(u) => {
            let detail = Some(serde_json::json!({ "email": u.email.as_str(), "admin": u.is_admin }));
            audit::record(&*s.app.store, u.id, origin.who(Actor::User(si.user.id)), audit_kind::USER_CREATED, detail)
                .await?;
            Ok(Redirect::to("/admin/users?done=created").into_response())
        }
        Err(StoreError::Conflict(_)) => {
            let msg = "A user with this e-mail address already exists.".to_owned();
            page(&s, &si, StatusCode::CONFLICT, String::new(), msg, email_typed, admin).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn set_disabled(s: &DashState, si: &SignedIn, origin: &Origin, id: &str, disabled: bool) -> DashResult<()> {
    let id: i64 = id.parse().map_err(|_| DashError::not_found())?;
    if disabled && si.user.id.0 == id {
        return Err(DashError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "You cannot disable yourself",
            "Ask another administrator, or use `atna user disable` on the server.",
        ));
    }
    let uid = UserId(id);
    if !s.app.store.set_user_disabled(uid, disabled, clock::now()).await? {
        return Err(DashError::not_found());
    }
    if disabled {
        // The store ends their sessions and publishes the change; this node forgets their keys right now.
        s.app.store.delete_user_sessions(uid).await?;
    }
    s.app.verifier.evict_all();
    let kind = if disabled { audit_kind::USER_DISABLED } else { audit_kind::USER_ENABLED };
    audit::record(&*s.app.store, uid, origin.who(Actor::User(si.user.id)), kind, None).await?;
    Ok(())
}

/// `POST /admin/users/{id}/disable`.
pub async fn disable(
    State(s): State<DashState>,
    Admin(si): Admin,
    origin: Origin,
    Path(id): Path<String>,
    DashForm(f): DashForm<CsrfOnly>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    set_disabled(&s, &si, &origin, &id, true).await?;
    Ok(Redirect::to("/admin/users?done=disabled").into_response())
}

/// `POST /admin/users/{id}/enable`.
pub async fn enable(
    State(s): State<DashState>,
    Admin(si): Admin,
    origin: Origin,
    Path(id): Path<String>,
    DashForm(f): DashForm<CsrfOnly>,
) -> Response {
    match si.check_csrf(&f.csrf) {
        Err(e) => e.into_response(),
        Ok(()) => match set_disabled(&s, &si, &origin, &id, false).await {
            Ok(()) => Redirect::to("/admin/users?done=enabled").into_response(),
            Err(e) => e.into_response(),
        },
    }
}
