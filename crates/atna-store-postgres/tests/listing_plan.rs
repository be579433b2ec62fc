//! Paging through an owner's keys stays cheap however deep the page: the keyset cursor is an index range, not a filter
//! applied to every earlier row. Checked on the plan PostgreSQL uses for a prepared statement it may reuse for any
//! parameters (a generic plan), with one owner's 20,000 keys, a tenth of them deleted.

use atna_store_postgres::{list_keys_sql, testdb};

#[tokio::test]
async fn a_deep_page_is_an_index_range_on_live_keys() {
    let Some(store) = testdb::fresh_store().await else { return };
    let mut conn = store.pool().acquire().await.unwrap();
    sqlx::query("INSERT INTO users (email, password_hash, created_at) VALUES ('a@example.com', 'x', 0)")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO api_keys (id, owner_id, name, secret_hash, created_at, status)
         SELECT lpad(to_hex(g), 16, '0'), (SELECT id FROM users), 'k' || g, '\\x00', 1700000000000 + (g / 3) * 1000,
                CASE WHEN g % 10 = 0 THEN 'revoked' ELSE 'active' END
         FROM generate_series(1, 20000) g",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("ANALYZE api_keys").execute(&mut *conn).await.unwrap();
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut *conn).await.unwrap();
    // The statement as the store prepares it, planned for any parameters (as PostgreSQL does once a prepared
    // statement has run a few times), then run for the cursor of a late page: most rows come before it.
    let prepare = format!("PREPARE page (BIGINT, BIGINT, BIGINT, TEXT) AS {}", list_keys_sql(true, false));
    sqlx::raw_sql(&prepare).execute(&mut *conn).await.unwrap();
    let plan: Vec<String> =
        sqlx::query_scalar("EXPLAIN (ANALYZE, COSTS OFF) EXECUTE page (1, 26, 1700000001000, '0000000000000004')")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("api_keys_live_search"), "{plan}");
    assert!(plan.contains("Index Cond: ((owner_id = $1) AND (ROW(created_at, id) < ROW($3, $4)))"), "{plan}");
    assert!(!plan.contains("Rows Removed by Filter"), "no row is read only to be dropped:\n{plan}");
}
