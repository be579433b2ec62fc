//! End to end: the `atna` binary driven as an operator and a client would, with real processes, a real data
//! directory and real HTTP. Covers durability across `kill -9`, revocation by the CLI while the server runs, graceful
//! shutdown writing usage, and that no log line ever holds a secret.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{atna, ok, Server};

async fn eventually_status(server: &Server, key: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.whoami(key).await != want {
        assert!(Instant::now() < deadline, "expected {want} in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bootstrap(data: &Path) -> (String, String) {
    ok(atna(
        data,
        &["user", "create", "--email", "alice@example.com", "--password-stdin"],
        Some("correct horse battery\n"),
    ));
    let out = ok(atna(
        data,
        &[
            "key",
            "create",
            "--user",
            "alice@example.com",
            "--name",
            "ops-26_11_2026-14_05",
            "--scope",
            "keys:manage",
            "--json",
        ],
        None,
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_operator_bootstraps_and_a_client_uses_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (id, secret) = bootstrap(&data);
    assert!(data.join("atna.db").exists(), "the default database lives in the data directory");
    let list: Value =
        serde_json::from_str(&ok(atna(&data, &["key", "list", "--user", "alice@example.com", "--json"], None)))
            .unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert!(!list.to_string().contains(&secret));

    let server = Server::start(&data, "info");
    assert_eq!(server.whoami(&secret).await, 200);
    // A second key through the API, then the CLI deletes it while the server runs.
    let res = reqwest::Client::new()
        .post(format!("{}/v1/keys", server.base))
        .bearer_auth(&secret)
        .json(&serde_json::json!({"name": "billing-26_11_2026-15_00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let (id2, secret2) = (created["id"].as_str().unwrap(), created["secret"].as_str().unwrap());
    assert_eq!(server.whoami(secret2).await, 200);
    let out = ok(atna(&data, &["key", "delete", id2], None));
    assert!(out.contains("deleted"), "{out}");
    eventually_status(&server, secret2, 401).await;
    let _ = server.stop();
}

#[tokio::test]
async fn a_key_whose_secret_was_returned_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, admin) = bootstrap(&data);
    let server = Server::start(&data, "info");
    let res = reqwest::Client::new()
        .post(format!("{}/v1/keys", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "durable"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let secret = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    server.kill9();
    let server = Server::start(&data, "info");
    assert_eq!(server.whoami(&secret).await, 200);
    let _ = server.stop();
}

#[tokio::test]
async fn graceful_shutdown_writes_usage_and_logs_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (id, secret) = bootstrap(&data);
    let server = Server::start(&data, "trace");
    for _ in 0..3 {
        assert_eq!(server.whoami(&secret).await, 200);
    }
    let res = reqwest::Client::new()
        .post(format!("{}/v1/keys", server.base))
        .bearer_auth(&secret)
        .json(&serde_json::json!({"name": "logged?"}))
        .send()
        .await
        .unwrap();
    let created = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    let wrong = format!("{}xyz", &secret[..secret.len() - 3]);
    assert_eq!(server.whoami(&wrong).await, 401);
    let logs = server.stop();
    assert!(logs.contains("atna listening"), "trace logging was on: {logs}");
    for s in [&secret, &created, &wrong] {
        assert!(!logs.contains(s.as_str()), "a secret reached the logs");
        // Not even the secret part alone.
        assert!(!logs.contains(&s[22..60]));
    }
    let list: Value =
        serde_json::from_str(&ok(atna(&data, &["key", "list", "--user", "alice@example.com", "--json"], None)))
            .unwrap();
    let k = list.as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(k["use_count"], 4, "three whoami calls and one create, written at shutdown");
    assert_eq!(k["last_used_ip"], "127.0.0.1");
}

#[test]
fn the_cli_refuses_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fail = |args: &[&str], stdin: Option<&str>, want: &str| {
        let out = atna(&data, args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    fail(&["user", "create", "--email", "alice@example.com", "--password-stdin"], Some("short\n"), "at least 8");
    fail(&["user", "create", "--email", "not-an-email", "--password-stdin"], Some("long enough pw\n"), "e-mail");
    ok(atna(&data, &["user", "create", "--email", "alice@example.com", "--password-stdin"], Some("long enough pw\n")));
    fail(
        &["user", "create", "--email", "Alice@Example.com", "--password-stdin"],
        Some("long enough pw\n"),
        "already exists",
    );
    fail(&["key", "create", "--user", "bob@example.com", "--name", "x"], None, "no user bob@example.com");
    fail(&["key", "create", "--user", "alice@example.com", "--name", "a\tb"], None, "control characters");
    fail(&["key", "delete", "nope"], None, "not a Credential ID");
    fail(&["key", "delete", "AAAAAAAAAAAAAAAA"], None, "no key");
    fail(&["--database", "mysql://root:hunter2@db/atna", "migrate"], None, "unsupported database URL");
    let out = atna(&data, &["--database", "mysql://root:hunter2@db/atna", "migrate"], None);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"), "passwords are not printed");
    let typo = dir.path().join("atan.db");
    fail(&["--database", &format!("sqlite://{}", typo.display()), "migrate"], None, "does not exist");
    assert!(!typo.exists());
}
