//! Key operations shared by every face (REST API, dashboard, CLI): the rules live here once.

use atna_domain::{
    ApiKeySecret, CredentialId, GeneratedKey, KeyName, KeyNameError, Millis, ScopeError, Scopes, UserId,
};
use atna_store::{Actor, KeyRecord, NewKey, Store, StoreError};
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
    /// The scopes the creator may grant; `None` for an owner acting in person (dashboard) or the operator (CLI).
    pub grantable: Option<&'a Scopes>,
    /// The dashboard form's nonce: creating twice with one nonce fails (`NameTaken`) instead of making two keys.
    pub once: Option<&'a str>,
}

/// Creates a key for `owner`. The record is committed before this returns, so the secret may then be shown.
pub async fn create_key(
    store: &dyn Store,
    owner: UserId,
    actor: Actor,
    spec: KeySpec<'_>,
    now: Millis,
) -> Result<(KeyRecord, ApiKeySecret), CreateKeyError> {
    let name = KeyName::parse(spec.name)?;
    let scopes = Scopes::parse(spec.scopes)?;
    if let Some(grantable) = spec.grantable {
        let missing: Vec<String> = scopes.missing_from(grantable).map(str::to_owned).collect();
        if !missing.is_empty() {
            return Err(CreateKeyError::ScopeNotHeld(missing));
        }
    }
    if spec.expires_at.is_some_and(|t| t <= now) {
        return Err(CreateKeyError::ExpiryInPast);
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
        expires_at: spec.expires_at,
        actor,
    };
    match store.insert_key(new).await {
        Ok(rec) => Ok((rec, g.secret)),
        Err(StoreError::Conflict(_)) => Err(CreateKeyError::NameTaken),
        Err(e) => Err(CreateKeyError::Store(e)),
    }
}

/// Deletes (revokes) a key and forgets it on this node at once; other nodes and processes learn it from the change
/// feed. `owner: None` is the operator. Returns the deleted key, or `None` when there was no such key (of that
/// owner).
pub async fn delete_key(
    store: &dyn Store,
    verifier: Option<&Verifier>,
    owner: Option<UserId>,
    id: &CredentialId,
    actor: Actor,
    now: Millis,
) -> Result<Option<KeyRecord>, StoreError> {
    let gone = store.revoke_key(owner, id, actor, now).await?;
    if let (Some(v), Some(_)) = (verifier, &gone) {
        v.evict(id);
    }
    Ok(gone)
}
