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
use atna_store::{Actor, KeyRules, NewKey, NewUser, Store};
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
    seed_key(store, u.id, "bench", KeyRules::default()).await
}

/// A `keys:manage` key of `owner` with `rules`; returns its secret.
async fn seed_key(store: &dyn Store, owner: atna_domain::UserId, name: &str, rules: KeyRules) -> String {
    let g = GeneratedKey::generate();
    store
        .insert_key(NewKey {
            form_nonce: None,
            created_by_key: None,
            rules,
            id: g.id,
            owner,
            name: KeyName::parse(name).unwrap(),
            hash: g.hash,
            scopes: Scopes::parse(&["keys:manage"]).unwrap(),
            created_at: 0,
            expires_at: None,
            actor: Actor::Operator.into(),
            rolled_from: None,
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
    // What the Bearer entry points do since per-key rules: judge without counting, let the gate admit (`gate::admit`,
    // the one decision of every entry point), then count. `gated_hit` is a key without rules (an `is_empty` check and
    // two `is_none` checks more than `hit`: no lock); `gated_hit_allowlist` a key with four ranges, the client in the
    // last one (the worst case for an allowed client); `gated_hit_rules` that allowlist and a rate limit, with the
    // gate's clock injected and advanced 1 ms per call so that every call takes the allowed path (a real clock at
    // millions of calls per second would spend any limit and measure refusals instead).
    let ip = Some("2001:db8::7".parse().unwrap());
    let fenced = rt.block_on(async {
        let owner = store.auth_record(&atna_domain::CredentialId::parse(&secret[5..21]).unwrap()).await;
        let ranges = ["203.0.113.0/24", "198.51.100.0/24", "10.0.0.0/8", "2001:db8::/32"];
        let owner = owner.unwrap().unwrap().key.owner;
        let rules = KeyRules { ip_allowlist: atna_domain::IpAllowlist::parse(&ranges).unwrap(), ..Default::default() };
        let s = seed_key(&*store, owner, "fenced", rules.clone()).await;
        assert!(matches!(verifier.check(&s).await.unwrap().0, Verdict::Valid(_)));
        let limited = KeyRules { rate_limit: Some(atna_domain::RateLimit::new(1000, 1).unwrap()), ..rules };
        let l = seed_key(&*store, owner, "limited", limited).await;
        assert!(matches!(verifier.check(&l).await.unwrap().0, Verdict::Valid(_)));
        (s, l)
    });
    let (fenced, limited) = fenced;
    let clock = std::sync::atomic::AtomicI64::new(atna_server::clock::now());
    let none = atna_server::gate::Requirements::default();
    for (name, key, injected) in
        [("gated_hit", &secret, false), ("gated_hit_allowlist", &fenced, false), ("gated_hit_rules", &limited, true)]
    {
        g.bench_function(name, |b| {
            b.iter(|| {
                let (v, now) = verifier.check(std::hint::black_box(key)).now_or_never().unwrap().unwrap();
                let Verdict::Valid(entry) = v else { panic!("valid") };
                let now = if injected { clock.fetch_add(1, std::sync::atomic::Ordering::Relaxed) } else { now };
                let ctx = atna_server::gate::Context::ip(std::hint::black_box(ip));
                atna_server::gate::admit(&entry, &none, &ctx, verifier.limits(), now).unwrap();
                verifier.count_use(&entry, now, ip);
            })
        });
    }
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
