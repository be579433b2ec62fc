//! The store conformance suite against a real PostgreSQL server (`ATNA_TEST_POSTGRES_URL`); each test in a schema of
//! its own. Without a server every test returns at once and `scripts/test` says the suite was skipped.

atna_store::conformance_tests!(atna_store_postgres::testdb::fresh_store);
