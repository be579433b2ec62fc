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
#[macro_use]
#[path = "../../atna-store-sqlite/src/notify_sql.rs"]
mod notify_sql;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use atna_domain::{CredentialId, Email, Millis, PasswordHash, UserId};
use atna_store::*;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool, Postgres, Transaction};

use listener::Listener;
use rows::{db, key_from_row, user_from_row, KEY_COLUMNS, LIMIT_COLUMNS, USER_COLUMNS};

/// The listing query (for plan checks in tests and benchmarks).
#[doc(hidden)]
pub use sql_store::list_keys_sql;

/// The row type `rows.rs` decodes.
type DbRow = sqlx::postgres::PgRow;

/// The channel change notifications are sent on.
pub const CHANNEL: &str = "atna_changes";

/// Held (per transaction) by every writer of the change feed, so feed entries commit in sequence order.
const FEED_LOCK: i64 = 0x6174_6e61_6665_6564; // "atnafeed"

/// How to open a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Most connections in the pool (the listener's and the change follower's connections are extra).
    pub max_connections: u32,
    /// How long a request waits for a free connection (or for the server) before it fails.
    pub acquire_timeout: Duration,
    /// How long [`PgStore::open`] keeps trying while the server cannot be reached (it is still starting, say).
    /// Zero: one attempt. Other errors (a wrong password, a missing database) fail at once.
    pub wait: Duration,
    /// The longest a statement may run (PostgreSQL's `statement_timeout`); zero: no limit.
    pub statement_timeout: Duration,
    /// The longest a statement may wait for a lock (`lock_timeout`); zero: no limit.
    pub lock_timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(2),
            wait: Duration::ZERO,
            statement_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(2),
        }
    }
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The change follower's own connection: requests exhausting `pool` (or stuck on a lock) cannot starve it.
    feed: PgPool,
    listener: Arc<Listener>,
}

impl PgStore {
    /// Connects to the database at a `postgres://` URL, migrates it, and starts listening for changes.
    pub async fn open(url: &str, settings: &PgSettings) -> StoreResult<Self> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))?;
        Self::open_with(opts, settings).await
    }

    /// Like [`open`](Self::open), from parsed options (tests use this to pick a schema).
    pub async fn open_with(opts: PgConnectOptions, settings: &PgSettings) -> StoreResult<Self> {
        // NOTICEs ("relation … already exists, skipping" on every start) are the server talking to itself.
        let opts = opts.options([("client_min_messages", "warning")]);
        // Connections are named after this process, so an operator (or a test) can tell whose they are.
        let pid = std::process::id();
        let mut conn = connect(&opts.clone().application_name(&format!("atna-migrate-{pid}")), settings).await?;
        // On a connection without the request timeouts: a node waiting for another's migration lock must not give
        // up after `lock_timeout`, and a migration may take longer than a request should.
        crate::migrate(&mut conn).await?;
        let _ = conn.close().await;
        let timeouts = opts.clone().options([
            ("statement_timeout", settings.statement_timeout.as_millis()),
            ("lock_timeout", settings.lock_timeout.as_millis()),
        ]);
        let pool = pool_options(settings.max_connections, settings.acquire_timeout)
            .connect_lazy_with(timeouts.clone().application_name(&format!("atna-{pid}")));
        let feed = pool_options(1, settings.acquire_timeout)
            .connect_lazy_with(timeouts.application_name(&format!("atna-feed-{pid}")));
        let listener =
            Listener::start(opts.application_name(&format!("atna-listener-{pid}")), settings.acquire_timeout);
        Ok(Self { pool, feed, listener })
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

    /// Where the change feed is read.
    fn feed_pool(&self) -> &PgPool {
        &self.feed
    }
}

fn pool_options(max: u32, acquire_timeout: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max.max(1))
        .acquire_timeout(acquire_timeout)
        // A connection that broke while idle (a server restart) is found out before a request gets it.
        .test_before_acquire(true)
}

/// One connection, retried while the server cannot be reached until `wait` has passed. The error says what failed
/// and where (a pool would only say it timed out). Each attempt is bounded: a host that drops packets would otherwise
/// hold it for the system's TCP timeout.
async fn connect(opts: &PgConnectOptions, settings: &PgSettings) -> StoreResult<PgConnection> {
    let deadline = tokio::time::Instant::now() + settings.wait;
    let per_attempt = settings.acquire_timeout.max(Duration::from_secs(5));
    let at = if opts.get_host().starts_with('/') {
        format!("{} (socket)", opts.get_host())
    } else {
        format!("{}:{}", opts.get_host(), opts.get_port())
    };
    loop {
        let attempt = tokio::time::timeout(per_attempt, opts.connect()).await;
        let e = match attempt {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) if !unreachable(&e) => {
                return Err(StoreError::Database(format!("cannot connect to PostgreSQL at {at}: {e}")))
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {per_attempt:?}"),
        };
        if tokio::time::Instant::now() + Duration::from_secs(1) >= deadline {
            return Err(StoreError::Database(format!("cannot connect to PostgreSQL at {at}: {e}")));
        }
        tracing::warn!(error = %e, "PostgreSQL is not reachable yet; waiting for it");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The server cannot be reached, or is still starting (`57P03`): worth waiting for, unlike a wrong password.
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(d) => d.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

/// Applies the migrations this build knows (under sqlx's advisory lock, so nodes starting together apply each once).
/// Tolerates newer ones it does not know: during a rolling upgrade an old node keeps serving a database an upgraded
/// node has migrated further, which works because migrations only add.
async fn migrate(conn: &mut PgConnection) -> StoreResult<()> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    // `run_direct`: `run(&mut conn)` makes the future not `Send` (sqlx's `Acquire` lifetime issue; its own workaround).
    migrator.run_direct(&mut *conn).await.map_err(|e| StoreError::Database(format!("migrating: {e}")))?;
    let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    sql_store::check_schema(applied, &migrator);
    Ok(())
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

    async fn record_usage_counts(&self, batch: &[UsageCount]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (hourly, daily) = sql_store::usage_rows(batch);
        // One statement per table (arrays, like `record_usage`), rows in one global order: nodes flushing at once
        // add up without deadlocking.
        let mut tx = self.pool.begin().await.map_err(db)?;
        for (table, rows) in [("usage_hourly", &hourly), ("usage_daily", &daily)] {
            let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let starts: Vec<i64> = rows.iter().map(|r| r.1).collect();
            let outcomes: Vec<&str> = rows.iter().map(|r| r.2).collect();
            let counts: Vec<i64> = rows.iter().map(|r| r.3).collect();
            sqlx::query(&format!(
                "INSERT INTO {table} (key_id, start, outcome, count)
                 SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[])
                 ON CONFLICT (key_id, start, outcome) DO UPDATE SET count = {table}.count + excluded.count"
            ))
            .bind(&ids)
            .bind(&starts)
            .bind(&outcomes)
            .bind(&counts)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn wait_for_change(&self, timeout: Duration) -> Wake {
        self.listener.wait(timeout).await
    }
});

// Nodes claiming at once skip each other's rows instead of waiting for them.
notify_store!(PgStore, sqlx::Postgres, "FOR UPDATE SKIP LOCKED", "id COLLATE \"C\" > $1");

/// An export reads one consistent snapshot of all tables, even while nodes keep serving.
const EXPORT_BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
/// Byte order, like SQLite's, whatever the database's collation.
const KEY_ORDER: &str = "id COLLATE \"C\"";
/// A search's test on a key's name (`$2`: [`rows::contains_pattern`], ASCII lower-cased). `lower()` under the "C"
/// collation folds ASCII letters only, as SQLite's `LIKE` does (the documented search), whatever the database's
/// collation; it is also cheaper than a locale's `lower()` (a search reads every name of the owner's it walks past).
const NAME_MATCH: &str = "lower(name COLLATE \"C\") LIKE $2 ESCAPE '\\'";
/// Search statements are not kept prepared: each is planned for its own pattern (an unnamed statement always gets a
/// custom plan). A kept one switched to a generic plan after five runs: a scan of `api_keys_owner_newest` reading
/// every row of the owner's from the table, where the custom plan reads the names from `api_keys_live_search` alone.
const SEARCH_PERSISTENT: bool = false;

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
async fn begin_throttle(pool: &PgPool, keys: &[&str]) -> StoreResult<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await.map_err(db)?;
    let mut names: Vec<&str> = keys.to_vec();
    names.sort_unstable();
    names.dedup();
    for name in names {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(name).execute(&mut *tx).await.map_err(db)?;
    }
    Ok(tx)
}
