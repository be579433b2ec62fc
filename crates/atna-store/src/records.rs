//! The records the store reads and writes.

use atna_domain::{CredentialId, Email, KeyName, KeyStatus, Millis, PasswordHash, Scopes, SecretHash, UserId};

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub password_hash: PasswordHash,
    pub is_admin: bool,
    pub created_at: Millis,
}

/// A stored user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub password_hash: PasswordHash,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: Millis,
}

/// A key to store. Only the hash of its secret is here.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: CredentialId,
    pub owner: UserId,
    pub name: KeyName,
    pub hash: SecretHash,
    pub scopes: Scopes,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    /// Who created it (for the audit trail).
    pub actor: Actor,
}

/// A stored key's metadata. Never holds the secret or its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: CredentialId,
    pub owner: UserId,
    pub name: KeyName,
    pub scopes: Scopes,
    pub status: KeyStatus,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
    pub last_used_ip: Option<String>,
    pub use_count: i64,
}

/// What the verifier needs about one key.
#[derive(Debug, Clone)]
pub struct AuthRecord {
    pub key: KeyRecord,
    pub hash: SecretHash,
    pub owner_email: Email,
    pub owner_disabled: bool,
}

/// Which page of keys to list.
#[derive(Debug, Clone, Default)]
pub struct KeyQuery {
    /// Keys strictly older than this position (newest first): `(created_at, id)` of the last key of the previous
    /// page.
    pub after: Option<(Millis, CredentialId)>,
    /// Most keys to return.
    pub limit: i64,
    /// Only keys whose name contains this (case-insensitive for ASCII).
    pub search: Option<String>,
}

/// Usage of one key gathered in memory since the last flush.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageUpdate {
    pub id: CredentialId,
    pub count: i64,
    pub last_used_at: Millis,
    pub last_used_ip: Option<String>,
}

/// One entry of the change feed: something every node's key cache must forget.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub seq: i64,
    pub what: ChangeKind,
}

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    /// One key was revoked or changed.
    Key(CredentialId),
    /// A user was disabled or re-enabled: all their keys changed.
    User(UserId),
}

/// Who did something, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user or a key of theirs.
    User(UserId),
    /// The operator, through the `atna` command line.
    Operator,
}

impl Actor {
    /// The user ID, when a user acted.
    pub fn user(self) -> Option<UserId> {
        match self {
            Actor::User(u) => Some(u),
            Actor::Operator => None,
        }
    }
}

/// One line of the audit trail. Survives the key it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub at: Millis,
    pub owner: UserId,
    pub actor: Actor,
    /// `key.created` or `key.deleted`.
    pub action: String,
    pub key_id: Option<CredentialId>,
    pub key_name: Option<String>,
}

/// A dashboard session to create.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: [u8; 32],
    pub user: UserId,
    /// The CSRF token bound to the session.
    pub csrf: String,
    pub created_at: Millis,
    pub idle_expires_at: Millis,
    pub absolute_expires_at: Millis,
}

/// A live session and its user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub created_at: Millis,
    pub idle_expires_at: Millis,
    pub absolute_expires_at: Millis,
}
