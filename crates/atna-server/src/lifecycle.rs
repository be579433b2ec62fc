//! A key's life after it is made, shared by every face (REST API, dashboard, CLI): rolling it to a new key with an
//! overlap, disabling, enabling and editing it, and an administrator's bulk revocation. Each change is written with its
//! audit event in one store transaction and forgotten by this node's verifier at once; other nodes learn it from the
//! change feed, exactly like a deletion.

use atna_domain::{
    AllowlistError, ApiKeySecret, CredentialId, ExpiryChoice, GeneratedKey, IpAllowlist, KeyName, KeyNameError,
    KeyStatus, LifetimeExceedsPolicy, LimitError, Millis, Policy, ScopeError, Scopes, UserId,
};
use atna_store::{KeyFilter, KeyPatch, KeyRecord, NewKey, Store, StoreError, Who};
use axum::http::StatusCode;

use crate::api::dto::{QuotaRule, RateLimitRule};
use crate::error::ApiError;
use crate::service::{quota_of, quota_within, rate_limit_of, rate_limit_within, CreateKeyError};
use crate::verify::Verifier;

/// The overlap a roll gets when none is asked for: a day, so every service has time to switch.
pub const DEFAULT_OVERLAP_SECS: i64 = 24 * 60 * 60;
/// The longest overlap: 30 days. An old key left working longer than that is not being rolled, it is being kept.
pub const MAX_OVERLAP_SECS: i64 = 30 * 24 * 60 * 60;

/// How many names a roll tries (`name`, `name-2`, … `name-10`) before giving up.
const NAME_TRIES: u32 = 10;

/// Why a key was not rolled, edited, disabled or enabled.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("No such key.")]
    NoSuchKey,
    #[error(
        "This key was already rolled: its successor is {0}. Roll the successor instead, or delete this key to end the \
         overlap now."
    )]
    AlreadyRolled(CredentialId),
    #[error("`overlap_seconds` must be between 0 and {MAX_OVERLAP_SECS} (30 days).")]
    InvalidOverlap,
    #[error(
        "This key has expired, so enabling it would not make it work: give it a new `expires_at` in the same request, \
         or roll it."
    )]
    EnableExpired,
    #[error("A key cannot be set to `{0}`: use `active` or `disabled` (deleting is `DELETE /v1/keys/{{id}}`).")]
    InvalidStatus(String),
    #[error(transparent)]
    Name(#[from] KeyNameError),
    #[error(transparent)]
    Scopes(#[from] ScopeError),
    #[error("You cannot give a key scopes you do not have: {}.", .0.join(", "))]
    ScopeNotHeld(Vec<String>),
    #[error("The expiry date is in the past.")]
    ExpiryInPast,
    #[error("A key cannot make a key outlive itself: this key expires at {0}, so the other key must expire by then.")]
    ExpiryBeyondCaller(String),
    #[error(transparent)]
    IpAllowlist(#[from] AllowlistError),
    #[error("A key cannot make a key usable from more places than itself: outside this key's IP allowlist: {}.", .0.join(", "))]
    IpAllowlistBeyondCaller(Vec<String>),
    #[error("You already have a key with this name: choose another.")]
    NameTaken,
    #[error("Invalid rate limit: {0}.")]
    RateLimit(LimitError),
    #[error("Invalid quota: {0}.")]
    Quota(LimitError),
    #[error(transparent)]
    LifetimeExceedsPolicy(#[from] LifetimeExceedsPolicy),
    /// A rate limit or quota beyond the calling key's own.
    #[error(transparent)]
    LimitBeyondCaller(CreateKeyError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for LifecycleError {
    fn from(e: StoreError) -> Self {
        LifecycleError::Store(e)
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        let detail = e.to_string();
        use LifecycleError::*;
        match e {
            NoSuchKey => ApiError::no_such_key(),
            AlreadyRolled(_) => ApiError::new(StatusCode::CONFLICT, "key_already_rolled", detail),
            InvalidOverlap => ApiError::unprocessable("invalid_overlap", detail),
            EnableExpired => ApiError::unprocessable("key_expired", detail),
            InvalidStatus(_) => ApiError::unprocessable("invalid_status", detail),
            Name(_) => ApiError::unprocessable("invalid_name", detail),
            Scopes(_) => ApiError::unprocessable("invalid_scopes", detail),
            ScopeNotHeld(_) => ApiError::new(StatusCode::FORBIDDEN, "scope_not_held", detail),
            ExpiryInPast => ApiError::unprocessable("invalid_expiry", detail),
            ExpiryBeyondCaller(_) => ApiError::unprocessable("expiry_beyond_caller", detail),
            IpAllowlist(_) => ApiError::unprocessable("invalid_ip_allowlist", detail),
            IpAllowlistBeyondCaller(_) => ApiError::unprocessable("ip_allowlist_beyond_caller", detail),
            NameTaken => ApiError::new(StatusCode::CONFLICT, "name_taken", detail),
            RateLimit(_) => ApiError::unprocessable("invalid_rate_limit", detail),
            Quota(_) => ApiError::unprocessable("invalid_quota", detail),
            LifetimeExceedsPolicy(_) => ApiError::unprocessable("lifetime_exceeds_policy", detail),
            LimitBeyondCaller(e) => e.into(),
            Store(e) => e.into(),
        }
    }
}

/// A live key of `owner` (`None`: the operator, any user's key).
pub async fn live_key(
    store: &dyn Store,
    owner: Option<UserId>,
    id: &CredentialId,
) -> Result<KeyRecord, LifecycleError> {
    let rec = match owner {
        Some(o) => store.get_key(o, id).await?,
        None => store.auth_record(id).await?.map(|a| a.key).filter(|k| k.status != KeyStatus::Revoked),
    };
    rec.ok_or(LifecycleError::NoSuchKey)
}

/// What a roll should do.
pub struct RollSpec<'a> {
    /// How long the old key keeps working, in seconds (0: it stops now).
    pub overlap_secs: i64,
    /// The new key's name; `None`: [`KeyName::rolled`] at now in UTC. The dashboard passes the name in the person's
    /// time zone. Either way `-2`, `-3`, … is added while the name is taken.
    pub name: Option<&'a str>,
    /// The key rolling the key, through the API: the new key never outlives it and holds only scopes it holds.
    pub by_key: Option<&'a KeyRecord>,
    /// The dashboard form's nonce (one key per form, like Save & Add).
    pub once: Option<&'a str>,
    /// The installation's policy: the new key never lives longer than its maximum lifetime.
    pub policy: &'a Policy,
}

/// Rolls key `id` of `owner`: a new key with the old one's scopes and rules, its lifetime as expiry, and a name after
/// the convention with the current time; the old key keeps working until the overlap ends and then answers
/// `key_expired`. `present` builds what shows the new secret (given the old key as it will be, the new key and its
/// secret) before the new key is committed. Returns what `present` built and the old key as it now is.
// Every face passes the same context (store, this node's verifier, owner scope, actor, time): a struct for it would
// only move the eight names elsewhere.
#[allow(clippy::too_many_arguments)]
pub async fn roll_key<R>(
    store: &dyn Store,
    verifier: Option<&Verifier>,
    owner: Option<UserId>,
    id: &CredentialId,
    who: Who,
    spec: RollSpec<'_>,
    now: Millis,
    mut present: impl FnMut(&KeyRecord, &KeyRecord, &ApiKeySecret) -> R,
) -> Result<(R, KeyRecord), LifecycleError> {
    if !(0..=MAX_OVERLAP_SECS).contains(&spec.overlap_secs) {
        return Err(LifecycleError::InvalidOverlap);
    }
    let old = live_key(store, owner, id).await?;
    if let Some(next) = old.rolled_to {
        return Err(LifecycleError::AlreadyRolled(next));
    }
    let mut expires_at = match old.expires_at {
        Some(t) => Some(now.saturating_add((t - old.created_at).max(0))),
        None => None,
    };
    // The old key's lifetime, never beyond the policy's maximum (a roll is not a request for a longer life: capped,
    // not refused).
    if let Some(max_days) = spec.policy.max_lifetime_days {
        let latest = now.saturating_add(max_days.saturating_mul(24 * 60 * 60 * 1000));
        expires_at = Some(expires_at.map_or(latest, |t| t.min(latest)));
    }
    if let Some(caller) = spec.by_key {
        let missing: Vec<String> = old.scopes.missing_from(&caller.scopes).map(str::to_owned).collect();
        if !missing.is_empty() {
            return Err(LifecycleError::ScopeNotHeld(missing));
        }
        if let Some(limit) = caller.expires_at {
            expires_at = Some(expires_at.map_or(limit, |t| t.min(limit)));
        }
    }
    let base = match spec.name {
        Some(n) => KeyName::parse(n)?.as_str().to_owned(),
        None => old.name.rolled(&chrono::Utc::now()),
    };
    let old_expires_at = now.saturating_add(spec.overlap_secs * 1000);
    // The installation's prefix as recorded now, as for any new key.
    let prefix = store.key_prefixes().await?.current.unwrap_or_default();
    for n in 1..=NAME_TRIES {
        let name = KeyName::parse(&KeyName::numbered(&base, n))?;
        let g = GeneratedKey::generate_with(&prefix);
        let new = NewKey {
            id: g.id,
            owner: old.owner,
            name,
            hash: g.hash,
            scopes: old.scopes.clone(),
            created_at: now,
            expires_at,
            actor: who.clone(),
            form_nonce: spec.once.map(str::to_owned),
            created_by_key: spec.by_key.map(|k| k.id),
            // The rules as a whole, so whatever they hold (allowlist, limits) carries over.
            rules: old.rules.clone(),
            rolled_from: Some(old.id),
        };
        let mut new = new;
        // The quota left as this node counts it (uses not yet synced included), not only as stored.
        if let (Some(q), Some(v)) = (new.rules.quota.as_mut(), verifier) {
            if let (_, Some(left)) = v.limits().peek(&old.id, now) {
                q.remaining = q.remaining.min(left);
            }
        }
        let mut old_after = old.clone();
        old_after.rolled_to = Some(new.id);
        old_after.expires_at = Some(old.expires_at.map_or(old_expires_at, |t| t.min(old_expires_at)));
        let shown = present(&old_after, &new.record(), &g.secret);
        let new_id = new.id;
        match store.roll_key(owner, &old.id, new, old_expires_at).await {
            Ok(Some(_)) => {
                if let Some(v) = verifier {
                    v.limits().carry_over(&old.id, new_id, now);
                    v.evict(&old.id);
                }
                return Ok((shown, old_after));
            }
            // Rolled meanwhile (a second tab, another node) or deleted.
            Ok(None) => {
                return Err(match live_key(store, owner, id).await?.rolled_to {
                    Some(next) => LifecycleError::AlreadyRolled(next),
                    None => LifecycleError::NoSuchKey,
                })
            }
            Err(StoreError::Conflict(_)) => {
                // The same dashboard form sent twice: the caller shows the key it made.
                if let Some(nonce) = spec.once {
                    if store.key_by_form_nonce(old.owner, nonce).await?.is_some() {
                        return Err(LifecycleError::NameTaken);
                    }
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(LifecycleError::NameTaken)
}

/// A change to a key as a client asked for it, before it is checked.
#[derive(Debug, Default, Clone)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<Millis>>,
    /// `Some(None)` or an empty list: anywhere.
    pub ip_allowlist: Option<Option<Vec<String>>>,
    /// `active` or `disabled`.
    pub status: Option<String>,
    /// `Some(None)`: no rate limit.
    pub rate_limit: Option<Option<RateLimitRule>>,
    /// `Some(None)`: no quota. A quota given is set as given (`remaining` uses left from now).
    pub quota: Option<Option<QuotaRule>>,
}

/// Checks and applies a change to key `id` of `owner` (`None`: the operator). `by_key` is the key making the change
/// through the API: it cannot grant scopes it lacks, make the key outlive it, or widen its allowlist beyond its own.
/// Enabling a key that stays expired is refused, and so is an expiry beyond the `policy`'s maximum lifetime. Returns
/// the key as it now is.
#[allow(clippy::too_many_arguments)] // see `roll_key`
pub async fn update_key(
    store: &dyn Store,
    verifier: Option<&Verifier>,
    owner: Option<UserId>,
    id: &CredentialId,
    changes: KeyChanges,
    who: &Who,
    by_key: Option<&KeyRecord>,
    policy: &Policy,
    now: Millis,
) -> Result<KeyRecord, LifecycleError> {
    let current = live_key(store, owner, id).await?;
    let mut patch = KeyPatch::default();
    if let Some(n) = &changes.name {
        patch.name = Some(KeyName::parse(n)?);
    }
    if let Some(s) = &changes.scopes {
        let scopes = Scopes::parse(s)?;
        if let Some(caller) = by_key {
            let missing: Vec<String> = scopes.missing_from(&caller.scopes).map(str::to_owned).collect();
            if !missing.is_empty() {
                return Err(LifecycleError::ScopeNotHeld(missing));
            }
        }
        patch.scopes = Some(scopes);
    }
    if let Some(e) = changes.expires_at {
        if e.is_some_and(|t| t <= now) {
            return Err(LifecycleError::ExpiryInPast);
        }
        if let Some(limit) = by_key.and_then(|k| k.expires_at) {
            if e.is_none_or(|t| t > limit) {
                return Err(LifecycleError::ExpiryBeyondCaller(rfc3339(limit)));
            }
        }
        let choice = e.map_or(ExpiryChoice::Never, ExpiryChoice::At);
        policy.expiry(choice, now)?;
        patch.expires_at = Some(e);
    }
    if let Some(list) = &changes.ip_allowlist {
        let list = IpAllowlist::parse(list.as_deref().unwrap_or_default())?;
        if let Some(caller) = by_key.filter(|k| !k.rules.ip_allowlist.is_empty()) {
            let wider: Vec<String> = if list.is_empty() {
                vec!["anywhere".into()]
            } else {
                list.beyond(&caller.rules.ip_allowlist).map(ToString::to_string).collect()
            };
            if !wider.is_empty() {
                return Err(LifecycleError::IpAllowlistBeyondCaller(wider));
            }
        }
        patch.rules.get_or_insert_with(|| current.rules.clone()).ip_allowlist = list;
    }
    if let Some(rate) = changes.rate_limit {
        let mut rate = rate.map(rate_limit_of).transpose().map_err(LifecycleError::RateLimit)?;
        if let Some(limit) = by_key.and_then(|k| k.rules.rate_limit) {
            // Removing the limit is asking for more than a limited caller has.
            let beyond = || LifecycleError::LimitBeyondCaller(CreateKeyError::RateLimitBeyondCaller(limit.to_string()));
            rate = rate_limit_within(Some(rate.ok_or_else(beyond)?), Some(limit))
                .map_err(LifecycleError::LimitBeyondCaller)?;
        }
        patch.rules.get_or_insert_with(|| current.rules.clone()).rate_limit = rate;
    }
    if let Some(quota) = &changes.quota {
        let mut quota = quota.as_ref().map(|q| quota_of(q, now)).transpose().map_err(LifecycleError::Quota)?;
        if let Some(caller) = by_key.filter(|k| k.rules.quota.is_some()) {
            let Some(q) = quota else {
                let left = caller.rules.quota.map_or(0, |q| q.remaining_at(now).max(0));
                return Err(LifecycleError::LimitBeyondCaller(CreateKeyError::QuotaBeyondCaller(left)));
            };
            quota =
                quota_within(Some(q), caller.rules.quota.as_ref(), now).map_err(LifecycleError::LimitBeyondCaller)?;
        }
        patch.rules.get_or_insert_with(|| current.rules.clone()).quota = quota;
    }
    if patch.rules.as_ref() == Some(&current.rules) {
        patch.rules = None;
    }
    if let Some(s) = &changes.status {
        let status = match s.as_str() {
            "active" => KeyStatus::Active,
            "disabled" => KeyStatus::Disabled,
            other => return Err(LifecycleError::InvalidStatus(other.chars().take(32).collect())),
        };
        let expiry = patch.expires_at.unwrap_or(current.expires_at);
        if status == KeyStatus::Active && current.status != KeyStatus::Active && expiry.is_some_and(|t| t <= now) {
            return Err(LifecycleError::EnableExpired);
        }
        patch.status = Some(status);
    }
    if patch.is_empty() {
        return Ok(current);
    }
    let (_, after) = match store.update_key(owner, id, &patch, who, now).await {
        Ok(Some(pair)) => pair,
        Ok(None) => return Err(LifecycleError::NoSuchKey),
        Err(StoreError::Conflict(_)) => return Err(LifecycleError::NameTaken),
        Err(e) => return Err(e.into()),
    };
    if let Some(v) = verifier {
        v.evict(id);
    }
    Ok(after)
}

/// Disables or enables a key: [`update_key`] with only `status`.
pub async fn set_key_status(
    store: &dyn Store,
    verifier: Option<&Verifier>,
    owner: Option<UserId>,
    id: &CredentialId,
    disabled: bool,
    who: &Who,
    now: Millis,
) -> Result<KeyRecord, LifecycleError> {
    let status = if disabled { "disabled" } else { "active" };
    let changes = KeyChanges { status: Some(status.into()), ..KeyChanges::default() };
    update_key(store, verifier, owner, id, changes, who, None, &Policy::default(), now).await
}

/// What a bulk revocation would take: the keys, newest first, and how many of them were used in the last day and
/// the last week (the traffic it will cut).
pub struct RevokePreview {
    pub keys: Vec<KeyRecord>,
    pub used_last_day: usize,
    pub used_last_week: usize,
}

const DAY_MS: Millis = 24 * 60 * 60 * 1000;

/// The keys `filter` matches now. Pass the same filter, with `created_before` at most `now` of this preview, to
/// [`revoke_all`], and it revokes exactly these keys (keys made after the preview are not taken; keys deleted in
/// between are already gone).
pub async fn preview_revoke(
    store: &dyn Store,
    verifier: Option<&Verifier>,
    filter: &KeyFilter,
    now: Millis,
) -> Result<RevokePreview, StoreError> {
    let mut keys = store.keys_matching(filter).await?;
    if let Some(v) = verifier {
        keys.iter_mut().for_each(|k| v.overlay_usage(k));
    }
    let used = |since: Millis| keys.iter().filter(|k| k.last_used_at.is_some_and(|t| t >= since)).count();
    let (used_last_day, used_last_week) = (used(now - DAY_MS), used(now - 7 * DAY_MS));
    Ok(RevokePreview { keys, used_last_day, used_last_week })
}

/// The filter of a bulk revocation previewed at `preview_at`: only keys that existed when the preview was taken.
pub fn as_previewed(filter: KeyFilter, preview_at: Millis) -> KeyFilter {
    let cap = preview_at.saturating_add(1);
    KeyFilter { created_before: Some(filter.created_before.map_or(cap, |t| t.min(cap))), ..filter }
}

/// Revokes every live key `filter` matches, as one audit event (`keys.revoked`, with `detail` saying what was asked
/// for), and forgets them on this node at once. Returns the revoked keys.
pub async fn revoke_all(
    store: &dyn Store,
    verifier: Option<&Verifier>,
    filter: &KeyFilter,
    detail: serde_json::Map<String, serde_json::Value>,
    who: &Who,
    now: Millis,
) -> Result<Vec<KeyRecord>, StoreError> {
    let gone = store.revoke_keys(filter, who, detail, now).await?;
    if let Some(v) = verifier {
        gone.iter().for_each(|k| v.evict(&k.id));
    }
    Ok(gone)
}

fn rfc3339(t: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(t).map_or_else(|| t.to_string(), |d| d.to_rfc3339())
}
