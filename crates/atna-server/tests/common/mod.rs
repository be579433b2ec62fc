//! Test helpers: a fresh store per test, on the backend `ATNA_TEST_BACKEND` names (`sqlite` by default,
//! `postgres` for the PostgreSQL run), and a running app on port 0.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use atna_store::Store;

/// A fresh, empty, migrated store for one test.
pub async fn fresh_store() -> Arc<dyn Store> {
    match std::env::var("ATNA_TEST_BACKEND").as_deref().unwrap_or("sqlite") {
        "sqlite" => {
            let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
            Arc::new(atna_store_sqlite::SqliteStore::open_file(&dir.path().join("atna.db")).await.unwrap())
        }
        other => panic!("ATNA_TEST_BACKEND={other} is not a backend this build knows"),
    }
}

/// Polls `check` until it holds or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
