//! Activity: the audit trail in the dashboard. Everyone sees their own events (profile menu → Activity);
//! administrators see everyone's, filtered by user, key, kind and time, and can revoke keys in bulk (an incident).

use std::collections::HashMap;

use askama::Template;
use atna_domain::{CredentialId, Email, UserId};
use atna_store::{audit_kind, Actor, AuditEvent, AuditQuery, KeyFilter, NO_USER};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use super::pages::{render, Chrome, DashError, DashForm, DashQuery, DashResult};
use super::session::{Admin, SignedIn};
use super::timefmt::{absolute, ago};
use super::DashState;
use crate::audit::{cursor_after, parse_cursor, Origin};
use crate::clock;
use crate::lifecycle;

/// Events per page.
const PAGE: i64 = 50;

/// One row of the activity table.
struct Row {
    when: String,
    when_abs: String,
    kind: String,
    by: String,
    about: String,
    key: String,
    key_name: String,
    ip: String,
    user_agent: String,
    detail: String,
}

fn row(e: &AuditEvent, emails: &HashMap<i64, String>, now: i64) -> Row {
    let email = |u: i64| emails.get(&u).cloned().unwrap_or_else(|| format!("user {u}"));
    Row {
        when: ago(e.at, now),
        when_abs: absolute(e.at),
        kind: e.action.clone(),
        by: match e.actor {
            Actor::User(u) => email(u.0),
            Actor::Key { key, .. } => format!("API key {key}"),
            Actor::Operator if e.ip.is_some() => "someone not signed in".into(),
            Actor::Operator => "operator (command line)".into(),
        },
        about: if e.owner == NO_USER { String::new() } else { email(e.owner.0) },
        key: e.key_id.map(|k| k.to_string()).unwrap_or_default(),
        key_name: e.key_name.clone().unwrap_or_default(),
        ip: e.ip.clone().unwrap_or_default(),
        user_agent: e.user_agent.clone().unwrap_or_default(),
        detail: e.detail.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage {
    c: Chrome,
    admin_view: bool,
    rows: Vec<Row>,
    next: String,
    kinds: &'static [&'static str],
    f_user: String,
    f_key: String,
    f_kind: String,
    f_since: String,
    f_until: String,
    error: String,
}

#[derive(Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    user: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    kind: String,
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM` (UTC).
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    after: String,
}

/// A date or date-time from the filter form, read as UTC.
fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M") {
        return Some(t.and_utc().timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_millis())
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn page(s: &DashState, si: &SignedIn, admin_view: bool, f: Filters) -> DashResult {
    let mut error = String::new();
    let mut q = AuditQuery { limit: PAGE + 1, after: parse_cursor(&f.after), ..AuditQuery::default() };
    if admin_view {
        if !f.user.trim().is_empty() {
            match Email::parse(&f.user) {
                Ok(e) => match s.app.store.user_by_email(&e).await? {
                    Some(u) => q.owner = Some(u.id),
                    None => error = format!("No user {e}."),
                },
                Err(_) => error = "The user filter is not an e-mail address.".into(),
            }
        }
    } else {
        q.owner = Some(si.user.id);
    }
    if !f.key.trim().is_empty() {
        match CredentialId::parse(f.key.trim()) {
            Ok(k) => q.key = Some(k),
            Err(_) => error = "The key filter is not a Credential ID.".into(),
        }
    }
    if audit_kind::ALL.contains(&f.kind.as_str()) {
        q.action = Some(f.kind.clone());
    }
    q.since = parse_time(&f.since);
    q.until = parse_time(&f.until);
    let mut events = if error.is_empty() { s.app.store.audit_page(&q).await? } else { Vec::new() };
    let more = events.len() as i64 > PAGE;
    events.truncate(PAGE as usize);
    let base = if admin_view { "/admin/activity" } else { "/activity" };
    let next = match events.last() {
        Some(e) if more => format!(
            "{base}?user={}&key={}&kind={}&since={}&until={}&after={}",
            encode(&f.user),
            encode(&f.key),
            encode(&f.kind),
            encode(&f.since),
            encode(&f.until),
            cursor_after(e)
        ),
        _ => String::new(),
    };
    let emails: HashMap<i64, String> = if admin_view {
        s.app.store.list_users().await?.into_iter().map(|u| (u.id.0, u.email.to_string())).collect()
    } else {
        HashMap::from([(si.user.id.0, si.user.email.to_string())])
    };
    let now = clock::now();
    let title = if admin_view { "All activity" } else { "Activity" };
    let p = ActivityPage {
        c: Chrome::signed_in(si, "activity", title),
        admin_view,
        rows: events.iter().map(|e| row(e, &emails, now)).collect(),
        next,
        kinds: audit_kind::ALL,
        f_user: f.user,
        f_key: f.key,
        f_kind: f.kind,
        f_since: f.since,
        f_until: f.until,
        error,
    };
    Ok(render(StatusCode::OK, &p))
}

/// `GET /activity`: your own events, newest first.
pub async fn own(State(s): State<DashState>, si: SignedIn, DashQuery(f): DashQuery<Filters>) -> DashResult {
    page(&s, &si, false, f).await
}

/// `GET /admin/activity`: everyone's events, with filters.
pub async fn all(State(s): State<DashState>, Admin(si): Admin, DashQuery(f): DashQuery<Filters>) -> DashResult {
    page(&s, &si, true, f).await
}

#[derive(Template)]
#[template(path = "revoke.html")]
struct RevokePage {
    c: Chrome,
    /// Whose keys ("every user" when none).
    whose: String,
    user_id: String,
    created_before: String,
    created_before_text: String,
    preview_at: i64,
    count: usize,
    used_last_day: usize,
    used_last_week: usize,
    rows: Vec<(String, String, String, String)>,
}

#[derive(Deserialize)]
pub struct RevokeQuery {
    #[serde(default)]
    user: String,
    #[serde(default)]
    created_before: String,
}

async fn filter_of(s: &DashState, user: &str, created_before: &str) -> DashResult<(KeyFilter, String)> {
    let owner = match user.trim() {
        "" => None,
        id => {
            let id: i64 = id.parse().map_err(|_| DashError::not_found())?;
            Some(s.app.store.user_by_id(UserId(id)).await?.ok_or_else(DashError::not_found)?)
        }
    };
    let before = match created_before.trim() {
        "" => None,
        t => Some(parse_time(t).ok_or_else(|| {
            DashError::new(StatusCode::UNPROCESSABLE_ENTITY, "Bad time", "Give the time as YYYY-MM-DDTHH:MM (UTC).")
        })?),
    };
    if owner.is_none() && before.is_none() {
        return Err(DashError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Nothing chosen",
            "Choose a user, a time, or both: revoking every key of every user is not offered.",
        ));
    }
    let whose = owner.as_ref().map_or_else(|| "every user".to_owned(), |u| u.email.to_string());
    Ok((KeyFilter { owner: owner.map(|u| u.id), created_before: before }, whose))
}

/// `GET /admin/revoke?user=ID&created_before=T`: what a bulk revocation would take, and the traffic it would cut.
pub async fn revoke_preview(
    State(s): State<DashState>,
    Admin(si): Admin,
    DashQuery(q): DashQuery<RevokeQuery>,
) -> DashResult {
    let (filter, whose) = filter_of(&s, &q.user, &q.created_before).await?;
    let now = clock::now();
    let p = lifecycle::preview_revoke(&*s.app.store, Some(&s.app.verifier), &filter, now).await?;
    let emails: HashMap<i64, String> =
        s.app.store.list_users().await?.into_iter().map(|u| (u.id.0, u.email.to_string())).collect();
    let rows = p
        .keys
        .iter()
        .take(200)
        .map(|k| {
            let used = match (k.last_used_at, k.last_used_ip.as_deref()) {
                (Some(t), Some(ip)) => format!("{} from {ip}", ago(t, now)),
                (Some(t), None) => ago(t, now),
                (None, _) => "never".into(),
            };
            (k.id.to_string(), k.name.to_string(), emails.get(&k.owner.0).cloned().unwrap_or_default(), used)
        })
        .collect();
    let page = RevokePage {
        c: Chrome::signed_in(&si, "users", "Revoke keys"),
        whose,
        user_id: q.user.trim().to_owned(),
        created_before: q.created_before.trim().to_owned(),
        created_before_text: filter.created_before.map(absolute).unwrap_or_default(),
        preview_at: now,
        count: p.keys.len(),
        used_last_day: p.used_last_day,
        used_last_week: p.used_last_week,
        rows,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    created_before: String,
    /// When the preview was taken: keys made after it are not revoked (the preview did not show them).
    #[serde(default)]
    preview_at: i64,
}

/// `POST /admin/revoke`: revokes what the preview showed, as one audit event; every node refuses the keys at once.
pub async fn revoke(
    State(s): State<DashState>,
    Admin(si): Admin,
    origin: Origin,
    DashForm(f): DashForm<RevokeForm>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    let (filter, whose) = filter_of(&s, &f.user, &f.created_before).await?;
    let now = clock::now();
    let preview_at = if f.preview_at > 0 { f.preview_at.min(now) } else { now };
    let mut detail = serde_json::Map::new();
    detail.insert("whose".into(), whose.into());
    if let Some(t) = filter.created_before {
        detail.insert("created_before".into(), clock::to_datetime(t).to_rfc3339().into());
    }
    let filter = lifecycle::as_previewed(filter, preview_at);
    let who = origin.who(Actor::User(si.user.id));
    let gone = lifecycle::revoke_all(&*s.app.store, Some(&s.app.verifier), &filter, detail, &who, now).await?;
    Ok(Redirect::to(&format!("/admin/users?revoked={}", gone.len())).into_response())
}
