//! The command line as an operator meets it, with the real binary: private files whatever the umask, atomic exports,
//! tables and help that say enough, errors that say it once (and never echo a secret), quiet exits into `head`, and
//! settings that are refused rather than ignored.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod common;

use common::{atna, atna_env, ok, Server, BIN};

const PASSWORD: &str = "correct horse battery\n";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails with `want` in its error, and no panic.
fn fails(out: Output, want: &str) -> String {
    let err = stderr(&out);
    assert!(!out.status.success(), "should fail; stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains(want), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn create_admin(data: &Path, email: &str) {
    ok(atna(data, &["user", "create", "--email", email, "--password-stdin", "--admin"], Some(PASSWORD)));
}

fn create_key(data: &Path, email: &str, name: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["key", "create", "--user", email, "--name", name, "--json"];
    args.extend_from_slice(extra);
    let v: Value = serde_json::from_str(&ok(atna(data, &args, None))).unwrap();
    (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `atna ARGS` through `sh`, with umask 022 as in a usual login shell.
#[cfg(unix)]
fn under_umask_022(args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 022; exec \"$0\" \"$@\"", BIN]).args(args).env_remove("ATNA_DATABASE_URL");
    cmd
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_database_files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cmd = under_umask_022(&["serve", "--listen", "127.0.0.1:0"]);
    cmd.env("ATNA_DATA_DIR", &data).env("ATNA_LOG", "warn");
    let server = Server::spawn(cmd);
    // While the server runs, SQLite's write-ahead log and shared-memory index exist next to the database.
    assert_eq!(mode(&data), 0o700);
    for file in ["atna.db", "atna.db-wal", "atna.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let _ = server.stop();

    // A data directory made earlier, open to everyone: atna says so at start.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = under_umask_022(&["migrate"]).env("ATNA_DATA_DIR", &data).output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("open to other local users") && err.contains("chmod 700"), "{err}");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = under_umask_022(&["migrate"]).env("ATNA_DATA_DIR", &data).output().unwrap();
    assert!(!stderr(&out).contains("open to other local users"), "no warning for a private directory");
}

#[cfg(unix)]
#[test]
fn export_force_replaces_another_users_file_with_a_new_private_one() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_admin(&data, "alice@example.com");
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let file = out_dir.join("export.json");
    std::fs::write(&file, "old content\n").unwrap();
    if std::fs::metadata(&file).unwrap().uid() != 0 {
        eprintln!("skipped: giving a file to another user needs root");
        return;
    }
    // The old file belongs to `nobody` and everyone may read it.
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    ok(atna(&data, &["export", "--output", file.to_str().unwrap(), "--force"], None));
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), mode(&file)), (0, 0o600), "a new file of ours, private");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["format"], "atna-export/5");
    let names: Vec<_> = std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["export.json"], "no temporary file left behind");

    // Without --force the file is kept, and no temporary file is left either.
    let out = atna(&data, &["export", "--output", file.to_str().unwrap()], None);
    fails(out, "already exists; pass --force");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
}

#[tokio::test]
async fn key_list_shows_status_expiry_and_scopes_and_user_list_has_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_admin(&data, "alice@example.com");
    let users = ok(atna(&data, &["user", "list"], None));
    let header = users.lines().next().unwrap();
    assert!(header.contains("ID") && header.contains("E-MAIL") && header.contains("FLAGS"), "{users}");
    assert!(users.lines().nth(1).unwrap().contains("alice@example.com"), "{users}");

    create_key(&data, "alice@example.com", "billing", &["--scope", "keys:manage", "--scope", "billing:read"]);
    let (expired, _) = create_key(&data, "alice@example.com", "old", &["--expires-at", "2099-01-01T00:00:00Z"]);
    let (deleted, _) = create_key(&data, "alice@example.com", "gone", &[]);
    ok(atna(&data, &["key", "delete", &deleted], None));
    // Expiry in the past cannot be asked for: move it there in the database, as time would.
    let url = format!("sqlite://{}", data.join("atna.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE api_keys SET expires_at = 1000 WHERE id = $1").bind(&expired).execute(&pool).await.unwrap();
    pool.close().await;

    let table = ok(atna(&data, &["key", "list", "--user", "alice@example.com"], None));
    let header = table.lines().next().unwrap();
    for column in ["CREDENTIAL ID", "STATUS", "CREATED", "EXPIRES", "LAST USED", "SCOPES", "NAME"] {
        assert!(header.contains(column), "{table}");
    }
    let row = |name: &str| table.lines().find(|l| l.trim_end().ends_with(name)).unwrap().to_owned();
    let billing = row("billing");
    assert!(billing.contains("active") && billing.contains("billing:read,keys:manage"), "{billing}");
    assert!(billing.contains("never"), "no expiry: {billing}");
    let old = row("old");
    assert!(old.contains("expired") && old.contains("1970-01-01 00:00 UTC"), "{old}");
    assert!(!table.contains(&deleted), "deleted keys are not listed: {table}");
}

#[test]
fn errors_are_printed_once_and_never_echo_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_admin(&data, "alice@example.com");
    let err = fails(atna(&data, &["key", "create", "--user", "alice@example.com", "--name", ""], None), "name");
    assert_eq!(err.matches("The name is empty").count(), 1, "{err}");
    let err = fails(
        atna(&data, &["key", "create", "--user", "alice@example.com", "--name", "x", "--scope", "Bad"], None),
        "not a valid scope",
    );
    assert_eq!(err.matches("is not a valid scope").count(), 1, "{err}");

    // A whole key pasted where the Credential ID goes: its ID is taken from it, the secret is not printed.
    let (id, secret) = create_key(&data, "alice@example.com", "pasted", &[]);
    let out = atna(&data, &["key", "delete", &secret], None);
    let (text, err) = (String::from_utf8_lossy(&out.stdout).into_owned(), stderr(&out));
    assert!(out.status.success(), "{err}");
    assert!(err.contains("took the Credential ID") && text.contains(&format!("deleted key {id}")), "{text}{err}");
    assert!(!text.contains(&secret) && !err.contains(&secret[22..60]), "the secret was printed");
    // A mistyped key (or any long argument) is refused without being shown.
    let (_, other) = create_key(&data, "alice@example.com", "typo", &[]);
    let flipped = if other.as_bytes()[40] == b'a' { "b" } else { "a" };
    let mistyped = format!("{}{flipped}{}", &other[..40], &other[41..]);
    let long_garbage = "s3cr3t".repeat(10);
    for arg in [&mistyped, &long_garbage] {
        let err = fails(atna(&data, &["key", "delete", arg], None), "not shown");
        assert!(!err.contains(&arg[22..50]), "{err}");
    }
    fails(atna(&data, &["key", "delete", "nope"], None), "`nope` is not a Credential ID");
}

#[cfg(unix)]
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_admin(&data, "alice@example.com");
    create_key(&data, "alice@example.com", "one", &[]);
    for args in [
        &["key", "list", "--user", "alice@example.com"][..],
        &["key", "list", "--user", "alice@example.com", "--json"],
        &["user", "list"],
        &["export"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .env("ATNA_DATA_DIR", &data)
            .env_remove("ATNA_DATABASE_URL")
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// A pipe whose reader has already gone, as after `| head -n1` read its line: `true` holds the read end and exits
/// without reading.
#[cfg(unix)]
fn closed_pipe() -> std::process::ChildStdin {
    let mut reader = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let write_end = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    write_end
}

#[cfg(unix)]
#[tokio::test]
async fn a_server_whose_output_nobody_reads_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &listen])
        .env("ATNA_DATA_DIR", &data)
        .env("ATNA_LOG", "warn")
        .env_remove("ATNA_DATABASE_URL")
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(res) = reqwest::get(format!("http://{listen}/healthz")).await {
            assert_eq!(res.status(), 200);
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        assert!(std::time::Instant::now() < deadline, "the server never answered");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success() && !err.contains("panicked"), "{}: {err}", out.status);
    assert!(err.contains("could not print the address"), "{err}");
}

#[test]
fn a_command_that_needs_a_database_does_not_create_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .env_remove("ATNA_DATA_DIR")
            .env_remove("ATNA_DATABASE_URL")
            .env_remove("ATNA_CONFIG")
            .output()
            .unwrap()
    };
    for args in [
        &["user", "list"][..],
        &["key", "list", "--user", "alice@example.com"],
        &["export"],
        &["key", "delete", "AAAAAAAAAAAAAAAA"],
        &["user", "disable", "alice@example.com"],
    ] {
        fails(run(args), "no atna database at ./atna-data (use --data-dir or ATNA_DATABASE_URL)");
    }
    assert!(!dir.path().join("atna-data").exists(), "nothing was created");
    // Commands that make a database still do.
    assert!(run(&["migrate"]).status.success());
    assert!(run(&["user", "list"]).status.success());
}

#[test]
fn bad_settings_in_variables_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let with = |var: &str, value: &str, args: &[&str]| atna_env(&[("ATNA_DATA_DIR", data), (var, value)], args, None);
    fails(with("ATNA_LOG", "bogus===", &["migrate"]), "ATNA_LOG=`bogus===`");
    fails(with("ATNA_LOG_FORMAT", "yaml", &["migrate"]), "ATNA_LOG_FORMAT=`yaml` is not a log format");
    let err = fails(with("ATNA_TRUST_FORWARDED_FOR", "yes", &["serve"]), "ATNA_TRUST_FORWARDED_FOR");
    assert!(!err.contains("--trust-forwarded-for"), "{err}");
    // A flag typed on the command line is still named as the flag.
    let err = fails(with("ATNA_LOG", "info", &["serve", "--trust-forwarded-for", "yes"]), "--trust-forwarded-for");
    assert!(!err.contains("ATNA_TRUST_FORWARDED_FOR"), "{err}");
    fails(with("ATNA_LISTEN", "nowhere.invalid:8080", &["serve"]), "cannot resolve listen address");
    assert!(ok(with("ATNA_LOG_FORMAT", "json", &["migrate"])).contains("migrations applied"));
}

#[tokio::test]
async fn serve_listens_on_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_admin(&data, "alice@example.com");
    let (_, secret) = create_key(&data, "alice@example.com", "ops", &[]);
    let server = Server::start_on("localhost:0", &[("ATNA_DATA_DIR", data.to_str().unwrap()), ("ATNA_LOG", "warn")]);
    assert_eq!(server.whoami(&secret).await, 200, "{}", server.base);
    let _ = server.stop();
}

#[test]
fn the_last_administrator_is_not_disabled_by_accident_and_keys_for_disabled_users_warn() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_admin(&data, "alice@example.com");
    fails(atna(&data, &["user", "disable", "alice@example.com"], None), "last enabled administrator");
    assert!(ok(atna(&data, &["user", "list"], None)).lines().all(|l| !l.contains("disabled")));
    // With a second administrator, the first can go; then the second is the last.
    create_admin(&data, "bob@example.com");
    ok(atna(&data, &["user", "disable", "alice@example.com"], None));
    fails(atna(&data, &["user", "disable", "bob@example.com"], None), "pass --force");
    ok(atna(&data, &["user", "disable", "bob@example.com", "--force"], None));

    let out = atna(&data, &["key", "create", "--user", "alice@example.com", "--name", "ci"], None);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: alice@example.com is disabled: this key will not work"), "{err}");
}

#[test]
fn help_explains_every_option_and_sets_global_options_apart() {
    for (args, wants) in [
        (&["user", "create", "--help"][..], &["--email <EMAIL>", "e-mail address", "Global options:"][..]),
        (&["user", "list", "--help"], &["Print JSON instead of a table"]),
        (&["user", "disable", "--help"], &["<EMAIL>  The user's e-mail address", "--force"]),
        (&["user", "enable", "--help"], &["<EMAIL>  The user's e-mail address"]),
        (&["key", "list", "--help"], &["--user <USER>  The owner's e-mail address", "--json"]),
        (&["key", "create", "--help"], &["Print JSON (with the secret)"]),
        (&["key", "delete", "--help"], &["<ID>  The key's Credential ID"]),
    ] {
        let text = ok(atna_env(&[], args, None));
        for want in wants {
            assert!(text.contains(want), "{args:?} lacks {want:?}:\n{text}");
        }
        let (own, global) = text.split_once("Global options:").expect("a Global options section");
        assert!(!own.contains("--data-dir") && global.contains("--data-dir"), "{text}");
    }
}

/// `atna key create --allow-ip` (repeatable) sets the key's IP allowlist: shown in the JSON and the list, enforced by
/// the running server, and a bad range is refused by name before anything is created.
#[tokio::test]
async fn allow_ip_sets_an_allowlist_that_the_server_enforces() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_admin(&data, "alice@example.com");
    let args = ["key", "create", "--user", "alice@example.com", "--name", "fenced", "--json"];
    let mut with = args.to_vec();
    with.extend(["--allow-ip", "127.0.0.2", "--allow-ip", "2001:db8::/32"]);
    let v: Value = serde_json::from_str(&ok(atna(&data, &with, None))).unwrap();
    assert_eq!(v["ip_allowlist"], serde_json::json!(["127.0.0.2/32", "2001:db8::/32"]));
    let secret = v["secret"].as_str().unwrap().to_owned();

    let mut bad = args.to_vec();
    bad[5] = "bad";
    bad.extend(["--allow-ip", "300.1.1.1"]);
    fails(atna(&data, &bad, None), "`300.1.1.1` is not an IP address");
    let table = ok(atna(&data, &["key", "list", "--user", "alice@example.com"], None));
    assert!(table.lines().next().unwrap().contains("ALLOWED FROM"), "{table}");
    assert!(table.contains("127.0.0.2/32 +1"), "{table}");
    assert!(!table.contains(" bad"), "nothing was created: {table}");
    let listed = ok(atna(&data, &["key", "list", "--user", "alice@example.com", "--json"], None));
    assert!(listed.contains("2001:db8::/32"), "{listed}");

    let server = Server::start(&data, "warn");
    assert_eq!(server.whoami(&secret).await, 403, "from 127.0.0.1: outside the allowlist");
    let inside = reqwest::Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()).build();
    let r = inside.unwrap().get(format!("{}/v1/whoami", server.base)).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status(), 200, "from 127.0.0.2: inside");
    server.stop();
}

/// `atna key create --rate-limit --quota --quota-refill` sets the key's limits: shown in the text, the JSON and the
/// list, enforced by the running server; a bad spec is refused before anything is created.
#[tokio::test]
async fn rate_limit_and_quota_flags_set_limits_that_the_server_enforces() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_admin(&data, "alice@example.com");
    let args = ["key", "create", "--user", "alice@example.com", "--name", "metered"];
    let mut with = args.to_vec();
    with.extend(["--rate-limit", "2/1h", "--quota", "10000", "--quota-refill", "monthly"]);
    let text = ok(atna(&data, &with, None));
    assert!(text.contains("Rate limit:        2/3600s"), "{text}");
    assert!(text.contains("Quota:             10,000 of 10,000 left, refilled monthly"), "{text}");
    let secret = text.lines().find_map(|l| l.strip_prefix("Credential Secret: ")).unwrap().trim().to_owned();
    let mut json = args.to_vec();
    json[5] = "credits";
    json.extend(["--quota", "3", "--json"]);
    let v: Value = serde_json::from_str(&ok(atna(&data, &json, None))).unwrap();
    assert_eq!(v["quota"], serde_json::json!({"remaining": 3, "refill": null}));
    assert_eq!(v["rate_limit"], Value::Null);

    let mut bad = args.to_vec();
    bad[5] = "bad";
    bad.extend(["--rate-limit", "100"]);
    fails(atna(&data, &bad, None), "--rate-limit 100: write a rate limit as requests/period");
    let table = ok(atna(&data, &["key", "list", "--user", "alice@example.com"], None));
    let head = table.lines().next().unwrap();
    assert!(head.contains("RATE LIMIT") && head.contains("QUOTA"), "{table}");
    assert!(table.contains("2/3600s") && table.contains("10,000 of 10,000 left"), "{table}");
    assert!(!table.contains(" bad"), "nothing was created: {table}");
    let listed: Value =
        serde_json::from_str(&ok(atna(&data, &["key", "list", "--user", "alice@example.com", "--json"], None)))
            .unwrap();
    let metered = listed.as_array().unwrap().iter().find(|k| k["name"] == "metered").unwrap();
    assert_eq!(metered["rate_limit"], serde_json::json!({"limit": 2, "period_seconds": 3600}));

    let server = Server::start(&data, "warn");
    assert_eq!(server.whoami(&secret).await, 200);
    assert_eq!(server.whoami(&secret).await, 200);
    assert_eq!(server.whoami(&secret).await, 429, "the third request in the hour");
    server.stop();
}

#[test]
fn a_custom_key_prefix_is_recorded_changed_with_an_audit_and_printed_for_scanners() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    create_admin(&data, "alice@example.com");
    // The first key records the configured prefix.
    let acme = [("ATNA_DATA_DIR", d), ("ATNA_KEY_PREFIX", "acme")];
    let out = ok(atna_env(&acme, &["key", "create", "--user", "alice@example.com", "--name", "a", "--json"], None));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["secret"].as_str().unwrap().starts_with("acme_"), "{v}");
    // Another configured prefix does not change the recorded one.
    let (_, second) = create_key(&data, "alice@example.com", "b", &[]);
    assert!(second.starts_with("acme_"), "the recorded prefix wins over the configured default");
    assert!(ok(atna(&data, &["key-prefix", "show"], None)).contains("current: acme"));
    let regex = ok(atna(&data, &["key-format"], None));
    assert_eq!(regex.trim(), r"\bacme_[0-9A-Za-z]{16}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}\b");

    let set = ok(atna(&data, &["key-prefix", "set", "beta"], None));
    assert!(set.contains("beta_") && set.contains("was acme"), "{set}");
    assert!(ok(atna(&data, &["key-prefix", "set", "beta"], None)).contains("nothing changed"));
    let (_, third) = create_key(&data, "alice@example.com", "c", &[]);
    assert!(third.starts_with("beta_"));
    let rule = ok(atna(&data, &["key-format", "--gitleaks"], None));
    assert!(rule.contains(r"'''\b(?:beta|acme)_[0-9A-Za-z]{16}") && rule.contains(r#"["beta_", "acme_"]"#), "{rule}");
    assert!(ok(atna(&data, &["key-format", "--trufflehog"], None)).contains("name: beta-api-key"));
    assert!(ok(atna(&data, &["key-format", "--github-pattern"], None)).contains("Secret format:  (?:beta|acme)_"));
    fails(atna(&data, &["key-prefix", "set", "Bad_Prefix"], None), "2 to 16 lowercase letters and digits");
    fails(atna_env(&[("ATNA_DATA_DIR", d), ("ATNA_KEY_PREFIX", "x")], &["key-prefix", "show"], None), "key_prefix");
    // An old key can still be deleted by pasting it whole.
    let out = atna(&data, &["key", "delete", &second], None);
    assert!(out.status.success(), "{}", stderr(&out));
    // The change is in the export's audit trail.
    let export: Value = serde_json::from_str(&ok(atna(&data, &["export"], None))).unwrap();
    let events = export["audit_events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["action"] == "installation.key_prefix_changed" && e["detail"] == "acme -> beta"));
    assert_eq!(export["key_prefixes"].as_array().unwrap().len(), 2);
}
