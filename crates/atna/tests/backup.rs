//! `atna backup` on a running installation: copies taken while a load loop creates and deletes keys through the API
//! are consistent (every key in a copy authenticates once restored, every key not in it is refused, none is
//! half-written), `--verify` tells a good copy from a damaged one, and `--reapply-deletions-from` keeps keys deleted
//! after the copy deleted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::{atna, ok, Server};

const USER: &str = "alice@example.com";

fn bootstrap(data: &Path) -> (String, String) {
    ok(atna(data, &["user", "create", "--email", USER, "--password-stdin"], Some("correct horse battery\n")));
    let out = ok(atna(
        data,
        &["key", "create", "--user", USER, "--name", "ops-26_11_2026-14_05", "--scope", "keys:manage", "--json"],
        None,
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
}

/// Live Credential IDs in a database, from `atna key list --json`.
fn live_ids(data: &Path) -> Vec<String> {
    let v: Value = serde_json::from_str(&ok(atna(data, &["key", "list", "--user", USER, "--json"], None))).unwrap();
    v.as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect()
}

/// Restores a backup the way docs/backups.md says: the copy becomes `atna.db` in a new, private data directory.
fn restore(backup: &Path, into: &Path) {
    std::fs::create_dir(into).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(into).unwrap().permissions(), 0o700);
    std::fs::copy(backup, into.join("atna.db")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_taken_under_load_restore_to_a_consistent_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, admin) = bootstrap(&data);
    let server = Server::start(&data, "warn");

    // The load loop: creates keys through the API and deletes every third one, remembering every secret.
    let secrets: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    // The loop's first key (never deleted by it: only every third is).
    let first: Arc<Mutex<Option<String>>> = Arc::default();
    let (stop, created) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (base, admin, secrets, first, stop, created) =
            (server.base.clone(), admin.clone(), secrets.clone(), first.clone(), stop.clone(), created.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let res = http
                    .post(format!("{base}/v1/keys"))
                    .bearer_auth(&admin)
                    .json(&json!({"name": format!("load-{n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
                let v: Value = res.json().await.unwrap();
                let id = v["id"].as_str().unwrap().to_owned();
                secrets.lock().unwrap().insert(id.clone(), v["secret"].as_str().unwrap().to_owned());
                first.lock().unwrap().get_or_insert_with(|| id.clone());
                created.fetch_add(1, Ordering::Relaxed);
                if n % 3 == 0 {
                    let res = http.delete(format!("{base}/v1/keys/{id}")).bearer_auth(&admin).send().await.unwrap();
                    assert_eq!(res.status(), 204);
                }
            }
        })
    };
    let wait_for = |count: usize| {
        let created = created.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while created.load(Ordering::Relaxed) < count {
                assert!(Instant::now() < deadline, "the load loop made {count} keys in time");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    // Three copies, each while the loop runs.
    let mut backups = Vec::new();
    for i in 0..3 {
        wait_for(20 * (i + 1)).await;
        let file = dir.path().join(format!("backup-{i}.db"));
        let (d, f) = (data.clone(), file.clone());
        let out = tokio::task::spawn_blocking(move || ok(atna(&d, &["backup", "--output", f.to_str().unwrap()], None)))
            .await
            .unwrap();
        assert!(out.contains("backed up to"), "{out}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        backups.push(file);
    }
    wait_for(created.load(Ordering::Relaxed) + 5).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    // A key that is in every copy, deleted after the last one: a restore brings it back until deletions are re-applied.
    let victim = first.lock().unwrap().clone().expect("the loop made a key");
    ok(atna(&data, &["key", "delete", &victim], None));
    let _ = server.stop();
    let secrets = secrets.lock().unwrap().clone();
    assert!(secrets.len() >= 65, "{} keys made", secrets.len());

    for (i, backup) in backups.iter().enumerate() {
        let out = ok(atna(&data, &["backup", "--verify", backup.to_str().unwrap()], None));
        assert!(out.contains("integrity check passed"), "{out}");
        let restored = dir.path().join(format!("restored-{i}"));
        restore(backup, &restored);
        let live = live_ids(&restored);
        assert!(live.contains(&victim), "copy {i} was taken before the victim was deleted");
        let server = Server::start(&restored, "warn");
        // Every key in the copy works; every key made by the loop and not live in the copy (deleted before it, or
        // made after it) is refused.
        let mut working = 0;
        for (id, secret) in &secrets {
            let want = if live.contains(id) { 200 } else { 401 };
            assert_eq!(server.whoami(secret).await, want, "copy {i}, key {id}");
            working += usize::from(want == 200);
        }
        assert_eq!(working + 1, live.len(), "copy {i}: every live key (and the admin's) is one the loop made");
        assert_eq!(server.whoami(&admin).await, 200);

        // Deletions made after the copy, re-applied from the old live database: the victim stays deleted, and the
        // running server refuses it at once (change feed).
        let out =
            ok(atna(&restored, &["backup", "--reapply-deletions-from", data.join("atna.db").to_str().unwrap()], None));
        assert!(out.contains(&format!("deleted key {victim}")), "{out}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.whoami(&secrets[&victim]).await != 401 {
            assert!(Instant::now() < deadline, "the restored server refuses the re-deleted key in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Now the restored copy agrees with the live database on every key that exists in both.
        let now_live = live_ids(&restored);
        let live_then = live_ids(&data);
        assert!(now_live.iter().all(|id| live_then.contains(id)), "copy {i}: no deleted key is live again");
        let _ = server.stop();
    }
}

#[test]
fn verify_refuses_damaged_and_foreign_files_and_backup_refuses_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    bootstrap(&data);
    let file = dir.path().join("b.db");
    ok(atna(&data, &["backup", "--output", file.to_str().unwrap()], None));
    let again = atna(&data, &["backup", "--output", file.to_str().unwrap()], None);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists; pass --force"));
    ok(atna(&data, &["backup", "--output", file.to_str().unwrap(), "--force"], None));

    // A copy cut short (a failed transfer) and one with a page overwritten are not usable.
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.db");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let mut damaged = bytes.clone();
    let page = bytes.len() - 4096;
    damaged[page..page + 512].fill(0xA5);
    let damaged_file = dir.path().join("damaged.db");
    std::fs::write(&damaged_file, &damaged).unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database").unwrap();
    for bad in [&cut, &damaged_file, &text, &dir.path().join("missing.db")] {
        let out = atna(&data, &["backup", "--verify", bad.to_str().unwrap()], None);
        assert!(!out.status.success(), "{} passed", bad.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a usable atna backup"), "{err}");
    }

    let out = common::atna_env(
        &[("ATNA_DATABASE_URL", "postgres://atna@127.0.0.1:1/atna")],
        &["backup", "--output", dir.path().join("pg.db").to_str().unwrap()],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump --format=custom"));
    assert!(!dir.path().join("pg.db").exists());
}
