//! Throwaway PostgreSQL stores for tests: one database per test process (`atna_t_<pid>`), one schema per store in it.
//!
//! Each test gets an empty, migrated schema of its own, so tests run in parallel without seeing each other's rows.
//! Databases left behind by test processes that have exited are dropped the next time a test process starts (and
//! `scripts/test` drops them all at the end of a run).

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::OnceCell;

use crate::{PgSettings, PgStore};

/// The environment variable naming the server tests use, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
pub const ENV: &str = "ATNA_TEST_POSTGRES_URL";

const PREFIX: &str = "atna_t_";

static DATABASE: OnceCell<String> = OnceCell::const_new();

/// The server tests use, when one is configured.
pub fn server_url() -> Option<String> {
    std::env::var(ENV).ok().filter(|u| !u.is_empty())
}

/// This process's test database (created on first use), as a URL.
pub async fn database_url(server: &str) -> String {
    DATABASE
        .get_or_init(|| async {
            let admin = PgConnectOptions::from_str(server).expect("ATNA_TEST_POSTGRES_URL is not a PostgreSQL URL");
            let mut conn = admin.connect().await.expect("cannot connect to ATNA_TEST_POSTGRES_URL");
            sweep(&mut conn).await;
            let name = format!("{PREFIX}{}", std::process::id());
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
            conn.close().await.ok();
            let (base, _) = server.rsplit_once('/').expect("a URL with a database name");
            let query = server.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
            format!("{base}/{name}{query}")
        })
        .await
        .clone()
}

/// Drops the test databases of processes that no longer run.
async fn sweep(conn: &mut PgConnection) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'atna\\_t\\_%'")
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
    for name in names {
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if cfg!(target_os = "linux") && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut *conn).await;
        }
    }
}

/// A fresh, empty, migrated store in a schema of its own, or `None` when no server is configured.
pub async fn fresh_store() -> Option<PgStore> {
    let server = server_url()?;
    Some(fresh_store_on(&server).await.0)
}

/// A fresh store on `server`, and the URL (with its schema) other processes can use to reach the same data.
pub async fn fresh_store_on(server: &str) -> (PgStore, String) {
    let url = fresh_schema_url(server).await;
    let store = PgStore::open(&url, &PgSettings::default()).await.expect("opening a fresh test schema");
    (store, url)
}

/// Creates an empty schema and returns a URL whose connections use it (`options=-c search_path=…`).
pub async fn fresh_schema_url(server: &str) -> String {
    let db = database_url(server).await;
    let schema = format!("s_{:016x}", rand::random::<u64>());
    let mut conn = PgConnection::connect(&db).await.expect("connecting to the test database");
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.unwrap();
    conn.close().await.ok();
    let sep = if db.contains('?') { '&' } else { '?' };
    format!("{db}{sep}options=-c%20search_path%3D{schema}")
}
