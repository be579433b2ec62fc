//! The verifier's cache in process: hits never touch the store, concurrent misses for one key read it once,
//! unknown IDs are remembered, and eviction takes effect on the next check.

mod common;

use std::sync::Arc;
use std::time::Duration;

use atna_domain::{CredentialId, GeneratedKey, VerifyCode};
use atna_server::verify::{Verdict, Verifier};
use common::{fresh_store, user};

async fn setup() -> (Arc<Verifier>, Arc<dyn atna_store::Store>, String) {
    let store = fresh_store().await;
    let alice = user(&*store, "alice@example.com").await;
    let scopes = vec![];
    let spec = atna_server::service::KeySpec {
        rate_limit: None,
        quota: None,
        once: None,
        name: "k",
        scopes: &scopes,
        expires_at: None,
        by_key: None,
        ip_allowlist: &[],
    };
    let (_, secret) =
        atna_server::service::create_key(&*store, alice, atna_store::Actor::Operator, spec, atna_server::clock::now())
            .await
            .unwrap();
    let ttl = Duration::from_secs(3600);
    (Arc::new(Verifier::new(store.clone(), 1000, ttl, ttl)), store, secret.expose().to_owned())
}

#[tokio::test]
async fn hits_do_not_read_the_store_and_concurrent_misses_read_it_once() {
    let (v, _, key) = setup().await;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (v, key) = (v.clone(), key.clone());
            tokio::spawn(async move { v.verify(&key, None).await.unwrap().code() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), VerifyCode::Valid);
    }
    assert_eq!(v.store_reads(), 1, "64 concurrent first checks coalesce into one read");
    for _ in 0..100 {
        assert!(matches!(v.verify(&key, None).await.unwrap(), Verdict::Valid(_)));
    }
    assert_eq!(v.store_reads(), 1);
    assert_eq!(v.usage().pending(&CredentialId::parse(&key[5..21]).unwrap()).unwrap().count, 164);
}

#[tokio::test]
async fn unknown_ids_are_remembered_and_malformed_keys_never_looked_up() {
    let (v, _, _) = setup().await;
    let unknown = GeneratedKey::generate();
    for _ in 0..10 {
        assert_eq!(v.verify(unknown.secret.expose(), None).await.unwrap().code(), VerifyCode::NotFound);
    }
    assert_eq!(v.store_reads(), 1);
    for bad in ["", "atna_", "Bearer x", &"z".repeat(100_000)] {
        assert_eq!(v.verify(bad, None).await.unwrap().code(), VerifyCode::Malformed);
    }
    assert_eq!(v.store_reads(), 1);
}

#[tokio::test]
async fn eviction_takes_effect_on_the_next_check() {
    let (v, store, key) = setup().await;
    assert_eq!(v.verify(&key, None).await.unwrap().code(), VerifyCode::Valid);
    let id = CredentialId::parse(&key[5..21]).unwrap();
    store.revoke_key(None, &id, &atna_store::Actor::Operator.into(), atna_server::clock::now()).await.unwrap();
    // Without eviction the cache still trusts its copy (until the TTL)...
    assert_eq!(v.verify(&key, None).await.unwrap().code(), VerifyCode::Valid);
    // ...and eviction makes the very next check see the revocation.
    v.evict(&id);
    assert_eq!(v.verify(&key, None).await.unwrap().code(), VerifyCode::Revoked);
    assert_eq!(v.store_reads(), 2);
}

#[tokio::test]
async fn a_running_server_prunes_old_changes_and_expired_sessions() {
    let store = common::fresh_store().await;
    let alice = common::user(&*store, "prune@example.com").await;
    let now = atna_server::clock::now();
    let day = 24 * 60 * 60 * 1000;
    let session = |token: u8, expires: i64| atna_store::NewSession {
        token_hash: [token; 32],
        user: alice,
        csrf: "c".into(),
        created_at: now - 3 * day,
        idle_expires_at: expires,
        absolute_expires_at: expires,
    };
    store.create_session(session(1, now - day)).await.unwrap();
    store.create_session(session(2, now + day)).await.unwrap();
    let old = atna_domain::GeneratedKey::generate();
    store
        .insert_key(atna_store::NewKey {
            form_nonce: None,
            created_by_key: None,
            rules: Default::default(),
            id: old.id,
            owner: alice,
            name: atna_domain::KeyName::parse("old").unwrap(),
            hash: old.hash,
            scopes: atna_domain::Scopes::parse::<&str>(&[]).unwrap(),
            created_at: now - 3 * day,
            expires_at: None,
            actor: atna_store::Actor::Operator.into(),
            rolled_from: None,
        })
        .await
        .unwrap();
    store.revoke_key(None, &old.id, &atna_store::Actor::Operator.into(), now - 2 * day).await.unwrap();
    assert_eq!(store.changes_since(0, 10).await.unwrap().len(), 1);

    let settings = atna_server::Settings { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    let app = atna_server::App::build(settings, store.clone()).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    // Housekeeping runs once at start: the two-day-old feed entry and the expired session go, the live one stays.
    common::eventually("housekeeping at start", std::time::Duration::from_secs(10), || async {
        store.changes_since(0, 10).await.unwrap().is_empty()
            && store.session(&[1; 32], now - 3 * day).await.unwrap().is_none()
    })
    .await;
    assert!(store.session(&[2; 32], now).await.unwrap().is_some());
    assert_eq!(store.auth_record(&old.id).await.unwrap().unwrap().key.status, atna_domain::KeyStatus::Revoked);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_verifier_following_the_feed_trusts_its_cache_only_while_the_feed_is_read() {
    let (v, store, key) = setup().await;
    let lag = Duration::from_millis(300);
    let v = Arc::try_unwrap(v).ok().unwrap().follows_feed(lag);
    // Before the follower's first read (its starting point), nothing cached is trusted: every check reads the store.
    for n in 1..=3 {
        assert_eq!(v.verify(&key, None).await.unwrap().code(), VerifyCode::Valid);
        assert_eq!(v.store_reads(), n);
    }
    assert_eq!(v.cached(), 0, "read-through answers are not kept");
    let read = atna_server::clock::now();
    v.feed_read(read);
    v.verify(&key, None).await.unwrap();
    v.verify(&key, None).await.unwrap();
    assert_eq!(v.store_reads(), 4, "after a feed read the second check is a hit");
    // The key is deleted elsewhere and the follower cannot read the feed any more (nobody calls feed_read): once the
    // last read is older than the bound, the cached record is no longer used, so the deletion is seen.
    let id = CredentialId::parse(&key[5..21]).unwrap();
    store.revoke_key(None, &id, &atna_store::Actor::Operator.into(), read).await.unwrap().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while v.verify(&key, None).await.unwrap().code() == VerifyCode::Valid {
        assert!(std::time::Instant::now() < deadline, "the stale cache entry was used past the bound");
        tokio::task::yield_now().await;
    }
    assert!(atna_server::clock::now() - read >= lag.as_millis() as i64, "within the bound the cache answers");
    assert_eq!(v.verify(&key, None).await.unwrap().code(), VerifyCode::Revoked);
}
