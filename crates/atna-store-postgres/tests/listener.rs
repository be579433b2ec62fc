//! The change listener against a real server: a revocation on one store wakes another store's follower at once, and
//! a cut notification connection is reported (`Wake::Lost`) and then re-established by itself.

use std::time::{Duration, Instant};

use atna_domain::{Email, GeneratedKey, KeyName, PasswordHash, Scopes};
use atna_store::{Actor, NewKey, NewUser, Store, Wake};
use atna_store_postgres::{testdb, PgSettings, PgStore};

/// Polls until the store's listener is connected, with a deadline.
async fn listening(s: &PgStore) -> u32 {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = s.listener_pid() {
            return pid;
        }
        assert!(Instant::now() < end, "the listener never connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn key(s: &dyn Store) -> atna_domain::CredentialId {
    let owner = match s.user_by_email(&Email::parse("l@example.com").unwrap()).await.unwrap() {
        Some(u) => u.id,
        None => {
            s.create_user(NewUser {
                email: Email::parse("l@example.com").unwrap(),
                password_hash: PasswordHash::from_stored("x".into()),
                is_admin: false,
                created_at: 1,
            })
            .await
            .unwrap()
            .id
        }
    };
    let g = GeneratedKey::generate();
    let name = format!("k-{}", g.id.as_str());
    s.insert_key(NewKey {
        form_nonce: None,
        created_by_key: None,
        rules: Default::default(),
        id: g.id,
        owner,
        name: KeyName::parse(&name).unwrap(),
        hash: g.hash,
        scopes: Scopes::parse::<&str>(&[]).unwrap(),
        created_at: 1,
        expires_at: None,
        actor: Actor::Operator.into(),
        rolled_from: None,
    })
    .await
    .unwrap();
    g.id
}

/// Waits (up to 10 s) for a wake other than `Timeout`.
async fn next_wake(s: &PgStore) -> Wake {
    s.wait_for_change(Duration::from_secs(10)).await
}

#[tokio::test]
async fn a_revocation_wakes_other_stores_and_a_cut_connection_is_reported_and_healed() {
    let Some(server) = testdb::server_url() else { return };
    let (a, url) = testdb::fresh_store_on(&server).await;
    let b = PgStore::open(&url, &PgSettings::default()).await.unwrap();
    let pid = listening(&b).await;
    let id = key(&a).await;
    a.revoke_key(None, &id, &Actor::Operator.into(), 2).await.unwrap().unwrap();
    assert_eq!(next_wake(&b).await, Wake::Notified);
    assert_eq!(b.changes_since(0, 10).await.unwrap().len(), 1, "b reads the revocation from the feed");

    // Cut b's notification connection from the server side.
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid as i32).fetch_one(a.pool()).await.unwrap();
    assert!(killed);
    // The next wake says notifications may have been missed (possibly after a notification from another test).
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match next_wake(&b).await {
            Wake::Lost => break,
            _ => assert!(Instant::now() < end, "the cut was never reported"),
        }
    }
    // It listens again by itself, on a new connection, and revocations wake it again.
    let end = Instant::now() + Duration::from_secs(10);
    let new_pid = loop {
        match b.listener_pid() {
            Some(p) if p != pid => break p,
            _ => assert!(Instant::now() < end, "the listener did not reconnect"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_ne!(new_pid, pid);
    // Drain what the reconnect reported, then a revocation must come through as a notification.
    while b.wait_for_change(Duration::from_millis(50)).await != Wake::Timeout {}
    let id2 = key(&a).await;
    a.revoke_key(None, &id2, &Actor::Operator.into(), 3).await.unwrap().unwrap();
    assert_eq!(next_wake(&b).await, Wake::Notified);
}

#[tokio::test]
async fn several_nodes_starting_together_migrate_once() {
    let Some(server) = testdb::server_url() else { return };
    let url = testdb::fresh_schema_url(&server).await;
    let opens = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { PgStore::open(&url, &PgSettings::default()).await.map(|_| ()) })
    });
    for r in futures_join(opens).await {
        r.unwrap();
    }
    let s = PgStore::open(&url, &PgSettings::default()).await.unwrap();
    let (applied, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT version) FROM _sqlx_migrations")
            .fetch_one(s.pool())
            .await
            .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap().count() as i64;
    assert_eq!((applied, distinct), (files, files), "each migration recorded once");
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
