//! The store conformance suite against SQLite, each test on its own fresh database file.

use atna_store_sqlite::SqliteStore;

atna_store::conformance_tests!(|| async {
    // The directory must outlive the store; leaking it keeps the file for the test's lifetime.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    Some(SqliteStore::open_file(&dir.path().join("atna.db")).await.unwrap())
});

#[tokio::test]
async fn a_mistyped_path_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.db");
    let err = SqliteStore::open(&format!("sqlite://{}", path.display()), false).await.err().unwrap();
    assert!(err.to_string().contains("cannot open"), "{err}");
    assert!(!path.exists());
}
