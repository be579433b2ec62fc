//! Soak (issue 12 §2): the real binary on SQLite under mixed traffic for a while — keys created, listed and deleted
//! through the API, `atna key delete` from the command line, `GET /v1/whoami` and `POST /v1/keys/verify`, signed-in
//! dashboard pages — then checked: no answer but the expected ones, every created key accounted for (listed, or
//! deleted and refused), memory and descriptors flat after the warm-up, and `use_count` equal to the uses sent.
//!
//! `ATNA_SOAK_SECS` sets the length: default 60 s when `CI=true`, else 20 s; `ATNA_ATTACK_LONG=1` runs 600 s.
//! `ATNA_SOAK_STEADY=1` holds the key count steady: once [`STEADY_KEYS`] kept keys are live, each new kept key
//! deletes the oldest one (through the API), so memory that still grows is not the database's keys.

mod common;
#[path = "common/pressure.rs"]
mod pressure;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{redirect, Client};
use serde_json::{json, Value};

use common::{atna, ok, Server};
use pressure::{fds, long_mode, rss};

const USER: &str = "alice@example.com";
const PASSWORD: &str = "correct horse battery";
/// The kept keys (neither deleted at once nor handed to the CLI) live at most, with `ATNA_SOAK_STEADY=1`.
const STEADY_KEYS: usize = 500;

fn steady() -> bool {
    std::env::var("ATNA_SOAK_STEADY").is_ok_and(|v| v == "1")
}

/// Keys used only for whoami and verify, so their `use_count` is exactly what this test sent.
const WORKERS: usize = 4;

fn soak_secs() -> u64 {
    if let Some(s) = std::env::var("ATNA_SOAK_SECS").ok().and_then(|v| v.parse().ok()) {
        return s;
    }
    if long_mode() {
        600
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        60
    } else {
        20
    }
}

fn create_key(data: &Path, name: &str, scope: Option<&str>) -> (String, String) {
    let mut args = vec!["key", "create", "--user", USER, "--name", name, "--json"];
    if let Some(s) = scope {
        args.extend(["--scope", s]);
    }
    let v: Value = serde_json::from_str(&ok(atna(data, &args, None))).unwrap();
    (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
}

/// Every answer of the run, by what was asked and how it was answered; the unexpected ones with detail.
#[derive(Default)]
struct Tally {
    counts: Mutex<BTreeMap<(&'static str, u16), u64>>,
    unexpected: Mutex<Vec<String>>,
}

impl Tally {
    fn note(&self, what: &'static str, status: u16, expected: &[u16], detail: impl FnOnce() -> String) {
        *self.counts.lock().unwrap().entry((what, status)).or_default() += 1;
        if !expected.contains(&status) {
            self.unexpected.lock().unwrap().push(format!("{what}: {status} {}", detail()));
        }
    }
}

/// The keys the run made, and how each ended.
#[derive(Default)]
struct Keys {
    /// ID → secret of every key created through the API.
    created: HashMap<String, String>,
    deleted_by_api: HashSet<String>,
    deleted_by_cli: HashSet<String>,
    /// Created keys waiting for the CLI to delete them.
    for_cli: Vec<String>,
    /// Kept keys, oldest first (only with `ATNA_SOAK_STEADY=1`).
    kept: std::collections::VecDeque<String>,
}

struct Run {
    base: String,
    data: PathBuf,
    admin: String,
    workers: Vec<(String, String)>,
    session: String,
    stop: AtomicBool,
    tally: Tally,
    keys: Mutex<Keys>,
    /// Uses sent per worker key (whoami and verify answered 200 and valid).
    uses: Vec<AtomicU64>,
}

fn client() -> Client {
    Client::builder().redirect(redirect::Policy::none()).timeout(Duration::from_secs(30)).build().unwrap()
}

async fn sign_in(base: &str) -> String {
    let csrf = "ab".repeat(32);
    let res = client()
        .post(format!("{base}/login"))
        .header("cookie", format!("atna_login_csrf={csrf}"))
        .form(&[("csrf", csrf.as_str()), ("email", USER), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("atna_session="))
        .expect("a session cookie");
    cookie.split(';').next().unwrap().to_owned()
}

/// Creates keys through the API, deletes every third at once, hands every third to the CLI, lists now and then.
async fn api_churn(run: Arc<Run>, tag: char) {
    let http = client();
    let mut n = 0u64;
    while !run.stop.load(Ordering::Relaxed) {
        n += 1;
        let res = http
            .post(format!("{}/v1/keys", run.base))
            .bearer_auth(&run.admin)
            .json(&json!({ "name": format!("soak-{tag}{n}") }))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        run.tally.note("create", status, &[201], || body.to_string());
        if status != 201 {
            continue;
        }
        let (id, secret) = (body["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned());
        run.keys.lock().unwrap().created.insert(id.clone(), secret.clone());
        match n % 3 {
            0 => delete_through_api(&run, &http, &id, &secret).await,
            1 => run.keys.lock().unwrap().for_cli.push(id),
            _ if steady() => {
                let oldest = {
                    let mut keys = run.keys.lock().unwrap();
                    keys.kept.push_back(id);
                    if keys.kept.len() > STEADY_KEYS {
                        keys.kept.pop_front().map(|old| (keys.created[&old].clone(), old))
                    } else {
                        None
                    }
                };
                if let Some((secret, old)) = oldest {
                    delete_through_api(&run, &http, &old, &secret).await;
                }
            }
            _ => {}
        }
        if n.is_multiple_of(10) {
            let res = http.get(format!("{}/v1/keys?limit=100", run.base)).bearer_auth(&run.admin).send().await.unwrap();
            run.tally.note("list", res.status().as_u16(), &[200], String::new);
        }
    }
}

/// Deletes a key through the API, then checks that it is refused at once (the expected 4xx of the run).
async fn delete_through_api(run: &Run, http: &Client, id: &str, secret: &str) {
    let res = http.delete(format!("{}/v1/keys/{id}", run.base)).bearer_auth(&run.admin).send().await.unwrap();
    let status = res.status().as_u16();
    run.tally.note("delete", status, &[204], || id.to_owned());
    if status == 204 {
        run.keys.lock().unwrap().deleted_by_api.insert(id.to_owned());
        let res = http.get(format!("{}/v1/whoami", run.base)).bearer_auth(secret).send().await.unwrap();
        run.tally.note("whoami (deleted key)", res.status().as_u16(), &[401], || id.to_owned());
    }
}

/// `atna key delete` on keys the API made, one at a time, as an operator would.
async fn cli_deletions(run: Arc<Run>) {
    while !run.stop.load(Ordering::Relaxed) {
        let next = run.keys.lock().unwrap().for_cli.pop();
        let Some(id) = next else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (data, id2) = (run.data.clone(), id.clone());
        let out = tokio::task::spawn_blocking(move || atna(&data, &["key", "delete", &id2], None)).await.unwrap();
        let status = if out.status.success() { 0 } else { 1 };
        run.tally.note("cli delete", status, &[0], || String::from_utf8_lossy(&out.stderr).into_owned());
        if out.status.success() {
            run.keys.lock().unwrap().deleted_by_cli.insert(id);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET /v1/whoami` (even turns) and `POST /v1/keys/verify` (odd turns) with the worker keys in turn.
async fn uses(run: Arc<Run>, offset: usize) {
    let http = client();
    let mut turn = offset;
    while !run.stop.load(Ordering::Relaxed) {
        turn += 1;
        let w = turn % WORKERS;
        let secret = &run.workers[w].1;
        if turn.is_multiple_of(2) {
            let res = http.get(format!("{}/v1/whoami", run.base)).bearer_auth(secret).send().await.unwrap();
            let status = res.status().as_u16();
            run.tally.note("whoami", status, &[200], String::new);
            if status == 200 {
                run.uses[w].fetch_add(1, Ordering::Relaxed);
            }
        } else {
            let res =
                http.post(format!("{}/v1/keys/verify", run.base)).json(&json!({ "key": secret })).send().await.unwrap();
            let status = res.status().as_u16();
            let v: Value = res.json().await.unwrap_or(Value::Null);
            let valid = v["valid"] == true;
            run.tally.note("verify", if valid { status } else { 0 }, &[200], || v.to_string());
            if status == 200 && valid {
                run.uses[w].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Signed-in dashboard pages, in turn.
async fn dashboard(run: Arc<Run>) {
    let http = client();
    let pages = ["/keys", "/account", "/activity", "/keys/new", "/reminders", "/admin/users", "/keys?q=soak"];
    let mut turn = 0;
    while !run.stop.load(Ordering::Relaxed) {
        let page = pages[turn % pages.len()];
        turn += 1;
        let res = http.get(format!("{}{page}", run.base)).header("cookie", &run.session).send().await.unwrap();
        let status = res.status().as_u16();
        let _ = res.bytes().await;
        run.tally.note("dashboard", status, &[200], || page.to_owned());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every live key of the user, through the API's pages.
async fn listed(run: &Run) -> HashSet<String> {
    let http = client();
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/keys?limit=100", run.base);
        if let Some(c) = &cursor {
            url += &format!("&cursor={c}");
        }
        let v: Value = http.get(url).bearer_auth(&run.admin).send().await.unwrap().json().await.unwrap();
        for k in v["data"].as_array().unwrap() {
            ids.insert(k["id"].as_str().unwrap().to_owned());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_traffic_leaves_no_errors_no_lost_keys_no_leaks_and_exact_usage() {
    let secs = soak_secs();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    ok(atna(&data, &["user", "create", "--email", USER, "--password-stdin", "--admin"], Some(PASSWORD)));
    let (admin_id, admin) = create_key(&data, "soak-admin", Some("keys:manage"));
    let workers: Vec<_> = (0..WORKERS).map(|i| create_key(&data, &format!("soak-worker-{i}"), None)).collect();
    let server = Server::start(&data, "warn");
    let pid = server.child.id();
    let session = sign_in(&server.base).await;
    let run = Arc::new(Run {
        base: server.base.clone(),
        data: data.clone(),
        admin,
        workers,
        session,
        stop: AtomicBool::new(false),
        tally: Tally::default(),
        keys: Mutex::default(),
        uses: (0..WORKERS).map(|_| AtomicU64::new(0)).collect(),
    });

    let tasks = vec![
        tokio::spawn(api_churn(run.clone(), 'a')),
        tokio::spawn(api_churn(run.clone(), 'b')),
        tokio::spawn(cli_deletions(run.clone())),
        tokio::spawn(uses(run.clone(), 0)),
        tokio::spawn(uses(run.clone(), 1)),
        tokio::spawn(uses(run.clone(), 2)),
        tokio::spawn(dashboard(run.clone())),
    ];
    // Memory and descriptors once a second; the first fifth of the run (at least 5 s) is the warm-up.
    let t0 = Instant::now();
    let warm_up = Duration::from_secs((secs / 5).max(5));
    let mut samples = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((t0.elapsed(), rss(pid), fds(pid)));
        if samples.len().is_multiple_of(60) {
            let live = run.keys.lock().unwrap().kept.len();
            eprintln!("soak: {} s, RSS {} MB ({live} kept keys in steady mode)", samples.len(), rss(pid) >> 20);
        }
    }
    run.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let counts = run.tally.counts.lock().unwrap().clone();
    let total: u64 = counts.values().sum();
    if steady() {
        eprintln!("soak: steady mode, at most {STEADY_KEYS} kept keys live");
    }
    eprintln!("soak: {secs} s, {total} requests ({:.0}/s): {counts:?}", total as f64 / secs as f64);
    let unexpected = run.tally.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );

    let (warm_rss, warm_fds) = samples
        .iter()
        .find(|(t, _, _)| *t >= warm_up)
        .map(|(_, r, f)| (*r, *f))
        .expect("the run lasted past its warm-up");
    let (last_rss, last_fds) = samples.last().map(|(_, r, f)| (*r, *f)).unwrap();
    let max_rss = samples.iter().filter(|(t, _, _)| *t >= warm_up).map(|(_, r, _)| *r).max().unwrap();
    let max_fds = samples.iter().filter(|(t, _, _)| *t >= warm_up).map(|(_, _, f)| *f).max().unwrap();
    eprintln!(
        "soak: RSS {} MB at the start, {} MB after the warm-up ({:?}), {} MB at the end, {} MB at most",
        samples[0].1 >> 20,
        warm_rss >> 20,
        warm_up,
        last_rss >> 20,
        max_rss >> 20
    );
    eprintln!(
        "soak: descriptors {} at the start, {warm_fds} after the warm-up, {last_fds} at the end, {max_fds} at most",
        samples[0].2
    );
    assert!(max_rss < 2 * warm_rss + (50 << 20), "RSS grew from {} MB to {} MB", warm_rss >> 20, max_rss >> 20);
    assert!(max_fds <= warm_fds + 20, "descriptors grew from {warm_fds} to {max_fds}");

    // Every key made is accounted for: listed if alive, refused and not listed if deleted.
    let keys = std::mem::take(&mut *run.keys.lock().unwrap());
    let live = listed(&run).await;
    let deleted: HashSet<&String> = keys.deleted_by_api.iter().chain(&keys.deleted_by_cli).collect();
    let mut expected_live: HashSet<String> = keys.created.keys().filter(|id| !deleted.contains(id)).cloned().collect();
    expected_live.insert(admin_id);
    expected_live.extend(run.workers.iter().map(|(id, _)| id.clone()));
    assert_eq!(live, expected_live, "the live keys are those made and not deleted");
    let http = client();
    for id in &keys.deleted_by_cli {
        let res = http.get(format!("{}/v1/whoami", run.base)).bearer_auth(&keys.created[id]).send().await.unwrap();
        assert_eq!(res.status(), 401, "a key deleted with the CLI is refused");
    }
    eprintln!(
        "soak: {} keys created, {} deleted through the API, {} with the CLI, {} live",
        keys.created.len(),
        keys.deleted_by_api.len(),
        keys.deleted_by_cli.len(),
        live.len()
    );

    // use_count of each worker key is exactly the uses sent (the answering node adds what it has not written yet).
    let deadline = Instant::now() + Duration::from_secs(30);
    for (w, (id, _)) in run.workers.iter().enumerate() {
        let sent = run.uses[w].load(Ordering::Relaxed);
        loop {
            let v: Value = http
                .get(format!("{}/v1/keys/{id}", run.base))
                .bearer_auth(&run.admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let counted = v["use_count"].as_u64().unwrap();
            if counted == sent {
                break;
            }
            assert!(Instant::now() < deadline, "worker {w}: use_count {counted}, {sent} uses sent");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let sent: u64 = run.uses.iter().map(|u| u.load(Ordering::Relaxed)).sum();
    eprintln!("soak: use_count of the {WORKERS} worker keys adds up to the {sent} uses sent");
    let _ = server.stop();
}
