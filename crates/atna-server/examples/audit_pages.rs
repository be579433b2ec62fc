//! How long a page of the audit trail takes with a million events: loads N events (default 1 000 000) into a fresh
//! database through `import_all` (one transaction), then times pages of 50 newest-first events: the first page, a page
//! deep in the trail (by cursor), and pages filtered by user, key, kind, time range and user + kind, as the admin
//! Activity view asks for them. Prints the median and the worst of 20 runs of each.
//!
//! Run: `bench/audit.sh` (SQLite), `BACKEND=postgres bench/audit.sh`; or directly
//! `cargo run --release -p atna-server --example audit_pages -- [DATABASE_URL] [EVENTS]`.

use std::time::{Duration, Instant};

use atna_domain::{CredentialId, GeneratedKey, UserId};
use atna_server::store_url;
use atna_store::{audit_kind, AuditQuery, ExportedAuditEvent, ExportedUser, Snapshot, SNAPSHOT_FORMAT};

const USERS: i64 = 100;
const KEYS: usize = 2_000;
const PAGE: i64 = 50;
const RUNS: usize = 20;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = tempfile::tempdir().unwrap();
    let url = args
        .get(1)
        .filter(|u| !u.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("atna.db").display()));
    let n: usize = args.get(2).map_or(1_000_000, |s| s.parse().expect("EVENTS is a number"));
    let store = store_url::open(&url, &Default::default()).await.expect("open the database");

    let keys: Vec<CredentialId> = (0..KEYS).map(|_| GeneratedKey::generate().id).collect();
    let kinds = audit_kind::ALL;
    let t0: i64 = 1_780_000_000_000;
    let year = 365 * 24 * 60 * 60 * 1000_i64;
    let users = (1..=USERS)
        .map(|id| ExportedUser {
            id,
            email: format!("user{id}@example.com"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            is_admin: id == 1,
            disabled: false,
            created_at: t0,
        })
        .collect();
    // A cheap deterministic spread over users, keys, kinds and a year.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let audit_events = (0..n)
        .map(|i| {
            let r = next();
            let kind = kinds[(r % kinds.len() as u64) as usize];
            let key = kind.starts_with("key.").then(|| keys[(r >> 8) as usize % KEYS].to_string());
            ExportedAuditEvent {
                at: t0 + (i as i64) * year / n as i64,
                owner_id: 1 + ((r >> 20) % USERS as u64) as i64,
                actor_id: Some(1),
                action: kind.into(),
                key_id: key.clone(),
                key_name: key.map(|_| "billing-service-26_11_2026-14_05".into()),
                actor_key_id: None,
                ip: Some("203.0.113.7".into()),
                user_agent: Some("Mozilla/5.0 (bench)".into()),
                detail: None,
            }
        })
        .collect();
    let snap = Snapshot {
        format: SNAPSHOT_FORMAT.into(),
        exported_at: t0,
        users,
        keys: vec![],
        audit_events,
        key_prefixes: vec![],
    };
    let started = Instant::now();
    store.import_all(&snap).await.expect("load the events");
    println!("loaded {n} audit events into {} in {:.1} s", store.backend(), started.elapsed().as_secs_f64());

    let page = |q: AuditQuery| AuditQuery { limit: PAGE, ..q };
    let all = AuditQuery::default();
    let deep = {
        // The cursor half-way down the trail.
        let mid = t0 + year / 2;
        AuditQuery { after: Some((mid, i64::MAX)), ..AuditQuery::default() }
    };
    let user = AuditQuery { owner: Some(UserId(42)), ..AuditQuery::default() };
    let key = AuditQuery { key: Some(keys[7]), ..AuditQuery::default() };
    let kind = AuditQuery { action: Some(audit_kind::KEY_ROLLED.into()), ..AuditQuery::default() };
    let range =
        AuditQuery { since: Some(t0 + year / 4), until: Some(t0 + year / 4 + 7 * 86_400_000), ..AuditQuery::default() };
    let user_kind =
        AuditQuery { owner: Some(UserId(42)), action: Some(audit_kind::SIGNED_IN.into()), ..AuditQuery::default() };
    let cases = [
        ("first page", all),
        ("a page half-way down (cursor)", deep),
        ("one user", user),
        ("one key", key),
        ("one kind", kind),
        ("a week, a quarter back", range),
        ("one user and one kind", user_kind),
    ];
    let mut worst_overall = Duration::ZERO;
    for (what, q) in cases {
        let q = page(q);
        let mut times = Vec::with_capacity(RUNS);
        let mut rows = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            rows = store.audit_page(&q).await.expect("a page").len();
            times.push(t.elapsed());
        }
        times.sort();
        let (median, worst) = (times[RUNS / 2], times[RUNS - 1]);
        worst_overall = worst_overall.max(worst);
        println!(
            "{what:<32} {rows:>3} events   median {:>7.2} ms   worst {:>7.2} ms",
            median.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3
        );
    }
    println!("worst page: {:.2} ms (goal: under 100 ms)", worst_overall.as_secs_f64() * 1e3);
    if worst_overall > Duration::from_millis(100) {
        std::process::exit(1);
    }
}
