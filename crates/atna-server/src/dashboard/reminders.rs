//! Reminders in the dashboard: the list of what was sent and when (each linking to the key's Roll or Delete page),
//! setting a webhook (the user's on the Account page, the installation's on the admin Policy page; the signing
//! secret is shown once), and the installation's policy, read-only, for administrators.

use askama::Template;
use atna_domain::UserId;
use atna_store::{Channel, Delivery, Webhook};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use super::auth::CsrfOnly;
use super::pages::{render, Chrome, DashError, DashForm, DashQuery, DashResult};
use super::session::{Admin, SignedIn};
use super::timefmt::{absolute, ago};
use super::DashState;
use crate::clock;
use crate::notify::{ssrf, webhook};

/// Reminders shown.
const SHOWN: i64 = 100;

struct ReminderRow {
    sentence: String,
    key_id: String,
    noticed: String,
    noticed_abs: String,
    /// "sent 2 hours ago", or "waiting for your daily digest".
    sent: String,
    /// What happened to each channel: "e-mail delivered 12:00", "your webhook: HTTP 500, retrying (3 attempts)".
    channels: Vec<String>,
    /// The key can still be acted on (not deleted): link its Roll and Delete pages.
    live: bool,
}

#[derive(Template)]
#[template(path = "reminders.html")]
struct RemindersPage {
    c: Chrome,
    rows: Vec<ReminderRow>,
    email: bool,
    webhook: String,
}

fn channel_line(d: &Delivery, now: i64) -> String {
    let what = match (d.channel, d.user) {
        (Channel::Email, _) => "E-mail".to_owned(),
        (Channel::Webhook, Some(_)) => "Your webhook".to_owned(),
        (Channel::Webhook, None) => "The installation's webhook".to_owned(),
    };
    let status = match d.last_status {
        Some(s) => format!(
            " ({}{s}, {} ms)",
            if d.channel == Channel::Webhook { "HTTP " } else { "SMTP " },
            d.last_duration_ms.unwrap_or(0)
        ),
        None => String::new(),
    };
    match (d.delivered_at, d.failed_at) {
        (Some(t), _) => format!("{what}: delivered {}{status}", ago(t, now)),
        (None, Some(_)) => format!(
            "{what}: not delivered, gave up after {} attempts{status}: {}",
            d.attempts,
            d.last_error.as_deref().unwrap_or("unknown error")
        ),
        (None, None) if d.attempts == 0 => format!("{what}: sending"),
        (None, None) => format!(
            "{what}: failed {} times so far{status}, next try {}",
            d.attempts,
            super::timefmt::relative(d.next_attempt_at, now)
        ),
    }
}

/// `GET /reminders`: what atna reminded this person of, and how each reminder went out.
pub async fn list(State(s): State<DashState>, si: SignedIn) -> DashResult {
    let now = clock::now();
    let reminders = s.app.store.reminders(si.user.id, SHOWN).await?;
    // Roll and Delete only for keys that still exist now (a reminder may outlive its key: a leak revoked it, the
    // owner deleted it since).
    let ids: Vec<_> = reminders.iter().map(|(r, _)| r.key_id).collect();
    let live: std::collections::HashSet<_> = if ids.is_empty() {
        Default::default()
    } else {
        s.app
            .store
            .auth_records(&ids)
            .await?
            .into_iter()
            .filter(|a| a.key.owner == si.user.id && a.key.status != atna_domain::KeyStatus::Revoked)
            .map(|a| a.key.id)
            .collect()
    };
    let rows = reminders
        .into_iter()
        .map(|(r, deliveries)| ReminderRow {
            sentence: r.kind.sentence(&r.key_name),
            key_id: r.key_id.to_string(),
            noticed: ago(r.created_at, now),
            noticed_abs: absolute(r.created_at),
            sent: match r.sent_at {
                Some(t) => format!("sent {}", ago(t, now)),
                None => "waiting for your daily digest".to_owned(),
            },
            channels: deliveries.iter().map(|d| channel_line(d, now)).collect(),
            live: r.kind.key_still_live() && live.contains(&r.key_id),
        })
        .collect();
    let webhook = s.app.store.webhook(Some(si.user.id)).await?.map(|w| w.url).unwrap_or_default();
    let email = s.app.settings.notify.smtp.is_some();
    let page = RemindersPage { c: Chrome::signed_in(&si, "reminders", "Reminders"), rows, email, webhook };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "webhook_secret.html")]
struct SecretPage {
    c: Chrome,
    url: String,
    secret: String,
    back: &'static str,
}

#[derive(Deserialize)]
pub struct WebhookForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    url: String,
}

/// Checks a webhook URL as the sender will: an http(s) URL whose host resolves to addresses atna may send to.
async fn checked_url(s: &DashState, url: &str) -> Result<String, String> {
    let parsed = ssrf::parse(url).map_err(|e| e.to_string())?;
    ssrf::resolve(parsed.as_str(), s.app.settings.notify.webhooks_allow_private_addresses)
        .await
        .map_err(|e| e.to_string())?;
    Ok(parsed.to_string())
}

/// Sets the webhook of `owner` (a user, or the installation) to the form's URL with a new secret, shown once.
async fn set(s: &DashState, si: &SignedIn, owner: Option<UserId>, f: WebhookForm, back: &'static str) -> DashResult {
    si.check_csrf(&f.csrf)?;
    let url = checked_url(s, &f.url)
        .await
        .map_err(|e| DashError::new(StatusCode::UNPROCESSABLE_ENTITY, "This webhook URL cannot be used", e))?;
    let secret = webhook::new_secret();
    let w = Webhook { owner, url: url.clone(), secret: secret.clone(), created_at: clock::now() };
    s.app.store.set_webhook(&w).await?;
    let page = SecretPage { c: Chrome::signed_in(si, "account", "Webhook signing secret"), url, secret, back };
    let mut res = render(StatusCode::OK, &page);
    res.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `POST /account/webhook`: sets this person's webhook.
pub async fn set_mine(State(s): State<DashState>, si: SignedIn, DashForm(f): DashForm<WebhookForm>) -> DashResult {
    let owner = Some(si.user.id);
    set(&s, &si, owner, f, "/account").await
}

/// `POST /account/webhook/delete`.
pub async fn delete_mine(State(s): State<DashState>, si: SignedIn, DashForm(f): DashForm<CsrfOnly>) -> DashResult {
    si.check_csrf(&f.csrf)?;
    s.app.store.delete_webhook(Some(si.user.id)).await?;
    Ok(Redirect::to("/account?done=webhook_removed").into_response())
}

/// `POST /admin/webhook`: sets the installation's webhook (every user's reminders go to it too).
pub async fn set_installation(
    State(s): State<DashState>,
    Admin(si): Admin,
    DashForm(f): DashForm<WebhookForm>,
) -> DashResult {
    set(&s, &si, None, f, "/admin/policy").await
}

/// `POST /admin/webhook/delete`.
pub async fn delete_installation(
    State(s): State<DashState>,
    Admin(si): Admin,
    DashForm(f): DashForm<CsrfOnly>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    s.app.store.delete_webhook(None).await?;
    Ok(Redirect::to("/admin/policy?done=webhook_removed").into_response())
}

#[derive(Template)]
#[template(path = "policy.html")]
struct PolicyPage {
    c: Chrome,
    rows: Vec<(&'static str, String)>,
    webhook: String,
    notice: &'static str,
}

#[derive(Deserialize)]
pub struct Done {
    #[serde(default)]
    done: String,
}

/// `GET /admin/policy`: the installation's policy (read-only: it is set in the configuration file) and its webhook.
pub async fn policy(State(s): State<DashState>, Admin(si): Admin, DashQuery(q): DashQuery<Done>) -> DashResult {
    let p = &s.app.settings.policy;
    let n = &s.app.settings.notify;
    let days = |d: Option<i64>, none: &str| d.map_or_else(|| none.to_owned(), |d| format!("{d} days"));
    let rows = vec![
        (
            "Default key lifetime",
            days(p.default_lifetime_days, "none: keys never expire unless their creator picks a date"),
        ),
        ("Maximum key lifetime", days(p.max_lifetime_days, "none")),
        ("Rotation due after", format!("{} days", p.rotation_due_days)),
        ("Unused after", format!("{} days", p.unused_days)),
        ("Disable keys unused for", days(p.auto_disable_unused_days, "off")),
        (
            "Reminder e-mails",
            n.smtp.as_ref().map_or_else(
                || "off (no [smtp] server configured)".to_owned(),
                |m| format!("through {}:{}", m.host, m.port),
            ),
        ),
        (
            "Webhooks to private addresses",
            if n.webhooks_allow_private_addresses { "allowed" } else { "refused" }.to_owned(),
        ),
    ];
    let webhook = s.app.store.webhook(None).await?.map(|w| w.url).unwrap_or_default();
    let notice = if q.done == "webhook_removed" { "The installation's webhook was removed." } else { "" };
    let page = PolicyPage { c: Chrome::signed_in(&si, "policy", "Policy"), rows, webhook, notice };
    Ok(render(StatusCode::OK, &page))
}
