//! Online backups of a SQLite installation (`atna backup`): a consistent copy taken with `VACUUM INTO` while servers
//! keep serving, the checks `atna backup --verify` makes on a copy, and what a restored copy needs from the live
//! database to keep later deletions in force.
//!
//! `VACUUM INTO` reads the database in one read transaction, so the copy is the state of one moment: a key is in it
//! whole (row, hash, scopes) or not at all. In WAL mode a reader blocks no writer, so servers keep creating and
//! deleting keys while it runs.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use atna_domain::{CredentialId, KeyName, KeyStatus, Millis, Scopes, SecretHash};
use atna_store::{StoreError, StoreResult};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};

use crate::rows::db;

/// What `atna backup --verify` found in a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The newest migration applied to the copy.
    pub schema_version: i64,
    /// The newest migration this build knows.
    pub known_version: i64,
    pub users: i64,
    /// Keys not deleted (active, disabled or expired).
    pub live_keys: i64,
    /// Deleted (revoked) keys, kept for the audit trail.
    pub deleted_keys: i64,
    pub audit_events: i64,
    /// When the newest audit event was recorded: the copy holds nothing done after this.
    pub newest_event_at: Option<Millis>,
}

/// Later deletions a restored copy must not undo: deleted keys (Credential ID, when) and disabled users (e-mail).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    pub deleted_keys: Vec<(CredentialId, Millis)>,
    pub disabled_users: Vec<String>,
}

async fn connect(url: &str) -> StoreResult<SqliteConnection> {
    SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Database(format!("invalid SQLite URL: {e}")))?
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| StoreError::Database(format!("cannot open {url}: {e}")))
}

/// Writes a consistent copy of the database at `url` into `dest`, which must exist and be empty (the caller creates
/// it with the mode it wants before anything is written). The source is only read: no migration, no write lock.
pub async fn backup_into(url: &str, dest: &Path) -> StoreResult<()> {
    let dest = dest.to_str().ok_or_else(|| StoreError::Database(format!("{} is not UTF-8", dest.display())))?;
    let mut conn = connect(url).await?;
    sqlx::query("VACUUM INTO ?1").bind(dest).execute(&mut conn).await.map_err(db)?;
    conn.close().await.map_err(db)
}

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(what)
}

/// Checks a copy without changing it (opened read-only and immutable): SQLite's integrity and foreign-key checks, the
/// schema version against this build's migrations, and that every key row parses (ID, hash, name, scopes, status).
/// Returns the counts, or `Corrupt` saying what is wrong.
pub async fn verify(path: &Path) -> StoreResult<BackupReport> {
    let mut head = [0u8; 16];
    let read = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .map_err(|e| corrupt(format!("cannot read {}: {e}", path.display())));
    if read.is_err() || &head != b"SQLite format 3\0" {
        read?;
        return Err(corrupt(format!("{} is not a SQLite database", path.display())));
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true)
        .connect()
        .await
        .map_err(|e| corrupt(format!("cannot open {}: {e}", path.display())))?;
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&mut conn).await.map_err(db)?;
    if integrity != ["ok"] {
        return Err(corrupt(format!("integrity check failed: {}", integrity.join("; "))));
    }
    let fk = sqlx::query("PRAGMA foreign_key_check").fetch_all(&mut conn).await.map_err(db)?;
    if !fk.is_empty() {
        return Err(corrupt(format!("{} rows point at missing rows (foreign_key_check)", fk.len())));
    }
    let schema_version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| corrupt(format!("{} is not an atna database (no migration table: {e})", path.display())))?;
    let known_version = sqlx::migrate!("./migrations").iter().map(|m| m.version).max().unwrap_or(0);
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    let users = count("SELECT COUNT(*) FROM users").fetch_one(&mut conn).await.map_err(db)?;
    let audit_events = count("SELECT COUNT(*) FROM audit_events").fetch_one(&mut conn).await.map_err(db)?;
    let newest_event_at: Option<Millis> =
        sqlx::query_scalar("SELECT MAX(at) FROM audit_events").fetch_one(&mut conn).await.map_err(db)?;
    let (mut live_keys, mut deleted_keys) = (0, 0);
    let rows = sqlx::query("SELECT id, name, secret_hash, scopes, status FROM api_keys")
        .fetch_all(&mut conn)
        .await
        .map_err(db)?;
    for r in rows {
        let id: String = r.try_get("id").map_err(db)?;
        let bad = |what: &str| Err(corrupt(format!("key {id}: {what}")));
        if CredentialId::parse(&id).is_err() {
            return bad("not a Credential ID");
        }
        let hash: Vec<u8> = r.try_get("secret_hash").map_err(db)?;
        if SecretHash::from_slice(&hash).is_none() {
            return bad("its secret hash is not 32 bytes");
        }
        if KeyName::from_stored(&r.try_get::<String, _>("name").map_err(db)?).is_err() {
            return bad("invalid name");
        }
        if Scopes::from_stored(&r.try_get::<String, _>("scopes").map_err(db)?).is_err() {
            return bad("invalid scopes");
        }
        match KeyStatus::parse(&r.try_get::<String, _>("status").map_err(db)?) {
            Some(KeyStatus::Revoked) => deleted_keys += 1,
            Some(_) => live_keys += 1,
            None => return bad("unknown status"),
        }
    }
    Ok(BackupReport {
        schema_version: schema_version.unwrap_or(0),
        known_version,
        users,
        live_keys,
        deleted_keys,
        audit_events,
        newest_event_at,
    })
}

/// Every deleted key and disabled user of the (live) database at `url`, read without changing it.
pub async fn revocations(url: &str) -> StoreResult<Revocations> {
    let mut conn = connect(url).await?;
    let mut out = Revocations::default();
    let rows =
        sqlx::query("SELECT id, COALESCE(revoked_at, 0) AS at FROM api_keys WHERE status = 'revoked' ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .map_err(db)?;
    for r in rows {
        let id: String = r.try_get("id").map_err(db)?;
        let id = CredentialId::parse(&id).map_err(|_| corrupt(format!("key {id}: not a Credential ID")))?;
        out.deleted_keys.push((id, r.try_get("at").map_err(db)?));
    }
    out.disabled_users = sqlx::query_scalar("SELECT email FROM users WHERE disabled <> 0 ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .map_err(db)?;
    conn.close().await.map_err(db)?;
    Ok(out)
}
