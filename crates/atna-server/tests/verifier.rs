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
    let spec = atna_server::service::KeySpec { name: "k", scopes: &scopes, expires_at: None, grantable: None };
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
    store.revoke_key(None, &id, atna_store::Actor::Operator, atna_server::clock::now()).await.unwrap();
    // Without eviction the cache still trusts its copy (until the TTL)...
    assert_eq!(v.verify(&key, None).await.unwrap().code(), VerifyCode::Valid);
    // ...and eviction makes the very next check see the revocation.
    v.evict(&id);
    assert_eq!(v.verify(&key, None).await.unwrap().code(), VerifyCode::Revoked);
    assert_eq!(v.store_reads(), 2);
}
