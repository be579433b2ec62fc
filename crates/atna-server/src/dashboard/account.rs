//! The Account page: change password (needs the current one; signs out other sessions) and sign out everywhere.

use crate::audit::{self, Origin};
use atna_store::{audit_kind, Actor};
use std::time::Duration;

use askama::Template;
use atna_domain::Password;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use super::auth::{hash_password, verify_password, CsrfOnly};
use super::pages::{render, Chrome, DashForm, DashQuery, DashResult};
use super::session::{self, set_cookie, SignedIn};
use super::slots::Lane;
use super::throttle;
use super::timefmt::absolute;
use super::DashState;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    c: Chrome,
    email: String,
    role: &'static str,
    since: String,
    notice: String,
    error: String,
    /// The webhook URL reminders go to; empty for none.
    webhook: String,
}

#[derive(Deserialize)]
pub struct Done {
    #[serde(default)]
    done: String,
}

fn page_for(si: &SignedIn, notice: String, error: String) -> AccountPage {
    AccountPage {
        c: Chrome::signed_in(si, "account", "Account"),
        email: si.user.email.to_string(),
        role: if si.user.is_admin { "Administrator" } else { "User" },
        since: absolute(si.user.created_at),
        notice,
        error,
        webhook: String::new(),
    }
}

/// `GET /account`.
pub async fn page(State(s): State<DashState>, si: SignedIn, DashQuery(q): DashQuery<Done>) -> DashResult {
    let notice = match q.done.as_str() {
        "password" => "Your password was changed. Every other session was signed out.".to_owned(),
        "webhook_removed" => "Your webhook was removed.".to_owned(),
        _ => String::new(),
    };
    let mut p = page_for(&si, notice, String::new());
    p.webhook = s.app.store.webhook(Some(si.user.id)).await?.map(|w| w.url).unwrap_or_default();
    Ok(render(StatusCode::OK, &p))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /account/password`: checks the current password, stores the new one, ends every session and starts a new
/// one for this browser.
pub async fn change_password(
    State(s): State<DashState>,
    si: SignedIn,
    origin: Origin,
    DashForm(f): DashForm<PasswordForm>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    let refuse =
        |msg: &str| Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page_for(&si, String::new(), msg.to_owned())));
    let wait = |msg: String, wait: Duration| {
        let mut res = render(StatusCode::TOO_MANY_REQUESTS, &page_for(&si, String::new(), msg));
        res.headers_mut().insert(header::RETRY_AFTER, throttle::retry_after(wait));
        Ok(res)
    };
    // The current password is a password oracle: one check at a time per user (so one person cannot take the
    // node's few argon2 slots that every sign-in waits for), counted in the shared throttle before it runs.
    let Some(_checking) = throttle::Checking::start(si.user.id) else {
        let msg = "Another password change of yours is being checked; try again in a moment.".to_owned();
        return wait(msg, Duration::from_secs(1));
    };
    if let Err(w) = throttle::begin_password_check(&*s.app.store, si.user.id).await? {
        return wait(format!("Too many wrong current passwords; try again in {}.", throttle::wait_text(w)), w);
    }
    let current = Password::attempt(f.current.clone());
    if !verify_password(&s, Lane::Known, Some(si.user.password_hash.clone()), current).await {
        return refuse("Your current password is not right.");
    }
    throttle::password_check_succeeded(&*s.app.store, si.user.id).await?;
    if f.new != f.confirm {
        return refuse("The two new passwords differ.");
    }
    let new = match Password::new(f.new.clone()) {
        Ok(p) => p,
        Err(e) => return refuse(&e.to_string()),
    };
    let hash = hash_password(&s, new).await?;
    s.app.store.set_password(si.user.id, &hash).await?;
    let ended = s.app.store.delete_user_sessions(si.user.id).await?;
    let who = origin.who(Actor::User(si.user.id));
    let detail = Some(serde_json::json!({ "sessions_ended": ended }));
    audit::record(&*s.app.store, si.user.id, who, audit_kind::PASSWORD_CHANGED, detail).await?;
    let set = session::start(&s, si.user.id, si.secure).await?;
    let mut res = Redirect::to("/account?done=password").into_response();
    res.headers_mut().append(header::SET_COOKIE, set);
    Ok(res)
}

/// `POST /account/sessions`: signs out every session of this person, this one included.
pub async fn sign_out_everywhere(
    State(s): State<DashState>,
    si: SignedIn,
    origin: Origin,
    DashForm(f): DashForm<CsrfOnly>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    let ended = s.app.store.delete_user_sessions(si.user.id).await?;
    let detail = Some(serde_json::json!({ "how": "everywhere", "sessions_ended": ended }));
    audit::record(&*s.app.store, si.user.id, origin.who(Actor::User(si.user.id)), audit_kind::SESSION_ENDED, detail)
        .await?;
    let mut res = Redirect::to("/login?signed_out=all").into_response();
    res.headers_mut().append(header::SET_COOKIE, set_cookie(session::COOKIE, "", None, si.secure));
    Ok(res)
}
