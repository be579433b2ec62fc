//! Test helpers: a fresh store per test, on the backend `ATNA_TEST_BACKEND` names (`sqlite` by default,
//! `postgres` for the PostgreSQL run), and a running app on port 0.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use atna_store::Store;

/// A fresh, empty, migrated store for one test.
pub async fn fresh_store() -> Arc<dyn Store> {
    match std::env::var("ATNA_TEST_BACKEND").as_deref().unwrap_or("sqlite") {
        "sqlite" => {
            let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
            Arc::new(atna_store_sqlite::SqliteStore::open_file(&dir.path().join("atna.db")).await.unwrap())
        }
        "postgres" => {
            Arc::new(atna_store_postgres::testdb::fresh_store().await.expect(
                "ATNA_TEST_BACKEND=postgres needs ATNA_TEST_POSTGRES_URL (a server to create test databases on)",
            ))
        }
        other => panic!("ATNA_TEST_BACKEND={other} is not a backend this build knows"),
    }
}

/// Polls `check` until it holds or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A running app on port 0 with one user (`alice@example.com`) and a `keys:manage` key.
pub struct TestApp {
    pub base: String,
    pub store: Arc<dyn Store>,
    pub state: atna_server::AppState,
    pub http: reqwest::Client,
    pub alice: atna_domain::UserId,
    /// Alice's `keys:manage` key.
    pub admin_key: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Like `spawn`, with settings adjusted by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut atna_server::Settings)) -> Self {
        let store = fresh_store().await;
        let mut settings = atna_server::Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            change_poll_interval: Duration::from_millis(20),
            // Long enough that no test sees a flush it did not ask for.
            usage_flush_interval: Duration::from_secs(3600),
            ..Default::default()
        };
        tweak(&mut settings);
        let app = atna_server::App::build(settings, store.clone()).await.unwrap();
        let base = format!("http://{}", app.local_addr());
        let state = app.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        let alice = user(&*store, "alice@example.com").await;
        let mut t = Self {
            base,
            store,
            state,
            http: reqwest::Client::new(),
            alice,
            admin_key: String::new(),
            shutdown: Some(tx),
            task: Some(task),
        };
        t.admin_key = t.key_for(alice, "admin-key", &["keys:manage"]).await;
        t
    }

    /// Creates a key directly in the store (as the operator would) and returns its secret.
    pub async fn key_for(&self, owner: atna_domain::UserId, name: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let spec = atna_server::service::KeySpec {
            rate_limit: None,
            quota: None,
            once: None,
            name,
            scopes: &scopes,
            expires_at: None,
            by_key: None,
            ip_allowlist: &[],
        };
        let (_, secret) = atna_server::service::create_key(
            &*self.store,
            owner,
            atna_store::Actor::Operator,
            spec,
            atna_server::clock::now(),
        )
        .await
        .unwrap();
        secret.expose().to_owned()
    }

    /// A key that expired a millisecond ago, written straight to the store (the API refuses past expiry dates).
    pub async fn expired_key_for(&self, owner: atna_domain::UserId, name: &str) -> atna_domain::GeneratedKey {
        let g = atna_domain::GeneratedKey::generate();
        let now = atna_server::clock::now();
        self.store
            .insert_key(atna_store::NewKey {
                form_nonce: None,
                created_by_key: None,
                rules: Default::default(),
                id: g.id,
                owner,
                name: atna_domain::KeyName::parse(name).unwrap(),
                hash: g.hash,
                scopes: atna_domain::Scopes::default(),
                created_at: now - 10_000,
                expires_at: Some(now - 1),
                actor: atna_store::Actor::Operator.into(),
                rolled_from: None,
            })
            .await
            .unwrap();
        g
    }

    /// `GET path` with a Bearer key, as JSON (whatever the status).
    pub async fn get_json(&self, path: &str, key: &str) -> serde_json::Value {
        self.http.get(self.url(path)).bearer_auth(key).send().await.unwrap().json().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn whoami(&self, key: &str) -> reqwest::Response {
        self.http.get(self.url("/v1/whoami")).bearer_auth(key).send().await.unwrap()
    }

    /// Stops the server gracefully (flushing usage) and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// Creates a user with a throwaway password hash.
pub async fn user(store: &dyn Store, email: &str) -> atna_domain::UserId {
    store
        .create_user(atna_store::NewUser {
            email: atna_domain::Email::parse(email).unwrap(),
            password_hash: atna_domain::PasswordHash::from_stored("unused".into()),
            is_admin: false,
            created_at: atna_server::clock::now(),
        })
        .await
        .unwrap()
        .id
}

/// Reads a problem document, checking its content type.
pub async fn problem(res: reqwest::Response) -> (u16, serde_json::Value) {
    let status = res.status().as_u16();
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ct.as_deref(), Some("application/problem+json"), "status {status}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], status);
    (status, body)
}
