//! Signing in and out, and the first-run setup that creates the first administrator.

use askama::Template;
use atna_domain::{Email, Password, PasswordHash};
use atna_store::{NewUser, User};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::csrf::{tokens_match, LOGIN_COOKIE};
use super::pages::{render, Chrome, DashError, DashForm, DashQuery, DashResult};
use super::session::{self, cookie, set_cookie, ClientAddr, Https, SignedIn};
use super::slots::Lane;
use super::{device, random_token, throttle, DashState};
use crate::audit::{self, Origin};
use crate::clock;
use atna_store::{audit_kind, Actor, NO_USER};

/// How long the pre-session CSRF cookie lives.
const LOGIN_CSRF_AGE: std::time::Duration = std::time::Duration::from_secs(2 * 60 * 60);

/// Runs argon2 off the async threads, in one of the node's slots (waiting in `lane`'s queue): it takes tens of
/// milliseconds of CPU on purpose. Without a hash (unknown account) it checks against a dummy one, so the answer
/// takes as long and is always false.
pub async fn verify_password(s: &DashState, lane: Lane, hash: Option<PasswordHash>, attempt: Password) -> bool {
    let slot = s.slots.acquire(lane).await;
    // The slot goes with the work: a request that times out meanwhile stops waiting, but its argon2 run goes on to the
    // end on its blocking thread, and must count against the slots until then.
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        match hash {
            Some(h) => h.verify(&attempt),
            None => {
                let _ = PasswordHash::dummy().verify(&attempt);
                false
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// Hashes a new password off the async threads. Only people the node knows do (a signed-in user, the holder of a
/// valid setup link), so it waits in the first queue.
pub async fn hash_password(s: &DashState, p: Password) -> DashResult<PasswordHash> {
    let slot = s.slots.acquire(Lane::Known).await;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        PasswordHash::hash(&p)
    })
    .await
    .map_err(|_| DashError::internal())
}

/// The pre-session CSRF token: the one in the browser's cookie, or a new one (and the cookie to set).
fn login_csrf(headers: &HeaderMap, secure: bool) -> (String, Option<HeaderValue>) {
    match cookie(headers, LOGIN_COOKIE).filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())) {
        Some(v) => (v.to_owned(), None),
        None => {
            let t = random_token();
            let set = set_cookie(LOGIN_COOKIE, &t, Some(LOGIN_CSRF_AGE), secure);
            (t, Some(set))
        }
    }
}

fn check_login_csrf(headers: &HeaderMap, submitted: &str) -> DashResult<()> {
    match cookie(headers, LOGIN_COOKIE) {
        Some(expected) if tokens_match(expected, submitted) => Ok(()),
        _ => Err(DashError::csrf()),
    }
}

fn with_cookie(mut res: Response, set: Option<HeaderValue>) -> Response {
    if let Some(v) = set {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    c: Chrome,
    form_csrf: String,
    email: String,
    error: String,
    notice: String,
    setup_pending: bool,
}

#[derive(Deserialize)]
pub struct LoginNotice {
    signed_out: Option<String>,
}

fn notice_text(n: Option<&str>) -> String {
    match n {
        Some("all") => "You are signed out on every device.".into(),
        Some("password") => "Your password was changed. Sign in with the new one.".into(),
        Some(_) => "You are signed out.".into(),
        None => String::new(),
    }
}

/// While no user exists, every node has printed (and recorded) a setup link: the sign-in page points at it.
async fn setup_pending(s: &DashState) -> bool {
    s.app.store.count_users().await.is_ok_and(|n| n == 0)
}

/// `GET /login`.
pub async fn login_page(
    State(s): State<DashState>,
    si: Option<SignedIn>,
    Https(secure): Https,
    headers: HeaderMap,
    DashQuery(q): DashQuery<LoginNotice>,
) -> Response {
    if si.is_some() {
        return Redirect::to("/keys").into_response();
    }
    let (form_csrf, set) = login_csrf(&headers, secure);
    let page = LoginPage {
        c: Chrome::anonymous("Sign in"),
        form_csrf,
        email: String::new(),
        error: String::new(),
        notice: notice_text(q.signed_out.as_deref()),
        setup_pending: setup_pending(&s).await,
    };
    with_cookie(render(StatusCode::OK, &page), set)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// `POST /login`.
pub async fn login(
    State(s): State<DashState>,
    ClientAddr(ip): ClientAddr,
    Https(secure): Https,
    origin: Origin,
    headers: HeaderMap,
    DashForm(f): DashForm<LoginForm>,
) -> DashResult {
    check_login_csrf(&headers, &f.csrf)?;
    let again = |status: StatusCode, error: String| {
        let page = LoginPage {
            c: Chrome::anonymous("Sign in"),
            form_csrf: f.csrf.clone(),
            email: f.email.trim().to_owned(),
            error,
            notice: String::new(),
            setup_pending: false,
        };
        Ok(render(status, &page))
    };
    // Anonymous sign-ins wait for their turn before they touch the database (see `slots.rs`): a browser that presents
    // no device cookie is one, and so is one whose cookie turns out not to be the account's.
    let presented = device::presented(&headers);
    let early = match presented {
        None => Some(s.slots.enter_anonymous().await),
        Some(_) => None,
    };
    // The throttling key: the address as typed, normalised like `Email`, and bounded (no address is longer).
    let account: String = f.email.trim().to_lowercase().chars().take(254).collect();
    let user: Option<User> = match Email::parse(&f.email) {
        Ok(email) => s.app.store.user_by_email(&email).await?,
        Err(_) => None,
    };
    // A browser holding this account's device cookie is counted on its own (see `throttle.rs`).
    let device = match &user {
        Some(u) => device::belongs_to(&*s.app.store, presented, u.id).await?,
        None => None,
    };
    // Held until the answer.
    let _anonymous = match (early, &device) {
        (Some(a), _) => Some(a),
        (None, Some(_)) => None,
        (None, None) => Some(s.slots.enter_anonymous().await),
    };
    let attempt = throttle::SignIn::new(&account, ip, device.as_ref());
    if let Err(wait) = attempt.begin(&*s.app.store).await? {
        let mut res = again(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed sign-ins; try again in {}.", throttle::wait_text(wait)),
        )?;
        res.headers_mut().insert(header::RETRY_AFTER, throttle::retry_after(wait));
        return Ok(res);
    }
    // Always run argon2, against a dummy hash for unknown accounts, so timing does not tell who has an account.
    // A browser holding the account's device cookie waits in the first queue, ahead of any flood of strangers.
    let lane = if device.is_some() { Lane::Known } else { Lane::Anonymous };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = verify_password(&s, lane, hash, Password::attempt(f.password.clone())).await;
    let user = match user {
        Some(u) if ok => u,
        // The attempt was already counted as a failure by `begin`.
        other => {
            // Nobody signed in: no actor, but the address and agent. An unknown account's address is kept only when it
            // is an e-mail address (a password typed into the wrong box must not land in the trail).
            let owner = other.as_ref().map_or(NO_USER, |u| u.id);
            let detail = match (&other, Email::parse(&f.email)) {
                (None, Ok(e)) => Some(serde_json::json!({ "email": e.as_str(), "reason": "unknown_account" })),
                (None, Err(_)) => Some(serde_json::json!({ "reason": "unknown_account" })),
                (Some(_), _) => Some(serde_json::json!({ "reason": "wrong_password" })),
            };
            audit::record(&*s.app.store, owner, origin.who(Actor::Operator), audit_kind::SIGN_IN_FAILED, detail)
                .await?;
            return again(StatusCode::UNAUTHORIZED, "Wrong e-mail address or password.".into());
        }
    };
    if user.disabled {
        let detail = Some(serde_json::json!({ "reason": "account_disabled" }));
        audit::record(&*s.app.store, user.id, origin.who(Actor::Operator), audit_kind::SIGN_IN_FAILED, detail).await?;
        return again(StatusCode::FORBIDDEN, "This account is disabled. Ask an administrator to re-enable it.".into());
    }
    attempt.succeed(&*s.app.store).await?;
    let set = session::start(&s, user.id, secure).await?;
    audit::record(&*s.app.store, user.id, origin.who(Actor::User(user.id)), audit_kind::SIGNED_IN, None).await?;
    let mut res = Redirect::to("/keys").into_response();
    res.headers_mut().append(header::SET_COOKIE, set);
    res.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", None, secure));
    if device.is_none() {
        res.headers_mut().append(header::SET_COOKIE, device::issue(&*s.app.store, user.id, secure).await?);
    }
    Ok(res)
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /logout`: ends the session in the store, not just in the browser.
pub async fn logout(
    State(s): State<DashState>,
    si: SignedIn,
    origin: Origin,
    DashForm(f): DashForm<CsrfOnly>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    s.app.store.delete_session(&si.token_hash).await?;
    let detail = Some(serde_json::json!({ "how": "logged_out" }));
    audit::record(&*s.app.store, si.user.id, origin.who(Actor::User(si.user.id)), audit_kind::SESSION_ENDED, detail)
        .await?;
    let mut res = Redirect::to("/login?signed_out=1").into_response();
    res.headers_mut().append(header::SET_COOKIE, set_cookie(session::COOKIE, "", None, si.secure));
    Ok(res)
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    c: Chrome,
    form_csrf: String,
    token: String,
    email: String,
    error: String,
}

#[derive(Deserialize)]
pub struct SetupQuery {
    #[serde(default)]
    token: String,
}

/// Whether `token` is a setup token some node printed (and recorded) and no user exists yet.
async fn setup_allowed(s: &DashState, token: &str) -> DashResult<()> {
    let matches = !token.is_empty() && s.app.store.setup_open(&session::hash_token(token), clock::now()).await?;
    if s.app.store.count_users().await? > 0 {
        return Err(DashError::new(
            StatusCode::NOT_FOUND,
            "Setup is finished",
            "An account already exists, so this setup link no longer works. Sign in instead.",
        ));
    }
    if !matches {
        return Err(DashError::new(
            StatusCode::FORBIDDEN,
            "This setup link is not valid",
            "Setup links work for an hour, until their node restarts. Use the link `atna serve` printed at its \
             latest start; if it is older than an hour, restart the server to get a new one.",
        ));
    }
    Ok(())
}

/// `GET /setup?token=…`: the first-run form that creates the first administrator.
pub async fn setup_page(
    State(s): State<DashState>,
    Https(secure): Https,
    headers: HeaderMap,
    DashQuery(q): DashQuery<SetupQuery>,
) -> DashResult {
    setup_allowed(&s, &q.token).await?;
    let (form_csrf, set) = login_csrf(&headers, secure);
    let page = SetupPage {
        c: Chrome::anonymous("Set up atna"),
        form_csrf,
        token: q.token,
        email: String::new(),
        error: String::new(),
    };
    Ok(with_cookie(render(StatusCode::OK, &page), set))
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /setup`: creates the first administrator, signs them in, and retires the setup token.
pub async fn setup(
    State(s): State<DashState>,
    Https(secure): Https,
    origin: Origin,
    headers: HeaderMap,
    DashForm(f): DashForm<SetupForm>,
) -> DashResult {
    check_login_csrf(&headers, &f.csrf)?;
    setup_allowed(&s, &f.token).await?;
    let again = |error: String| {
        let page = SetupPage {
            c: Chrome::anonymous("Set up atna"),
            form_csrf: f.csrf.clone(),
            token: f.token.clone(),
            email: f.email.trim().to_owned(),
            error,
        };
        Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
    };
    let email = match Email::parse(&f.email) {
        Ok(e) => e,
        Err(e) => return again(e.to_string()),
    };
    if f.password != f.confirm {
        return again("The two passwords differ.".into());
    }
    let password = match Password::new(f.password.clone()) {
        Ok(p) => p,
        Err(e) => return again(e.to_string()),
    };
    let hash = hash_password(&s, password).await?;
    // Atomic across nodes: two people sending the form at once cannot both become "the first" administrator.
    let first = NewUser { email, password_hash: hash, is_admin: true, created_at: clock::now() };
    let Some(user) = s.app.store.create_first_admin(first, &session::hash_token(&f.token)).await? else {
        // Someone else finished setup meanwhile (or the token went away): say so.
        setup_allowed(&s, &f.token).await?;
        return Err(DashError::new(StatusCode::CONFLICT, "Setup is finished", "Sign in instead."));
    };
    tracing::info!(user = %user.email, "first administrator created through the setup link");
    let detail = Some(serde_json::json!({ "email": user.email.as_str() }));
    audit::record(&*s.app.store, user.id, origin.who(Actor::User(user.id)), audit_kind::SETUP_COMPLETED, detail)
        .await?;
    let set = session::start(&s, user.id, secure).await?;
    let mut res = Redirect::to("/keys").into_response();
    res.headers_mut().append(header::SET_COOKIE, set);
    res.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", None, secure));
    Ok(res)
}
