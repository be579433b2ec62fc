//! The PostgreSQL backend, for several atna nodes on one database.
//!
//! The same schema and behaviour as the SQLite backend (one conformance suite runs against both); what differs is how
//! nodes learn about changes. Every transaction that revokes a key or disables a user appends to the `changes` table
//! under a transaction-level advisory lock (so sequence numbers become visible in order) and sends
//! `NOTIFY atna_changes`. A listener task per store holds a dedicated connection with `LISTEN atna_changes` and wakes
//! the node's change follower within milliseconds; when that connection breaks, the follower is told (`Wake::Lost`)
//! so it forgets everything cached, and the listener reconnects with backoff. Polling on a timer stays as the
//! safety net for a connection that dies silently.
//!
//! Migrations run under sqlx's advisory lock, so nodes starting together apply them once.

mod listener;
pub mod testdb;

#[path = "../../atna-store-sqlite/src/rows.rs"]
mod rows;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use atna_domain::{CredentialId, Email, Millis, PasswordHash, UserId};
use atna_store::*;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use listener::Listener;
use rows::{db, key_from_row, user_from_row, KEY_COLUMNS, USER_COLUMNS};

/// The row type `rows.rs` decodes.
type DbRow = sqlx::postgres::PgRow;

/// The channel change notifications are sent on.
pub const CHANNEL: &str = "atna_changes";

/// Held (per transaction) by every writer of the change feed, so feed entries commit in sequence order.
const FEED_LOCK: i64 = 0x6174_6e61_6665_6564; // "atnafeed"

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How to open a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Most connections in the pool (the listener's connection is extra).
    pub max_connections: u32,
    /// How long a request waits for a free connection (or for the server) before it fails.
    pub acquire_timeout: Duration,
    /// Run migrations on open. `atna serve` and `atna migrate` do; tests of migration races may not.
    pub migrate: bool,
    /// How long [`PgStore::open`] keeps trying while the server cannot be reached (it is still starting, say).
    /// Zero: one attempt. Other errors (a wrong password, a missing database) fail at once.
    pub wait: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self { max_connections: 10, acquire_timeout: Duration::from_secs(2), migrate: true, wait: Duration::ZERO }
    }
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    listener: Arc<Listener>,
}

impl PgStore {
    /// Connects to the database at a `postgres://` URL, migrates it, and starts listening for changes.
    pub async fn open(url: &str, settings: &PgSettings) -> StoreResult<Self> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("atna");
        Self::open_with(opts, settings).await
    }

    /// Like [`open`](Self::open), from parsed options (tests use this to pick a schema).
    pub async fn open_with(opts: PgConnectOptions, settings: &PgSettings) -> StoreResult<Self> {
        let deadline = tokio::time::Instant::now() + settings.wait;
        let pool = loop {
            let attempt = PgPoolOptions::new()
                .max_connections(settings.max_connections.max(1))
                .acquire_timeout(settings.acquire_timeout)
                // A connection that broke while idle (a server restart) is found out before a request gets it.
                .test_before_acquire(true)
                .connect_with(opts.clone())
                .await;
            match attempt {
                Ok(pool) => break pool,
                Err(e @ (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)))
                    if tokio::time::Instant::now() + Duration::from_secs(1) < deadline =>
                {
                    tracing::warn!(error = %e, "PostgreSQL is not reachable yet; waiting for it");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(StoreError::Database(format!("cannot connect to PostgreSQL: {e}"))),
            }
        };
        if settings.migrate {
            MIGRATOR.run(&pool).await.map_err(|e| StoreError::Database(format!("migrating: {e}")))?;
        }
        // Named after this process, so an operator (or a test) can tell which node's listener a connection is.
        let name = format!("atna-listener-{}", std::process::id());
        let listener = Listener::start(opts.application_name(&name), settings.acquire_timeout);
        Ok(Self { pool, listener })
    }

    /// The PostgreSQL backend PID of this store's `LISTEN` connection, once it listens (`None` while it is
    /// connecting or reconnecting).
    pub fn listener_pid(&self) -> Option<u32> {
        self.listener.backend_pid()
    }

    /// The connection pool (for tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Appends to the change feed inside `tx` and notifies listeners (delivered when `tx` commits).
async fn publish(
    tx: &mut Transaction<'_, Postgres>,
    key: Option<&str>,
    user: Option<i64>,
    at: Millis,
) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(FEED_LOCK).execute(&mut **tx).await.map_err(db)?;
    let seq: i64 = sqlx::query_scalar("INSERT INTO changes (key_id, user_id, at) VALUES ($1, $2, $3) RETURNING seq")
        .bind(key)
        .bind(user)
        .bind(at)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(seq.to_string()).execute(&mut **tx).await.map_err(db)?;
    Ok(())
}

async fn audit(
    tx: &mut Transaction<'_, Postgres>,
    at: Millis,
    owner: UserId,
    actor: Actor,
    action: &str,
    key: &CredentialId,
    key_name: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (at, owner_id, actor_id, action, key_id, key_name) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(at)
    .bind(owner.0)
    .bind(actor.user().map(|u| u.0))
    .bind(action)
    .bind(key.as_str())
    .bind(key_name)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn create_user(&self, u: NewUser) -> StoreResult<User> {
        let row = sqlx::query(&format!(
            "INSERT INTO users (email, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING {USER_COLUMNS}"
        ))
        .bind(u.email.as_str())
        .bind(u.password_hash.as_str())
        .bind(u.is_admin)
        .bind(u.created_at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| rows::conflict(e, "a user with this e-mail address"))?;
        user_from_row(&row)
    }

    async fn user_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn count_users(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await.map_err(db)
    }

    async fn set_user_disabled(&self, id: UserId, disabled: bool, at: Millis) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let n = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(disabled)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id.0).execute(&mut *tx).await.map_err(db)?;
        }
        publish(&mut tx, None, Some(id.0), at).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn set_password(&self, id: UserId, hash: &PasswordHash) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash.as_str())
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }

    async fn insert_key(&self, k: NewKey) -> StoreResult<KeyRecord> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(&format!(
            "INSERT INTO api_keys (id, owner_id, name, secret_hash, scopes, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {KEY_COLUMNS}"
        ))
        .bind(k.id.as_str())
        .bind(k.owner.0)
        .bind(k.name.as_str())
        .bind(&k.hash.as_bytes()[..])
        .bind(k.scopes.to_stored())
        .bind(k.created_at)
        .bind(k.expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| rows::conflict(e, "a key with this name"))?;
        audit(&mut tx, k.created_at, k.owner, k.actor, "key.created", &k.id, k.name.as_str()).await?;
        tx.commit().await.map_err(db)?;
        key_from_row(&row)
    }

    async fn get_key(&self, owner: UserId, id: &CredentialId) -> StoreResult<Option<KeyRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND owner_id = $2 AND status <> 'revoked'"
        ))
        .bind(id.as_str())
        .bind(owner.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(&self, owner: UserId, q: &KeyQuery) -> StoreResult<Vec<KeyRecord>> {
        let (after_t, after_id) = match &q.after {
            Some((t, id)) => (Some(*t), Some(id.as_str().to_owned())),
            None => (None, None),
        };
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys
             WHERE owner_id = $1 AND status <> 'revoked'
               AND ($2::BIGINT IS NULL OR created_at < $2 OR (created_at = $2 AND id < $3))
               AND ($4::TEXT IS NULL OR strpos(lower(name), lower($4)) > 0)
             ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind(owner.0)
        .bind(after_t)
        .bind(after_id)
        .bind(q.search.as_deref())
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn count_keys(&self, owner: UserId, search: Option<&str>) -> StoreResult<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE owner_id = $1 AND status <> 'revoked'
             AND ($2::TEXT IS NULL OR strpos(lower(name), lower($2)) > 0)",
        )
        .bind(owner.0)
        .bind(search)
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn revoke_key(
        &self,
        owner: Option<UserId>,
        id: &CredentialId,
        actor: Actor,
        at: Millis,
    ) -> StoreResult<Option<KeyRecord>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET status = 'revoked', revoked_at = $1
             WHERE id = $2 AND ($3::BIGINT IS NULL OR owner_id = $3) AND status <> 'revoked' RETURNING {KEY_COLUMNS}"
        ))
        .bind(at)
        .bind(id.as_str())
        .bind(owner.map(|o| o.0))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let mut rec = key_from_row(&row)?;
        publish(&mut tx, Some(id.as_str()), None, at).await?;
        audit(&mut tx, at, rec.owner, actor, "key.deleted", id, rec.name.as_str()).await?;
        tx.commit().await.map_err(db)?;
        rec.status = atna_domain::KeyStatus::Revoked;
        Ok(Some(rec))
    }

    async fn auth_record(&self, id: &CredentialId) -> StoreResult<Option<AuthRecord>> {
        let row = sqlx::query(
            "SELECT k.*, u.email AS owner_email, u.disabled AS owner_disabled
             FROM api_keys k JOIN users u ON u.id = k.owner_id WHERE k.id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::auth_from_row).transpose()
    }

    async fn record_usage(&self, batch: &[UsageUpdate]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // Several nodes flush at once: lock the rows in one global order (by key ID) so their transactions cannot
        // deadlock, then add counts and keep the latest use. Counts are increments, so no node's uses are lost.
        let mut sorted: Vec<&UsageUpdate> = batch.iter().collect();
        sorted.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        let ids: Vec<&str> = sorted.iter().map(|u| u.id.as_str()).collect();
        let counts: Vec<i64> = sorted.iter().map(|u| u.count).collect();
        let ats: Vec<i64> = sorted.iter().map(|u| u.last_used_at).collect();
        let ips: Vec<Option<&str>> = sorted.iter().map(|u| u.last_used_ip.as_deref()).collect();
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("SELECT 1 FROM api_keys WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "UPDATE api_keys k SET use_count = k.use_count + u.n,
                last_used_ip = CASE WHEN u.at >= COALESCE(k.last_used_at, 0) THEN u.ip ELSE k.last_used_ip END,
                last_used_at = GREATEST(COALESCE(k.last_used_at, 0), u.at)
             FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[]) AS u(id, n, at, ip)
             WHERE k.id = u.id",
        )
        .bind(&ids)
        .bind(&counts)
        .bind(&ats)
        .bind(&ips)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn latest_change(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM changes").fetch_one(&self.pool).await.map_err(db)
    }

    async fn changes_since(&self, seq: i64, limit: i64) -> StoreResult<Vec<Change>> {
        let rows = sqlx::query("SELECT seq, key_id, user_id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(rows::change_from_row).collect()
    }

    async fn wait_for_change(&self, timeout: Duration) -> Wake {
        self.listener.wait(timeout).await
    }

    async fn prune(&self, changes_before: Millis, now: Millis) -> StoreResult<Pruned> {
        let changes = sqlx::query("DELETE FROM changes WHERE at < $1")
            .bind(changes_before)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        let sessions = sqlx::query("DELETE FROM sessions WHERE idle_expires_at <= $1 OR absolute_expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(Pruned { changes, sessions })
    }

    async fn audit_events(&self, owner: UserId, limit: i64) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT at, owner_id, actor_id, action, key_id, key_name FROM audit_events
             WHERE owner_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(owner.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::audit_from_row).collect()
    }

    async fn create_session(&self, s: NewSession) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf, created_at, idle_expires_at, absolute_expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.token_hash[..])
        .bind(s.user.0)
        .bind(&s.csrf)
        .bind(s.created_at)
        .bind(s.idle_expires_at)
        .bind(s.absolute_expires_at)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn session(&self, token_hash: &[u8; 32], now: Millis) -> StoreResult<Option<Session>> {
        let row = sqlx::query(
            "SELECT u.*, s.csrf, s.created_at AS s_created_at, s.idle_expires_at, s.absolute_expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND s.idle_expires_at > $2 AND s.absolute_expires_at > $2",
        )
        .bind(&token_hash[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::session_from_row).transpose()
    }

    async fn touch_session(&self, token_hash: &[u8; 32], idle_expires_at: Millis) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET idle_expires_at = $1 WHERE token_hash = $2")
            .bind(idle_expires_at)
            .bind(&token_hash[..])
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(&token_hash[..])
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.0)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.rows_affected())
    }

    async fn export_all(&self) -> StoreResult<Snapshot> {
        // One snapshot of all three tables, even while nodes keep serving.
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(db)?;
        let users = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            .iter()
            .map(rows::exported_user_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let keys = sqlx::query(
            "SELECT id, owner_id, name, secret_hash, scopes, status, created_at, expires_at, revoked_at,
                    last_used_at, last_used_ip, use_count
             FROM api_keys ORDER BY id COLLATE \"C\"",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(rows::exported_key_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        let audit_events =
            sqlx::query("SELECT at, owner_id, actor_id, action, key_id, key_name FROM audit_events ORDER BY id")
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?
                .iter()
                .map(rows::exported_audit_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await.map_err(db)?;
        let exported_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or_default();
        Ok(Snapshot { format: SNAPSHOT_FORMAT.to_owned(), exported_at, users, keys, audit_events })
    }

    async fn import_all(&self, snap: &Snapshot) -> StoreResult<ImportSummary> {
        snap.check()?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // No other writer may slip in between the emptiness check and the inserts.
        sqlx::query("LOCK TABLE users, api_keys, audit_events IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let present: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM api_keys) + (SELECT COUNT(*) FROM audit_events)",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if present > 0 {
            return Err(StoreError::NotEmpty);
        }
        for u in &snap.users {
            sqlx::query(
                "INSERT INTO users (id, email, password_hash, is_admin, disabled, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(u.id)
            .bind(&u.email)
            .bind(&u.password_hash)
            .bind(u.is_admin)
            .bind(u.disabled)
            .bind(u.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| rows::conflict(e, "a user in the export file"))?;
        }
        for k in &snap.keys {
            let hash = atna_domain::SecretHash::from_hex(&k.secret_hash)
                .ok_or_else(|| StoreError::InvalidSnapshot(format!("key {}: bad secret_hash", k.id)))?;
            sqlx::query(
                "INSERT INTO api_keys (id, owner_id, name, secret_hash, scopes, status, created_at, expires_at,
                                       revoked_at, last_used_at, last_used_ip, use_count)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&k.id)
            .bind(k.owner_id)
            .bind(&k.name)
            .bind(&hash.as_bytes()[..])
            .bind(&k.scopes)
            .bind(&k.status)
            .bind(k.created_at)
            .bind(k.expires_at)
            .bind(k.revoked_at)
            .bind(k.last_used_at)
            .bind(k.last_used_ip.as_deref())
            .bind(k.use_count)
            .execute(&mut *tx)
            .await
            .map_err(|e| rows::conflict(e, "a key in the export file"))?;
        }
        for e in &snap.audit_events {
            sqlx::query(
                "INSERT INTO audit_events (at, owner_id, actor_id, action, key_id, key_name)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(e.at)
            .bind(e.owner_id)
            .bind(e.actor_id)
            .bind(&e.action)
            .bind(e.key_id.as_deref())
            .bind(e.key_name.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        // Explicit IDs do not move a sequence: set it above the imported ones so new users never collide.
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), COALESCE((SELECT MAX(id) FROM users), 0) + 1, false)",
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(snap.summary())
    }
}
