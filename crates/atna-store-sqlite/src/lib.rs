//! The embedded SQLite backend: one file, WAL, foreign keys on, `synchronous = FULL` so a key whose secret was
//! shown is on disk before the response leaves.

#[macro_use]
mod sql_store;
#[macro_use]
mod notify_sql;
pub mod backup;
mod rows;

/// The listing query (for plan checks in tests and benchmarks).
#[doc(hidden)]
pub use sql_store::list_keys_sql;

/// The row type `rows.rs` decodes.
type DbRow = sqlx::sqlite::SqliteRow;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use atna_domain::{CredentialId, Email, Millis, PasswordHash, UserId};
use atna_store::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use rows::{db, key_from_row, user_from_row, KEY_COLUMNS, LIMIT_COLUMNS, USER_COLUMNS};

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (and migrates) the database at a `sqlite:` URL. The file is created only when `create` is true, so a
    /// mistyped path is an error instead of a new, empty database.
    pub async fn open(url: &str, create: bool) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Database(format!("cannot open {url}: {e}")))?;
        // Newer migrations than this build knows are tolerated (an upgraded node applied them; migrations only add).
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await.map_err(|e| StoreError::Database(format!("migrating {url}: {e}")))?;
        let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&pool)
            .await
            .map_err(db)?;
        sql_store::check_schema(applied, &migrator);
        Ok(Self { pool })
    }

    /// Where the change feed is read: the same pool (SQLite has no server to lose, and an in-memory database is
    /// private to its pool).
    fn feed_pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Opens (creating if needed) the database file at a path.
    pub async fn open_file(path: &Path) -> StoreResult<Self> {
        Self::open(&format!("sqlite://{}", path.display()), true).await
    }
}

sql_store!(SqliteStore, sqlx::Sqlite, {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn record_usage_counts(&self, batch: &[UsageCount]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (hourly, daily) = sql_store::usage_rows(batch);
        let mut tx = self.pool.begin().await.map_err(db)?;
        for (table, rows) in [("usage_hourly", &hourly), ("usage_daily", &daily)] {
            for chunk in rows.chunks(USAGE_ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
                    "INSERT INTO {table} (key_id, start, outcome, count) "
                ));
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.0.as_str()).push_bind(r.1).push_bind(r.2).push_bind(r.3);
                });
                q.push(format!(
                    " ON CONFLICT (key_id, start, outcome) DO UPDATE SET count = {table}.count + excluded.count"
                ));
                q.build().execute(&mut *tx).await.map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)
    }

    async fn record_usage(&self, batch: &[UsageUpdate]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        for u in batch {
            // Right-hand sides see the old row, so the IP is chosen against the old last_used_at.
            sqlx::query(
                "UPDATE api_keys SET use_count = use_count + ?1,
                    last_used_ip = CASE WHEN ?2 >= COALESCE(last_used_at, 0) THEN ?3 ELSE last_used_ip END,
                    last_used_at = MAX(COALESCE(last_used_at, 0), ?2)
                 WHERE id = ?4",
            )
            .bind(u.count)
            .bind(u.last_used_at)
            .bind(u.last_used_ip.as_deref())
            .bind(u.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
});

notify_store!(SqliteStore, sqlx::Sqlite, "", "id > $1");

/// Usage bucket rows per multi-row `INSERT` (4 parameters each: well under SQLite's limit).
const USAGE_ROWS_PER_STATEMENT: usize = 500;

/// Appends to the change feed inside `tx` (other processes poll it; SQLite has no notifications).
async fn publish(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    key: Option<&str>,
    user: Option<i64>,
    at: Millis,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO changes (key_id, user_id, at) VALUES ($1, $2, $3)")
        .bind(key)
        .bind(user)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// An export reads in one transaction: WAL gives it one consistent view of all tables.
const EXPORT_BEGIN: &str = "BEGIN";
/// Credential IDs are ASCII: SQLite's default (binary) order is byte order.
const KEY_ORDER: &str = "id";
/// A search's test on a key's name (`$2`: [`rows::contains_pattern`], ASCII lower-cased). SQLite's `LIKE` ignores the
/// case of ASCII letters, and only theirs: the documented search, with no `lower()` (and its copy of the name) a row.
const NAME_MATCH: &str = "name LIKE $2 ESCAPE '\\'";
/// Search statements are prepared once and kept, like the others: SQLite plans no differently for the pattern.
const SEARCH_PERSISTENT: bool = true;

/// IMMEDIATE takes the write lock before looking, so no other writer can slip in between the emptiness check and the
/// inserts.
async fn begin_import(pool: &SqlitePool) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
    begin_immediate(pool).await
}

/// Nothing to do: inserting explicit IDs also moves `sqlite_sequence`, so later users get IDs above the imported ones.
async fn after_import(_tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>) -> StoreResult<()> {
    Ok(())
}

/// Sign-in throttling decides under the database's write lock: no other process can count an attempt in between.
async fn begin_throttle(pool: &SqlitePool, _keys: &[&str]) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
    begin_immediate(pool).await
}

/// `BEGIN IMMEDIATE`, which waits (up to the busy timeout) for the write lock, in a task of its own. Cancelled while
/// it waits — a request that reached its `request_timeout` is dropped — sqlx returns the connection to the pool
/// believing a transaction open on it, and every later `begin` on that connection fails ("attempted to call
/// begin_with at non-zero transaction depth"): under a flood of sign-ins the dashboard answered "Database
/// unavailable" to everyone. In its own task the `BEGIN` always completes; a transaction nobody awaits any more is
/// dropped, and sqlx rolls it back properly.
async fn begin_immediate(pool: &SqlitePool) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.begin_with("BEGIN IMMEDIATE").await })
        .await
        .map_err(|e| StoreError::Database(format!("beginning a transaction: {e}")))?
        .map_err(db)
}
