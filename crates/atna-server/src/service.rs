//! Key operations shared by every face (REST API, dashboard, CLI): the rules live here once.

use atna_domain::{
    AllowlistError, ApiKeySecret, CredentialId, ExpiryChoice, GeneratedKey, IpAllowlist, KeyName, KeyNameError, Millis,
    Policy, ScopeError, Scopes, UserId,
};
use atna_store::{KeyRecord, KeyRules, NewKey, Store, StoreError, Who};
use axum::http::StatusCode;

use crate::api::dto::{QuotaRule, RateLimitRule};
use crate::error::ApiError;
use crate::verify::Verifier;
use atna_domain::{LimitError, Quota, RateLimit, Refill, RefillInterval};

/// Why a key was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateKeyError {
    #[error(transparent)]
    Name(#[from] KeyNameError),
    #[error(transparent)]
    Scopes(#[from] ScopeError),
    #[error("A key cannot grant scopes it does not have: {}.", .0.join(", "))]
    ScopeNotHeld(Vec<String>),
    #[error("The expiry date is in the past.")]
    ExpiryInPast,
    #[error(
        "A key cannot make a key that outlives itself: this key expires at {0}, so the new key must expire by then \
         (leave `expires_at` out to get the same expiry)."
    )]
    ExpiryBeyondCaller(String),
    #[error(transparent)]
    IpAllowlist(#[from] AllowlistError),
    #[error(
        "A key cannot make a key usable from more places than itself: outside this key's IP allowlist ({}): {} \
         (leave `ip_allowlist` out to get the same allowlist).",
        .1, .0.join(", ")
    )]
    IpAllowlistBeyondCaller(Vec<String>, String),
    #[error("Invalid rate limit: {0}.")]
    RateLimit(atna_domain::LimitError),
    #[error("Invalid quota: {0}.")]
    Quota(atna_domain::LimitError),
    #[error(
        "A key cannot make a key that may call faster than itself: this key's rate limit is {0}, so the other key's must \
         allow no more (leave `rate_limit` out to get the same)."
    )]
    RateLimitBeyondCaller(String),
    #[error(
        "A key cannot make a key with more uses than it has left ({0}), or a larger refill (leave `quota` out to get \
         what it has left)."
    )]
    QuotaBeyondCaller(i64),
    #[error("You already have a key with this name: choose another.")]
    NameTaken,
    #[error(transparent)]
    LifetimeExceedsPolicy(#[from] atna_domain::LifetimeExceedsPolicy),
    #[error(transparent)]
    Store(StoreError),
}

impl From<CreateKeyError> for ApiError {
    fn from(e: CreateKeyError) -> Self {
        let detail = e.to_string();
        match e {
            CreateKeyError::Name(_) => ApiError::unprocessable("invalid_name", detail),
            CreateKeyError::Scopes(_) => ApiError::unprocessable("invalid_scopes", detail),
            CreateKeyError::ScopeNotHeld(_) => ApiError::new(StatusCode::FORBIDDEN, "scope_not_held", detail),
            CreateKeyError::ExpiryInPast => ApiError::unprocessable("invalid_expiry", detail),
            CreateKeyError::ExpiryBeyondCaller(_) => ApiError::unprocessable("expiry_beyond_caller", detail),
            CreateKeyError::IpAllowlist(_) => ApiError::unprocessable("invalid_ip_allowlist", detail),
            CreateKeyError::IpAllowlistBeyondCaller(..) => {
                ApiError::unprocessable("ip_allowlist_beyond_caller", detail)
            }
            CreateKeyError::RateLimit(_) => ApiError::unprocessable("invalid_rate_limit", detail),
            CreateKeyError::Quota(_) => ApiError::unprocessable("invalid_quota", detail),
            CreateKeyError::RateLimitBeyondCaller(_) => ApiError::unprocessable("rate_limit_beyond_caller", detail),
            CreateKeyError::QuotaBeyondCaller(_) => ApiError::unprocessable("quota_beyond_caller", detail),
            CreateKeyError::NameTaken => ApiError::new(StatusCode::CONFLICT, "name_taken", detail),
            CreateKeyError::LifetimeExceedsPolicy(_) => ApiError::unprocessable("lifetime_exceeds_policy", detail),
            CreateKeyError::Store(e) => e.into(),
        }
    }
}

/// What a new key should be.
pub struct KeySpec<'a> {
    pub name: &'a str,
    pub scopes: &'a [String],
    pub expires_at: Option<Millis>,
    /// Where the key may be used from (CIDR ranges or single addresses); empty: anywhere, or, for a key made by a
    /// key, the same allowlist as that key.
    pub ip_allowlist: &'a [String],
    /// At most this many requests per period; `None`: no limit.
    pub rate_limit: Option<RateLimitRule>,
    /// A usage quota; `None`: none.
    pub quota: Option<&'a QuotaRule>,
    /// The key making this key through the API; `None` for an owner acting in person (dashboard) or the operator
    /// (CLI). A key grants only scopes it holds, never makes a key that outlives it (an omitted expiry becomes its
    /// own) or that works from addresses it does not (an omitted allowlist becomes its own), and is recorded as the
    /// new key's creator.
    pub by_key: Option<&'a KeyRecord>,
    /// The dashboard form's nonce: creating twice with one nonce fails (`NameTaken`) instead of making two keys.
    pub once: Option<&'a str>,
}

/// Creates a key for `owner` and returns its record and secret. The record is committed before this returns, so the
/// secret may then be shown.
pub async fn create_key(
    store: &dyn Store,
    owner: UserId,
    who: impl Into<Who>,
    spec: KeySpec<'_>,
    now: Millis,
) -> Result<(KeyRecord, ApiKeySecret), CreateKeyError> {
    create_key_presented(store, owner, who, spec, now, |rec, secret| (rec.clone(), secret.clone())).await
}

/// Creates a key for `owner`, having `present` build what will show the secret *before* the key is committed: if
/// building the response fails (even by panicking), no key exists whose secret nobody saw. Only sending what
/// `present` built is left after the commit.
pub async fn create_key_presented<R>(
    store: &dyn Store,
    owner: UserId,
    who: impl Into<Who>,
    spec: KeySpec<'_>,
    now: Millis,
    present: impl FnOnce(&KeyRecord, &ApiKeySecret) -> R,
) -> Result<R, CreateKeyError> {
    let open = Lifetime { policy: &Policy::default(), never: false };
    create_key_under(store, owner, who, spec, open, now, present).await
}

/// The installation's lifetime rules for a new key, and whether its creator explicitly chose "never expires".
#[derive(Clone, Copy)]
pub struct Lifetime<'a> {
    pub policy: &'a Policy,
    /// The creator chose no expiry (the dashboard's "Never"); otherwise an omitted `expires_at` means "the default".
    pub never: bool,
}

/// [`create_key_presented`] under a policy: an omitted expiry becomes the policy's default lifetime, and an expiry
/// beyond its maximum lifetime (or "never", when there is one) is refused with
/// [`CreateKeyError::LifetimeExceedsPolicy`], never shortened.
pub async fn create_key_under<R>(
    store: &dyn Store,
    owner: UserId,
    who: impl Into<Who>,
    spec: KeySpec<'_>,
    lifetime: Lifetime<'_>,
    now: Millis,
    present: impl FnOnce(&KeyRecord, &ApiKeySecret) -> R,
) -> Result<R, CreateKeyError> {
    let name = KeyName::parse(spec.name)?;
    let scopes = Scopes::parse(spec.scopes)?;
    if spec.expires_at.is_some_and(|t| t <= now) {
        return Err(CreateKeyError::ExpiryInPast);
    }
    let choice = match (spec.expires_at, lifetime.never) {
        (Some(t), _) => ExpiryChoice::At(t),
        (None, true) => ExpiryChoice::Never,
        (None, false) => ExpiryChoice::Default,
    };
    let mut ip_allowlist = IpAllowlist::parse(spec.ip_allowlist)?;
    if let Some(parent) = spec.by_key {
        let missing: Vec<String> = scopes.missing_from(&parent.scopes).map(str::to_owned).collect();
        if !missing.is_empty() {
            return Err(CreateKeyError::ScopeNotHeld(missing));
        }
        if let Some(limit) = parent.expires_at {
            match choice {
                ExpiryChoice::At(t) if t > limit => return Err(CreateKeyError::ExpiryBeyondCaller(rfc3339(limit))),
                ExpiryChoice::Never => return Err(CreateKeyError::ExpiryBeyondCaller(rfc3339(limit))),
                _ => {}
            }
        }
    }
    let mut expires_at = lifetime.policy.expiry(choice, now)?;
    if let Some(parent) = spec.by_key {
        // Left out: the caller's own expiry, or the policy's default when that comes sooner.
        if let (ExpiryChoice::Default, Some(limit)) = (choice, parent.expires_at) {
            expires_at = Some(expires_at.map_or(limit, |t| t.min(limit)));
        }
        ip_allowlist = ip_allowlist_within(ip_allowlist, &parent.rules.ip_allowlist)?;
    }
    let mut rate_limit = spec.rate_limit.map(rate_limit_of).transpose().map_err(CreateKeyError::RateLimit)?;
    let mut quota = spec.quota.map(|q| quota_of(q, now)).transpose().map_err(CreateKeyError::Quota)?;
    if let Some(parent) = spec.by_key {
        rate_limit = rate_limit_within(rate_limit, parent.rules.rate_limit)?;
        quota = quota_within(quota, parent.rules.quota.as_ref(), now)?;
    }
    // The installation's prefix as recorded now, so every node and the CLI issue the same one.
    let prefix = store.key_prefixes().await.map_err(CreateKeyError::Store)?.current.unwrap_or_default();
    let g = GeneratedKey::generate_with(&prefix);
    let new = NewKey {
        form_nonce: spec.once.map(str::to_owned),
        id: g.id,
        owner,
        name,
        hash: g.hash,
        scopes,
        created_at: now,
        expires_at,
        actor: who.into(),
        created_by_key: spec.by_key.map(|k| k.id),
        rules: KeyRules { ip_allowlist, rate_limit, quota },
        rolled_from: None,
    };
    let shown = present(&new.record(), &g.secret);
    match store.insert_key(new).await {
        Ok(_) => Ok(shown),
        Err(StoreError::Conflict(_)) => Err(CreateKeyError::NameTaken),
        Err(e) => Err(CreateKeyError::Store(e)),
    }
}

/// A rate limit from its JSON form.
pub fn rate_limit_of(r: RateLimitRule) -> Result<RateLimit, LimitError> {
    let limit = u32::try_from(r.limit).map_err(|_| LimitError::Limit)?;
    let period = u32::try_from(r.period_seconds).map_err(|_| LimitError::Period)?;
    RateLimit::new(limit, period)
}

/// A new key's quota from its JSON form, filled at `now`.
pub fn quota_of(q: &QuotaRule, now: Millis) -> Result<Quota, LimitError> {
    let refill = q
        .refill
        .as_ref()
        .map(|r| RefillInterval::parse(&r.interval).and_then(|i| Refill::new(r.amount, i)))
        .transpose()?;
    Quota::new(q.remaining, refill, now)
}

/// The rate limit of a key made (or changed) by a key whose own limit is `parent`: the parent's when none is given,
/// else the one given if it allows no more at once (`limit`) and no more over time (requests per second) than the
/// parent's. A limited key cannot make an unlimited one.
pub fn rate_limit_within(
    child: Option<RateLimit>,
    parent: Option<RateLimit>,
) -> Result<Option<RateLimit>, CreateKeyError> {
    let Some(p) = parent else { return Ok(child) };
    let Some(c) = child else { return Ok(Some(p)) };
    // c.limit / c.period <= p.limit / p.period, in integers.
    let slower =
        u64::from(c.limit()) * u64::from(p.period_seconds()) <= u64::from(p.limit()) * u64::from(c.period_seconds());
    if c.limit() <= p.limit() && slower {
        Ok(Some(c))
    } else {
        Err(CreateKeyError::RateLimitBeyondCaller(p.to_string()))
    }
}

/// The quota of a key made (or changed) by a key whose own quota is `parent`: at most the uses the parent has left now
/// (with the parent's refill when none is given); leave it out and the new key gets that. A key with a quota cannot
/// make a key without one.
pub fn quota_within(
    child: Option<Quota>,
    parent: Option<&Quota>,
    now: Millis,
) -> Result<Option<Quota>, CreateKeyError> {
    let Some(p) = parent else { return Ok(child) };
    let left = p.remaining_at(now).max(0);
    match child {
        None => Quota::new(left, p.refill, now).map(Some).map_err(CreateKeyError::Quota),
        Some(c) if c.remaining <= left && c.refill.is_none_or(|r| p.refill.is_some_and(|pr| r.amount <= pr.amount)) => {
            Ok(Some(c))
        }
        Some(_) => Err(CreateKeyError::QuotaBeyondCaller(left)),
    }
}

/// The allowlist of a key made by a key with allowlist `parent`: the parent's when none is given, else the one given
/// if each of its ranges lies inside one of the parent's.
fn ip_allowlist_within(child: IpAllowlist, parent: &IpAllowlist) -> Result<IpAllowlist, CreateKeyError> {
    if child.is_empty() {
        return Ok(parent.clone());
    }
    let wider: Vec<String> = child.beyond(parent).map(ToString::to_string).collect();
    if wider.is_empty() {
        Ok(child)
    } else {
        let parent = parent.ranges().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        Err(CreateKeyError::IpAllowlistBeyondCaller(wider, parent))
    }
}

fn rfc3339(t: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(t).map_or_else(|| t.to_string(), |d| d.to_rfc3339())
}

/// Why a delete found no live key to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotDeleted {
    /// The owner deleted this key before: a retried delete is recognisable as such (410 `key_already_deleted`).
    AlreadyDeleted,
    /// The owner has no such key: another user's key looks exactly like a missing one (404).
    NoSuchKey,
}

impl From<NotDeleted> for ApiError {
    fn from(n: NotDeleted) -> Self {
        match n {
            NotDeleted::AlreadyDeleted => ApiError::new(
                StatusCode::GONE,
                "key_already_deleted",
                "This key was already deleted: it no longer works, and there is nothing left to do.",
            ),
            NotDeleted::NoSuchKey => ApiError::no_such_key(),
        }
    }
}

/// Why deleting `id` for `owner` (`None`: the operator) found nothing to delete.
pub async fn why_not_deleted(
    store: &dyn Store,
    owner: Option<UserId>,
    id: &CredentialId,
) -> Result<NotDeleted, StoreError> {
    Ok(match store.auth_record(id).await? {
        Some(a) if owner.is_none_or(|o| a.key.owner == o) && a.key.status == atna_domain::KeyStatus::Revoked => {
            NotDeleted::AlreadyDeleted
        }
        _ => NotDeleted::NoSuchKey,
    })
}

/// Deletes (revokes) a key and forgets it on this node at once; other nodes and processes learn it from the change
/// feed. `owner: None` is the operator. Returns the deleted key, or `None` when there was no such key (of that
/// owner).
pub async fn delete_key(
    store: &dyn Store,
    verifier: Option<&Verifier>,
    owner: Option<UserId>,
    id: &CredentialId,
    who: &Who,
    now: Millis,
) -> Result<Option<KeyRecord>, StoreError> {
    let gone = store.revoke_key(owner, id, who, now).await?;
    if let (Some(v), Some(_)) = (verifier, &gone) {
        v.evict(id);
    }
    Ok(gone)
}
