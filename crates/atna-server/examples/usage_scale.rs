//! Usage buckets at scale (`bench/usage-storage.sh` runs it): one user with `KEYS` keys (default 100,000), every key
//! active every hour of one day. Prints what the buckets cost on disk per key per day, how long a usage flush of all
//! those keys takes, and how long My API Keys (with its sparklines) and a key page take to render for that user.
//!
//! SQLite in a temporary file by default; PostgreSQL with `ATNA_BENCH_POSTGRES_URL` (a server URL; a fresh schema is
//! made). Run it in release mode for the timings: `cargo run --release -p atna-server --example usage_scale`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use atna_domain::{CredentialId, Password, PasswordHash, SecretHash, VerifyCode};
use atna_server::{App, Settings};
use atna_store::{ExportedKey, ExportedUser, Granularity, Snapshot, Store, UsageCount, SNAPSHOT_FORMAT};

const HOUR: i64 = 60 * 60 * 1000;
const PASSWORD: &str = "correct horse battery";

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let (store, size): (Arc<dyn Store>, Size) = match std::env::var("ATNA_BENCH_POSTGRES_URL") {
        Ok(server) => {
            let url = atna_store_postgres::testdb::fresh_schema_url(&server).await;
            let s = atna_store_postgres::PgStore::open(&url, &Default::default()).await.unwrap();
            let pool = s.pool().clone();
            (Arc::new(s), Size::Postgres(pool))
        }
        Err(_) => {
            let path = dir.path().join("atna.db");
            let s = atna_store_sqlite::SqliteStore::open_file(&path).await.unwrap();
            (Arc::new(s), Size::Sqlite(path))
        }
    };
    println!("backend {}, {n} keys of one user", store.backend());

    // One user and their keys, loaded in one transaction (an import: far faster than n key creations).
    let now = atna_server::clock::now();
    let hash = PasswordHash::hash(&Password::new(PASSWORD.into()).unwrap());
    let ids: Vec<CredentialId> = (0..n).map(|_| CredentialId::generate()).collect();
    let keys = ids
        .iter()
        .enumerate()
        .map(|(i, id)| ExportedKey {
            id: id.to_string(),
            owner_id: 1,
            name: format!("service-{i:06}"),
            secret_hash: SecretHash::of(id.as_str()).to_hex(),
            scopes: String::new(),
            status: "active".into(),
            created_at: now - 10 * 24 * HOUR + i as i64,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            last_used_ip: None,
            use_count: 0,
            created_by_key: None,
            ip_allowlist: None,
            ..ExportedKey::default()
        })
        .collect();
    let user = ExportedUser {
        id: 1,
        email: "alice@example.com".into(),
        password_hash: hash.as_str().to_owned(),
        is_admin: false,
        disabled: false,
        created_at: now - 20 * 24 * HOUR,
    };
    let snap = Snapshot {
        format: SNAPSHOT_FORMAT.into(),
        exported_at: now,
        users: vec![user],
        keys,
        audit_events: vec![],
        key_prefixes: vec![],
    };
    store.import_all(&snap).await.unwrap();
    drop(snap);
    let before = size.bytes().await;

    // One day: every key allowed every hour, and one key in ten also refused (a wrong secret) in two of the hours.
    // Each hour is written the way a node's flushes write it: the first flush inserts the buckets, the later ones in
    // that hour add to them; we time one of each (all n keys in one flush, as a 5-s flush at n active keys would be).
    let day = Granularity::Day.floor(now) - 24 * HOUR;
    let mut flushes = Vec::new();
    for h in 0..24 {
        let hour = day + h * HOUR;
        let mut batch: Vec<UsageCount> =
            ids.iter().map(|&id| UsageCount { id, hour, outcome: VerifyCode::Valid, count: 7 }).collect();
        if h % 12 == 3 {
            batch.extend(ids.iter().step_by(10).map(|&id| UsageCount {
                id,
                hour,
                outcome: VerifyCode::InvalidSecret,
                count: 1,
            }));
        }
        let t = Instant::now();
        store.record_usage_counts(&batch).await.unwrap();
        flushes.push(t.elapsed());
        if h == 0 {
            // The same hour again: updates, not inserts.
            let t = Instant::now();
            store.record_usage_counts(&batch).await.unwrap();
            println!("flush of {} bucket counts into existing buckets: {:?}", batch.len(), t.elapsed());
        }
    }
    let after = size.bytes().await;
    flushes.sort();
    println!(
        "flush of {n} keys' hour (new buckets, hourly + daily upserts): median {:?}, worst {:?}",
        flushes[flushes.len() / 2],
        flushes.last().unwrap()
    );
    let (hourly, daily) = size.tables().await;
    let per = |b: i64| b as f64 / n as f64;
    println!(
        "one day of buckets: {} bytes in all ({:.0} bytes per key per day): hourly tables {} ({:.0} per key), daily \
         tables {} ({:.0} per key)",
        after - before,
        per(after - before),
        hourly,
        per(hourly),
        daily,
        per(daily)
    );
    println!(
        "steady state at the default retention (14 days hourly, 400 days daily): about {:.1} KiB per active key",
        (14.0 * per(hourly) + 400.0 * per(daily)) / 1024.0
    );

    // My API Keys and a key page, rendered for that user through the real server.
    let settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), ..Settings::default() };
    let app = App::build(settings, store.clone()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = stop_rx.await;
    }));
    let web =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let html = web.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    let csrf = value_of(&html, "name=\"csrf\"");
    let form = [("csrf", csrf.as_str()), ("email", "alice@example.com"), ("password", PASSWORD)];
    assert_eq!(web.post(format!("{base}/login")).form(&form).send().await.unwrap().status(), 303);
    let time = |url: String| {
        let web = web.clone();
        async move {
            let mut times = Vec::new();
            for _ in 0..30 {
                let t = Instant::now();
                let res = web.get(&url).send().await.unwrap();
                assert_eq!(res.status(), 200, "{url}");
                let body = res.text().await.unwrap();
                times.push(t.elapsed());
                assert!(body.contains("<svg"), "{url} has its charts");
            }
            times.sort();
            (times[times.len() / 2], times[times.len() * 95 / 100])
        }
    };
    let (p50, p95) = time(format!("{base}/keys")).await;
    println!("My API Keys (25 rows with sparklines, {n} keys): median {p50:?}, p95 {p95:?}");
    let last = ids.last().unwrap();
    let (p50, p95) = time(format!("{base}/keys/{last}?range=7d")).await;
    println!("key page, 7 days (168 hourly bars): median {p50:?}, p95 {p95:?}");
    let (p50, p95) = time(format!("{base}/keys/{last}?range=90d")).await;
    println!("key page, 90 days (90 daily bars): median {p50:?}, p95 {p95:?}");
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}

/// The `value` of the first element after `marker`.
fn value_of(html: &str, marker: &str) -> String {
    let rest = &html[html.find(marker).unwrap()..];
    let v = &rest[rest.find("value=\"").unwrap() + 7..];
    v[..v.find('"').unwrap()].to_owned()
}

/// How to ask a backend how much room the data takes.
enum Size {
    Sqlite(std::path::PathBuf),
    Postgres(sqlx::PgPool),
}

impl Size {
    /// Bytes of the whole database (SQLite: pages in use after a checkpoint; PostgreSQL: the schema's relations).
    async fn bytes(&self) -> i64 {
        match self {
            Size::Sqlite(path) => sqlite(path, "PRAGMA wal_checkpoint(TRUNCATE); SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count()); SELECT page_size FROM pragma_page_size();")
                .lines()
                .skip(1)
                .map(|l| l.trim().parse::<i64>().unwrap())
                .product(),
            Size::Postgres(pool) => sqlx::query_scalar(
                "SELECT CAST(SUM(pg_total_relation_size(c.oid)) AS BIGINT) FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema() AND c.relkind = 'r'",
            )
            .fetch_one(pool)
            .await
            .unwrap(),
        }
    }

    /// Bytes of the hourly and the daily buckets, their indexes included.
    async fn tables(&self) -> (i64, i64) {
        match self {
            Size::Sqlite(path) => {
                // dbstat is not in every SQLite build; the sqlite3 shell has it.
                let out = sqlite(
                    path,
                    "SELECT COALESCE(SUM(CASE WHEN name LIKE 'usage_hourly%' THEN pgsize END), 0), \
                     COALESCE(SUM(CASE WHEN name LIKE 'usage_daily%' THEN pgsize END), 0) FROM dbstat;",
                );
                let v: Vec<i64> = out.trim().split('|').map(|x| x.parse().unwrap()).collect();
                (v[0], v[1])
            }
            Size::Postgres(pool) => sqlx::query_as(
                "SELECT CAST(pg_total_relation_size('usage_hourly') AS BIGINT),
                        CAST(pg_total_relation_size('usage_daily') AS BIGINT)",
            )
            .fetch_one(pool)
            .await
            .unwrap(),
        }
    }
}

/// Runs SQL with the `sqlite3` shell (it has `dbstat`), returning its output.
fn sqlite(path: &std::path::Path, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3").arg(path).arg(sql).output().expect("the sqlite3 shell");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
