//! `atna scan`, driven as a developer, a CI job and an operator would: real git repositories made with the `git`
//! command, real files (FIFOs too), a real database and a running `atna serve`. Also the key holders' endpoints
//! (`/v1/credentials/status` and `/v1/credentials/revoke`) over real HTTP.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::{atna, ok, Server, BIN};

/// A user and a key in the database in `data`; returns the key and its Credential ID.
fn make_key(data: &Path, name: &str) -> (String, String) {
    if !data.join("atna.db").exists() {
        ok(atna(
            data,
            &["user", "create", "--email", "dev@example.com", "--password-stdin"],
            Some("correct horse battery\n"),
        ));
    }
    let out = ok(atna(data, &["key", "create", "--user", "dev@example.com", "--name", name, "--json"], None));
    let v: Value = serde_json::from_str(&out).unwrap();
    (v["secret"].as_str().unwrap().to_owned(), v["id"].as_str().unwrap().to_owned())
}

/// A key with any prefix, its checksum computed the way atna computes it (CRC32 of everything before the last `_`,
/// six base62 digits).
fn key_with_prefix(prefix: &str, atna_key: &str) -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let body = format!("{prefix}_{}", &atna_key[5..65]);
    let mut n = u64::from(crc32fast::hash(body.as_bytes()));
    let mut sum = [b'0'; 6];
    for c in sum.iter_mut().rev() {
        *c = BASE62[(n % 62) as usize];
        n /= 62;
    }
    format!("{body}_{}", std::str::from_utf8(&sum).unwrap())
}

/// The same key with one character of its secret changed: the right shape, a wrong checksum.
fn typo(key: &str) -> String {
    let mut b = key.as_bytes().to_vec();
    let i = key.len() - 20;
    b[i] = if b[i] == b'a' { b'b' } else { b'a' };
    String::from_utf8(b).unwrap()
}

/// `atna scan ARGS` in `dir`, with a deadline (a FIFO that blocked the scanner would hang the test otherwise).
fn scan(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("scan")
        .args(args)
        .current_dir(dir)
        .env_remove("ATNA_DATABASE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("atna scan did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn git_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Dev Eloper"]);
    git(dir, &["config", "user.email", "dev@example.com"]);
    git(dir, &["config", "commit.gpgsign", "false"]);
}

/// Nothing any output holds may be the key, or text that stood next to it.
fn assert_no_secret(o: &Output, key: &str, neighbours: &[&str]) {
    for text in [stdout(o), stderr(o)] {
        assert!(!text.contains(&key[22..65]), "the secret part was printed: {text}");
        for n in neighbours {
            assert!(!text.contains(n), "text next to the key was printed ({n}): {text}");
        }
    }
}

#[test]
fn a_key_committed_then_removed_is_found_in_history_with_its_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo) = (tmp.path().join("data"), tmp.path().join("repo"));
    std::fs::create_dir_all(&repo).unwrap();
    let (key, id) = make_key(&data, "ci-01_01_2027-10_00");
    git_repo(&repo);
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "first"]);
    std::fs::create_dir_all(repo.join("config")).unwrap();
    std::fs::write(repo.join("config/prod.env"), format!("DB_PASSWORD=hunter2-neighbour\n\n  API_KEY={key}\n"))
        .unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "add config"]);
    let introducing = git(&repo, &["rev-parse", "HEAD"]);
    std::fs::write(repo.join("README"), "hello again\n").unwrap();
    git(&repo, &["commit", "-qam", "readme"]);
    git(&repo, &["rm", "-q", "config/prod.env"]);
    git(&repo, &["commit", "-qm", "remove the key"]);

    // The files are clean now...
    let files = scan(&repo, &[], &[]);
    assert_eq!(code(&files), 0, "{}", stderr(&files));
    assert_eq!(stdout(&files), "");

    // ...the history is not.
    let out = scan(&repo, &[], &["--git", "--json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_no_secret(&out, &key, &["hunter2", "API_KEY", "DB_PASSWORD"]);
    let v = json_of(&out);
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{v}");
    let f = &findings[0];
    assert_eq!(f["path"], "config/prod.env");
    assert_eq!(f["credential_id"], id.as_str());
    assert_eq!(f["prefix"], "atna");
    assert_eq!((f["line"].as_u64(), f["column"].as_u64()), (Some(3), Some(11)));
    assert_eq!(f["commit"]["id"], introducing.as_str());
    assert_eq!(f["commit"]["author_name"], "Dev Eloper");
    assert_eq!(f["commit"]["author_email"], "dev@example.com");
    assert_eq!(v["commits_walked"], 4);

    // A branch that still has it, and a tag on it: still one finding, the same introducing commit.
    git(&repo, &["branch", "old", &introducing]);
    git(&repo, &["tag", "-a", "v1", "-m", "v1", &introducing]);
    let v = json_of(&scan(&repo, &[], &["--git", "--json"]));
    assert_eq!(v["findings"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["findings"][0]["commit"]["id"], introducing.as_str());

    // Text output names the place, the ID and the commit, and nothing else.
    let out = scan(&repo, &[], &["--git"]);
    assert_eq!(code(&out), 1);
    let line = stdout(&out);
    assert!(
        line.starts_with(&format!("config/prod.env:3:11: atna key {id} (prefix atna), added in commit {introducing}")),
        "{line}"
    );
    assert_no_secret(&out, &key, &["hunter2", "API_KEY"]);
}

#[test]
fn keys_of_any_prefix_are_found_and_look_alikes_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let atna_key = "atna_Q5cN0b3sVh7e2Lk9_0123456789abcdefghijABCDEFGHIJ0123456789abc_000000";
    let acme = key_with_prefix("acme", atna_key);
    let atna_real = key_with_prefix("atna", atna_key);
    std::fs::write(dir.join("a.txt"), format!("x = '{acme}'\n")).unwrap();
    std::fs::write(dir.join("b.txt"), format!("{}\n{}\n", typo(&acme), typo(&atna_real))).unwrap();
    // Right shape, made-up checksum.
    std::fs::write(dir.join("c.txt"), format!("atna_{}_{}_{}\n", "A".repeat(16), "b".repeat(43), "C".repeat(6)))
        .unwrap();
    let out = scan(dir, &[], &["--json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let v = json_of(&out);
    let found: Vec<(&str, &str)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["prefix"].as_str().unwrap()))
        .collect();
    assert_eq!(found, [("./a.txt", "acme")], "{v}");
    assert_eq!(v["files_scanned"], 3);

    std::fs::remove_file(dir.join("a.txt")).unwrap();
    let out = scan(dir, &[], &[]);
    assert_eq!(code(&out), 0, "only look-alikes left: {}", stdout(&out));
}

#[test]
fn sarif_output_validates_against_the_2_1_0_schema() {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../atna-scan/tests/data/sarif-schema-2.1.0.json");
    // The schema's `language` patterns (`…{2}]?$`) have a stray `]`, a literal in ECMAScript that the validator's
    // check of patterns refuses: escape it (same meaning) in memory; the file stays as published.
    let text = std::fs::read_to_string(schema_path).unwrap();
    let stray = r#"-[a-zA-Z]{2}]?$""#;
    assert!(text.contains(stray));
    let text = text.replace(stray, r#"-[a-zA-Z]{2}\\]?$""#);
    let schema: Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");

    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    git_repo(repo);
    let key = key_with_prefix("atna", "atna_Q5cN0b3sVh7e2Lk9_0123456789abcdefghijABCDEFGHIJ0123456789abc_000000");
    std::fs::write(repo.join("dir with space é.txt"), format!("ééé {key}\n")).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-qm", "oops"]);

    let out = scan(repo, &[], &["--git", "--sarif"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let log = json_of(&out);
    let errors: Vec<String> = validator.iter_errors(&log).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{log:#}");
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one from the files, one from history");
    let region = &results[0]["locations"][0]["physicalLocation"]["region"];
    assert_eq!((region["startLine"].as_u64(), region["startColumn"].as_u64()), (Some(1), Some(5)), "code points");
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "dir%20with%20space%20%C3%A9.txt"
    );
    assert!(results.iter().any(|r| r["properties"]["commit"].is_string()));
    assert!(!stdout(&out).contains(&key[22..65]));

    // Clean output validates too; and the validator does reject what is not SARIF (so the check above can fail).
    std::fs::remove_file(repo.join("dir with space é.txt")).unwrap();
    let clean = scan(repo, &[], &["--sarif"]);
    assert_eq!(code(&clean), 0);
    assert!(validator.is_valid(&json_of(&clean)));
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = json!(0);
    assert!(!validator.is_valid(&broken));
    assert!(!validator.is_valid(&json!({ "version": "2.0.0", "runs": [] })));
}

#[test]
fn exit_codes_say_clean_found_or_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("clean.txt"), "nothing here\n").unwrap();
    assert_eq!(code(&scan(dir, &[], &[])), 0);
    assert_eq!(code(&scan(dir, &[], &["clean.txt"])), 0);
    let key = key_with_prefix("zz", "atna_Q5cN0b3sVh7e2Lk9_0123456789abcdefghijABCDEFGHIJ0123456789abc_000000");
    std::fs::write(dir.join("leak.txt"), &key).unwrap();
    assert_eq!(code(&scan(dir, &[], &[])), 1);
    assert_eq!(code(&scan(dir, &[], &["clean.txt", "leak.txt"])), 1);
    let missing = scan(dir, &[], &["no-such-file"]);
    assert_eq!(code(&missing), 2, "{}", stderr(&missing));
    assert!(stderr(&missing).contains("no-such-file"));
    let no_repo = scan(dir, &[], &["--git"]);
    assert_eq!(code(&no_repo), 2, "not a git repository: {}", stderr(&no_repo));
    assert_eq!(code(&scan(dir, &[], &["--revoke"])), 2, "--revoke without --check is a usage error");
    assert_eq!(code(&scan(dir, &[], &["--check", "--server", "ftp://x", "leak.txt"])), 2);
}

#[cfg(unix)]
#[test]
fn fifos_and_sockets_are_skipped_and_ignored_files_are_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = key_with_prefix("atna", "atna_Q5cN0b3sVh7e2Lk9_0123456789abcdefghijABCDEFGHIJ0123456789abc_000000");
    let fifo = dir.join("pipe");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let _socket = std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
    // Respected like git does (a repository), and hidden files are scanned.
    git_repo(dir);
    std::fs::write(dir.join(".gitignore"), "ignored.txt\n").unwrap();
    std::fs::write(dir.join("ignored.txt"), &key).unwrap();
    std::fs::write(dir.join(".env"), format!("K={key}\n")).unwrap();

    let out = scan(dir, &[], &["--json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let v = json_of(&out);
    let paths: Vec<&str> = v["findings"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["./.env"]);
    let skipped: Vec<&str> = v["skipped"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()).collect();
    assert!(skipped.contains(&"./pipe") && skipped.contains(&"./sock"), "{skipped:?}");

    // Named on the command line, a FIFO is still not opened for reading (nobody writes to it: that would block).
    let out = scan(dir, &[], &["pipe"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("skipped: pipe"), "{}", stderr(&out));

    // Files over the size cap are skipped, not read.
    std::fs::remove_file(dir.join(".env")).unwrap();
    std::fs::write(dir.join("big.bin"), format!("{}{key}", "x".repeat(2 * 1024 * 1024))).unwrap();
    let out = scan(dir, &[], &["--max-size", "1"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(stderr(&out).contains("skipped: ./big.bin: larger than --max-size"), "{}", stderr(&out));
}

#[test]
fn check_against_the_store_says_live_deleted_or_unknown_and_revoke_revokes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = tmp.path().join("src");
    std::fs::create_dir_all(&dir).unwrap();
    let (live, live_id) = make_key(&data, "live-01_01_2027-10_00");
    let (gone, gone_id) = make_key(&data, "gone-01_01_2027-10_00");
    ok(atna(&data, &["key", "delete", &gone_id], None));
    // Right ID, wrong secret (with a right checksum): not this key.
    let forged = key_with_prefix("atna", &format!("{}{}", &live[..22], "Z".repeat(50)));
    let foreign = key_with_prefix("acme", &live);
    std::fs::write(dir.join("a.env"), format!("{live}\n{gone}\n{forged}\n{foreign}\n")).unwrap();
    let env = [("ATNA_DATA_DIR", data.to_str().unwrap())];

    let statuses = |args: &[&str]| -> Vec<(String, String)> {
        let out = scan(&dir, &env, args);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert_no_secret(&out, &live, &[]);
        json_of(&out)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["credential_id"].as_str().unwrap().to_owned(), f["status"].as_str().unwrap().to_owned()))
            .collect()
    };
    let before = statuses(&["--check", "--json"]);
    assert_eq!(
        before,
        [
            (live_id.clone(), "live".to_owned()),
            (gone_id.clone(), "deleted".to_owned()),
            (live_id.clone(), "unknown".to_owned()),
            (live_id.clone(), "unknown".to_owned()),
        ]
    );
    // Checking counted no use.
    let list: Value =
        serde_json::from_str(&ok(atna(&data, &["key", "list", "--user", "dev@example.com", "--json"], None))).unwrap();
    assert_eq!(list[0]["use_count"], 0, "{list}");

    let after = statuses(&["--check", "--revoke", "--json"]);
    assert_eq!(after[0], (live_id.clone(), "revoked".to_owned()));
    assert_eq!(after[2].1, "unknown", "a forged key revokes nothing");
    assert_eq!(statuses(&["--check", "--json"])[0], (live_id.clone(), "deleted".to_owned()));

    // Audited: the operator deleted it.
    let export: Value = serde_json::from_str(&ok(atna(&data, &["export"], None))).unwrap();
    let deleted: Vec<&Value> = export["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "key.deleted" && e["key_id"] == live_id.as_str())
        .collect();
    assert_eq!(deleted.len(), 1, "{export}");
    assert!(deleted[0]["actor_id"].is_null(), "the operator acted");

    // No database where one is expected: an error, not "unknown".
    let out = scan(&dir, &[("ATNA_DATA_DIR", tmp.path().join("nowhere").to_str().unwrap())], &["--check"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[tokio::test]
async fn check_and_revoke_against_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = tmp.path().join("src");
    std::fs::create_dir_all(&dir).unwrap();
    let (live, live_id) = make_key(&data, "live-01_01_2027-10_00");
    let server = Server::start(&data, "warn");
    assert_eq!(server.whoami(&live).await, 200);
    std::fs::write(dir.join("k.txt"), format!("{live}\n")).unwrap();

    let out = scan(&dir, &[], &["--check", "--server", &server.base, "--json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(json_of(&out)["findings"][0]["status"], "live");
    assert_eq!(json_of(&out)["findings"][0]["credential_id"], live_id.as_str());

    let out = scan(&dir, &[], &["--check", "--revoke", "--server", &server.base, "--json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(json_of(&out)["findings"][0]["status"], "revoked");
    assert_eq!(server.whoami(&live).await, 401, "revoked at once on the node that was asked");
    let out = scan(&dir, &[], &["--check", "--server", &server.base, "--json"]);
    assert_eq!(json_of(&out)["findings"][0]["status"], "deleted");

    // The key's owner sees who revoked it: the key itself.
    let export: Value = serde_json::from_str(&ok(atna(&data, &["export"], None))).unwrap();
    let ev = export["audit_events"].as_array().unwrap().iter().find(|e| e["action"] == "key.deleted").cloned().unwrap();
    assert_eq!(ev["actor_key_id"], live_id.as_str(), "{ev}");
    server.stop();
}

#[tokio::test]
async fn the_revoke_endpoint_always_answers_202_and_status_answers_only_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (live, live_id) = make_key(&data, "live-01_01_2027-10_00");
    let (other, _) = make_key(&data, "other-01_01_2027-10_00");
    let (gone, gone_id) = make_key(&data, "gone-01_01_2027-10_00");
    ok(atna(&data, &["key", "delete", &gone_id], None));
    let server = Server::start(&data, "warn");
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = client.post(format!("{}{path}", server.base)).json(&body);
        async move { req.send().await.unwrap() }
    };
    let forged = key_with_prefix("atna", &format!("{}{}", &live[..22], "Z".repeat(50)));

    let res = post("/v1/credentials/status", json!({ "keys": [live, gone, forged, "garbage", ""] })).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let got: Vec<(&Value, &str)> =
        v["keys"].as_array().unwrap().iter().map(|k| (&k["credential_id"], k["status"].as_str().unwrap())).collect();
    assert_eq!(
        got,
        [
            (&json!(live_id), "live"),
            (&json!(gone_id), "deleted"),
            (&json!(live_id), "unknown"),
            (&Value::Null, "unknown"),
            (&Value::Null, "unknown"),
        ]
    );
    assert_eq!(server.whoami(&live).await, 200, "asking revoked nothing");

    // Unknown, forged, deleted, malformed: 202, and nothing changes.
    for keys in [json!([forged]), json!([gone]), json!(["garbage"]), json!([]), json!([key_with_prefix("acme", &live)])]
    {
        let res = post("/v1/credentials/revoke", json!({ "keys": keys })).await;
        assert_eq!(res.status(), 202, "{keys}");
        assert_eq!(res.text().await.unwrap(), "", "an empty body: nothing to learn");
    }
    assert_eq!(server.whoami(&live).await, 200);
    // The live one among others: 202, and it stops working at once; the other key is untouched.
    let res = post("/v1/credentials/revoke", json!({ "keys": ["junk", live, forged] })).await;
    assert_eq!(res.status(), 202);
    assert_eq!(server.whoami(&live).await, 401);
    assert_eq!(server.whoami(&other).await, 200);
    let res = post("/v1/credentials/revoke", json!({ "keys": [live] })).await;
    assert_eq!(res.status(), 202, "again: still 202");

    // Over 1,000 keys, or not the right shape: a problem document.
    let many: Vec<String> = (0..1001).map(|_| live.clone()).collect();
    let res = post("/v1/credentials/revoke", json!({ "keys": many })).await;
    assert_eq!(res.status(), 422);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["code"], "too_many_keys");
    let res = post("/v1/credentials/status", json!({ "key": live })).await;
    assert_eq!(res.status(), 422);
    assert_eq!(res.headers()["content-type"], "application/problem+json");

    // Documented.
    let doc: Value = client.get(format!("{}/openapi.json", server.base)).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/v1/credentials/revoke"]["post"]["responses"]["202"].is_object());
    assert!(doc["paths"]["/v1/credentials/status"]["post"]["responses"]["429"].is_object());
    server.stop();
}

#[tokio::test]
async fn the_holder_endpoints_are_rate_limited_per_address() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (live, _) = make_key(&data, "live-01_01_2027-10_00");
    let server = Server::start(&data, "warn");
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..15 {
        let path = if i % 2 == 0 { "/v1/credentials/status" } else { "/v1/credentials/revoke" };
        let res =
            client.post(format!("{}{path}", server.base)).json(&json!({ "keys": ["nope"] })).send().await.unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            assert!(res.headers().contains_key("retry-after"));
            let p: Value = res.json().await.unwrap();
            assert_eq!(p["code"], "rate_limited");
        }
    }
    let first_429 = statuses.iter().position(|&s| s == 429).expect("limited within 15 requests");
    assert!(first_429 >= 10, "a burst of 10 is allowed: {statuses:?}");
    // Refused requests revoke nothing.
    let res = client
        .post(format!("{}/v1/credentials/revoke", server.base))
        .json(&json!({ "keys": [live] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(server.whoami(&live).await, 200);
    server.stop();
}
