//! Turning database rows into store records, and sqlx errors into store errors.
//!
//! Shared by both SQL backends: the PostgreSQL crate includes this file with `#[path]`, and each crate says what
//! `crate::DbRow` is. Both schemas use the same column names and types that decode the same way.

use crate::DbRow;
use atna_domain::{CredentialId, Email, IpAllowlist, KeyName, KeyStatus, PasswordHash, Scopes, SecretHash, UserId};
use atna_store::*;
use sqlx::Row;

pub const USER_COLUMNS: &str = "id, email, password_hash, is_admin, disabled, created_at";
pub const KEY_COLUMNS: &str =
    "id, owner_id, name, scopes, status, created_at, expires_at, last_used_at, last_used_ip, use_count, created_by_key, \
     ip_allowlist, rate_limit, rate_period_seconds, quota_remaining, quota_total, quota_refilled_at, \
     quota_refill_amount, quota_refill_interval, rolled_from, rolled_to";
/// A key's rate limit and quota columns, in the order [`StoredLimits`] lists them.
pub const LIMIT_COLUMNS: &str = "rate_limit, rate_period_seconds, quota_remaining, quota_total, quota_refilled_at, \
     quota_refill_amount, quota_refill_interval";

pub fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// A unique-constraint violation becomes `Conflict`, anything else a database error.
pub fn conflict(e: sqlx::Error, what: &'static str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        _ => db(e),
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

pub fn user_from_row(r: &DbRow) -> StoreResult<User> {
    Ok(User {
        id: UserId(r.try_get("id").map_err(db)?),
        email: Email::parse(r.try_get("email").map_err(db)?).map_err(|_| corrupt("user e-mail"))?,
        password_hash: PasswordHash::from_stored(r.try_get("password_hash").map_err(db)?),
        is_admin: r.try_get("is_admin").map_err(db)?,
        disabled: r.try_get("disabled").map_err(db)?,
        created_at: r.try_get("created_at").map_err(db)?,
    })
}

pub fn key_from_row(r: &DbRow) -> StoreResult<KeyRecord> {
    let id: &str = r.try_get("id").map_err(db)?;
    let name: &str = r.try_get("name").map_err(db)?;
    let scopes: &str = r.try_get("scopes").map_err(db)?;
    let status: &str = r.try_get("status").map_err(db)?;
    let (rate_limit, quota) = limits_from_stored(stored_limits(r)?).map_err(corrupt)?;
    Ok(KeyRecord {
        id: CredentialId::parse(id).map_err(|_| corrupt("key id"))?,
        owner: UserId(r.try_get("owner_id").map_err(db)?),
        name: KeyName::from_stored(name).map_err(|_| corrupt("key name"))?,
        scopes: Scopes::from_stored(scopes).map_err(|_| corrupt("key scopes"))?,
        status: KeyStatus::parse(status).ok_or_else(|| corrupt("key status"))?,
        created_at: r.try_get("created_at").map_err(db)?,
        expires_at: r.try_get("expires_at").map_err(db)?,
        last_used_at: r.try_get("last_used_at").map_err(db)?,
        last_used_ip: r.try_get("last_used_ip").map_err(db)?,
        use_count: r.try_get("use_count").map_err(db)?,
        created_by_key: optional_id(r, "created_by_key")?,
        rules: KeyRules {
            ip_allowlist: IpAllowlist::from_stored(r.try_get("ip_allowlist").map_err(db)?)
                .map_err(|_| corrupt("key ip_allowlist"))?,
            rate_limit,
            quota,
        },
        rolled_from: optional_id(r, "rolled_from")?,
        rolled_to: optional_id(r, "rolled_to")?,
    })
}

/// The limit columns of a key row.
fn stored_limits(r: &DbRow) -> StoreResult<StoredLimits<'_>> {
    Ok(StoredLimits {
        rate_limit: r.try_get("rate_limit").map_err(db)?,
        rate_period_seconds: r.try_get("rate_period_seconds").map_err(db)?,
        quota_remaining: r.try_get("quota_remaining").map_err(db)?,
        quota_total: r.try_get("quota_total").map_err(db)?,
        quota_refilled_at: r.try_get("quota_refilled_at").map_err(db)?,
        quota_refill_amount: r.try_get("quota_refill_amount").map_err(db)?,
        quota_refill_interval: r.try_get("quota_refill_interval").map_err(db)?,
    })
}

/// A row of the shared rate-limit table.
pub fn remote_uses_from_row(r: &DbRow) -> StoreResult<RemoteUses> {
    let id: &str = r.try_get("key_id").map_err(db)?;
    Ok(RemoteUses {
        seq: r.try_get("seq").map_err(db)?,
        id: CredentialId::parse(id).map_err(|_| corrupt("rate_limit_uses key id"))?,
        at: r.try_get("at").map_err(db)?,
        uses: r.try_get("uses").map_err(db)?,
    })
}

fn optional_id(r: &DbRow, column: &str) -> StoreResult<Option<CredentialId>> {
    let id: Option<&str> = r.try_get(column).map_err(db)?;
    id.map(CredentialId::parse).transpose().map_err(|_| corrupt(column))
}

pub fn auth_from_row(r: &DbRow) -> StoreResult<AuthRecord> {
    let hash: &[u8] = r.try_get("secret_hash").map_err(db)?;
    let email: &str = r.try_get("owner_email").map_err(db)?;
    Ok(AuthRecord {
        key: key_from_row(r)?,
        hash: SecretHash::from_slice(hash).ok_or_else(|| corrupt("secret hash"))?,
        owner_email: Email::parse(email).map_err(|_| corrupt("owner e-mail"))?,
        owner_disabled: r.try_get("owner_disabled").map_err(db)?,
    })
}

pub fn change_from_row(r: &DbRow) -> StoreResult<Change> {
    let seq = r.try_get("seq").map_err(db)?;
    let key: Option<&str> = r.try_get("key_id").map_err(db)?;
    let user: Option<i64> = r.try_get("user_id").map_err(db)?;
    let what = match (key, user) {
        (Some(k), _) => ChangeKind::Key(CredentialId::parse(k).map_err(|_| corrupt("change key id"))?),
        (None, Some(INSTALLATION_CHANGE_USER)) => ChangeKind::Installation,
        (None, Some(u)) => ChangeKind::User(UserId(u)),
        (None, None) => return Err(corrupt("empty change")),
    };
    Ok(Change { seq, what })
}

pub fn audit_from_row(r: &DbRow) -> StoreResult<AuditEvent> {
    let actor: Option<i64> = r.try_get("actor_id").map_err(db)?;
    let key: Option<&str> = r.try_get("key_id").map_err(db)?;
    Ok(AuditEvent {
        id: r.try_get("id").map_err(db)?,
        at: r.try_get("at").map_err(db)?,
        owner: UserId(r.try_get("owner_id").map_err(db)?),
        actor: Actor::from_stored(actor.map(UserId), optional_id(r, "actor_key_id")?),
        action: r.try_get("action").map_err(db)?,
        key_id: key.map(CredentialId::parse).transpose().map_err(|_| corrupt("audit key id"))?,
        key_name: r.try_get("key_name").map_err(db)?,
        ip: r.try_get("ip").map_err(db)?,
        user_agent: r.try_get("user_agent").map_err(db)?,
        detail: r.try_get("detail").map_err(db)?,
    })
}

pub fn session_from_row(r: &DbRow) -> StoreResult<Session> {
    Ok(Session {
        user: user_from_row(r)?,
        csrf: r.try_get("csrf").map_err(db)?,
        created_at: r.try_get("s_created_at").map_err(db)?,
        idle_expires_at: r.try_get("idle_expires_at").map_err(db)?,
        absolute_expires_at: r.try_get("absolute_expires_at").map_err(db)?,
    })
}

pub fn exported_user_from_row(r: &DbRow) -> StoreResult<ExportedUser> {
    Ok(ExportedUser {
        id: r.try_get("id").map_err(db)?,
        email: r.try_get("email").map_err(db)?,
        password_hash: r.try_get("password_hash").map_err(db)?,
        is_admin: r.try_get("is_admin").map_err(db)?,
        disabled: r.try_get("disabled").map_err(db)?,
        created_at: r.try_get("created_at").map_err(db)?,
    })
}

pub fn exported_key_from_row(r: &DbRow) -> StoreResult<ExportedKey> {
    let hash: &[u8] = r.try_get("secret_hash").map_err(db)?;
    Ok(ExportedKey {
        id: r.try_get("id").map_err(db)?,
        owner_id: r.try_get("owner_id").map_err(db)?,
        name: r.try_get("name").map_err(db)?,
        secret_hash: SecretHash::from_slice(hash).ok_or_else(|| corrupt("secret hash"))?.to_hex(),
        scopes: r.try_get("scopes").map_err(db)?,
        status: r.try_get("status").map_err(db)?,
        created_at: r.try_get("created_at").map_err(db)?,
        expires_at: r.try_get("expires_at").map_err(db)?,
        revoked_at: r.try_get("revoked_at").map_err(db)?,
        last_used_at: r.try_get("last_used_at").map_err(db)?,
        last_used_ip: r.try_get("last_used_ip").map_err(db)?,
        use_count: r.try_get("use_count").map_err(db)?,
        created_by_key: r.try_get("created_by_key").map_err(db)?,
        ip_allowlist: r.try_get("ip_allowlist").map_err(db)?,
        rate_limit: r.try_get("rate_limit").map_err(db)?,
        rate_period_seconds: r.try_get("rate_period_seconds").map_err(db)?,
        quota_remaining: r.try_get("quota_remaining").map_err(db)?,
        quota_total: r.try_get("quota_total").map_err(db)?,
        quota_refilled_at: r.try_get("quota_refilled_at").map_err(db)?,
        quota_refill_amount: r.try_get("quota_refill_amount").map_err(db)?,
        quota_refill_interval: r.try_get("quota_refill_interval").map_err(db)?,
        rolled_from: r.try_get("rolled_from").map_err(db)?,
        rolled_to: r.try_get("rolled_to").map_err(db)?,
    })
}

pub fn exported_audit_from_row(r: &DbRow) -> StoreResult<ExportedAuditEvent> {
    Ok(ExportedAuditEvent {
        at: r.try_get("at").map_err(db)?,
        owner_id: r.try_get("owner_id").map_err(db)?,
        actor_id: r.try_get("actor_id").map_err(db)?,
        action: r.try_get("action").map_err(db)?,
        key_id: r.try_get("key_id").map_err(db)?,
        key_name: r.try_get("key_name").map_err(db)?,
        actor_key_id: r.try_get("actor_key_id").map_err(db)?,
        ip: r.try_get("ip").map_err(db)?,
        user_agent: r.try_get("user_agent").map_err(db)?,
        detail: r.try_get("detail").map_err(db)?,
    })
}

/// The recorded key prefixes from `prefix, is_current` rows, oldest first.
pub fn key_prefixes_from_rows(rows: &[DbRow]) -> StoreResult<KeyPrefixes> {
    let mut out = KeyPrefixes::default();
    for r in rows {
        let p = atna_domain::KeyPrefix::parse(r.try_get("prefix").map_err(db)?).map_err(|_| corrupt("key prefix"))?;
        if r.try_get::<bool, _>("is_current").map_err(db)? {
            out.current = Some(p.clone());
        }
        out.issued.push(p);
    }
    Ok(out)
}

pub fn leak_from_row(r: &DbRow) -> StoreResult<LeakRecord> {
    let id: &str = r.try_get("key_id").map_err(db)?;
    let status: Option<&str> = r.try_get("status").map_err(db)?;
    Ok(LeakRecord::from_stored(
        CredentialId::parse(id).map_err(|_| corrupt("leak key id"))?,
        r.try_get("key_name").map_err(db)?,
        r.try_get("source").map_err(db)?,
        r.try_get("url").map_err(db)?,
        r.try_get("reported_at").map_err(db)?,
        r.try_get("outcome").map_err(db)?,
        status.and_then(KeyStatus::parse),
    ))
}

/// A `LIKE` pattern (with a backslash as its `ESCAPE` character) matching names that contain `text` literally: `%`,
/// `_` and backslashes in it are not wildcards. ASCII letters are lower-cased: the backends' `NAME_MATCH` compares it
/// with the name with ASCII case folded (search is case-insensitive for ASCII only, on both backends).
pub fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c.to_ascii_lowercase());
    }
    p.push('%');
    p
}
