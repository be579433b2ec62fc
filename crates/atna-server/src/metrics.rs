//! Prometheus metrics, kept in plain atomics (a relaxed add per event: cheap enough for the hot path) and written
//! out in the text exposition format by `GET /metrics`. No registry, no labels built per request: every series is
//! known at compile time.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Where a key was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `GET /v1/whoami`.
    Whoami,
    /// `POST /v1/keys/verify`.
    Verify,
    /// `/v1/forward-auth`.
    ForwardAuth,
    /// Every other Bearer route (`/v1/keys`…).
    Api,
    /// The reverse-proxy listener.
    Proxy,
}

const ENTRIES: [(Entry, &str); 5] = [
    (Entry::Whoami, "whoami"),
    (Entry::Verify, "verify"),
    (Entry::ForwardAuth, "forward_auth"),
    (Entry::Api, "api"),
    (Entry::Proxy, "proxy"),
];

/// The outcomes counted: `allowed`, or the problem code of the refusal. Anything else is counted as `other`.
const OUTCOMES: [&str; 18] = [
    "allowed",
    "credentials_missing",
    "credentials_unsupported_scheme",
    "key_malformed",
    "key_not_found",
    "key_invalid_secret",
    "key_expired",
    "key_revoked",
    "key_disabled",
    "ip_not_allowed",
    "insufficient_scope",
    "rate_limited",
    "usage_exceeded",
    "invalid_requirements",
    "invalid_path",
    "body_too_large",
    "unavailable",
    "other",
];

/// Latency buckets' upper bounds, in seconds.
const BUCKETS: [f64; 12] =
    [0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0];

#[derive(Default)]
struct Histogram {
    /// Observations at or below each bound (not cumulative; summed when written), then the rest.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }
}

/// Every counter the server keeps.
#[derive(Default)]
pub struct Metrics {
    checks: [[AtomicU64; OUTCOMES.len()]; ENTRIES.len()],
    latency: [Histogram; ENTRIES.len()],
    /// Key lookups answered from memory (positive or negative entries).
    pub cache_hits: AtomicU64,
    /// Key lookups that read the store.
    pub cache_misses: AtomicU64,
    /// Keys forgotten because they changed (deleted, disabled) or because the change feed could not be trusted.
    pub cache_evictions: AtomicU64,
    /// Store reads on the verification path that failed.
    pub store_errors: AtomicU64,
    /// Usage flushes that wrote something, and the keys they wrote.
    pub usage_flushes: AtomicU64,
    pub usage_flushed_keys: AtomicU64,
    /// Usage flushes that failed (the usage is kept for the next one).
    pub usage_flush_failures: AtomicU64,
    /// Rate-limit and quota syncs with the database that failed (the counts are kept for the next one).
    pub limit_sync_failures: AtomicU64,
    /// Proxied requests the upstream did not take (no connection) or answered badly: answered 502.
    pub proxy_upstream_errors: AtomicU64,
    /// Proxied requests the upstream did not answer in time: answered 504.
    pub proxy_upstream_timeouts: AtomicU64,
}

impl Metrics {
    /// Counts one check at an entry point: its outcome (`allowed` or the refusal's problem code) and how long it took.
    pub fn check(&self, entry: Entry, outcome: &str, took: Duration) {
        let e = entry as usize;
        let o = OUTCOMES.iter().position(|x| *x == outcome).unwrap_or(OUTCOMES.len() - 1);
        self.checks[e][o].fetch_add(1, Relaxed);
        self.latency[e].observe(took);
    }

    /// Counts a check that began at `started` by how it ended: `allowed` for `Ok`, the problem code for `Err`.
    pub fn checked<T>(&self, entry: Entry, started: std::time::Instant, result: &Result<T, crate::error::ApiError>) {
        let outcome = result.as_ref().map_or_else(|e| e.code, |_| "allowed");
        self.check(entry, outcome, started.elapsed());
    }

    /// How many checks at `entry` had `outcome` (for tests and the dashboard).
    pub fn checks(&self, entry: Entry, outcome: &str) -> u64 {
        OUTCOMES.iter().position(|x| *x == outcome).map_or(0, |o| self.checks[entry as usize][o].load(Relaxed))
    }

    /// The text exposition format. `cached` is the number of keys in memory now, `feed_read_at` when the change feed
    /// was last read in full (Unix ms; 0: never), `now` the time in Unix ms.
    pub fn render(&self, cached: usize, feed_read_at: i64, now: i64) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let w = &mut out;
        head(
            w,
            "atna_key_checks_total",
            "counter",
            "Key checks by entry point and outcome (allowed, or the refusal's problem code).",
        );
        for (entry, name) in ENTRIES {
            for (o, outcome) in OUTCOMES.iter().enumerate() {
                let n = self.checks[entry as usize][o].load(Relaxed);
                let _ = writeln!(w, "atna_key_checks_total{{entry=\"{name}\",outcome=\"{outcome}\"}} {n}");
            }
        }
        head(
            w,
            "atna_key_check_duration_seconds",
            "histogram",
            "Time from reading the request to the decision, by entry point.",
        );
        for (entry, name) in ENTRIES {
            let h = &self.latency[entry as usize];
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.counts[i].load(Relaxed);
                let _ = writeln!(
                    w,
                    "atna_key_check_duration_seconds_bucket{{entry=\"{name}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += h.counts[BUCKETS.len()].load(Relaxed);
            let _ = writeln!(w, "atna_key_check_duration_seconds_bucket{{entry=\"{name}\",le=\"+Inf\"}} {cumulative}");
            let sum = h.sum_ns.load(Relaxed) as f64 / 1e9;
            let _ = writeln!(w, "atna_key_check_duration_seconds_sum{{entry=\"{name}\"}} {sum}");
            let _ = writeln!(w, "atna_key_check_duration_seconds_count{{entry=\"{name}\"}} {cumulative}");
        }
        let counters = [
            ("atna_cache_hits_total", "Key lookups answered from memory.", &self.cache_hits),
            ("atna_cache_misses_total", "Key lookups that read the database.", &self.cache_misses),
            (
                "atna_cache_evictions_total",
                "Keys forgotten because they changed or the change feed could not be trusted.",
                &self.cache_evictions,
            ),
            ("atna_store_errors_total", "Database reads on the verification path that failed.", &self.store_errors),
            ("atna_usage_flushes_total", "Usage flushes that wrote last-used data.", &self.usage_flushes),
            ("atna_usage_flushed_keys_total", "Keys whose usage those flushes wrote.", &self.usage_flushed_keys),
            (
                "atna_usage_flush_failures_total",
                "Usage flushes that failed (the usage is kept for the next one).",
                &self.usage_flush_failures,
            ),
            (
                "atna_limit_sync_failures_total",
                "Rate-limit and quota syncs with the database that failed (the counts are kept for the next one).",
                &self.limit_sync_failures,
            ),
            (
                "atna_proxy_upstream_errors_total",
                "Proxied requests answered 502: the upstream could not be reached or answered badly.",
                &self.proxy_upstream_errors,
            ),
            (
                "atna_proxy_upstream_timeouts_total",
                "Proxied requests answered 504: the upstream did not answer in time.",
                &self.proxy_upstream_timeouts,
            ),
        ];
        for (name, help, v) in counters {
            head(w, name, "counter", help);
            let _ = writeln!(w, "{name} {}", v.load(Relaxed));
        }
        head(w, "atna_cache_keys", "gauge", "Key records (and remembered unknown IDs) in memory.");
        let _ = writeln!(w, "atna_cache_keys {cached}");
        head(
            w,
            "atna_change_feed_lag_seconds",
            "gauge",
            "Seconds since this node last read the change feed successfully (how stale its idea of deletions may be).",
        );
        let lag = if feed_read_at == 0 { f64::NAN } else { (now - feed_read_at).max(0) as f64 / 1000.0 };
        let _ = writeln!(w, "atna_change_feed_lag_seconds {lag}");
        out
    }
}

fn head(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}");
    let _ = writeln!(w, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_histograms_are_written_in_the_text_format() {
        let m = Metrics::default();
        m.check(Entry::ForwardAuth, "allowed", Duration::from_micros(30));
        m.check(Entry::ForwardAuth, "allowed", Duration::from_millis(2));
        m.check(Entry::ForwardAuth, "key_revoked", Duration::from_micros(10));
        m.check(Entry::Whoami, "something new", Duration::from_secs(3));
        m.cache_hits.fetch_add(5, Relaxed);
        let text = m.render(7, 1_000, 3_500);
        assert!(text.contains("atna_key_checks_total{entry=\"forward_auth\",outcome=\"allowed\"} 2\n"));
        assert!(text.contains("atna_key_checks_total{entry=\"forward_auth\",outcome=\"key_revoked\"} 1\n"));
        assert!(text.contains("atna_key_checks_total{entry=\"whoami\",outcome=\"other\"} 1\n"));
        assert!(text.contains("atna_key_check_duration_seconds_bucket{entry=\"forward_auth\",le=\"0.000025\"} 1\n"));
        assert!(text.contains("atna_key_check_duration_seconds_bucket{entry=\"forward_auth\",le=\"0.00005\"} 2\n"));
        assert!(text.contains("atna_key_check_duration_seconds_bucket{entry=\"forward_auth\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("atna_key_check_duration_seconds_count{entry=\"whoami\"} 1\n"));
        assert!(text.contains("atna_cache_hits_total 5\n"));
        assert!(text.contains("atna_cache_keys 7\n"));
        assert!(text.contains("atna_change_feed_lag_seconds 2.5\n"));
        assert_eq!(m.checks(Entry::ForwardAuth, "allowed"), 2);
        // Every sample line belongs to a declared family.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
        }
    }
}
