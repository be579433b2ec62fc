//! My API Keys: the list, "+ Generate an API Key" (form and the one page that ever shows the secret), and deletion
//! with a confirmation that says when and from where the key was last used.

use askama::Template;
use atna_domain::scope::MANAGE_KEYS;
use atna_domain::{ApiKeySecret, CredentialId, IpAllowlist, KeyHealth, KeyName, UserId};
use atna_store::{Actor, KeyQuery, KeyRecord};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::{render, Chrome, DashError, DashForm, DashQuery, DashResult};
use super::session::{Forwarded, SignedIn};
use super::timefmt::{absolute, age, ago, relative};
use super::usage::{recent_use, Sparkline};
use super::{random_token, DashState};
use crate::api::dto::{QuotaRefill, QuotaRule, RateLimitRule};
use crate::audit::Origin;
use crate::service::{self, CreateKeyError, KeySpec};
use crate::{clock, timeline};

/// Keys per page of the list.
const PAGE: i64 = 25;

/// One row of the list.
pub(super) struct KeyRow {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) created: String,
    pub(super) created_abs: String,
    pub(super) last_used: String,
    pub(super) last_used_abs: String,
    pub(super) last_ip: String,
    pub(super) age: String,
    pub(super) expiry: String,
    pub(super) status: &'static str,
    pub(super) rotation_due: bool,
    pub(super) unused: bool,
    /// The Credential ID of the key that made this one through the API; empty when made here or by the operator.
    pub(super) created_by: String,
    /// The IP allowlist, compact ("203.0.113.0/24 +1"); empty for none.
    pub(super) ip_allowlist: String,
    /// The whole IP allowlist, comma-separated; empty for none.
    pub(super) ip_allowlist_full: String,
    /// "100 requests per 60 s"; empty for none.
    pub(super) rate_limit: String,
    /// "1,234 of 10,000 left, refilled daily"; empty for none.
    pub(super) quota: String,
    /// The rendered 7-day sparkline of allowed calls (My API Keys); empty elsewhere.
    pub(super) spark: String,
    /// For a rolled key: "rolled → <new name>, stops working in 23 hours" (filled in by the list); else empty.
    pub(super) rolled: String,
}

/// A rate limit as people read it.
fn rate_text(r: Option<atna_domain::RateLimit>) -> String {
    r.map(|r| {
        let per = match r.period_seconds() {
            1 => "second".to_owned(),
            60 => "minute".to_owned(),
            3600 => "hour".to_owned(),
            86400 => "day".to_owned(),
            s => format!("{} s", atna_domain::limits::thousands(i64::from(s))),
        };
        format!("{} requests per {per}", atna_domain::limits::thousands(i64::from(r.limit())))
    })
    .unwrap_or_default()
}

impl KeyRow {
    pub(super) fn new(r: &KeyRecord, now: i64, policy: &atna_domain::Policy) -> Self {
        let health = KeyHealth::under(policy, r.created_at, r.last_used_at, now);
        Self {
            id: r.id.to_string(),
            name: r.name.to_string(),
            created: ago(r.created_at, now),
            created_abs: absolute(r.created_at),
            last_used: r.last_used_at.map_or_else(|| "never".to_owned(), |t| ago(t, now)),
            last_used_abs: r.last_used_at.map(absolute).unwrap_or_default(),
            last_ip: r.last_used_ip.clone().unwrap_or_default(),
            age: age(health.age_days),
            expiry: r.expires_at.map_or_else(|| "never".to_owned(), |t| relative(t, now)),
            status: atna_domain::lifecycle::shown_status(r.status, r.expires_at, now),
            rotation_due: health.rotation_due,
            unused: health.unused,
            created_by: r.created_by_key.map(|k| k.to_string()).unwrap_or_default(),
            ip_allowlist: compact_allowlist(&r.rules.ip_allowlist),
            ip_allowlist_full: r
                .rules
                .ip_allowlist
                .ranges()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            rate_limit: rate_text(r.rules.rate_limit),
            quota: r.rules.quota.map(|q| q.describe(now)).unwrap_or_default(),
            spark: String::new(),
            rolled: String::new(),
        }
    }
}

/// "rolled → <new name>, stops working in 23 hours" (or "stopped working … ago").
async fn rolled_note(s: &DashState, r: &KeyRecord, now: i64) -> DashResult<String> {
    let Some(next) = r.rolled_to else { return Ok(String::new()) };
    let name = s.app.store.auth_record(&next).await?.map_or_else(|| next.to_string(), |a| a.key.name.to_string());
    Ok(match r.expires_at {
        Some(t) if t > now => format!("rolled → {name}, stops working {}", relative(t, now)),
        Some(t) => format!("rolled → {name}, stopped working {}", ago(t, now)),
        None => format!("rolled → {name}"),
    })
}

/// The first range and how many more: a list row has room for one.
fn compact_allowlist(a: &IpAllowlist) -> String {
    match a.ranges() {
        [] => String::new(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    }
}

/// Every range, comma-separated.
fn full_allowlist(a: &IpAllowlist) -> String {
    a.ranges().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The form's "Allowed IP addresses" text as entries: one per line, or separated by commas or spaces.
pub(super) fn allowlist_entries(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty()).map(str::to_owned).collect()
}

#[derive(Template)]
#[template(path = "keys.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<KeyRow>,
    /// How many keys match ("10,000+" past [`COUNT_CAP`]).
    total: String,
    /// Exactly one does.
    one: bool,
    /// The person has any key at all (else the page explains how to make the first).
    any: bool,
    search: String,
    next: String,
    is_first_page: bool,
    deleted: String,
    /// After an edit, disable or enable: what happened.
    notice: String,
    /// Banners for keys that secret scanners found in public in the last [`LEAK_BANNER_DAYS`] days.
    leaks: Vec<LeakBanner>,
}

/// How long a leak report is shown on My API Keys.
const LEAK_BANNER_DAYS: i64 = 30;

/// One "found in public" banner.
struct LeakBanner {
    name: String,
    id: String,
    text: String,
}

impl LeakBanner {
    fn new(r: &atna_store::LeakRecord) -> Self {
        use atna_domain::KeyStatus;
        use atna_store::LeakOutcome;
        let place = if r.url.is_empty() {
            format!("in public (reported by {})", r.source)
        } else {
            format!("in public at {}", r.url)
        };
        let what = match (r.outcome, r.status) {
            (LeakOutcome::Revoked, _) => "was revoked",
            (LeakOutcome::Disabled, _) => "was disabled: generate a new key for your service, then delete this one",
            (_, Some(KeyStatus::Revoked)) => "had already been deleted",
            (_, Some(KeyStatus::Disabled)) => "is disabled",
            _ => "still works: generate a new key for your service and delete this one now",
        };
        let date = absolute(r.reported_at);
        Self {
            name: r.key_name.clone().unwrap_or_default(),
            id: r.key_id.to_string(),
            text: format!("This key was found {place} on {date} and {what}."),
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    deleted: String,
    #[serde(default)]
    edited: String,
    #[serde(default)]
    disabled: String,
    #[serde(default)]
    enabled: String,
}

fn parse_cursor(c: &str) -> Option<(i64, CredentialId)> {
    let (t, id) = c.split_once('.')?;
    Some((t.parse().ok()?, CredentialId::parse(id).ok()?))
}

fn encode_query(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// My API Keys counts the keys (matching a search) up to this many; past it the page says "10,000+ keys".
const COUNT_CAP: i64 = 10_000;

/// A count from `count_keys_upto(…, COUNT_CAP + 1)` as shown: "1030", or "10,000+" past the cap.
fn count_label(n: i64) -> String {
    if n > COUNT_CAP {
        "10,000+".to_owned()
    } else {
        n.to_string()
    }
}

/// `GET /keys`: the signed-in person's keys, newest first, 25 a page, searchable by name.
pub async fn list(State(s): State<DashState>, si: SignedIn, DashQuery(q): DashQuery<ListQuery>) -> DashResult {
    let owner = si.user.id;
    let search = q.q.trim().to_owned();
    let after = parse_cursor(&q.after);
    let query = KeyQuery { after, limit: PAGE + 1, search: (!search.is_empty()).then(|| search.clone()) };
    let mut recs = s.app.store.list_keys(owner, &query).await?;
    let more = recs.len() as i64 > PAGE;
    recs.truncate(PAGE as usize);
    // Counted up to a cap: an exact count reads every one of the owner's keys (at 100,000 keys, most of the page's
    // time), and nobody needs to know whether it is 10,001 or 98,765.
    let store = s.app.store.as_ref();
    let total = if after.is_none() && !more {
        // The whole list fits on this page: its rows are the count (a search matching few keys is counted free).
        recs.len() as i64
    } else {
        store.count_keys_upto(owner, query.search.as_deref(), COUNT_CAP + 1).await?
    };
    let any = if search.is_empty() { total > 0 } else { store.count_keys_upto(owner, None, 1).await? > 0 };
    let next = match recs.last() {
        Some(r) if more => format!("/keys?q={}&after={}.{}", encode_query(&search), r.created_at, r.id),
        _ => String::new(),
    };
    let now = clock::now();
    // One query for the whole page's sparklines, not one per row.
    let ids: Vec<CredentialId> = recs.iter().map(|r| r.id).collect();
    let verifier = &s.app.verifier;
    let mut weeks = timeline::daily_allowed(s.app.store.as_ref(), Some(verifier.usage()), &ids, 7, now).await?;
    let mut rows = Vec::with_capacity(recs.len());
    for r in recs.iter_mut() {
        verifier.overlay_usage(r);
        let mut row = KeyRow::new(r, now, &s.app.settings.policy);
        let week = weeks.remove(&r.id).unwrap_or_else(|| vec![0; 7]);
        row.spark = Sparkline::new(&week, now).render().map_err(|_| DashError::internal())?;
        row.rolled = rolled_note(&s, r, now).await?;
        rows.push(row);
    }
    let deleted = if CredentialId::parse(&q.deleted).is_ok() { q.deleted } else { String::new() };
    let since = now - LEAK_BANNER_DAYS * 24 * 60 * 60 * 1000;
    let leaks = s.app.store.leak_reports(owner, 5).await?;
    let leaks = leaks.iter().filter(|r| r.reported_at >= since).map(LeakBanner::new).collect();
    let notice = [
        (&q.edited, "was changed"),
        (&q.disabled, "is disabled: it stops working at once, on every server, until you enable it again"),
        (&q.enabled, "is enabled again"),
    ]
    .iter()
    .find(|(id, _)| CredentialId::parse(id).is_ok())
    .map(|(id, what)| format!("The key {id} {what}."))
    .unwrap_or_default();
    let page = ListPage {
        c: Chrome::signed_in(&si, "keys", "My API Keys"),
        rows,
        total: count_label(total),
        one: total == 1,
        any,
        search,
        next,
        is_first_page: after.is_none(),
        deleted,
        leaks,
        notice,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "key_new.html")]
struct NewPage {
    c: Chrome,
    nonce: String,
    name: String,
    manage: bool,
    expires: String,
    /// The "Allowed IP addresses" field as typed.
    ip_allowlist: String,
    /// The rate-limit and quota fields as typed.
    limits: LimitFields,
    error: String,
    /// `error` is about the allowlist (that field, not the name, is marked invalid).
    ip_error: bool,
    /// `error` is about the rate limit, or the quota.
    rate_error: bool,
    quota_error: bool,
    /// The "Expires" choices the policy allows: value and label.
    expiry_options: Vec<(String, String)>,
}

/// The "More settings" fields of a rate limit and a usage quota.
#[derive(Deserialize, Default, Clone)]
pub struct LimitFields {
    /// Requests…
    #[serde(default)]
    pub(super) rate_limit: String,
    /// …per `second`, `minute`, `hour` or `day` (or a number of seconds).
    #[serde(default)]
    pub(super) rate_period: String,
    /// Uses.
    #[serde(default)]
    pub(super) quota: String,
    /// `never`, `daily` or `monthly`.
    #[serde(default)]
    pub(super) quota_refill: String,
}

impl LimitFields {
    fn any(&self) -> bool {
        !self.rate_limit.trim().is_empty() || !self.quota.trim().is_empty()
    }

    /// The rules they describe; an empty field is none. A number that does not parse becomes an out-of-range one, so
    /// the service's message (which gives the range) is shown.
    pub(super) fn rules(&self) -> (Option<RateLimitRule>, Option<QuotaRule>) {
        let number = |s: &str| s.trim().replace([',', '_', ' '], "").parse::<i64>().unwrap_or(-1);
        let rate = (!self.rate_limit.trim().is_empty()).then(|| RateLimitRule {
            limit: number(&self.rate_limit),
            period_seconds: match self.rate_period.as_str() {
                "second" => 1,
                "hour" => 3600,
                "day" => 86400,
                // The edit page offers a key's own period when it is none of the four (set through the API).
                other => other.parse().unwrap_or(60),
            },
        });
        let quota = (!self.quota.trim().is_empty()).then(|| {
            let remaining = number(&self.quota);
            let refill = matches!(self.quota_refill.as_str(), "daily" | "monthly")
                .then(|| QuotaRefill { amount: remaining, interval: self.quota_refill.clone() });
            QuotaRule { remaining, refill }
        });
        (rate, quota)
    }
}

/// The "Expires" choices under `policy`: the default lifetime (when there is one), 30 / 90 / 365 days and "Never"
/// as far as the maximum lifetime allows; and the one selected at first.
fn expiry_options(policy: &atna_domain::Policy) -> (Vec<(String, String)>, String) {
    let within = |d: i64| policy.max_lifetime_days.is_none_or(|m| d <= m);
    let mut out = Vec::new();
    if let Some(d) = policy.default_lifetime_days {
        out.push(("default".to_owned(), format!("In {d} days (the default)")));
    }
    if policy.max_lifetime_days.is_none() {
        out.push(("never".to_owned(), "Never".to_owned()));
    }
    for (d, label) in [(30, "In 30 days"), (90, "In 90 days (a good rotation interval)"), (365, "In 1 year")] {
        if within(d) && policy.default_lifetime_days != Some(d) {
            out.push((d.to_string(), label.to_owned()));
        }
    }
    let first = out.first().map(|o| o.0.clone()).unwrap_or_default();
    (out, first)
}

/// The prefilled name: `service_name-<dd_mm_yyyy>-<hh_mm>` now, in UTC (the page's script switches it to the
/// browser's time zone).
fn suggested_name() -> String {
    KeyName::conventional("service_name", &chrono::Utc::now())
}

/// `GET /keys/new`: the "Generate an API Key" form.
pub async fn new_form(State(s): State<DashState>, si: SignedIn) -> Response {
    let (expiry_options, expires) = expiry_options(&s.app.settings.policy);
    let page = NewPage {
        expiry_options,
        // Identifies this form: whichever node it is sent to, and however often, it creates one key.
        nonce: random_token(),
        c: Chrome::signed_in(&si, "keys", "Generate an API Key"),
        name: suggested_name(),
        manage: false,
        expires,
        ip_allowlist: String::new(),
        limits: LimitFields::default(),
        error: String::new(),
        ip_error: false,
        rate_error: false,
        quota_error: false,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    nonce: String,
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
}

#[derive(Template)]
#[template(path = "key_created.html")]
pub(super) struct CreatedPage {
    pub(super) c: Chrome,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) secret: String,
    pub(super) follows_convention: bool,
    pub(super) whoami_url: String,
    pub(super) expires: String,
    pub(super) scopes: String,
    /// The whole IP allowlist, comma-separated; empty for none.
    pub(super) ip_allowlist: String,
    /// As in the list; empty for none.
    pub(super) rate_limit: String,
    pub(super) quota: String,
    /// After a roll: what happens to the old key ("The old key … keeps working until …"); else empty.
    pub(super) rolled_note: String,
}

impl CreatedPage {
    /// The page that shows a new key's secret, once.
    pub(super) fn new(c: Chrome, rec: &KeyRecord, secret: &ApiKeySecret, whoami_url: String) -> Self {
        CreatedPage {
            c,
            id: rec.id.to_string(),
            name: rec.name.to_string(),
            secret: secret.expose().to_owned(),
            follows_convention: rec.name.follows_convention(),
            whoami_url,
            expires: rec.expires_at.map_or_else(|| "never".to_owned(), absolute),
            scopes: if rec.scopes.is_empty() {
                "none".into()
            } else {
                rec.scopes.iter().collect::<Vec<_>>().join(", ")
            },
            ip_allowlist: full_allowlist(&rec.rules.ip_allowlist),
            rate_limit: rate_text(rec.rules.rate_limit),
            quota: rec.rules.quota.map(|q| q.describe(clock::now())).unwrap_or_default(),
            rolled_note: String::new(),
        }
    }
}

/// The address of `/v1/whoami` as the person's browser reaches this server (for the page's curl snippet).
pub(super) fn whoami_url(si: &SignedIn, trusted: bool, headers: &HeaderMap) -> String {
    let forwarded = trusted.then(|| headers.get("x-forwarded-host")).flatten();
    let host = forwarded
        .or_else(|| headers.get(header::HOST))
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split(',').next_back())
        .map_or("localhost:8080", str::trim);
    let scheme = if si.secure { "https" } else { "http" };
    format!("{scheme}://{host}/v1/whoami")
}

#[derive(Template)]
#[template(path = "key_already.html")]
struct AlreadyPage {
    c: Chrome,
    id: String,
    name: String,
    expired_form: bool,
}

/// "This key was already created": what a form sent twice gets instead of a second key or the secret again.
pub(super) fn already_created(si: &SignedIn, done: &KeyRecord) -> Response {
    let page = AlreadyPage {
        c: Chrome::signed_in(si, "keys", "Key already created"),
        id: done.id.to_string(),
        name: done.name.to_string(),
        expired_form: false,
    };
    no_store(render(StatusCode::OK, &page))
}

fn expiry_days(v: &str) -> Option<i64> {
    match v {
        "30" => Some(30),
        "90" => Some(90),
        "365" => Some(365),
        _ => None,
    }
}

pub(super) fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// `POST /keys/new` ("Save & Add"): creates the key and shows its secret, once, in this response.
pub async fn create(
    State(s): State<DashState>,
    si: SignedIn,
    Forwarded(trusted): Forwarded,
    origin: Origin,
    headers: HeaderMap,
    DashForm(f): DashForm<CreateForm>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    let owner = si.user.id;
    if f.nonce.is_empty() || f.nonce.len() > 128 {
        let page = AlreadyPage {
            c: Chrome::signed_in(&si, "keys", "Form expired"),
            id: String::new(),
            name: String::new(),
            expired_form: true,
        };
        return Ok(no_store(render(StatusCode::OK, &page)));
    }
    // A form sent again (a reload, a double click, a retry through another node) shows the key it made, never its
    // secret.
    if let Some(done) = s.app.store.key_by_form_nonce(owner, &f.nonce).await? {
        return Ok(already_created(&si, &done));
    }
    let now = clock::now();
    let scopes: Vec<String> = f.scope_manage.iter().map(|_| MANAGE_KEYS.to_owned()).collect();
    let expires_at = expiry_days(&f.expires).map(|d| now + d * 24 * 60 * 60 * 1000);
    let lifetime = service::Lifetime { policy: &s.app.settings.policy, never: f.expires == "never" };
    let ip_allowlist: Vec<String> = allowlist_entries(&f.ip_allowlist);
    let (rate_limit, quota) = f.limits.rules();
    let spec = KeySpec {
        rate_limit,
        quota: quota.as_ref(),
        once: Some(&f.nonce),
        name: &f.name,
        scopes: &scopes,
        expires_at,
        ip_allowlist: &ip_allowlist,
        by_key: None,
    };
    let url = whoami_url(&si, trusted, &headers);
    // The page that shows the secret is rendered before the key is committed: nothing can fail between the commit and
    // the secret leaving.
    let present = |rec: &KeyRecord, secret: &ApiKeySecret| {
        let page = CreatedPage::new(Chrome::signed_in(&si, "keys", "Your new API key"), rec, secret, url.clone());
        no_store(render(StatusCode::CREATED, &page))
    };
    let who = origin.who(Actor::User(owner));
    match service::create_key_under(s.app.store.as_ref(), owner, who, spec, lifetime, now, present).await {
        Ok(page) => Ok(page),
        Err(CreateKeyError::Store(e)) => Err(e.into()),
        Err(e) => {
            // The same form, sent twice at once: the other request made the key.
            if matches!(e, CreateKeyError::NameTaken) {
                if let Some(done) = s.app.store.key_by_form_nonce(owner, &f.nonce).await? {
                    return Ok(already_created(&si, &done));
                }
            }
            // The person can fix this: show the form again with what they typed and the reason.
            let page = NewPage {
                expiry_options: expiry_options(&s.app.settings.policy).0,
                c: Chrome::signed_in(&si, "keys", "Generate an API Key"),
                nonce: f.nonce.clone(),
                name: f.name.clone(),
                manage: f.scope_manage.is_some(),
                expires: f.expires.clone(),
                ip_allowlist: f.ip_allowlist.clone(),
                limits: f.limits.clone(),
                ip_error: matches!(e, CreateKeyError::IpAllowlist(_) | CreateKeyError::IpAllowlistBeyondCaller(..)),
                rate_error: matches!(e, CreateKeyError::RateLimit(_)),
                quota_error: matches!(e, CreateKeyError::Quota(_)),
                error: e.to_string(),
            };
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

#[derive(Template)]
#[template(path = "key_delete.html")]
struct DeletePage {
    c: Chrome,
    row: KeyRow,
    usage: String,
    /// "312 calls yesterday — something still uses this key" (allowed calls only).
    recent: String,
    week_total: i64,
    /// The rendered 7-day sparkline.
    spark: String,
}

pub(super) async fn own_key(s: &DashState, owner: UserId, id: &str) -> DashResult<KeyRecord> {
    // Someone else's key and a key that does not exist look exactly the same: 404.
    let id = CredentialId::parse(id).map_err(|_| DashError::no_such_key())?;
    let mut rec = s.app.store.get_key(owner, &id).await?.ok_or_else(DashError::no_such_key)?;
    s.app.verifier.overlay_usage(&mut rec);
    Ok(rec)
}

/// `GET /keys/{id}/delete`: the confirmation, with the facts that matter (when and where it was last used).
pub async fn confirm_delete(State(s): State<DashState>, si: SignedIn, Path(id): Path<String>) -> DashResult {
    let rec = own_key(&s, si.user.id, &id).await?;
    let now = clock::now();
    let usage = match (rec.last_used_at, rec.last_used_ip.as_deref()) {
        (Some(t), Some(ip)) => format!("used {} from {ip} — services using it will fail", ago(t, now)),
        (Some(t), None) => format!("used {} — services using it will fail", ago(t, now)),
        (None, _) => "never used".to_owned(),
    };
    let week = super::usage::last_week(&s, rec.id, now).await?;
    let mut row = KeyRow::new(&rec, now, &s.app.settings.policy);
    row.rolled = rolled_note(&s, &rec, now).await?;
    let page = DeletePage {
        c: Chrome::signed_in(&si, "keys", "Delete API key"),
        row,
        usage,
        recent: recent_use(&week),
        week_total: week.iter().sum(),
        spark: Sparkline::new(&week, now).render().map_err(|_| DashError::internal())?,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /keys/{id}/delete`: revokes the key at once (this node's cache forgets it now, others through the feed).
pub async fn delete(
    State(s): State<DashState>,
    si: SignedIn,
    origin: Origin,
    Path(id): Path<String>,
    DashForm(f): DashForm<DeleteForm>,
) -> DashResult {
    si.check_csrf(&f.csrf)?;
    let id = CredentialId::parse(&id).map_err(|_| DashError::no_such_key())?;
    let owner = si.user.id;
    let now = clock::now();
    let who = origin.who(Actor::User(owner));
    let gone = service::delete_key(s.app.store.as_ref(), Some(&s.app.verifier), Some(owner), &id, &who, now).await?;
    match gone {
        Some(k) => {
            s.app.notifier.enqueue_logged(&k, atna_domain::ReminderKind::Deleted, now).await;
            Ok(Redirect::to(&format!("/keys?deleted={}", k.id)).into_response())
        }
        None => match service::why_not_deleted(s.app.store.as_ref(), Some(owner), &id).await? {
            // Sent twice (a double click, a second tab): the first one deleted it.
            service::NotDeleted::AlreadyDeleted => Err(DashError::new(
                StatusCode::GONE,
                "Already deleted",
                "This key was already deleted: it no longer works, and there is nothing left to do.",
            )),
            service::NotDeleted::NoSuchKey => Err(DashError::no_such_key()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_past_the_cap_are_shown_as_the_cap_and_more() {
        assert_eq!(count_label(0), "0");
        assert_eq!(count_label(1030), "1030");
        assert_eq!(count_label(COUNT_CAP), "10000");
        assert_eq!(count_label(COUNT_CAP + 1), "10,000+");
    }
}
