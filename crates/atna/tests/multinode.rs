//! Several real `atna serve` processes on one real PostgreSQL (`ATNA_TEST_POSTGRES_URL`; each test in a fresh
//! schema): revocation and disabling reach every node at once, a node whose notification connection is cut catches
//! up from the change feed instead of serving stale answers, and usage from several nodes adds up.
//!
//! The propagation test prints its figures (median, p99, worst of 100 trials); for representative numbers run it on
//! a release build: `cargo test --release -p atna --test multinode -- --nocapture propagation`.

mod common;

use std::time::{Duration, Instant};

use atna_store_postgres::{testdb, PgSettings, PgStore};
use common::{atna_env, ok, Server};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery\n";

/// A fresh schema, `n` nodes started at once on it (they race to migrate it), and Alice with a `keys:manage` key.
struct Cluster {
    url: String,
    nodes: Vec<Server>,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(n: usize, config: &str) -> Option<Cluster> {
        let server = testdb::server_url()?;
        let url = testdb::fresh_schema_url(&server).await;
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("atna.toml");
        std::fs::write(&config_path, config).unwrap();
        let nodes: Vec<Server> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let env = [
                        ("ATNA_DATABASE_URL", url.as_str()),
                        ("ATNA_CONFIG", config_path.to_str().unwrap()),
                        ("ATNA_LOG", "info"),
                    ];
                    s.spawn(move || Server::start_env(&env))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let cli = [("ATNA_DATABASE_URL", url.as_str())];
        ok(atna_env(&cli, &["user", "create", "--email", "alice@example.com", "--password-stdin"], Some(PASSWORD)));
        let out = ok(atna_env(
            &cli,
            &["key", "create", "--user", "alice@example.com", "--name", "ops", "--scope", "keys:manage", "--json"],
            None,
        ));
        let admin = serde_json::from_str::<Value>(&out).unwrap()["secret"].as_str().unwrap().to_owned();
        Some(Cluster { url, nodes, admin, _dir: dir })
    }

    fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        ok(atna_env(&[("ATNA_DATABASE_URL", self.url.as_str())], args, stdin))
    }

    /// Creates a key through node `i`'s API; returns (id, secret).
    async fn create_key(&self, i: usize, name: &str) -> (String, String) {
        let res = reqwest::Client::new()
            .post(format!("{}/v1/keys", self.nodes[i].base))
            .bearer_auth(&self.admin)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
    }

    async fn delete_key(&self, i: usize, id: &str) {
        let res = reqwest::Client::new()
            .delete(format!("{}/v1/keys/{id}", self.nodes[i].base))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }

    fn stop(self) -> Vec<String> {
        self.nodes.into_iter().map(Server::stop).collect()
    }
}

/// Polls node `s` until `key` gets `want`, returning how long it took; fails after `deadline`.
async fn until_status(s: &Server, key: &str, want: u16, deadline: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if s.whoami(key).await == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < deadline, "node {} did not answer {want} within {deadline:?}", s.base);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test]
async fn propagation_a_key_deleted_through_one_node_is_rejected_by_all_others_within_a_second() {
    let Some(c) = Cluster::start(3, "").await else { return };
    const TRIALS: usize = 100;
    let mut times = Vec::with_capacity(TRIALS * 2);
    for t in 0..TRIALS {
        let via = t % 3;
        let (id, secret) = c.create_key(via, &format!("trial-{t}")).await;
        let others: Vec<&Server> = (0..3).filter(|&i| i != via).map(|i| &c.nodes[i]).collect();
        for n in &others {
            assert_eq!(n.whoami(&secret).await, 200, "every node accepts the key first (and caches it)");
        }
        c.delete_key(via, &id).await;
        // From the moment the 204 arrived: how long until each other node says 401.
        let waits = others.iter().map(|n| until_status(n, &secret, 401, Duration::from_secs(1)));
        times.extend(futures::future::join_all(waits).await);
    }
    times.sort();
    println!(
        "revocation propagation over {} node pairs: median {:?}, p99 {:?}, worst {:?}",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().unwrap()
    );
    c.stop();
}

#[tokio::test]
async fn disabling_a_user_reaches_every_node_within_a_second() {
    let Some(c) = Cluster::start(2, "").await else { return };
    c.cli(&["user", "create", "--email", "bob@example.com", "--password-stdin"], Some(PASSWORD));
    let out = c.cli(&["key", "create", "--user", "bob@example.com", "--name", "bob-app", "--json"], None);
    let bob = serde_json::from_str::<Value>(&out).unwrap()["secret"].as_str().unwrap().to_owned();
    for n in &c.nodes {
        assert_eq!(n.whoami(&bob).await, 200);
        assert_eq!(n.whoami(&c.admin).await, 200);
    }
    c.cli(&["user", "disable", "bob@example.com"], None);
    for n in &c.nodes {
        until_status(n, &bob, 401, Duration::from_secs(1)).await;
        assert_eq!(n.whoami(&c.admin).await, 200, "other users' keys keep working");
    }
    c.cli(&["user", "enable", "bob@example.com"], None);
    for n in &c.nodes {
        until_status(n, &bob, 200, Duration::from_secs(1)).await;
    }
    c.stop();
}

/// Every lifecycle change made through one node (API) or the CLI is obeyed by every other node within a second, like
/// a deletion: disable and enable, an edit that narrows the allowlist, a roll whose overlap ends now, and an
/// administrator's bulk revocation.
#[tokio::test]
async fn disable_enable_edit_roll_and_bulk_revocation_reach_every_node_within_a_second() {
    let Some(c) = Cluster::start(2, "").await else { return };
    let http = reqwest::Client::new();
    let patch = |node: usize, id: &str, body: &str| {
        http.patch(format!("{}/v1/keys/{id}", c.nodes[node].base))
            .bearer_auth(&c.admin)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_owned())
            .send()
    };
    let (id, secret) = c.create_key(0, "worker").await;
    for n in &c.nodes {
        assert_eq!(n.whoami(&secret).await, 200, "cached on every node first");
    }
    assert_eq!(patch(0, &id, r#"{"status":"disabled"}"#).await.unwrap().status(), 200);
    until_status(&c.nodes[1], &secret, 401, Duration::from_secs(1)).await;
    c.cli(&["key", "enable", &id], None);
    until_status(&c.nodes[1], &secret, 200, Duration::from_secs(1)).await;
    // An allowlist that leaves out the loopback: refused (403) on the other node.
    assert_eq!(patch(0, &id, r#"{"ip_allowlist":["203.0.113.0/24"]}"#).await.unwrap().status(), 200);
    until_status(&c.nodes[1], &secret, 403, Duration::from_secs(1)).await;
    assert_eq!(patch(1, &id, r#"{"ip_allowlist":null}"#).await.unwrap().status(), 200);
    until_status(&c.nodes[0], &secret, 200, Duration::from_secs(1)).await;
    // A roll through node 0 with no overlap: the old key stops on node 1, the new one works there.
    let res = http
        .post(format!("{}/v1/keys/{id}/roll", c.nodes[0].base))
        .bearer_auth(&c.admin)
        .json(&serde_json::json!({"overlap_seconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let rolled: Value = res.json().await.unwrap();
    let new_secret = rolled["secret"].as_str().unwrap().to_owned();
    until_status(&c.nodes[1], &secret, 401, Duration::from_secs(1)).await;
    assert_eq!(c.nodes[1].whoami(&new_secret).await, 200);
    // Bulk revocation from the CLI: every key of Alice's made before now, on every node.
    let (_, other) = c.create_key(1, "other").await;
    for n in &c.nodes {
        assert_eq!(n.whoami(&other).await, 200);
    }
    let out = c.cli(&["key", "revoke-all", "--user", "alice@example.com", "--json"], None);
    assert!(out.contains("\"revoked\""), "{out}");
    for n in &c.nodes {
        for key in [&new_secret, &other, &c.admin] {
            until_status(n, key, 401, Duration::from_secs(1)).await;
        }
    }
    c.stop();
}

#[tokio::test]
async fn a_node_whose_notification_connection_is_cut_catches_up_before_trusting_its_cache() {
    // Polling and TTL far away: only notifications, or the loss of them, can make this node re-read a key.
    let Some(c) = Cluster::start(1, "change_poll_ms = 600000\ncache_ttl_secs = 3600\n").await else { return };
    let node = &c.nodes[0];
    let (id, secret) = c.create_key(0, "cut").await;
    assert_eq!(node.whoami(&secret).await, 200);

    // The key is revoked in the database and the feed, but its notification is lost (no NOTIFY is sent).
    let store = PgStore::open(&c.url, &PgSettings::default()).await.unwrap();
    sqlx::query("UPDATE api_keys SET status = 'revoked', revoked_at = 1 WHERE id = $1")
        .bind(&id)
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO changes (key_id, at) VALUES ($1, 1)").bind(&id).execute(store.pool()).await.unwrap();
    assert_eq!(node.whoami(&secret).await, 200, "the node has not heard of it: it answers from its cache");

    // Cut the node's notification connection from the server side.
    let name = format!("atna-listener-{}", node.child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let cut = loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&name)
        .fetch_one(store.pool())
        .await
        .unwrap();
        if n > 0 {
            break n;
        }
        assert!(Instant::now() < deadline, "no listener connection named {name}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(cut, 1);
    // The node cannot know what it missed: it reads the feed from where it was, and so learns of the revocation.
    until_status(node, &secret, 401, Duration::from_secs(5)).await;
    assert_eq!(node.whoami(&c.admin).await, 200, "keys still good are read again and accepted");
    // And it listens again: a normal deletion reaches it by notification.
    let (id2, secret2) = c.create_key(0, "after-cut").await;
    assert_eq!(node.whoami(&secret2).await, 200);
    sqlx::query("UPDATE api_keys SET status = 'revoked' WHERE id = $1").bind(&id2).execute(store.pool()).await.unwrap();
    sqlx::query("INSERT INTO changes (key_id, at) VALUES ($1, 1)").bind(&id2).execute(store.pool()).await.unwrap();
    sqlx::query("SELECT pg_notify('atna_changes', '0')").execute(store.pool()).await.unwrap();
    until_status(node, &secret2, 401, Duration::from_secs(5)).await;
    let logs = c.stop().remove(0);
    assert!(logs.contains("catching up from the change feed"), "{logs}");
}

#[tokio::test]
async fn usage_from_several_nodes_adds_up_and_the_latest_use_wins() {
    let Some(c) = Cluster::start(2, "").await else { return };
    let out = c.cli(&["key", "create", "--user", "alice@example.com", "--name", "shared-app", "--json"], None);
    let key: Value = serde_json::from_str(&out).unwrap();
    let (id, secret) = (key["id"].as_str().unwrap(), key["secret"].as_str().unwrap());
    for _ in 0..20 {
        assert_eq!(c.nodes[0].whoami(secret).await, 200);
    }
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await; // a clock tick apart, not a wait for a server
    for _ in 0..30 {
        assert_eq!(c.nodes[1].whoami(secret).await, 200);
    }
    // Node 1 (the later uses) writes first, node 0 (older uses) after: the latest use must still win.
    let mut nodes = c.nodes.into_iter();
    let (n0, n1) = (nodes.next().unwrap(), nodes.next().unwrap());
    n1.stop();
    n0.stop();
    let out = ok(atna_env(
        &[("ATNA_DATABASE_URL", c.url.as_str())],
        &["key", "list", "--user", "alice@example.com", "--json"],
        None,
    ));
    let list: Value = serde_json::from_str(&out).unwrap();
    let k = list.as_array().unwrap().iter().find(|k| k["id"] == id).unwrap();
    assert_eq!(k["use_count"], 50, "no node's uses are lost");
    let last: chrono::DateTime<chrono::Utc> = k["last_used_at"].as_str().unwrap().parse().unwrap();
    assert!(last > between, "last used {last} is from node 1's later calls (after {between})");
}

#[tokio::test]
async fn a_sqlite_installation_moves_to_postgres_and_its_keys_keep_working() {
    let Some(server) = testdb::server_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sqlite = [("ATNA_DATA_DIR", data.to_str().unwrap())];
    ok(atna_env(&sqlite, &["user", "create", "--email", "alice@example.com", "--password-stdin"], Some(PASSWORD)));
    let key = |name: &str| {
        let out = ok(atna_env(
            &sqlite,
            &["key", "create", "--user", "alice@example.com", "--name", name, "--scope", "keys:manage", "--json"],
            None,
        ));
        let v: Value = serde_json::from_str(&out).unwrap();
        (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
    };
    let (_, kept) = key("billing-service");
    let (gone_id, gone) = key("old-service");
    ok(atna_env(&sqlite, &["key", "delete", &gone_id], None));
    let file = dir.path().join("atna-export.json");
    ok(atna_env(&sqlite, &["export", "--output", file.to_str().unwrap()], None));

    // The README's steps: migrate the new database, import, start nodes on it.
    let url = testdb::fresh_schema_url(&server).await;
    let pg = [("ATNA_DATABASE_URL", url.as_str())];
    assert!(ok(atna_env(&pg, &["migrate"], None)).contains("postgres"));
    let out = ok(atna_env(&pg, &["import", file.to_str().unwrap()], None));
    assert!(out.contains("imported 1 user, 2 keys (1 deleted)"), "{out}");
    // A second import is refused: the database is no longer empty.
    let again = atna_env(&pg, &["import", file.to_str().unwrap()], None);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let node = Server::start_env(&[("ATNA_DATABASE_URL", url.as_str()), ("ATNA_LOG", "info")]);
    assert_eq!(node.whoami(&kept).await, 200, "only hashes moved, and the key still works");
    assert_eq!(node.whoami(&gone).await, 401, "a deleted key stays deleted");
    // New users and keys get IDs after the imported ones.
    ok(atna_env(&pg, &["user", "create", "--email", "bob@example.com", "--password-stdin"], Some(PASSWORD)));
    let users: Value = serde_json::from_str(&ok(atna_env(&pg, &["user", "list", "--json"], None))).unwrap();
    let ids: Vec<i64> = users.as_array().unwrap().iter().map(|u| u["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2]);
    let res = reqwest::Client::new()
        .post(format!("{}/v1/keys", node.base))
        .bearer_auth(&kept)
        .json(&serde_json::json!({ "name": "after-the-move" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    node.stop();
}

/// A browser: keeps cookies, shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The `value` of the form field named `name` in a page.
fn field(html: &str, name: &str) -> String {
    value_after(html, &format!("name=\"{name}\""))
}

/// The `value` of the first element after `marker`.
fn value_after(html: &str, marker: &str) -> String {
    let at = html.find(marker).unwrap_or_else(|| panic!("no {marker} in:\n{html}"));
    let rest = &html[at..];
    let v = &rest[rest.find("value=\"").unwrap() + 7..];
    v[..v.find('"').unwrap()].to_owned()
}

/// Signs in through node `base`'s dashboard form with browser `c`; returns the status of the form's answer.
async fn sign_in_with(c: &reqwest::Client, base: &str, email: &str, password: &str) -> u16 {
    let html = c.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    let form = [("csrf", field(&html, "csrf")), ("email", email.into()), ("password", password.into())];
    c.post(format!("{base}/login")).form(&form).send().await.unwrap().status().as_u16()
}

/// Signs browser `c` out through node `base` (it keeps its cookies other than the session's).
async fn sign_out(c: &reqwest::Client, base: &str) {
    let html = c.get(format!("{base}/account")).send().await.unwrap().text().await.unwrap();
    let r = c.post(format!("{base}/logout")).form(&[("csrf", field(&html, "csrf"))]).send().await.unwrap();
    assert_eq!(r.status(), 303);
}

/// Signs in through node `base`'s dashboard form, as a new browser would.
async fn sign_in(base: &str, email: &str, password: &str) -> u16 {
    sign_in_with(&browser(), base, email, password).await
}

#[tokio::test]
async fn the_dashboard_works_whichever_node_answers_each_request() {
    let Some(c) = Cluster::start(2, "").await else { return };
    let (a, b) = (&c.nodes[0].base, &c.nodes[1].base);
    // Signed in on one node, the session is good on the other (both nodes on 127.0.0.1: the cookie goes to both).
    let web = browser();
    assert_eq!(sign_in_with(&web, a, "alice@example.com", PASSWORD.trim()).await, 303);
    let html = web.get(format!("{b}/keys/new")).send().await.unwrap().text().await.unwrap();
    let form =
        [("csrf", field(&html, "csrf")), ("nonce", field(&html, "nonce")), ("name", "billing-27_11_2026-10_00".into())];
    // The form came from node b; Save & Add reaches node a, then a reload re-sends it to node b.
    let created = web.post(format!("{a}/keys/new")).form(&form).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let page = created.text().await.unwrap();
    let secret = value_after(&page, "id=\"credential-secret\"");
    assert!(secret.starts_with("atna_"), "the Credential Secret is on the page");
    let again = web.post(format!("{b}/keys/new")).form(&form).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let again = again.text().await.unwrap();
    assert!(again.contains("already created") && !again.contains(&secret), "one key, secret shown once");
    let list: Value =
        serde_json::from_str(&c.cli(&["key", "list", "--user", "alice@example.com", "--json"], None)).unwrap();
    assert_eq!(list.as_array().unwrap().iter().filter(|k| k["name"] == "billing-27_11_2026-10_00").count(), 1);
    c.stop();
}

#[tokio::test]
async fn sign_in_throttling_is_shared_by_every_node() {
    let Some(c) = Cluster::start(2, "").await else { return };
    // Alice's own browser signed in before, through node b: the device cookie it got is known to every node.
    let owner = browser();
    assert_eq!(sign_in_with(&owner, &c.nodes[1].base, "alice@example.com", PASSWORD.trim()).await, 303);
    sign_out(&owner, &c.nodes[1].base).await;
    // Five wrong passwords from this address, spread over both nodes, use up its allowance for the account
    // everywhere.
    for i in 0..5 {
        assert_eq!(sign_in(&c.nodes[i % 2].base, "alice@example.com", "wrong password").await, 401);
    }
    for n in &c.nodes {
        assert_eq!(sign_in(&n.base, "alice@example.com", PASSWORD.trim()).await, 429, "even the right password waits");
    }
    // Strangers' failures do not keep the owner's remembered browser out, on either node.
    for n in &c.nodes {
        assert_eq!(sign_in_with(&owner, &n.base, "alice@example.com", PASSWORD.trim()).await, 303);
        sign_out(&owner, &n.base).await;
    }
    // Another account is not affected, on either node.
    c.cli(&["user", "create", "--email", "bob@example.com", "--password-stdin"], Some(PASSWORD));
    assert_eq!(sign_in(&c.nodes[1].base, "bob@example.com", PASSWORD.trim()).await, 303);
    c.stop();
}

#[tokio::test]
async fn a_setup_link_printed_by_one_node_works_on_another_once() {
    let Some(server) = testdb::server_url() else { return };
    let url = testdb::fresh_schema_url(&server).await;
    let env = [("ATNA_DATABASE_URL", url.as_str()), ("ATNA_LOG", "warn")];
    let (a, b) = (Server::start_env(&env), Server::start_env(&env));
    let (link_a, link_b) = (a.setup_link().expect("node a printed a link"), b.setup_link().expect("node b too"));
    // Node a's link, opened through node b (as a load balancer may send it).
    let token = &link_a[link_a.find("token=").unwrap() + 6..];
    let web = browser();
    let html = web.get(format!("{}/setup?token={token}", b.base)).send().await.unwrap().text().await.unwrap();
    let form = [
        ("csrf", field(&html, "csrf")),
        ("token", token.to_owned()),
        ("email", "root@example.com".into()),
        ("password", PASSWORD.trim().into()),
        ("confirm", PASSWORD.trim().into()),
    ];
    let res = web.post(format!("{}/setup", b.base)).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 303, "the first administrator is created and signed in");
    // Setup is over everywhere: node b's own link and a second use of a's link are refused.
    for link in [&link_b, &link_a] {
        let status = reqwest::get(link.as_str()).await.unwrap().status().as_u16();
        assert_eq!(status, 404, "{link}");
    }
    let users: Value =
        serde_json::from_str(&ok(atna_env(&[("ATNA_DATABASE_URL", url.as_str())], &["user", "list", "--json"], None)))
            .unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(users[0]["admin"], true);
    a.stop();
    b.stop();
}

/// Sends `n` requests at once to `node` with `key`; returns how many were allowed (the rest must be 429).
async fn burst(node: &Server, key: &str, n: usize) -> usize {
    let client = reqwest::Client::new();
    let sends = (0..n).map(|_| client.get(format!("{}/v1/whoami", node.base)).bearer_auth(key).send());
    let answers = futures::future::join_all(sends).await;
    let mut ok = 0;
    for r in answers {
        match r.unwrap().status().as_u16() {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    ok
}

/// A key made with the CLI (`--rate-limit`, `--quota`); returns its secret.
fn limited_key(c: &Cluster, name: &str, flags: &[&str]) -> String {
    let mut args = vec!["key", "create", "--user", "alice@example.com", "--name", name, "--json"];
    args.extend_from_slice(flags);
    serde_json::from_str::<Value>(&c.cli(&args, None)).unwrap()["secret"].as_str().unwrap().to_owned()
}

/// How far over its limits a key gets across two nodes (`limits_sync_ms = 1000`, the default), measured:
///
/// * a simultaneous burst on both nodes: each node admits up to the whole limit before they hear of each other;
/// * then the debt: once each node has charged the other's uses, the pair admits nothing until it is paid, so over
///   the whole period the key gets at most `nodes × limit`;
/// * a key whose allowance was spent on one node: how long, and how many requests, until the other refuses it;
/// * a quota of 100 spent on both nodes at once: the overrun, and the stored count afterwards.
#[tokio::test]
async fn limits_are_shared_between_nodes_and_the_overshoot_is_bounded() {
    let Some(c) = Cluster::start(2, "limits_sync_ms = 1000\n").await else { return };
    const LIMIT: usize = 50;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);

    // 1. Both nodes at once, then steady traffic on both for the rest of the 10 s period.
    let key = limited_key(&c, "burst", &["--rate-limit", "50/10s"]);
    let started = Instant::now();
    let (x, y) = tokio::join!(burst(a, &key, 2 * LIMIT), burst(b, &key, 2 * LIMIT));
    let first = x + y;
    let mut total = first;
    while started.elapsed() < Duration::from_secs(10) {
        let (x, y) = tokio::join!(burst(a, &key, 2), burst(b, &key, 2));
        total += x + y;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("rate limit 50/10s on 2 nodes: simultaneous burst admitted {first}; whole 10 s period admitted {total}");
    assert!((LIMIT..=2 * LIMIT).contains(&first), "each node admits at most the limit: {first}");
    // Each node's own allowance refills by 5/s; the other's uses are charged within two sync intervals.
    assert!(total <= 2 * LIMIT + 20, "at most nodes × limit (+ a refill during the first syncs): {total}");

    // 2. Spent on node A only; node B learns of it within about two sync intervals.
    let key = limited_key(&c, "one-sided", &["--rate-limit", "50/60s"]);
    assert_eq!(burst(a, &key, LIMIT).await, LIMIT);
    let spent = Instant::now();
    let mut admitted_by_b = 0;
    let learned = loop {
        match b.whoami(&key).await {
            200 => admitted_by_b += 1,
            429 => break spent.elapsed(),
            other => panic!("unexpected status {other}"),
        }
        assert!(spent.elapsed() < Duration::from_secs(5), "node B never heard of node A's uses");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("allowance spent on node A: node B refused after {learned:?}, having admitted {admitted_by_b} more");
    assert!(learned < Duration::from_millis(2_500), "within about two sync intervals: {learned:?}");

    // 3. A quota of 100, spent on both nodes at once.
    let key = limited_key(&c, "credits", &["--quota", "100"]);
    let (x, y) = tokio::join!(burst(a, &key, 100), burst(b, &key, 100));
    println!("quota of 100 on 2 nodes, 100 requests to each at once: {} admitted", x + y);
    assert!((100..=200).contains(&(x + y)), "at most nodes × quota: {}", x + y);
    // After a sync both know it is used up, and the store says 0.
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.whoami(&key).await != 429 || b.whoami(&key).await != 429 {
        assert!(Instant::now() < deadline, "nodes did not learn that the quota is used up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = c.cli(&["key", "list", "--user", "alice@example.com", "--json"], None);
    let keys: Vec<Value> = serde_json::from_str(&out).unwrap();
    let credits = keys.iter().find(|k| k["name"] == "credits").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut remaining = credits["quota"]["remaining"].as_i64().unwrap();
    while remaining != 0 {
        assert!(Instant::now() < deadline, "the stored quota never reached 0: {remaining}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = c.cli(&["key", "list", "--user", "alice@example.com", "--json"], None);
        let keys: Vec<Value> = serde_json::from_str(&out).unwrap();
        remaining = keys.iter().find(|k| k["name"] == "credits").unwrap()["quota"]["remaining"].as_i64().unwrap();
    }
    c.stop();
}

/// Allowed requests and refused attempts by reason, summed over every bucket of a usage answer (so a test running
/// across an hour or a day boundary still adds up).
fn usage_totals(v: &Value) -> (i64, std::collections::BTreeMap<String, i64>) {
    let mut allowed = 0;
    let mut refused = std::collections::BTreeMap::new();
    for b in v["buckets"].as_array().unwrap() {
        allowed += b["allowed"].as_i64().unwrap();
        for (reason, n) in b["refused"].as_object().unwrap() {
            *refused.entry(reason.clone()).or_insert(0) += n.as_i64().unwrap();
        }
    }
    (allowed, refused)
}

fn reasons(list: &[(&str, i64)]) -> std::collections::BTreeMap<String, i64> {
    list.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// Sums the `data-col="{col}"` cells of the dashboard's usage table.
fn table_sum(html: &str, col: &str) -> i64 {
    let marker = format!("data-col=\"{col}\">");
    html.match_indices(&marker)
        .map(|(at, m)| {
            let rest = &html[at + m.len()..];
            rest[..rest.find('<').unwrap()].parse::<i64>().unwrap()
        })
        .sum()
}

#[tokio::test]
async fn usage_over_time_counts_known_traffic_from_two_nodes_by_outcome() {
    let Some(c) = Cluster::start(2, "usage_flush_secs = 1\n").await else { return };
    let http = reqwest::Client::new();
    let create = |name: &str, extra: &[&str]| {
        let mut args = vec!["key", "create", "--user", "alice@example.com", "--name", name, "--json"];
        args.extend_from_slice(extra);
        let v: Value = serde_json::from_str(&c.cli(&args, None)).unwrap();
        (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
    };
    let (id, secret) = create("billing", &["--scope", "billing:read", "--allow-ip", "127.0.0.1", "--allow-ip", "::1"]);
    let parsed = atna_domain::CredentialId::parse(&id).unwrap();
    let wrong = atna_domain::credential::encode(&parsed, &[b'x'; atna_domain::credential::SECRET_LEN]);
    let unknown = atna_domain::credential::encode(
        &atna_domain::CredentialId::generate(),
        &[b'y'; atna_domain::credential::SECRET_LEN],
    );
    let verify = |base: &str, body: Value| {
        let req = http.post(format!("{base}/v1/keys/verify")).json(&body);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap()["code"].as_str().unwrap().to_owned() }
    };
    let forward = |base: &str, key: &str, query: &str| {
        let req = http.get(format!("{base}/v1/forward-auth{query}")).bearer_auth(key);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // Known traffic through whoami, verify and forward-auth, on each of the two nodes.
    for n in &c.nodes {
        let b = n.base.as_str();
        for _ in 0..3 {
            assert_eq!(n.whoami(&secret).await, 200);
        }
        for _ in 0..2 {
            assert_eq!(n.whoami(&wrong).await, 401);
            assert_eq!(verify(b, serde_json::json!({ "key": secret, "ip": "203.0.113.9" })).await, "IP_NOT_ALLOWED");
            assert_eq!(forward(b, &secret, "").await, 200);
        }
        assert_eq!(verify(b, serde_json::json!({ "key": secret })).await, "VALID");
        assert_eq!(verify(b, serde_json::json!({ "key": secret, "scopes": ["admin"] })).await, "INSUFFICIENT_SCOPE");
        assert_eq!(forward(b, &secret, "?scope=admin").await, 403);
        assert_eq!(forward(b, &wrong, "").await, 401);
        // A Credential ID that does not exist gets no buckets (it has nowhere to go): just refused.
        assert_eq!(n.whoami(&unknown).await, 401);
    }
    let want_allowed = 2 * (3 + 2 + 1);
    let want_refused = reasons(&[("insufficient_scope", 4), ("invalid_secret", 6), ("ip_not_allowed", 4)]);

    // A deleted key, still tried: attempts, by reason `revoked`.
    let (gone_id, gone) = create("old-service", &[]);
    c.cli(&["key", "delete", &gone_id], None);
    for n in &c.nodes {
        for _ in 0..2 {
            assert_eq!(n.whoami(&gone).await, 401);
        }
    }
    // A key that expires while it is used: every answer is known, so the counts are exact whenever it expires.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (exp_id, exp) = create("short-lived", &["--expires-at", &soon]);
    let (mut exp_allowed, mut exp_refused) = (0, 0);
    let start = Instant::now();
    while exp_refused < 4 {
        assert!(start.elapsed() < Duration::from_secs(30), "the key never expired");
        match c.nodes[(exp_allowed + exp_refused) as usize % 2].whoami(&exp).await {
            200 => exp_allowed += 1,
            401 => exp_refused += 1,
            s => panic!("unexpected {s}"),
        }
    }

    // The API (either node) finds exactly those counts once the nodes have flushed (every second here).
    let usage_url = |i: usize, id: &str| format!("{}/v1/keys/{id}/usage?granularity=day", c.nodes[i].base);
    let start = Instant::now();
    let api = loop {
        let v: Value = http.get(usage_url(1, &id)).bearer_auth(&c.admin).send().await.unwrap().json().await.unwrap();
        let totals = usage_totals(&v);
        if totals == (want_allowed, want_refused.clone()) {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "usage never added up: {totals:?}");
    };
    assert_eq!(api["granularity"], "day");
    let hourly: Value = http
        .get(format!("{}/v1/keys/{id}/usage", c.nodes[0].base))
        .bearer_auth(&c.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hourly["granularity"], "hour");
    assert_eq!(hourly["buckets"].as_array().unwrap().len(), 24, "the last 24 hours, empty ones included");
    assert_eq!(usage_totals(&hourly), (want_allowed, want_refused.clone()), "hourly and daily buckets agree");
    let start = Instant::now();
    loop {
        let v: Value =
            http.get(usage_url(0, &exp_id)).bearer_auth(&c.admin).send().await.unwrap().json().await.unwrap();
        if usage_totals(&v) == (exp_allowed, reasons(&[("expired", exp_refused)])) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "expired key's usage never added up: {v}");
    }

    // The CLI reads the same numbers from the database, deleted keys included.
    let cli: Value = serde_json::from_str(&c.cli(&["key", "usage", &id, "--days", "2", "--json"], None)).unwrap();
    assert_eq!(usage_totals(&cli), (want_allowed, want_refused.clone()));
    let cli_gone: Value = serde_json::from_str(&c.cli(&["key", "usage", &gone_id, "--json"], None)).unwrap();
    assert_eq!(usage_totals(&cli_gone), (0, reasons(&[("revoked", 4)])));
    let text = c.cli(&["key", "usage", &id, "--days", "2"], None);
    assert!(text.contains("Usage of billing") && text.contains("ip_not_allowed") && text.contains('█'), "{text}");

    // The dashboard's key page shows them in its table (and the chart above it).
    let web = browser();
    assert_eq!(sign_in_with(&web, &c.nodes[0].base, "alice@example.com", PASSWORD.trim()).await, 303);
    let page = web.get(format!("{}/keys/{id}", c.nodes[1].base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<svg") && html.contains("id=\"usage-table\""), "{html}");
    assert_eq!(table_sum(&html, "allowed"), want_allowed);
    assert_eq!(table_sum(&html, "refused"), want_refused.values().sum::<i64>());
    assert!(html.contains("invalid_secret") && html.contains("ip_not_allowed"));
    c.stop();
}
