//! atna at scale (`bench/scale.sh` runs it): `KEYS` keys (default 100,000; the long mode loads 10,000,000) in one
//! installation, one user of which has `BIG_USER` of them (default 100,000), measured in process.
//!
//! 1. Loads the keys with a bulk loader (SQLite: multi-row `INSERT`s in large transactions on a connection of its own;
//!    PostgreSQL: `COPY`), and says how long that took. Keys are made deterministically from their position, so a
//!    database loaded once is reused by the next run (`SCALE_DB` / the schema `scale_<KEYS>`).
//! 2. The real [`Verifier`] against the real store: a hot working set (`HOT`, default 100,000 keys) that fits the
//!    cache, p50/p99 at `KEYS` keys and in a 1,000-key installation; requests spread uniformly over all keys
//!    (cache misses: their latency, and the throughput they allow); memory per cached key (RSS growth while the cache
//!    fills / keys cached).
//! 3. Start-up time (open + migrate + build the app until `/readyz` answers) and the database's size.
//! 4. The big user's My API Keys (first page, a page deep in the list through its cursor, searches) and `GET /v1/keys`
//!    the same, through the real server on loopback.
//!
//! SQLite by default; PostgreSQL with `ATNA_BENCH_POSTGRES_URL` (a server URL). Release build for the figures:
//! `cargo run --release -p atna-server --example scale`.

use std::io::Write as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atna_domain::credential::{encode, SECRET_LEN};
use atna_domain::{CredentialId, GeneratedKey, KeyName, Password, PasswordHash, Scopes, SecretHash, UserId};
use atna_server::verify::{Verdict, Verifier};
use atna_server::{App, Settings};
use atna_store::{Actor, KeyRules, NewKey, Store};
use sqlx::Connection;

/// Counts the bytes this process holds on the heap, so memory per cached key is measured exactly (RSS hardly moves
/// when the allocator reuses memory an earlier phase freed).
struct Counting;

static HEAP: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        std::alloc::System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        std::alloc::System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        std::alloc::System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const PASSWORD: &str = "correct horse battery";
/// Keys of every user other than the big one.
const PER_USER: usize = 1_000;
/// Start of the keys' creation times (Unix ms); key `i` was created `i` ms later.
const EPOCH: i64 = 1_700_000_000_000;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn env<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.replace(['_', ','], "").parse().ok()).unwrap_or(default)
}

/// The installation's layout: key `i` belongs to user 1 when `i < big`, else to one of the users of `PER_USER` keys.
#[derive(Clone, Copy)]
struct Layout {
    n: usize,
    big: usize,
}

impl Layout {
    fn owner(&self, i: usize) -> i64 {
        if i < self.big {
            1
        } else {
            2 + ((i - self.big) / PER_USER) as i64
        }
    }
    fn users(&self) -> i64 {
        self.owner(self.n.saturating_sub(1).max(self.big)) + 1
    }
}

/// Key `i`'s Credential ID: increasing with `i` (so the loader appends to the ID index) but spread over the ID space,
/// so every character position varies (the last one picks the shard of the per-key maps).
fn id_of(i: usize) -> CredentialId {
    let mut v = (i as u128 + 1) * 2_305_843_009_213_693_951 + 916_132_832;
    let mut s = [b'0'; 16];
    for c in s.iter_mut().rev() {
        *c = BASE62[(v % 62) as usize];
        v /= 62;
    }
    CredentialId::parse(std::str::from_utf8(&s).unwrap()).unwrap()
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Key `i`'s secret part (deterministic: a benchmark's keys, not real ones).
fn secret_of(i: usize) -> [u8; SECRET_LEN] {
    let mut state = i as u64 ^ 0x5ca1_ab1e;
    let mut s = [0u8; SECRET_LEN];
    for c in s.iter_mut() {
        *c = BASE62[(splitmix(&mut state) % 62) as usize];
    }
    s
}

/// The whole key text of key `i`, as a client would send it.
fn key_of(i: usize) -> String {
    encode(&id_of(i), &secret_of(i))
}

fn hash_of(i: usize) -> SecretHash {
    SecretHash::of(std::str::from_utf8(&secret_of(i)).unwrap())
}

fn name_of(i: usize) -> String {
    format!("svc-{i:08}")
}

/// Resident memory of this process, bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Keys the loader made (not the API keys earlier runs added for themselves).
const LOADED: &str = "SELECT COUNT(*) FROM api_keys WHERE name LIKE 'svc-%'";

/// Where the data lives, and how to load it and measure it.
enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres { server: String, schema: String },
}

impl Backend {
    fn url(&self) -> String {
        match self {
            Backend::Sqlite(p) => format!("sqlite://{}", p.display()),
            Backend::Postgres { server, schema } => {
                let sep = if server.contains('?') { '&' } else { '?' };
                format!("{server}{sep}options=-c%20search_path%3D{schema}")
            }
        }
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(p) => Arc::new(atna_store_sqlite::SqliteStore::open_file(p).await.unwrap()),
            Backend::Postgres { .. } => {
                Arc::new(atna_store_postgres::PgStore::open(&self.url(), &Default::default()).await.unwrap())
            }
        }
    }

    /// Makes the schema (PostgreSQL) or removes a stale file (SQLite) when `fresh`.
    async fn prepare(&self, fresh: bool) {
        match self {
            Backend::Sqlite(p) => {
                if fresh {
                    for ext in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
                    }
                }
            }
            Backend::Postgres { server, schema } => {
                let mut c = sqlx::PgConnection::connect(server).await.unwrap();
                if fresh {
                    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut c).await.unwrap();
                }
                sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&mut c).await.unwrap();
            }
        }
    }

    /// Keys in the database (0 when it is new).
    async fn count(&self) -> i64 {
        match self {
            Backend::Sqlite(p) if !p.exists() => 0,
            Backend::Sqlite(_) => {
                let mut c = sqlx::SqliteConnection::connect(&self.url()).await.unwrap();
                sqlx::query_scalar(LOADED).fetch_one(&mut c).await.unwrap_or(0)
            }
            Backend::Postgres { .. } => {
                let mut c = sqlx::PgConnection::connect(&self.url()).await.unwrap();
                sqlx::query_scalar(LOADED).fetch_one(&mut c).await.unwrap_or(0)
            }
        }
    }

    /// Bytes the database takes on disk (SQLite: the file after a checkpoint; PostgreSQL: the schema's relations,
    /// indexes and TOAST included).
    async fn bytes(&self) -> u64 {
        match self {
            Backend::Sqlite(p) => {
                let mut c = sqlx::SqliteConnection::connect(&self.url()).await.unwrap();
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut c).await.unwrap();
                c.close().await.ok();
                std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
            }
            Backend::Postgres { schema, .. } => {
                let mut c = sqlx::PgConnection::connect(&self.url()).await.unwrap();
                let b: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS BIGINT) FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
                )
                .bind(schema)
                .fetch_one(&mut c)
                .await
                .unwrap();
                b as u64
            }
        }
    }

    /// Loads the users and keys of `layout` into a migrated, empty database.
    async fn load(&self, layout: Layout) {
        let hash = PasswordHash::hash(&Password::new(PASSWORD.into()).unwrap());
        let users = layout.users();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(usize, SecretHash)>>(4);
        // Hashing the secrets runs on a thread of its own while the database writes.
        let n = layout.n;
        std::thread::spawn(move || {
            let mut i = 0;
            while i < n {
                let end = (i + 50_000).min(n);
                if tx.blocking_send((i..end).map(|i| (i, hash_of(i))).collect()).is_err() {
                    return;
                }
                i = end;
            }
        });
        match self {
            Backend::Sqlite(_) => {
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&self.url())
                    .unwrap()
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Off)
                    .pragma("cache_size", "-1000000");
                let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
                let mut t = c.begin().await.unwrap();
                for u in 1..=users {
                    let email = format!("user{u}@example.com");
                    let pw = if u == 1 { hash.as_str().to_owned() } else { "x".to_owned() };
                    sqlx::query(
                        "INSERT INTO users (id, email, password_hash, is_admin, disabled, created_at) VALUES ($1, $2, $3, 0, 0, $4)",
                    )
                    .bind(u)
                    .bind(email)
                    .bind(pw)
                    .bind(EPOCH - 1)
                    .execute(&mut *t)
                    .await
                    .unwrap();
                }
                t.commit().await.unwrap();
                const ROWS: usize = 1_000;
                let full = format!(
                    "INSERT INTO api_keys (id, owner_id, name, secret_hash, created_at) VALUES {}",
                    vec!["(?, ?, ?, ?, ?)"; ROWS].join(", ")
                );
                while let Some(chunk) = rx.recv().await {
                    let mut t = c.begin().await.unwrap();
                    for rows in chunk.chunks(ROWS) {
                        let sql = if rows.len() == ROWS {
                            full.clone()
                        } else {
                            format!(
                                "INSERT INTO api_keys (id, owner_id, name, secret_hash, created_at) VALUES {}",
                                vec!["(?, ?, ?, ?, ?)"; rows.len()].join(", ")
                            )
                        };
                        let mut q = sqlx::query(&sql);
                        for (i, h) in rows {
                            q = q
                                .bind(id_of(*i).as_str().to_owned())
                                .bind(layout.owner(*i))
                                .bind(name_of(*i))
                                .bind(h.as_bytes().to_vec())
                                .bind(EPOCH + *i as i64);
                        }
                        q.execute(&mut *t).await.unwrap();
                    }
                    t.commit().await.unwrap();
                    progress(chunk.last().map_or(0, |c| c.0 + 1), n);
                }
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut c).await.unwrap();
                c.close().await.ok();
            }
            Backend::Postgres { .. } => {
                let mut c = sqlx::PgConnection::connect(&self.url()).await.unwrap();
                let mut copy = c
                    .copy_in_raw("COPY users (id, email, password_hash, is_admin, disabled, created_at) FROM STDIN")
                    .await
                    .unwrap();
                let mut buf = Vec::new();
                for u in 1..=users {
                    let pw = if u == 1 { hash.as_str() } else { "x" };
                    writeln!(buf, "{u}\tuser{u}@example.com\t{pw}\tf\tf\t{}", EPOCH - 1).unwrap();
                }
                copy.send(buf).await.unwrap();
                copy.finish().await.unwrap();
                sqlx::query("SELECT setval(pg_get_serial_sequence('users', 'id'), $1)")
                    .bind(users)
                    .execute(&mut c)
                    .await
                    .unwrap();
                let mut copy = c
                    .copy_in_raw("COPY api_keys (id, owner_id, name, secret_hash, created_at) FROM STDIN")
                    .await
                    .unwrap();
                while let Some(chunk) = rx.recv().await {
                    let mut buf = Vec::with_capacity(chunk.len() * 120);
                    for (i, h) in &chunk {
                        writeln!(
                            buf,
                            "{}\t{}\t{}\t\\\\x{}\t{}",
                            id_of(*i),
                            layout.owner(*i),
                            name_of(*i),
                            h.to_hex(),
                            EPOCH + *i as i64
                        )
                        .unwrap();
                    }
                    copy.send(buf).await.unwrap();
                    progress(chunk.last().map_or(0, |c| c.0 + 1), n);
                }
                copy.finish().await.unwrap();
                // What autovacuum would do soon after such a load: the planner's statistics.
                sqlx::query("ANALYZE").execute(&mut c).await.unwrap();
            }
        }
        eprintln!();
    }
}

fn progress(done: usize, n: usize) {
    if done % 1_000_000 < 50_000 || done == n {
        eprint!("\r  loaded {done} of {n} keys");
    }
}

/// Times `verify` of each key text once (awaited: a miss reads the store), returning the sorted latencies.
async fn time_verifies(v: &Verifier, keys: impl Iterator<Item = String>) -> Vec<Duration> {
    let mut times = Vec::new();
    for k in keys {
        let t = Instant::now();
        let verdict = v.verify(&k, None).await.unwrap();
        times.push(t.elapsed());
        assert!(matches!(verdict, Verdict::Valid(_)), "a loaded key verifies");
    }
    times.sort();
    times
}

/// A deterministic stream of positions below `n`.
fn positions(n: usize, seed: u64) -> impl Iterator<Item = usize> {
    let mut s = seed;
    std::iter::repeat_with(move || (splitmix(&mut s) % n as u64) as usize)
}

fn settings() -> Settings {
    Settings { listen: "127.0.0.1:0".parse().unwrap(), ..Settings::default() }
}

/// The hot-set verify latencies (p50, p99) for the first `hot` of a random spread of keys below `n`, cache warm.
async fn hot_set(store: Arc<dyn Store>, n: usize, hot: usize, samples: usize) -> (Duration, Duration, Duration) {
    let ttl = Duration::from_secs(3600);
    // Room to spare: the cache's shards are sized evenly, the keys do not fall into them exactly evenly.
    let v = Verifier::new(store, hot * 5 / 4, ttl, ttl);
    // The hot keys: `hot` distinct positions spread over all keys.
    let step = (n / hot).max(1);
    let set: Vec<String> = (0..hot).map(|j| key_of(j * step)).collect();
    // Two passes before measuring: the first loads every key into the cache, the second finds each one there and
    // makes its usage counter (made once per key per usage flush; a flush every 5 s clears them).
    time_verifies(&v, set.iter().cloned()).await;
    time_verifies(&v, set.iter().cloned()).await;
    assert_eq!(v.store_reads(), hot as u64);
    let picks: Vec<&String> = positions(hot, 7).take(samples).map(|j| &set[j]).collect();
    let mut times = Vec::with_capacity(samples);
    for k in picks {
        let t = Instant::now();
        let verdict = v.verify(k, None).await.unwrap();
        times.push(t.elapsed());
        assert!(matches!(verdict, Verdict::Valid(_)));
    }
    assert_eq!(v.store_reads(), hot as u64, "every hot-set verify was a cache hit");
    times.sort();
    (pct(&times, 0.5), pct(&times, 0.99), pct(&times, 0.999))
}

#[tokio::main]
async fn main() {
    let n: usize = env("KEYS", 100_000);
    let big: usize = env("BIG_USER", 100_000).min(n);
    let hot: usize = env("HOT", 100_000).min(n);
    let samples: usize = env("SAMPLES", 1_000_000);
    let layout = Layout { n, big };
    let pg = std::env::var("ATNA_BENCH_POSTGRES_URL").ok().filter(|u| !u.is_empty());
    let dir = std::env::var("SCALE_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
    let backend = match &pg {
        Some(server) => Backend::Postgres { server: server.clone(), schema: format!("scale_{n}") },
        None => Backend::Sqlite(dir.join(format!("atna-scale-{n}.db"))),
    };
    let small = match &pg {
        Some(server) => Backend::Postgres { server: server.clone(), schema: "scale_1000".into() },
        None => Backend::Sqlite(dir.join("atna-scale-1000.db")),
    };
    // An installation of just the hot set: the same working set, 1/100 of the keys (long mode).
    let hot_only = match &pg {
        Some(server) => Backend::Postgres { server: server.clone(), schema: format!("scale_{hot}") },
        None => Backend::Sqlite(dir.join(format!("atna-scale-{hot}.db"))),
    };
    println!(
        "== {} keys ({} users; user 1 has {big} keys), {}",
        n,
        layout.users() - 1,
        if pg.is_some() { "PostgreSQL" } else { "SQLite" }
    );

    // 1. Load (or reuse a database loaded by an earlier run).
    let mut installs = vec![(&small, Layout { n: 1_000, big: 1_000 })];
    if hot < n {
        installs.push((&hot_only, Layout { n: hot, big: hot.min(big) }));
    }
    installs.push((&backend, layout));
    for (b, l) in installs {
        if b.count().await == l.n as i64 {
            if l.n == n {
                println!("load: reusing the {} keys loaded by an earlier run ({})", l.n, b.url());
            }
            continue;
        }
        b.prepare(true).await;
        drop(b.open().await); // migrates
        let t = Instant::now();
        b.load(l).await;
        let took = t.elapsed();
        if l.n == n {
            println!(
                "load: {} keys in {:.1} s ({:.0} keys/s)",
                l.n,
                took.as_secs_f64(),
                l.n as f64 / took.as_secs_f64()
            );
        }
    }

    // 2. Start-up: open + migrate + build the app, until `/readyz` answers 200; and the size on disk.
    let bytes = backend.bytes().await;
    println!("database size: {:.2} GB ({:.0} bytes per key)", bytes as f64 / 1e9, bytes as f64 / n as f64);
    let t = Instant::now();
    let store = backend.open().await;
    let app = App::build(settings(), store.clone()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = stop_rx.await;
    }));
    let http =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the server became ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("start-up (open, migrate, build, first /readyz 200): {}", ms(t.elapsed()));

    // 3a. The hot working set: at n keys against a 1,000-key installation (all hot), and against an installation of
    // just the hot set (the same working set: what the database's size alone costs).
    let (s50, s99, s999) = hot_set(small.open().await, 1_000, 1_000, samples).await;
    println!("verify, 1,000 keys, all hot: p50 {}, p99 {}, p99.9 {}", us(s50), us(s99), us(s999));
    let (h50, h99, h999) = hot_set(store.clone(), n, 1_000.min(n), samples).await;
    println!(
        "verify, {n} keys, 1,000 hot: p50 {}, p99 {}, p99.9 {} (p99 {:.2}× the 1,000-key installation's)",
        us(h50),
        us(h99),
        us(h999),
        h99.as_secs_f64() / s99.as_secs_f64()
    );
    let base99 = if hot < n {
        let (b50, b99, b999) = hot_set(hot_only.open().await, hot, hot, samples).await;
        println!("verify, {hot} keys, all hot: p50 {}, p99 {}, p99.9 {}", us(b50), us(b99), us(b999));
        Some(b99)
    } else {
        None
    };
    let (h50, h99, h999) = hot_set(store.clone(), n, hot, samples).await;
    println!(
        "verify, {n} keys, {hot} hot: p50 {}, p99 {}, p99.9 {} (p99 {:.2}× the 1,000-key installation's{})",
        us(h50),
        us(h99),
        us(h999),
        h99.as_secs_f64() / s99.as_secs_f64(),
        base99.map_or(String::new(), |b| format!(", {:.2}× the {hot}-key one's", h99.as_secs_f64() / b.as_secs_f64()))
    );

    // 3c. Memory per cached key: heap bytes held by a cache filled with `fill` keys (no usage counted: `check`),
    // counted by the allocator, and the RSS growth alongside (rough: the allocator reuses memory freed earlier).
    {
        let ttl = Duration::from_secs(3600);
        let fill = hot.min(100_000);
        let texts: Vec<String> = (0..fill).map(|j| key_of(j * (n / fill).max(1))).collect();
        let (heap0, rss0) = (HEAP.load(Ordering::Relaxed), rss());
        let v = Verifier::new(store.clone(), fill * 5 / 4, ttl, ttl);
        for k in &texts {
            let _ = v.check(k).await.unwrap();
        }
        let (heap1, rss1) = (HEAP.load(Ordering::Relaxed), rss());
        let cached = v.cached() as f64;
        println!(
            "memory per cached key: {:.0} bytes of heap ({} keys cached, the cache's table included; KeyEntry is {} \
             bytes of it); RSS grew {:.0} bytes per key",
            (heap1 - heap0) as f64 / cached,
            v.cached(),
            std::mem::size_of::<atna_server::verify::KeyEntry>(),
            rss1.saturating_sub(rss0) as f64 / cached,
        );
    }

    // 3b. Uniform over all keys: (nearly) every verify misses the cache and reads the store.
    {
        let ttl = Duration::from_secs(3600);
        let v = Arc::new(Verifier::new(store.clone(), settings().cache_capacity, ttl, ttl));
        let count = env("MISS_SAMPLES", 20_000);
        let times = time_verifies(&v, positions(n, 11).take(count).map(key_of)).await;
        println!(
            "verify, uniform over {n} keys, one at a time: p50 {}, p99 {}, {} store reads in {} verifies",
            us(pct(&times, 0.5)),
            us(pct(&times, 0.99)),
            v.store_reads(),
            count
        );
        let secs: u64 = env("MISS_SECONDS", 10);
        let tasks: usize = env("MISS_TASKS", 32);
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let reads = v.store_reads();
        let mut handles = Vec::new();
        for t in 0..tasks {
            let (v, done, stop) = (v.clone(), done.clone(), stop.clone());
            handles.push(tokio::spawn(async move {
                let mut pos = positions(n, 100 + t as u64);
                while !stop.load(Ordering::Relaxed) {
                    let k = key_of(pos.next().unwrap());
                    assert!(matches!(v.verify(&k, None).await.unwrap(), Verdict::Valid(_)));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.await.unwrap();
        }
        let total = done.load(Ordering::Relaxed);
        println!(
            "verify, uniform over {n} keys, {tasks} concurrent: {:.0} verifies/s ({} store reads of {total})",
            total as f64 / t.elapsed().as_secs_f64(),
            v.store_reads() - reads
        );
    }

    // 4. The big user's pages, through the server. A `keys:manage` key of theirs for the API.
    let g = GeneratedKey::generate();
    store
        .insert_key(NewKey {
            form_nonce: None,
            created_by_key: None,
            rules: KeyRules::default(),
            id: g.id,
            owner: UserId(1),
            name: KeyName::parse(&format!("bench-api-{}", g.id)).unwrap(),
            hash: g.hash,
            scopes: Scopes::parse(&["keys:manage"]).unwrap(),
            created_at: EPOCH - 10,
            expires_at: None,
            actor: Actor::Operator.into(),
            rolled_from: None,
        })
        .await
        .unwrap();
    let bearer = format!("Bearer {}", g.secret.expose());
    let html = http.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    let csrf = value_of(&html, "name=\"csrf\"");
    let form = [("csrf", csrf.as_str()), ("email", "user1@example.com"), ("password", PASSWORD)];
    assert_eq!(http.post(format!("{base}/login")).form(&form).send().await.unwrap().status(), 303);
    // A page deep in the list: the keys after the middle key (newest first).
    let mid = big / 2;
    let cursor = format!("{}.{}", EPOCH + mid as i64, id_of(mid));
    let rare = &name_of(big.saturating_sub(10))[..11]; // the last ten keys' names
    let pages = [
        ("My API Keys, first page", format!("{base}/keys"), false),
        ("My API Keys, a later page (cursor)", format!("{base}/keys?after={cursor}"), false),
        ("My API Keys, search matching 10 keys", format!("{base}/keys?q={rare}"), false),
        ("My API Keys, search matching none", format!("{base}/keys?q=nomatch"), false),
        ("GET /v1/keys, first page", format!("{base}/v1/keys"), true),
        ("GET /v1/keys, a later page (cursor)", format!("{base}/v1/keys?cursor={cursor}"), true),
        ("GET /v1/keys, search matching 10 keys", format!("{base}/v1/keys?search={rare}"), true),
        ("GET /v1/keys, search matching none", format!("{base}/v1/keys?search=nomatch"), true),
    ];
    for (what, url, api) in pages {
        let mut times = Vec::new();
        for round in 0..53 {
            let req = if api { http.get(&url).header("authorization", &bearer) } else { http.get(&url) };
            let t = Instant::now();
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200, "{url}");
            let _ = res.bytes().await.unwrap();
            if round >= 3 {
                // The first few warm the database's page cache for this query.
                times.push(t.elapsed());
            }
        }
        times.sort();
        println!("{what} ({big} keys): median {}, p95 {} (of 50)", ms(pct(&times, 0.5)), ms(pct(&times, 0.95)));
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}

/// The `value` of the first element after `marker`.
fn value_of(html: &str, marker: &str) -> String {
    let rest = &html[html.find(marker).unwrap()..];
    let v = &rest[rest.find("value=\"").unwrap() + 7..];
    v[..v.find('"').unwrap()].to_owned()
}
