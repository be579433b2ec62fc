//! Key operations shared by every face (REST API, dashboard, CLI): the rules live here once.

use atna_domain::{
    AllowlistError, ApiKeySecret, CredentialId, GeneratedKey, IpAllowlist, KeyName, KeyNameError, Millis, ScopeError,
    Scopes, UserId,
};
use atna_store::{KeyRecord, KeyRules, NewKey, Store, StoreError, Who};
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::verify::Verifier;

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
    #[error("You already have a key with this name: choose another.")]
    NameTaken,
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
            CreateKeyError::NameTaken => ApiError::new(StatusCode::CONFLICT, "name_taken", detail),
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
    let name = KeyName::parse(spec.name)?;
    let scopes = Scopes::parse(spec.scopes)?;
    if spec.expires_at.is_some_and(|t| t <= now) {
        return Err(CreateKeyError::ExpiryInPast);
    }
    let mut expires_at = spec.expires_at;
    let mut ip_allowlist = IpAllowlist::parse(spec.ip_allowlist)?;
    if let Some(parent) = spec.by_key {
        let missing: Vec<String> = scopes.missing_from(&parent.scopes).map(str::to_owned).collect();
        if !missing.is_empty() {
            return Err(CreateKeyError::ScopeNotHeld(missing));
        }
        if let Some(limit) = parent.expires_at {
            match expires_at {
                None => expires_at = Some(limit),
                Some(t) if t > limit => return Err(CreateKeyError::ExpiryBeyondCaller(rfc3339(limit))),
                Some(_) => {}
            }
        }
        ip_allowlist = ip_allowlist_within(ip_allowlist, &parent.rules.ip_allowlist)?;
    }
    let g = GeneratedKey::generate();
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
        rules: KeyRules { ip_allowlist },
        rolled_from: None,
    };
    let shown = present(&new.record(), &g.secret);
    match store.insert_key(new).await {
        Ok(_) => Ok(shown),
        Err(StoreError::Conflict(_)) => Err(CreateKeyError::NameTaken),
        Err(e) => Err(CreateKeyError::Store(e)),
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
