//! A node that cannot read the change feed must not keep accepting deleted keys: two real `atna serve` processes on a
//! real PostgreSQL (`ATNA_TEST_POSTGRES_URL`), a key cached on node B, then B's database access broken in the two
//! ways seen in the field while its `LISTEN` connection stays alive, and the key deleted through node A. B must stop
//! answering `200` for it within `change_feed_max_lag` (1 s) and recover once the database is back.
//!
//! Each test gets a database of its own (one of them forbids connections to it), dropped at the end.

mod common;

use std::str::FromStr;
use std::time::{Duration, Instant};

use atna_store_postgres::testdb;
use common::{atna_env, ok, Server};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

const PASSWORD: &str = "correct horse battery";
/// The default `change_feed_max_lag`, plus room for a loaded machine.
const BOUND: Duration = Duration::from_millis(1500);

/// A database of this test's own on the test server; dropped (even after a failure) when this goes out of scope.
struct OwnDatabase {
    server: String,
    name: String,
    url: String,
}

impl OwnDatabase {
    async fn create() -> Option<OwnDatabase> {
        let server = testdb::server_url()?;
        let name = format!(
            "atna_t_fc_{}_{:08x}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        );
        let mut admin = admin(&server).await;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        let (base, _) = server.rsplit_once('/').unwrap();
        let url = format!("{base}/{name}");
        Some(OwnDatabase { server, name, url })
    }

    /// Allows or forbids new connections to it (existing ones stay).
    async fn allow_connections(&self, allow: bool) {
        let sql = format!("ALTER DATABASE {} ALLOW_CONNECTIONS {allow}", self.name);
        sqlx::query(&sql).execute(&mut admin(&self.server).await).await.unwrap();
    }

    /// Terminates the server processes of these connections (by `application_name`); returns how many.
    async fn terminate(&self, names: &[String]) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND application_name = ANY($2)",
        )
        .bind(&self.name)
        .bind(names)
        .fetch_one(&mut admin(&self.server).await)
        .await
        .unwrap()
    }
}

impl Drop for OwnDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // A runtime of its own: this may run while the test's runtime unwinds.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                let mut c = admin(&server).await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
            })
        })
        .join();
    }
}

async fn admin(server: &str) -> PgConnection {
    PgConnectOptions::from_str(server).unwrap().connect().await.unwrap()
}

/// Nodes A and B on `db` with this configuration, Alice with a `keys:manage` key, and a key `(id, secret)` made
/// through A and accepted (so cached) by B.
async fn two_nodes(
    db: &OwnDatabase,
    config: &str,
    dir: &tempfile::TempDir,
) -> (Server, Server, String, String, String) {
    let config_path = dir.path().join("atna.toml");
    std::fs::write(&config_path, config).unwrap();
    let env = [("ATNA_DATABASE_URL", db.url.as_str()), ("ATNA_CONFIG", config_path.to_str().unwrap())];
    ok(atna_env(&env, &["migrate"], None));
    ok(atna_env(&env, &["user", "create", "--email", "alice@example.com", "--password-stdin"], Some(PASSWORD)));
    let out = ok(atna_env(
        &env,
        &["key", "create", "--user", "alice@example.com", "--name", "ops", "--scope", "keys:manage", "--json"],
        None,
    ));
    let admin_key = serde_json::from_str::<Value>(&out).unwrap()["secret"].as_str().unwrap().to_owned();
    let env = [env[0], env[1], ("ATNA_LOG", "info")];
    let (a, b) = (Server::start_env(&env), Server::start_env(&env));
    let res = reqwest::Client::new()
        .post(format!("{}/v1/keys", a.base))
        .bearer_auth(&admin_key)
        .json(&serde_json::json!({ "name": "doomed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    let (id, secret) = (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned());
    // Twice: the first answer may have been read through while B's change follower was still starting.
    until(&b, &secret, &[200], Duration::from_secs(5)).await;
    assert_eq!(b.whoami(&secret).await, 200);
    (a, b, admin_key, id, secret)
}

async fn delete(a: &Server, admin_key: &str, id: &str) {
    let res =
        reqwest::Client::new().delete(format!("{}/v1/keys/{id}", a.base)).bearer_auth(admin_key).send().await.unwrap();
    assert_eq!(res.status(), 204);
}

/// Polls `whoami` on `node` until it answers one of `want`; fails after `deadline`.
async fn until(node: &Server, key: &str, want: &[u16], deadline: Duration) -> u16 {
    let start = Instant::now();
    loop {
        let s = node.whoami(key).await;
        if want.contains(&s) {
            return s;
        }
        assert!(start.elapsed() < deadline, "{} answered {s}, not {want:?}, for {deadline:?}", node.base);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks `node` about `key` for `watch` from `since`: every answer after `BOUND` must refuse it (never 200).
/// Returns the answers given after the bound.
async fn never_accepted_after_bound(node: &Server, key: &str, since: Instant, watch: Duration) -> Vec<u16> {
    let mut late = Vec::new();
    while since.elapsed() < watch {
        let s = node.whoami(key).await;
        if since.elapsed() > BOUND {
            assert_ne!(s, 200, "{} accepted a deleted key {:?} after the deletion", node.base, since.elapsed());
            late.push(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!late.is_empty());
    late
}

#[tokio::test]
async fn a_node_whose_pool_connections_are_gone_refuses_cached_keys_while_it_still_listens() {
    let Some(db) = OwnDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b, admin_key, id, secret) = two_nodes(&db, "cache_ttl_secs = 3600\n", &dir).await;

    // B loses every connection but its LISTEN one, and cannot open new ones.
    db.allow_connections(false).await;
    let pid = b.child.id();
    let cut = db.terminate(&[format!("atna-{pid}"), format!("atna-feed-{pid}")]).await;
    assert!(cut >= 2, "B's pool and feed connections were found ({cut})");
    let listener = format!("atna-listener-{pid}");
    let alive: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind(&listener)
        .fetch_one(&mut admin(&db.server).await)
        .await
        .unwrap();
    assert_eq!(alive, 1, "B still listens, so it is not told that notifications were lost");

    delete(&a, &admin_key, &id).await;
    let deleted = Instant::now();
    let late = never_accepted_after_bound(&b, &secret, deleted, BOUND + Duration::from_secs(1)).await;
    assert!(late.iter().all(|&s| s == 503), "B cannot read the database: it says so ({late:?})");
    let ready = reqwest::get(format!("{}/readyz", b.base)).await.unwrap().status();
    assert_eq!(ready, 503);

    // The database is back: B reconnects by itself and knows the key is gone; good keys work again.
    db.allow_connections(true).await;
    until(&b, &secret, &[401], Duration::from_secs(10)).await;
    assert_eq!(b.whoami(&admin_key).await, 200);
    a.stop();
    let logs = b.stop();
    assert!(logs.contains("cannot read the change feed"), "{logs}");
}

/// A browser signed in on `base` (keeps cookies, does not follow redirects).
async fn signed_in(base: &str) -> reqwest::Client {
    let web =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let html = web.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    let at = html.find("name=\"csrf\"").unwrap();
    let v = &html[at..][html[at..].find("value=\"").unwrap() + 7..];
    let csrf = v[..v.find('"').unwrap()].to_owned();
    let form = [("csrf", csrf.as_str()), ("email", "alice@example.com"), ("password", PASSWORD)];
    let res = web.post(format!("{base}/login")).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 303);
    web
}

#[tokio::test]
async fn a_node_whose_pool_is_exhausted_by_stuck_requests_still_follows_the_feed_and_unsticks_them() {
    let Some(db) = OwnDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = "cache_ttl_secs = 3600\ndatabase_max_connections = 2\ndatabase_timeout_ms = 500\n\
                  database_lock_timeout_ms = 3000\n";
    let (a, b, admin_key, id, secret) = two_nodes(&db, config, &dir).await;
    let web = signed_in(&b.base).await;

    // A table every dashboard page reads is locked; two pages on B take both its connections and wait.
    let mut locker = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE").execute(&mut locker).await.unwrap();
    let locked = Instant::now();
    let stuck: Vec<_> = (0..2)
        .map(|_| {
            let (web, url) = (web.clone(), format!("{}/keys", b.base));
            tokio::spawn(async move { web.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    // Both are waiting on the lock (so holding B's connections) before the key is deleted.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
        )
        .bind(format!("atna-{}", b.child.id()))
        .fetch_one(&mut admin(&db.server).await)
        .await
        .unwrap();
        if waiting == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the dashboard requests never reached the lock ({waiting})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    delete(&a, &admin_key, &id).await;
    let deleted = Instant::now();
    never_accepted_after_bound(&b, &secret, deleted, BOUND + Duration::from_millis(500)).await;

    // The stuck requests end by themselves (lock_timeout), with 503, while the lock is still held.
    for t in stuck {
        let status = tokio::time::timeout(Duration::from_secs(6), t).await.expect("the stuck request ended").unwrap();
        assert_eq!(status, 503);
    }
    assert!(locked.elapsed() < Duration::from_secs(7));
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();

    until(&b, &secret, &[401], Duration::from_secs(5)).await;
    assert_eq!(b.whoami(&admin_key).await, 200);
    assert_eq!(web.get(format!("{}/keys", b.base)).send().await.unwrap().status(), 200);
    a.stop();
    b.stop();
}
