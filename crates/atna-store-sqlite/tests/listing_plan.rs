//! Paging through an owner's keys stays cheap however deep the page: on SQLite too the keyset cursor is a range on
//! the live-keys index, not a filter applied to every earlier row.

use sqlx::Connection;

#[tokio::test]
async fn a_deep_page_is_an_index_range_on_live_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("atna.db");
    atna_store_sqlite::SqliteStore::open_file(&path).await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let sql = format!("EXPLAIN QUERY PLAN {}", atna_store_sqlite::list_keys_sql(true, false));
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&sql)
        .bind(1_i64)
        .bind(26_i64)
        .bind(1_i64)
        .bind("0000000000000004")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let plan: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(plan, ["SEARCH api_keys USING INDEX api_keys_live_search (owner_id=? AND (created_at,id)<(?,?))"]);
}

/// A search by name cannot seek (it is a substring match), but it reads the names from the live-keys index, newest
/// first, and fetches rows only for the keys it returns: not every key's row of a 100,000-key owner.
#[tokio::test]
async fn a_search_reads_names_from_the_live_keys_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("atna.db");
    atna_store_sqlite::SqliteStore::open_file(&path).await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let sql = format!("EXPLAIN QUERY PLAN {}", atna_store_sqlite::list_keys_sql(false, true));
    let rows: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(&sql).bind(1_i64).bind(Some("%svc%")).bind(26_i64).fetch_all(&mut conn).await.unwrap();
    let plan: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(plan, ["SEARCH api_keys USING INDEX api_keys_live_search (owner_id=?)"]);
    // The index holds the name, so the search's filter is decided on index entries.
    let (sql, index): (String, String) =
        sqlx::query_as("SELECT sql, name FROM sqlite_master WHERE name = 'api_keys_live_search'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(sql.contains("id DESC, name)"), "{index}: {sql}");
}
