//! End to end: the `atna` binary driven as an operator and a client would, with real processes, a real data
//! directory and real HTTP. Covers durability across `kill -9`, revocation by the CLI while the server runs, graceful
//! shutdown writing usage, that no log line ever holds a secret, and moving an installation with `atna export` /
//! `atna import`.

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

fn create_key(data: &Path, name: &str) -> (String, String) {
    let out = ok(atna(data, &["key", "create", "--user", "alice@example.com", "--name", name, "--json"], None));
    let v: Value = serde_json::from_str(&out).unwrap();
    (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn an_installation_moves_to_a_new_database_and_its_keys_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let (_, secret) = bootstrap(&old);
    let (gone_id, gone_secret) = create_key(&old, "gone");
    ok(atna(&old, &["key", "delete", &gone_id], None));

    let file = dir.path().join("atna-export.json");
    let out = atna(&old, &["export", "--output", file.to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(ok(out).is_empty(), "nothing on stdout when writing a file");
    assert!(stderr.contains("exported 1 user, 2 keys (1 deleted), 4 audit events"), "{stderr}");
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600, "the export holds password and key hashes");
    let text = std::fs::read_to_string(&file).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["format"], "atna-export/5");
    assert!(v.get("sessions").is_none());
    for s in [&secret, &gone_secret] {
        assert!(!text.contains(&s[22..65]), "only hashes are exported, never a secret");
    }

    // No silent overwrite; --force replaces the file and makes it private again.
    let out = atna(&old, &["export", "--output", file.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        ok(atna(&old, &["export", "--output", file.to_str().unwrap(), "--force"], None));
        assert_eq!(mode(&file), 0o600);
    }

    let out = ok(atna(&new, &["import", file.to_str().unwrap()], None));
    assert!(out.contains("imported 1 user, 2 keys (1 deleted), 4 audit events"), "{out}");
    let users: Value = serde_json::from_str(&ok(atna(&new, &["user", "list", "--json"], None))).unwrap();
    assert_eq!((users[0]["id"].as_i64(), users[0]["email"].as_str()), (Some(1), Some("alice@example.com")));

    let server = Server::start(&new, "info");
    assert_eq!(server.whoami(&secret).await, 200, "the old key works against the new database");
    assert_eq!(server.whoami(&gone_secret).await, 401, "a deleted key stays deleted");
    // The moved key still manages keys, and new keys join the moved ones.
    let res = reqwest::Client::new()
        .post(format!("{}/v1/keys", server.base))
        .bearer_auth(&secret)
        .json(&serde_json::json!({"name": "after-the-move"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let _ = server.stop();

    // Standard output and standard input work too.
    let json = ok(atna(&old, &["export"], None));
    let third = dir.path().join("third");
    let out = ok(atna(&third, &["import", "-"], Some(&json)));
    assert!(out.contains("imported 1 user, 2 keys (1 deleted), 4 audit events"), "{out}");
}

#[test]
fn import_refuses_bad_files_and_non_empty_databases() {
    let dir = tempfile::tempdir().unwrap();
    let (old, fresh) = (dir.path().join("old"), dir.path().join("fresh"));
    bootstrap(&old);
    let file = dir.path().join("export.json");
    ok(atna(&old, &["export", "--output", file.to_str().unwrap()], None));
    let text = std::fs::read_to_string(&file).unwrap();
    let fail = |data: &Path, path: &Path, want: &str| {
        let out = atna(data, &["import", path.to_str().unwrap()], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "importing {} should fail", path.display());
        assert!(err.contains(want), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    };

    // Into the database it came from (not empty): refused, nothing changes.
    let before = ok(atna(&old, &["key", "list", "--user", "alice@example.com", "--json"], None));
    fail(&old, &file, "not empty");
    assert_eq!(ok(atna(&old, &["key", "list", "--user", "alice@example.com", "--json"], None)), before);
    assert_eq!(ok(atna(&old, &["user", "list"], None)).lines().count(), 2, "a header and one user");

    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    fail(&fresh, &write("garbage.json", "this is not JSON"), "not valid JSON (expected ident at line 1 column 2)");
    fail(&fresh, &write("truncated.json", &text[..text.len() / 2]), "line ");
    fail(&fresh, &write("other.json", "{\"users\": []}"), "not an atna export");
    fail(&fresh, &write("future.json", &text.replace("atna-export/5", "atna-export/9")), "atna-export/9");
    fail(&fresh, &write("typo.json", &text.replace("\"is_admin\"", "\"admin\"")), "unknown field `admin`");
    fail(&fresh, &write("edited.json", &text.replace("\"owner_id\": 1", "\"owner_id\": 2")), "owner 2");
    fail(&fresh, &dir.path().join("missing.json"), "cannot read");
    assert!(!fresh.exists(), "a refused file never creates the target database");
}

#[tokio::test]
async fn a_restart_revokes_the_setup_link_the_node_printed_before() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The same address across the restart: that (with the host name) is the node's identity.
    let listen = format!("127.0.0.1:{}", common::free_port());
    let env = [("ATNA_DATA_DIR", data.to_str().unwrap()), ("ATNA_LOG", "warn")];
    let status = |link: String| async move { reqwest::get(link).await.unwrap().status().as_u16() };
    let server = Server::start_on(&listen, &env);
    let old = server.setup_link().expect("a setup link while no user exists");
    assert_eq!(status(old.clone()).await, 200);
    let _ = server.stop();
    let server = Server::start_on(&listen, &env);
    let new = server.setup_link().expect("a new link after the restart");
    assert_ne!(old, new);
    assert_eq!(status(old).await, 403, "the restart revoked the old link");
    assert_eq!(status(new).await, 200);
    let _ = server.stop();
}
