//! The in-process cost of verifying a key: a cache hit (the steady state), a negatively cached unknown ID, a
//! malformed key (rejected before any lookup), and a cache miss that reads the store: SQLite always, PostgreSQL too
//! when `ATNA_TEST_POSTGRES_URL` names a server (the bench makes a fresh schema on it).
//!
//! Run: `cargo bench -p atna-server --bench verify`
//!      `ATNA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p atna-server --bench verify`

use std::sync::Arc;
use std::time::Duration;

use atna_domain::{GeneratedKey, KeyName, Scopes};
use atna_server::verify::{Verdict, Verifier};
use atna_store::{Actor, NewKey, NewUser, Store};
use atna_store_sqlite::SqliteStore;
use criterion::{criterion_group, criterion_main, Criterion};
use futures::FutureExt;

/// One user with one `keys:manage` key in `store`; returns the key's secret.
async fn seed(store: &dyn Store) -> String {
    let u = store
        .create_user(NewUser {
            email: atna_domain::Email::parse("bench@example.com").unwrap(),
            password_hash: atna_domain::PasswordHash::from_stored("x".into()),
            is_admin: false,
            created_at: 0,
        })
        .await
        .unwrap();
    let g = GeneratedKey::generate();
    store
        .insert_key(NewKey {
            form_nonce: None,
            created_by_key: None,
            rules: Default::default(),
            id: g.id,
            owner: u.id,
            name: KeyName::parse("bench").unwrap(),
            hash: g.hash,
            scopes: Scopes::parse(&["keys:manage"]).unwrap(),
            created_at: 0,
            expires_at: None,
            actor: Actor::Operator,
        })
        .await
        .unwrap();
    g.secret.expose().to_owned()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, secret) = rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_file(&dir.path().join("bench.db")).await.unwrap());
        let secret = seed(&*store).await;
        (store, secret)
    });
    let ttl = Duration::from_secs(3600);
    let verifier = Verifier::new(store.clone(), 100_000, ttl, ttl);
    let unknown = GeneratedKey::generate().secret.expose().to_owned();
    // Warm the cache: one store read each.
    rt.block_on(async {
        assert!(matches!(verifier.verify(&secret, None).await.unwrap(), Verdict::Valid(_)));
        verifier.verify(&unknown, None).await.unwrap();
    });

    let mut g = c.benchmark_group("verify");
    // A cached verification never awaits anything, so it completes on first poll: this measures the work itself,
    // without an executor's overhead.
    g.bench_function("hit", |b| {
        b.iter(|| {
            let v = verifier.verify(std::hint::black_box(&secret), None).now_or_never().unwrap().unwrap();
            assert!(matches!(v, Verdict::Valid(_)));
        })
    });
    g.bench_function("negative_hit", |b| {
        b.iter(|| verifier.verify(std::hint::black_box(&unknown), None).now_or_never().unwrap().unwrap())
    });
    g.bench_function("malformed", |b| {
        b.iter(|| verifier.verify(std::hint::black_box("atna_not_a_real_key"), None).now_or_never().unwrap().unwrap())
    });
    let id = atna_domain::CredentialId::parse(&secret[5..21]).unwrap();
    g.bench_function("miss_sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            verifier.evict(&id);
            verifier.verify(&secret, None).await.unwrap()
        })
    });
    if let Some(server) = atna_store_postgres::testdb::server_url() {
        let (verifier, secret) = rt.block_on(async {
            let (store, _) = atna_store_postgres::testdb::fresh_store_on(&server).await;
            let store: Arc<dyn Store> = Arc::new(store);
            let secret = seed(&*store).await;
            (Verifier::new(store, 100_000, ttl, ttl), secret)
        });
        let id = atna_domain::CredentialId::parse(&secret[5..21]).unwrap();
        g.bench_function("miss_postgres", |b| {
            b.to_async(&rt).iter(|| async {
                verifier.evict(&id);
                verifier.verify(&secret, None).await.unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
