//! ⋮ More Options on a key: "Roll key…" (a new key replaces it; the old one keeps working for the overlap), Edit,
//! Disable and Enable. The changes themselves live in `crate::lifecycle`, shared with the API and the CLI.

use askama::Template;
use atna_domain::scope::MANAGE_KEYS;
use atna_domain::{ApiKeySecret, CredentialId};
use atna_store::{Actor, KeyRecord};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::keys::{allowlist_entries, already_created, no_store, own_key, whoami_url, CreatedPage, LimitFields};
use super::pages::{render, Chrome, DashError, DashForm, DashResult};
use super::session::{Forwarded, SignedIn};
use super::timefmt::{absolute, relative};
use super::{random_token, DashState};
use crate::audit::Origin;
use crate::clock;
use crate::lifecycle::{self, KeyChanges, LifecycleError, RollSpec};

#[derive(Template)]
#[template(path = "key_roll.html")]
struct RollPage {
    c: Chrome,
    id: String,
    old_name: String,
    /// The new key's name in UTC; the page's script switches it to the browser's time zone.
    name: String,
    /// The service part the script stamps with the local date and time.
    service: String,
    nonce: String,
    overlap: String,
    error: String,
    /// The last 7 days of allowed calls, as on the delete page: the sentence, the sparkline and the total.
    recent: String,
    spark: String,
    week_total: i64,
}

impl RollPage {
    /// Fills in the key's last 7 days of traffic (allowed calls only: refused attempts are not use).
    async fn with_traffic(mut self, s: &DashState, id: CredentialId) -> DashResult<Self> {
        let now = clock::now();
        let week = super::usage::last_week(s, id, now).await?;
        self.recent = super::usage::recent_use(&week);
        self.week_total = week.iter().sum();
        self.spark = super::usage::Sparkline::new(&week, now).render().map_err(|_| DashError::internal())?;
        Ok(self)
    }
}

/// The overlaps the page offers, in seconds: now, an hour, a day (the default), a week.
fn overlap_secs(v: &str) -> Option<i64> {
    match v {
        "0" => Some(0),
        "3600" => Some(3600),
        "86400" => Some(86_400),
        "604800" => Some(604_800),
        _ => None,
    }
}

fn roll_page(si: &SignedIn, rec: &KeyRecord, nonce: String, name: String, overlap: String, error: String) -> RollPage {
    let rolled = rec.name.rolled(&chrono::Utc::now());
    let service = rolled.get(..rolled.len().saturating_sub("-dd_mm_yyyy-hh_mm".len())).unwrap_or("").to_owned();
    RollPage {
        c: Chrome::signed_in(si, "keys", "Roll API key"),
        id: rec.id.to_string(),
        old_name: rec.name.to_string(),
        name: if name.is_empty() { rolled } else { name },
        service,
        nonce,
        overlap,
        error,
        recent: String::new(),
        spark: String::new(),
        week_total: 0,
    }
}

/// `GET /keys/{id}/roll`: what rolling does, and how long the old key keeps working.
pub async fn roll_form(State(s): State<DashState>, si: SignedIn, Path(id): Path<String>) -> DashResult {
    let rec = own_key(&s, si.user.id, &id).await?;
    if rec.rolled_to.is_some() {
        return Err(already_rolled());
    }
    let page = roll_page(&si, &rec, random_token(), String::new(), "86400".into(), String::new());
    Ok(render(StatusCode::OK, &page.with_traffic(&s, rec.id).await?))
}

fn already_rolled() -> DashError {
    DashError::new(
        StatusCode::CONFLICT,
        "Already rolled",
        "This key was already rolled. Roll its successor instead, or delete this key to end the overlap now.",
    )
}

#[derive(Deserialize)]
pub struct RollForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    overlap: String,
}

/// `POST /keys/{id}/roll`: makes the new key and shows its secret once, exactly like Save & Add.
pub async fn roll(
    State(s): State<DashState>,
    si: SignedIn,
    Forwarded(trusted): Forwarded,
    origin: Origin,
    headers: HeaderMap,
    Path(id): Path<String>,
    DashForm(f): DashForm<RollForm>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    let owner = si.user.id;
    // A form sent again shows the key it made, never its secret.
    if !f.nonce.is_empty() {
        if let Some(done) = s.app.store.key_by_form_nonce(owner, &f.nonce).await? {
            return Ok(already_created(&si, &done));
        }
    }
    let rec = own_key(&s, owner, &id).await?;
    let overlap = overlap_secs(&f.overlap).unwrap_or(lifecycle::DEFAULT_OVERLAP_SECS);
    let nonce = (!f.nonce.is_empty() && f.nonce.len() <= 128).then_some(f.nonce.as_str());
    let spec = RollSpec {
        overlap_secs: overlap,
        name: Some(f.name.trim()).filter(|n| !n.is_empty()),
        by_key: None,
        once: nonce,
        policy: &s.app.settings.policy,
    };
    let url = whoami_url(&si, trusted, &headers);
    let now = clock::now();
    let present = |old: &KeyRecord, new: &KeyRecord, secret: &ApiKeySecret| {
        let mut page = CreatedPage::new(Chrome::signed_in(&si, "keys", "Your new API key"), new, secret, url.clone());
        page.rolled_note = match old.expires_at {
            Some(t) if t <= now => format!("The old key {} stopped working now.", old.name),
            Some(t) => format!(
                "The old key {} keeps working until {} ({}): move your services to this key before then.",
                old.name,
                absolute(t),
                relative(t, now)
            ),
            None => String::new(),
        };
        no_store(render(StatusCode::CREATED, &page))
    };
    let who = origin.who(Actor::User(owner));
    match lifecycle::roll_key(&*s.app.store, Some(&s.app.verifier), Some(owner), &rec.id, who, spec, now, present).await
    {
        Ok((page, old)) => {
            s.app.notifier.enqueue_logged(&old, atna_domain::ReminderKind::Rolled, now).await;
            Ok(page)
        }
        Err(LifecycleError::Store(e)) => Err(e.into()),
        Err(LifecycleError::AlreadyRolled(_)) => Err(already_rolled()),
        Err(LifecycleError::NoSuchKey) => Err(DashError::no_such_key()),
        Err(e) => {
            if let Some(n) = nonce {
                if let Some(done) = s.app.store.key_by_form_nonce(owner, n).await? {
                    return Ok(already_created(&si, &done));
                }
            }
            let page = roll_page(&si, &rec, f.nonce.clone(), f.name.clone(), f.overlap.clone(), e.to_string())
                .with_traffic(&s, rec.id)
                .await?;
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

#[derive(Template)]
#[template(path = "key_edit.html")]
struct EditPage {
    c: Chrome,
    id: String,
    name: String,
    manage: bool,
    /// The current expiry, for people ("in 30 days", "never").
    expires_now: String,
    expires: String,
    ip_allowlist: String,
    /// The rate limit as typed (prefilled with the key's), and the period choices: value, label.
    rate_limit: String,
    rate_period: String,
    rate_periods: Vec<(String, String)>,
    /// The quota now ("1,234 of 10,000 left"), or "none".
    quota_now: String,
    /// A new quota as typed (empty: keep it as it is), its refill, and "remove the quota".
    quota: String,
    quota_refill: String,
    no_quota: bool,
    error: String,
}

/// The period choices of the edit form: the four the new-key form has, and the key's own when it is none of them.
fn rate_periods(current: Option<u32>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = [("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400)]
        .iter()
        .map(|(name, _)| (name.to_string(), format!("requests per {name}")))
        .collect();
    if let Some(p) = current.filter(|p| ![1, 60, 3600, 86400].contains(p)) {
        out.push((p.to_string(), format!("requests per {p} seconds")));
    }
    out
}

fn period_value(p: u32) -> String {
    match p {
        1 => "second".into(),
        60 => "minute".into(),
        3600 => "hour".into(),
        86400 => "day".into(),
        other => other.to_string(),
    }
}

fn edit_page(si: &SignedIn, rec: &KeyRecord, error: String) -> EditPage {
    let now = clock::now();
    EditPage {
        c: Chrome::signed_in(si, "keys", "Edit API key"),
        id: rec.id.to_string(),
        name: rec.name.to_string(),
        manage: rec.scopes.contains(MANAGE_KEYS),
        expires_now: rec
            .expires_at
            .map_or_else(|| "never".into(), |t| format!("{} ({})", absolute(t), relative(t, now))),
        expires: "keep".into(),
        ip_allowlist: rec.rules.ip_allowlist.ranges().iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        rate_limit: rec.rules.rate_limit.map(|r| r.limit().to_string()).unwrap_or_default(),
        rate_period: rec.rules.rate_limit.map_or_else(|| "minute".into(), |r| period_value(r.period_seconds())),
        rate_periods: rate_periods(rec.rules.rate_limit.map(|r| r.period_seconds())),
        quota_now: rec.rules.quota.map_or_else(|| "none".into(), |q| q.describe(now)),
        quota: String::new(),
        quota_refill: rec
            .rules
            .quota
            .and_then(|q| q.refill)
            .map_or_else(|| "never".into(), |r| r.interval.as_str().into()),
        no_quota: false,
        error,
    }
}

/// `GET /keys/{id}/edit`.
pub async fn edit_form(State(s): State<DashState>, si: SignedIn, Path(id): Path<String>) -> DashResult {
    let rec = own_key(&s, si.user.id, &id).await?;
    Ok(render(StatusCode::OK, &edit_page(&si, &rec, String::new())))
}

#[derive(Deserialize)]
pub struct EditForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope_manage: Option<String>,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    ip_allowlist: String,
    #[serde(flatten)]
    limits: LimitFields,
    /// "Remove the quota".
    #[serde(default)]
    no_quota: Option<String>,
}

/// `POST /keys/{id}/edit`: renames the key and sets its permissions, expiry, allowed addresses, rate limit and quota
/// (an empty quota field keeps the quota as it is).
pub async fn edit(
    State(s): State<DashState>,
    si: SignedIn,
    origin: Origin,
    Path(id): Path<String>,
    DashForm(f): DashForm<EditForm>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    let owner = si.user.id;
    let rec = own_key(&s, owner, &id).await?;
    let now = clock::now();
    let day = 24 * 60 * 60 * 1000;
    let expires_at = match f.expires.as_str() {
        "never" => Some(None),
        "30" => Some(Some(now + 30 * day)),
        "90" => Some(Some(now + 90 * day)),
        "365" => Some(Some(now + 365 * day)),
        _ => None,
    };
    let entries = allowlist_entries(&f.ip_allowlist);
    let (rate_limit, quota) = f.limits.rules();
    let changes = KeyChanges {
        name: Some(f.name.clone()),
        scopes: Some(f.scope_manage.iter().map(|_| MANAGE_KEYS.to_owned()).collect()),
        expires_at,
        ip_allowlist: Some(Some(entries).filter(|e| !e.is_empty())),
        status: None,
        rate_limit: Some(rate_limit),
        quota: if f.no_quota.is_some() { Some(None) } else { quota.map(Some) },
    };
    let who = origin.who(Actor::User(owner));
    let policy = &s.app.settings.policy;
    match lifecycle::update_key(
        &*s.app.store,
        Some(&s.app.verifier),
        Some(owner),
        &rec.id,
        changes,
        &who,
        None,
        policy,
        now,
    )
    .await
    {
        Ok(k) => Ok(Redirect::to(&format!("/keys?edited={}", k.id)).into_response()),
        Err(LifecycleError::Store(e)) => Err(e.into()),
        Err(LifecycleError::NoSuchKey) => Err(DashError::no_such_key()),
        Err(e) => {
            let mut page = edit_page(&si, &rec, e.to_string());
            page.name = f.name.clone();
            page.manage = f.scope_manage.is_some();
            page.expires = f.expires.clone();
            page.ip_allowlist = f.ip_allowlist.clone();
            page.rate_limit = f.limits.rate_limit.clone();
            page.rate_period = f.limits.rate_period.clone();
            page.quota = f.limits.quota.clone();
            page.quota_refill = f.limits.quota_refill.clone();
            page.no_quota = f.no_quota.is_some();
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn set_status(s: &DashState, si: &SignedIn, origin: &Origin, id: &str, disabled: bool) -> DashResult<Response> {
    let id = CredentialId::parse(id).map_err(|_| DashError::no_such_key())?;
    let owner = si.user.id;
    let who = origin.who(Actor::User(owner));
    match lifecycle::set_key_status(
        &*s.app.store,
        Some(&s.app.verifier),
        Some(owner),
        &id,
        disabled,
        &who,
        clock::now(),
    )
    .await
    {
        Ok(k) => {
            let what = if disabled { "disabled" } else { "enabled" };
            Ok(Redirect::to(&format!("/keys?{what}={}", k.id)).into_response())
        }
        Err(LifecycleError::Store(e)) => Err(e.into()),
        Err(LifecycleError::NoSuchKey) => Err(DashError::no_such_key()),
        Err(e) => Err(DashError::new(StatusCode::UNPROCESSABLE_ENTITY, "Cannot enable this key", e.to_string())),
    }
}

/// `POST /keys/{id}/disable`: the key stops working on every node at once; it can be enabled again.
pub async fn disable(
    State(s): State<DashState>,
    si: SignedIn,
    origin: Origin,
    Path(id): Path<String>,
    DashForm(f): DashForm<CsrfForm>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    set_status(&s, &si, &origin, &id, true).await
}

/// `POST /keys/{id}/enable`.
pub async fn enable(
    State(s): State<DashState>,
    si: SignedIn,
    origin: Origin,
    Path(id): Path<String>,
    DashForm(f): DashForm<CsrfForm>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    set_status(&s, &si, &origin, &id, false).await
}
