//! A PostgreSQL restart while a node serves: errors (503) for the duration, never a crash or a wedged node; once the
//! server is back the node recovers by itself, including its change notifications.
//!
//! Runs against a private PostgreSQL instance this test creates (initdb in a temporary directory, its own port), so
//! restarting it disturbs nothing else. It needs the PostgreSQL server binaries (`/usr/lib/postgresql/*/bin`); the
//! suite is skipped without them, except in CI (`CI=true`), where that is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{atna_env, ok, Server};
use serde_json::Value;

/// A throwaway PostgreSQL server.
struct PrivatePg {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

fn server_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().map(|e| e.path()).collect();
    dirs.sort();
    dirs.into_iter().rev().map(|d| d.join("bin")).find(|b| b.join("initdb").exists())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Runs a PostgreSQL tool; as root, as the `postgres` user (the server refuses to run as root).
fn pg_tool(bin: &Path, tool: &str, args: &[&str]) {
    let exe = bin.join(tool);
    let status = if is_root() {
        Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).status()
    } else {
        Command::new(&exe).args(args).status()
    }
    .unwrap();
    assert!(status.success(), "{tool} {args:?} failed");
}

impl PrivatePg {
    fn create() -> Option<PrivatePg> {
        let Some(bin) = server_bin() else {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI needs the PostgreSQL server binaries");
            eprintln!("SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            assert!(Command::new("chown").arg("postgres").arg(dir.path()).status().unwrap().success());
        }
        let data = dir.path().join("data");
        pg_tool(
            &bin,
            "initdb",
            &["-D", data.to_str().unwrap(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = PrivatePg { bin, data, port, _dir: dir };
        pg.start();
        Some(pg)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        pg_tool(
            &self.bin,
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-o", &opts, "-l", log.to_str().unwrap(), "-w", "start"],
        );
    }

    fn stop(&self, mode: &str) {
        pg_tool(&self.bin, "pg_ctl", &["-D", self.data.to_str().unwrap(), "-m", mode, "-w", "stop"]);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = Command::new(if is_root() { "runuser" } else { "true" })
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .status();
    }
}

/// The status of a request that must be answered (a node that stops answering fails the test).
async fn status(req: reqwest::RequestBuilder) -> u16 {
    match req.timeout(Duration::from_secs(10)).send().await {
        Ok(r) => r.status().as_u16(),
        Err(e) => panic!("the node stopped answering: {e}"),
    }
}

#[tokio::test]
async fn a_postgres_restart_costs_errors_for_its_duration_and_the_node_recovers_by_itself() {
    let Some(pg) = PrivatePg::create() else { return };
    let url = pg.url();
    let env = [("ATNA_DATABASE_URL", url.as_str())];
    ok(atna_env(
        &env,
        &["user", "create", "--email", "alice@example.com", "--password-stdin"],
        Some("correct horse battery\n"),
    ));
    let out = ok(atna_env(
        &env,
        &["key", "create", "--user", "alice@example.com", "--name", "ops", "--scope", "keys:manage", "--json"],
        None,
    ));
    let admin = serde_json::from_str::<Value>(&out).unwrap()["secret"].as_str().unwrap().to_owned();
    // Polling far away, so that only the change listener (once it is back) can tell the node about the deletion at
    // the end; a short database timeout so that requests fail fast while the server is away.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("atna.toml");
    std::fs::write(&config, "change_poll_ms = 600000\ndatabase_timeout_ms = 300\n").unwrap();
    let mut node = Server::start_env(&[
        ("ATNA_DATABASE_URL", url.as_str()),
        ("ATNA_CONFIG", config.to_str().unwrap()),
        ("ATNA_LOG", "info"),
    ]);
    let http = reqwest::Client::new();
    let base = node.base.clone();
    let create = |name: String| {
        http.post(format!("{base}/v1/keys")).bearer_auth(&admin).json(&serde_json::json!({ "name": name }))
    };
    let ready = || http.get(format!("{base}/readyz"));
    assert_eq!(node.whoami(&admin).await, 200);
    assert_eq!(status(create("before".into())).await, 201);

    pg.stop("fast");
    // The node cannot read the change feed, so it cannot be sure a cached key was not deleted: it stops trusting its
    // cache (fail closed) and says the service is unavailable, not that the key is wrong.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match node.whoami(&admin).await {
            503 => break,
            200 => assert!(Instant::now() < deadline, "the node kept trusting its cache with the database away"),
            other => panic!("a good key got {other} while the database was away"),
        }
    }
    // Light load while the database is away: every request is answered, with a clear 503.
    for i in 0..20 {
        assert_eq!(status(ready()).await, 503);
        assert_eq!(status(create(format!("during-{i}"))).await, 503);
        assert_eq!(node.whoami(&admin).await, 503);
    }
    assert!(node.child.try_wait().unwrap().is_none(), "the node is still running");

    pg.start();
    // Back by itself: the pool reconnects, and so does the change listener.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while status(create(format!("after-{n}"))).await != 201 {
        assert!(Instant::now() < deadline, "the node did not recover");
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(ready()).await, 200);
    let res = http
        .post(format!("{base}/v1/keys"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "revoke-me"}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    let (id, secret) = (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned());
    assert_eq!(node.whoami(&secret).await, 200);
    ok(atna_env(&env, &["key", "delete", &id], None));
    let deadline = Instant::now() + Duration::from_secs(15);
    while node.whoami(&secret).await != 401 {
        assert!(Instant::now() < deadline, "revocations reach the node again after the restart");
    }
    let logs = node.stop();
    assert!(logs.contains("listening again"), "{logs}");
}

#[tokio::test]
async fn a_node_started_before_its_database_waits_for_it_and_the_cli_does_not() {
    let Some(pg) = PrivatePg::create() else { return };
    let url = pg.url();
    pg.stop("fast");
    let env = [("ATNA_DATABASE_URL", url.as_str())];
    // One-shot commands fail at once with a clear message.
    let out = atna_env(&env, &["migrate"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to PostgreSQL"));

    // `atna serve` waits for the database instead.
    let starting = std::thread::spawn({
        let url = url.clone();
        move || Server::start_env(&[("ATNA_DATABASE_URL", url.as_str()), ("ATNA_LOG", "info")])
    });
    // The database comes up a little later than the node (a deliberate delay, not a wait for readiness).
    std::thread::sleep(Duration::from_secs(3));
    assert!(!starting.is_finished(), "the node cannot be listening without its database");
    pg.start();
    let node = starting.join().unwrap();
    ok(atna_env(
        &env,
        &["user", "create", "--email", "alice@example.com", "--password-stdin"],
        Some("correct horse battery\n"),
    ));
    let out = ok(atna_env(&env, &["key", "create", "--user", "alice@example.com", "--name", "late", "--json"], None));
    let secret = serde_json::from_str::<Value>(&out).unwrap()["secret"].as_str().unwrap().to_owned();
    assert_eq!(node.whoami(&secret).await, 200);
    let logs = node.stop();
    assert!(logs.contains("PostgreSQL is not reachable yet; waiting for it"), "{logs}");
}
