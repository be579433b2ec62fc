//! The verification hot path, shared by `/v1/whoami`, `/v1/keys/verify` and every Bearer check:
//! parse + checksum (malformed keys never reach the store) → bounded in-memory cache by Credential ID (with
//! negative entries; concurrent misses for one ID load it once) → constant-time hash compare → status and expiry.
//! Usage is counted in memory. Nothing here writes to the store.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use atna_domain::lifecycle::decide;
use atna_domain::{CredentialId, Email, KeyFormat, MalformedKey, Millis, SecretHash, VerifyCode};
use atna_store::{AuthRecord, KeyRecord, Store, StoreError};
use quick_cache::sync::Cache;

use crate::api::dto::{Owner, WhoAmI};
use crate::clock;
use crate::metrics::Metrics;
use crate::usage::UsageBuffer;

/// A key record as the verifier keeps it in memory. What only some entry points need (the whoami body, the identity
/// headers) is built on first use and kept, so a key only ever checked through `/v1/keys/verify` costs no more than
/// its record: at millions of cached keys, that is most of the memory.
#[derive(Debug)]
pub struct KeyEntry {
    pub record: KeyRecord,
    pub hash: SecretHash,
    pub owner_email: Email,
    pub owner_disabled: bool,
    /// The `/v1/whoami` body for this key, serialised on first use.
    whoami_json: OnceLock<bytes::Bytes>,
    /// The identity headers forward-auth and the proxy give a gateway for this key, built on first use.
    /// Boxed: five header values inline would add 200 bytes to every cached key, used or not.
    identity: OnceLock<Box<crate::gate::Identity>>,
    /// `RateLimit-Policy` for a key with a rate limit, built once when the record is loaded.
    pub rate_policy: Option<axum::http::HeaderValue>,
}

impl KeyEntry {
    fn new(a: AuthRecord) -> Self {
        let rate_policy = a.key.rules.rate_limit.map(crate::limits::policy_value);
        Self {
            rate_policy,
            record: a.key,
            hash: a.hash,
            owner_email: a.owner_email,
            owner_disabled: a.owner_disabled,
            whoami_json: OnceLock::new(),
            identity: OnceLock::new(),
        }
    }

    /// The `/v1/whoami` body for this key (serialised on the first call, shared after that).
    pub fn whoami_json(&self) -> &bytes::Bytes {
        self.whoami_json.get_or_init(|| {
            let owner = Owner { id: self.record.owner, email: self.owner_email.to_string() };
            serde_json::to_vec(&WhoAmI::new(&self.record, owner)).unwrap_or_default().into()
        })
    }

    /// The identity headers for a gateway (built on the first call, shared after that).
    pub fn identity(&self) -> &crate::gate::Identity {
        self.identity.get_or_init(|| Box::new(crate::gate::Identity::new(&self.record, &self.owner_email)))
    }

    /// An entry for a made-up key with these rules (unit tests of the rules).
    #[doc(hidden)]
    pub fn for_tests(rules: atna_store::KeyRules) -> Self {
        let g = atna_domain::GeneratedKey::generate();
        let record = KeyRecord {
            id: g.id,
            owner: atna_domain::UserId(1),
            name: atna_domain::KeyName::parse("test").expect("a valid name"),
            scopes: atna_domain::Scopes::default(),
            status: atna_domain::KeyStatus::Active,
            created_at: 0,
            expires_at: None,
            last_used_at: None,
            last_used_ip: None,
            use_count: 0,
            created_by_key: None,
            rules,
            rolled_from: None,
            rolled_to: None,
        };
        let owner_email = Email::parse("test@example.com").expect("a valid address");
        Self::new(AuthRecord { key: record, hash: g.hash, owner_email, owner_disabled: false })
    }
}

#[derive(Clone)]
struct Slot {
    /// When it was read from the store (Unix ms: the clock the verifier reads anyway for expiry).
    loaded: Millis,
    entry: Option<Arc<KeyEntry>>,
}

/// The result of checking a presented key.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The key is good.
    Valid(Arc<KeyEntry>),
    /// The key is not good; `entry` is set when the secret matched (so the caller may say which key it was).
    Invalid { code: VerifyCode, malformed: Option<MalformedKey>, entry: Option<Arc<KeyEntry>> },
}

impl Verdict {
    /// The verification code.
    pub fn code(&self) -> VerifyCode {
        match self {
            Verdict::Valid(_) => VerifyCode::Valid,
            Verdict::Invalid { code, .. } => *code,
        }
    }
}

/// Verifies keys against a cache in front of the store.
pub struct Verifier {
    store: Arc<dyn Store>,
    cache: Cache<CredentialId, Slot>,
    /// Bumped on every eviction, so a load that raced with a revocation is not cached.
    epoch: AtomicU64,
    /// Store reads made on cache misses.
    loads: AtomicU64,
    ttl: Millis,
    negative_ttl: Millis,
    usage: UsageBuffer,
    limits: crate::limits::Limiter,
    metrics: Metrics,
    /// When the change follower last read the feed successfully (Unix ms, when that read began; 0: not yet).
    feed_read_at: AtomicI64,
    /// How old that read may be before cached records stop being trusted; `None`: no follower, trust the TTL.
    max_feed_lag: Option<Millis>,
    /// The key prefixes this installation issued: a key with any other prefix is malformed, decided without a
    /// lookup. Replaced (rarely: `atna key-prefix set`) when the change feed says the installation changed.
    format: RwLock<Arc<KeyFormat>>,
}

impl Verifier {
    /// A verifier over a store.
    pub fn new(store: Arc<dyn Store>, capacity: usize, ttl: Duration, negative_ttl: Duration) -> Self {
        Self {
            store,
            cache: Cache::new(capacity.max(16)),
            epoch: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            ttl: ttl.as_millis().try_into().unwrap_or(Millis::MAX),
            negative_ttl: negative_ttl.as_millis().try_into().unwrap_or(Millis::MAX),
            usage: UsageBuffer::default(),
            limits: crate::limits::Limiter::default(),
            metrics: Metrics::default(),
            feed_read_at: AtomicI64::new(0),
            max_feed_lag: None,
            format: RwLock::new(Arc::new(KeyFormat::default())),
        }
    }

    /// The key format (accepted prefixes, the current one first).
    pub fn format(&self) -> Arc<KeyFormat> {
        self.format.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the key format (the recorded prefixes were read again).
    pub fn set_format(&self, format: KeyFormat) {
        let mut f = self.format.write().unwrap_or_else(|e| e.into_inner());
        if **f != format {
            tracing::info!(prefixes = ?format.prefixes(), current = %format.current(), "key prefixes");
            *f = Arc::new(format);
        }
    }

    /// Trusts cached records only while the change follower has read the feed within `max_lag`, and not at all
    /// before its first read. Past that bound a deletion elsewhere may be unknown here, so every lookup reads the
    /// store instead (and fails with it, as `503`, when the store is the trouble): the cache fails closed, whatever
    /// broke (a lost connection, an exhausted pool, a lock), and never serves a deleted key for a whole TTL.
    pub fn follows_feed(mut self, max_lag: Duration) -> Self {
        self.max_feed_lag = Some(max_lag.as_millis().try_into().unwrap_or(Millis::MAX));
        self
    }

    /// Records that the change feed was read in full as of `started` (the clock read before the read began) and
    /// everything it listed was evicted.
    pub fn feed_read(&self, started: Millis) {
        self.feed_read_at.fetch_max(started, Ordering::AcqRel);
    }

    /// Whether cached records may be used at `now` (see [`follows_feed`](Self::follows_feed)).
    pub fn cache_trusted(&self, now: Millis) -> bool {
        match self.max_feed_lag {
            None => true,
            Some(lag) => {
                let at = self.feed_read_at.load(Ordering::Acquire);
                at != 0 && now.saturating_sub(at) <= lag
            }
        }
    }

    /// When the change feed was last read in full (Unix ms; 0: not yet, or no follower).
    pub fn feed_read_at(&self) -> Millis {
        self.feed_read_at.load(Ordering::Acquire)
    }

    /// Checks a presented key (the text after `Bearer `). Counts a use when it is valid. Applies no per-key rules
    /// (IP allowlist): entry points use [`check`](Self::check), the gate (`gate::admit_ip`), then
    /// [`count_use`](Self::count_use), so a refused request counts nothing.
    pub async fn verify(&self, key: &str, ip: Option<IpAddr>) -> Result<Verdict, StoreError> {
        let (verdict, now) = self.judge(key).await?;
        if let Verdict::Valid(entry) = &verdict {
            self.usage.record(entry.record.id, now, ip);
        }
        Ok(verdict)
    }

    /// Checks a presented key like [`verify`](Self::verify) but counts no use: for entry points whose rules may still
    /// refuse the request (a refused request consumes nothing). Returns the time the key was judged at, for
    /// [`count_use`](Self::count_use) once the request is allowed: the hot path reads the clock once per request.
    pub async fn check(&self, key: &str) -> Result<(Verdict, Millis), StoreError> {
        self.judge(key).await
    }

    /// Counts one use of a key whose request was allowed, at `now` (from [`check`](Self::check)).
    pub fn count_use(&self, entry: &KeyEntry, now: Millis, ip: Option<IpAddr>) {
        self.usage.record(entry.record.id, now, ip);
    }

    /// Counts a request that a rule refused (IP allowlist, scope, rate limit, …) although the key itself is good, at
    /// `now` (from [`check`](Self::check)). Refusals the verifier decides itself (wrong secret, expired, deleted,
    /// disabled) are counted by [`check`](Self::check).
    pub fn count_refusal(&self, entry: &KeyEntry, code: VerifyCode, now: Millis) {
        self.usage.refuse(entry.record.id, code, now);
    }

    /// The verdict on a presented key, and the time it was judged at.
    async fn judge(&self, key: &str) -> Result<(Verdict, Millis), StoreError> {
        let parsed = match self.format.read().unwrap_or_else(|e| e.into_inner()).parse(key) {
            Ok(p) => p,
            Err(m) => {
                return Ok((Verdict::Invalid { code: VerifyCode::Malformed, malformed: Some(m), entry: None }, 0))
            }
        };
        // One clock read serves the cache TTL, the expiry check and the usage record.
        let now = clock::now();
        let Some(entry) = self.lookup(parsed.id, now).await? else {
            return Ok((Verdict::Invalid { code: VerifyCode::NotFound, malformed: None, entry: None }, now));
        };
        if !entry.hash.matches(&parsed.hash()) {
            // An attempt with an existing key's Credential ID: counted as a refusal (never as use).
            self.usage.refuse(parsed.id, VerifyCode::InvalidSecret, now);
            return Ok((Verdict::Invalid { code: VerifyCode::InvalidSecret, malformed: None, entry: None }, now));
        }
        let r = &entry.record;
        let verdict = match decide(r.status, entry.owner_disabled, r.expires_at, now) {
            VerifyCode::Valid => Verdict::Valid(entry),
            code => {
                self.usage.refuse(parsed.id, code, now);
                Verdict::Invalid { code, malformed: None, entry: Some(entry) }
            }
        };
        Ok((verdict, now))
    }

    async fn lookup(&self, id: CredentialId, now: Millis) -> Result<Option<Arc<KeyEntry>>, StoreError> {
        if self.cache_trusted(now) {
            if let Some(slot) = self.cache.get(&id) {
                let ttl = if slot.entry.is_some() { self.ttl } else { self.negative_ttl };
                if now.saturating_sub(slot.loaded) < ttl {
                    self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(slot.entry);
                }
                self.cache.remove(&id);
            }
        }
        // Boxed: the store's futures are large, and every request would otherwise carry (and move) their space
        // through each future that awaits this one, hit or not.
        Box::pin(self.load(id, now)).await
    }

    /// A cache miss (or a cache that may not be trusted right now): the store's record, cached when it may be.
    async fn load(&self, id: CredentialId, now: Millis) -> Result<Option<Arc<KeyEntry>>, StoreError> {
        if !self.cache_trusted(now) {
            // Read through, and keep nothing: the follower cannot tell us what to forget right now.
            return Ok(self.read(&id).await?.map(|a| Arc::new(KeyEntry::new(a))));
        }
        match self.cache.get_value_or_guard_async(&id).await {
            Ok(slot) => {
                self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                Ok(slot.entry)
            }
            Err(guard) => {
                let epoch = self.epoch.load(Ordering::Acquire);
                let entry = self.read(&id).await?.map(|a| Arc::new(KeyEntry::new(a)));
                // If something was evicted while we read, our row may predate it: answer, but do not cache.
                if self.epoch.load(Ordering::Acquire) == epoch {
                    let _ = guard.insert(Slot { loaded: clock::now(), entry: entry.clone() });
                }
                Ok(entry)
            }
        }
    }

    /// Reads one key's record from the store (a cache miss), counting it.
    async fn read(&self, id: &CredentialId) -> Result<Option<AuthRecord>, StoreError> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
        let read = self.store.auth_record(id).await;
        if read.is_err() {
            self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
        }
        read
    }

    /// Forgets one key (it was revoked or changed).
    pub fn evict(&self, id: &CredentialId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if self.cache.remove(id).is_some() {
            self.metrics.cache_evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets every key (a user was disabled, or changes may have been missed).
    pub fn evict_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.metrics.cache_evictions.fetch_add(self.cache.len() as u64, Ordering::Relaxed);
        self.cache.clear();
    }

    /// The server's metrics (the verifier keeps them: it sees every check).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How many times a cache miss read the store.
    pub fn store_reads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Keys held in memory now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The per-key rate limit and quota states of this node.
    pub fn limits(&self) -> &crate::limits::Limiter {
        &self.limits
    }

    /// Shares this node's limit counts with the others through the store (see [`Limiter::sync`](crate::limits::Limiter::sync)).
    pub async fn sync_limits(&self, node: &str, idle: Duration) -> Result<usize, StoreError> {
        let idle = idle.as_millis().try_into().unwrap_or(Millis::MAX);
        let r = self.limits.sync(self.store.as_ref(), node, clock::now(), idle).await;
        if r.is_err() {
            self.metrics.limit_sync_failures.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// The in-memory usage counters.
    pub fn usage(&self) -> &UsageBuffer {
        &self.usage
    }

    /// Shows usage not yet written to the store in a record read from it.
    pub fn overlay_usage(&self, rec: &mut KeyRecord) {
        if let Some(q) = rec.rules.quota.as_mut() {
            let now = clock::now();
            if let (_, Some(left)) = self.limits.peek(&rec.id, now) {
                // This node's count is newer than the stored one (it holds uses not written yet).
                q.remaining = left;
                q.refilled_at = q.refilled_at.max(q.refill.map_or(0, |r| r.interval.start_of(now)));
            }
        }
        if let Some(p) = self.usage.pending(&rec.id) {
            rec.use_count += p.count;
            if rec.last_used_at.is_none_or(|t| p.last_used_at >= t) {
                rec.last_used_at = Some(p.last_used_at);
                rec.last_used_ip = p.last_used_ip.map(|ip| ip.to_string());
            }
        }
    }

    /// Writes pending usage (use counts, then the hourly and daily buckets) to the store; what fails is kept for the
    /// next try. Returns how many keys' use counts were written.
    pub async fn flush_usage(&self) -> Result<usize, StoreError> {
        let batch = self.usage.take();
        let n = batch.uses.len();
        if n == 0 && batch.counts.is_empty() {
            return Ok(0);
        }
        let uses = if n == 0 { Ok(()) } else { self.store.record_usage(&batch.uses).await };
        if uses.is_err() {
            self.usage.restore_uses(batch.uses);
        }
        let counts = self.store.record_usage_counts(&batch.counts).await;
        if counts.is_err() {
            self.usage.restore_counts(batch.counts);
        }
        match uses.and(counts) {
            Ok(()) => {
                self.metrics.usage_flushes.fetch_add(1, Ordering::Relaxed);
                self.metrics.usage_flushed_keys.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                self.metrics.usage_flush_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}
