//! The PostgreSQL backend, for several atna nodes on one database.
//!
//! The same schema and behaviour as the SQLite backend (one conformance suite runs against both); what differs is how
//! nodes learn about changes. Every transaction that revokes a key or disables a user appends to the `changes` table
//! under a transaction-level advisory lock (so sequence numbers become visible in order) and sends
//! `NOTIFY atna_changes`. A listener task per store holds a dedicated connection with `LISTEN atna_changes` and wakes
//! the node's change follower within milliseconds; when that connection breaks, the follower is told (`Wake::Lost`)
//! so it catches up from the feed before trusting its cache again, and the listener reconnects with backoff. Polling
//! on a timer stays as the safety net for a connection that dies silently.
//!
//! Migrations run under sqlx's advisory lock, so nodes starting together apply them once.

mod listener;
pub mod testdb;

#[path = "../../atna-store-sqlite/src/rows.rs"]
mod rows;
#[macro_use]
#[path = "../../atna-store-sqlite/src/sql_store.rs"]
mod sql_store;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

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
    /// How long [`PgStore::open`] keeps trying while the server cannot be reached (it is still starting, say).
    /// Zero: one attempt. Other errors (a wrong password, a missing database) fail at once.
    pub wait: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self { max_connections: 10, acquire_timeout: Duration::from_secs(2), wait: Duration::ZERO }
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
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Database(format!("migrating: {e}")))?;
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

sql_store!(PgStore, sqlx::Postgres, {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn record_usage(&self, batch: &[UsageUpdate]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // Several nodes flush at once: the first statement locks the rows in one global order (by key ID) so their
        // transactions cannot deadlock; then counts are added and the latest use kept. Counts are increments, so no
        // node's uses are lost.
        let ids: Vec<&str> = batch.iter().map(|u| u.id.as_str()).collect();
        let counts: Vec<i64> = batch.iter().map(|u| u.count).collect();
        let ats: Vec<i64> = batch.iter().map(|u| u.last_used_at).collect();
        let ips: Vec<Option<&str>> = batch.iter().map(|u| u.last_used_ip.as_deref()).collect();
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

    async fn wait_for_change(&self, timeout: Duration) -> Wake {
        self.listener.wait(timeout).await
    }
});

/// An export reads one consistent snapshot of all tables, even while nodes keep serving.
const EXPORT_BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
/// Byte order, like SQLite's, whatever the database's collation.
const KEY_ORDER: &str = "id COLLATE \"C\"";

/// Locks the tables, so no other writer can slip in between the emptiness check and the inserts.
async fn begin_import(pool: &PgPool) -> StoreResult<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await.map_err(db)?;
    sqlx::query("LOCK TABLE users, api_keys, audit_events IN EXCLUSIVE MODE").execute(&mut *tx).await.map_err(db)?;
    Ok(tx)
}

/// Explicit IDs do not move a sequence: set it above the imported ones so new users never collide.
async fn after_import(tx: &mut Transaction<'_, Postgres>) -> StoreResult<()> {
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('users', 'id'), COALESCE((SELECT MAX(id) FROM users), 0) + 1, false)",
    )
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Sign-in throttling decides under a transaction-level advisory lock per key (taken in key order, so two nodes
/// cannot deadlock): no other node can count an attempt for the same key in between.
async fn begin_throttle(pool: &PgPool, keys: &[(&str, i64)]) -> StoreResult<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await.map_err(db)?;
    let mut names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(name).execute(&mut *tx).await.map_err(db)?;
    }
    Ok(tx)
}
