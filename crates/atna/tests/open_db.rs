//! Opening the database, as an operator meets it through the `atna` binary: an unreachable PostgreSQL is named (host,
//! port, cause), an already-migrated one starts quietly, and a build older than the database's schema (a rolling
//! upgrade in progress) still starts, saying so, on both backends. The PostgreSQL cases use `ATNA_TEST_POSTGRES_URL`.

mod common;

use atna_store_postgres::testdb;
use common::{atna, atna_env, ok};
use serde_json::Value;

/// A migration version no build will ever have.
const FUTURE: i64 = 99_990_101_000_000;

#[test]
fn an_unreachable_postgres_is_named_with_its_host_port_and_cause() {
    // Nothing listens on port 1: the connection is refused at once.
    let out = atna_env(&[("ATNA_DATABASE_URL", "postgres://atna:s3cret@127.0.0.1:1/atna")], &["user", "list"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(!err.contains("pool timed out") && !err.contains("s3cret"), "{err}");
}

#[tokio::test]
async fn commands_on_a_migrated_postgres_print_no_server_notices() {
    let Some(server) = testdb::server_url() else { return };
    let url = testdb::fresh_schema_url(&server).await;
    let env = [("ATNA_DATABASE_URL", url.as_str())];
    ok(atna_env(&env, &["migrate"], None));
    for args in [&["migrate"][..], &["user", "list"]] {
        let out = atna_env(&env, args, None);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        ok(out);
        assert!(!err.to_lowercase().contains("notice") && !err.contains("already exists, skipping"), "{args:?}: {err}");
    }
}

/// Records a migration this build does not know, as a newer atna would have.
fn future_migration_sql() -> String {
    format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ({FUTURE}, 'from the future', TRUE, x'00', 1)"
    )
}

fn assert_serves_newer_schema(stderr: &str) {
    assert!(stderr.contains("this database was upgraded by a newer atna"), "{stderr}");
    assert!(stderr.contains(&format!("schema {FUTURE}")), "{stderr}");
    assert!(!stderr.contains("previously applied but is missing"), "{stderr}");
}

#[tokio::test]
async fn an_older_build_starts_on_a_newer_sqlite_schema_and_says_so() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    ok(atna(dir.path(), &["migrate"], None));
    let db = dir.path().join("atna.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    sqlx::query(&future_migration_sql().replace("x'00'", "X'00'")).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let out = atna(dir.path(), &["user", "list", "--json"], None);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let listed: Value = serde_json::from_str(&ok(out)).unwrap();
    assert!(listed.is_array());
    assert_serves_newer_schema(&err);
}

#[tokio::test]
async fn an_older_build_starts_on_a_newer_postgres_schema_and_says_so() {
    let Some(server) = testdb::server_url() else { return };
    let url = testdb::fresh_schema_url(&server).await;
    let env = [("ATNA_DATABASE_URL", url.as_str())];
    ok(atna_env(&env, &["migrate"], None));
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&future_migration_sql().replace("x'00'", "'\\x00'::bytea")).execute(&pool).await.unwrap();
    let out = atna_env(&env, &["user", "list", "--json"], None);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let listed: Value = serde_json::from_str(&ok(out)).unwrap();
    assert!(listed.is_array());
    assert_serves_newer_schema(&err);
    // And a server starts on it too.
    let node = common::Server::start_env(&[("ATNA_DATABASE_URL", url.as_str()), ("ATNA_LOG", "info")]);
    assert_eq!(reqwest::get(format!("{}/readyz", node.base)).await.unwrap().status(), 200);
    let logs = node.stop();
    assert_serves_newer_schema(&logs);
}
