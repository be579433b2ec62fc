//! Per-key rate limits and quotas at run time: one small state per key in a sharded map (one lock per request, held
//! for a few comparisons), decided by the domain's GCRA and quota rules, and shared with the other nodes in the
//! background ([`Limiter::sync`], every `limits_sync_interval`): this node's uses go to the database in one batch,
//! other nodes' uses come back and are charged here. Nothing here writes to the database per request.
//!
//! Across nodes a key can get past its limits by what the nodes admit before they hear of each other: each node
//! learns of another's uses within about two sync intervals (the other's write, then its own read). See
//! `docs/api.md` ("Rate limits and quotas across nodes") for the bound and the measured figure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use atna_domain::{CredentialId, Millis, RateDecision, RateLimit};
use atna_store::{LimitSync, LimitUses, Store, StoreError};
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::ApiError;
use crate::sharded::{IdMap, Sharded};
use crate::verify::KeyEntry;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-08 and later).
pub const POLICY_HEADER: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const STATE_HEADER: HeaderName = HeaderName::from_static("ratelimit");

/// How far back (in the writers' clocks) a sync reads other nodes' rows: generous, so that a little clock skew
/// between nodes loses nothing; rows already applied are remembered by number and skipped.
const REMOTE_WINDOW: Millis = 30_000;
/// Rows of the shared table older than this are deleted.
const FORGET_AFTER: Millis = 5 * 60_000;
/// A key used within this long has its quota read back at every sync, even without new uses here, so that this node
/// sees the other nodes' uses.
const REFRESH_WINDOW: Millis = 60_000;

/// What the limits said to an admitted request (for the `RateLimit` header and verify's body).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Admitted {
    /// The key's rate limit, how many more requests would pass now, and in how many seconds the allowance is whole.
    pub rate: Option<(RateLimit, u32, u64)>,
    /// Uses left of the key's quota after this one.
    pub quota_left: Option<i64>,
}

impl Admitted {
    /// Adds `RateLimit-Policy` and `RateLimit` when the key has a rate limit.
    pub fn write_headers(&self, entry: &KeyEntry, headers: &mut HeaderMap) {
        if let Some([policy, state]) = self.rate_values(entry) {
            headers.insert(POLICY_HEADER, policy);
            headers.insert(STATE_HEADER, state);
        }
    }

    /// The values of `RateLimit-Policy` and `RateLimit` when the key has a rate limit.
    pub fn rate_values(&self, entry: &KeyEntry) -> Option<[HeaderValue; 2]> {
        match (self.rate, &entry.rate_policy) {
            (Some((_, remaining, reset)), Some(policy)) => Some([policy.clone(), state_value(remaining, reset)]),
            _ => None,
        }
    }
}

/// Where a Bearer route's [`Caller`](crate::extract::Caller) leaves its key's `RateLimit-Policy` and `RateLimit`
/// values for [`rate_headers`] to put on the response: every allowed answer of a rate-limited key carries them, on the
/// management routes as on whoami and forward-auth.
#[derive(Clone, Default)]
pub struct RateSlot(Arc<std::sync::OnceLock<(HeaderValue, HeaderValue)>>);

impl RateSlot {
    /// Records what `admitted` says of `entry`'s rate limit (nothing for a key without one).
    pub fn fill(&self, admitted: &Admitted, entry: &KeyEntry) {
        if let (Some((_, remaining, reset)), Some(policy)) = (admitted.rate, &entry.rate_policy) {
            let _ = self.0.set((policy.clone(), state_value(remaining, reset)));
        }
    }
}

/// Middleware of the Bearer management routes: gives the route a [`RateSlot`] and copies what it recorded onto the
/// response.
pub async fn rate_headers(mut req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let slot = RateSlot::default();
    req.extensions_mut().insert(slot.clone());
    let mut res = next.run(req).await;
    if let Some((policy, state)) = slot.0.get() {
        let h = res.headers_mut();
        h.insert(POLICY_HEADER, policy.clone());
        h.insert(STATE_HEADER, state.clone());
    }
    res
}

/// `"default";r=42;t=18`.
fn state_value(remaining: u32, reset: u64) -> HeaderValue {
    let mut buf = itoa::Buffer::new();
    let mut s = String::with_capacity(32);
    s.push_str("\"default\";r=");
    s.push_str(buf.format(remaining));
    s.push_str(";t=");
    s.push_str(buf.format(reset));
    HeaderValue::try_from(s).unwrap_or(HeaderValue::from_static("\"default\";r=0;t=0"))
}

/// `"default";q=100;w=60`, built once per cached key.
pub fn policy_value(rl: RateLimit) -> HeaderValue {
    HeaderValue::try_from(format!("\"default\";q={};w={}", rl.limit(), rl.period_seconds()))
        .unwrap_or(HeaderValue::from_static("\"default\""))
}

/// One key's limit state on this node.
#[derive(Debug, Default)]
struct State {
    /// GCRA's theoretical arrival time (0: not used yet).
    tat: i64,
    /// The key's rate limit, once a request of it came here (remote uses of a key not seen yet wait in `debt`).
    rate: Option<RateLimit>,
    /// Other nodes' uses learned before this node knew the key's rate limit.
    debt: i64,
    /// Uses admitted here that the other nodes have not been told of.
    unsynced: i64,
    quota: Option<QuotaState>,
    /// Last use (here or, for remote rows, there).
    last_used: Millis,
}

#[derive(Debug, Clone, Copy)]
struct QuotaState {
    /// Uses left as this node believes (the store's count at the last sync, less the uses since).
    left: i64,
    /// Uses admitted here not yet taken off the stored quota.
    pending: i64,
    /// When the quota is filled up again (`Millis::MAX`: never), and with how much.
    next_refill: Millis,
    refill: Option<atna_domain::Refill>,
}

/// The per-key limit states of this node.
#[derive(Default)]
pub struct Limiter {
    keys: Sharded<State>,
    /// Rows of other nodes already charged: row number → the writer's time.
    seen: Mutex<HashMap<i64, Millis>>,
}

impl Limiter {
    fn shard(&self, id: &CredentialId) -> std::sync::MutexGuard<'_, IdMap<State>> {
        self.keys.shard(id)
    }

    /// Decides a request of a good key whose other rules passed, at `now`: is quota left? then the rate limit
    /// consumes, then the quota does. A refused request changes nothing. A key without limits takes no lock.
    pub fn admit(&self, entry: &KeyEntry, now: Millis) -> Result<Admitted, ApiError> {
        let rules = &entry.record.rules;
        if rules.rate_limit.is_none() && rules.quota.is_none() {
            return Ok(Admitted::default());
        }
        // A rolled key in its overlap uses its successor's state: one quota and one rate limit for both keys.
        let id = entry.record.rolled_to.unwrap_or(entry.record.id);
        let mut shard = self.shard(&id);
        let st = shard.entry(id).or_default();
        if let (Some(q), None) = (rules.quota, &st.quota) {
            st.quota = Some(QuotaState {
                left: q.remaining_at(now),
                pending: 0,
                next_refill: q.next_refill(now).unwrap_or(Millis::MAX),
                refill: q.refill,
            });
        }
        if let Some(q) = &mut st.quota {
            if now >= q.next_refill {
                if let Some(r) = q.refill {
                    q.left = r.amount;
                    q.next_refill = r.interval.next_after(now);
                }
            }
            if q.left <= 0 {
                let retry = (q.next_refill != Millis::MAX).then(|| ((q.next_refill - now + 999) / 1000).max(1) as u64);
                return Err(ApiError::usage_exceeded(retry));
            }
        }
        let mut admitted = Admitted::default();
        if let Some(rl) = rules.rate_limit {
            if st.rate != Some(rl) {
                st.rate = Some(rl);
                st.tat = rl.charge(st.tat, std::mem::take(&mut st.debt), now);
            }
            match rl.decide(st.tat, now) {
                RateDecision::Refused { retry_after_seconds } => {
                    let mut e = ApiError::rate_limited(retry_after_seconds);
                    if let Some(policy) = &entry.rate_policy {
                        e.rate_headers = Some(Box::new((policy.clone(), state_value(0, retry_after_seconds))));
                    }
                    return Err(e);
                }
                RateDecision::Allowed { tat, remaining, reset_seconds } => {
                    st.tat = tat;
                    st.unsynced += 1;
                    admitted.rate = Some((rl, remaining, reset_seconds));
                }
            }
        }
        if let Some(q) = &mut st.quota {
            q.left -= 1;
            q.pending += 1;
            admitted.quota_left = Some(q.left);
        }
        st.last_used = now;
        Ok(admitted)
    }

    /// A roll from `old` to `new`: the successor takes over what the old key used on this node (the rate allowance
    /// spent, the quota left), so from now on the two share one allowance (the old key, in its overlap, is admitted
    /// against its successor's state). Returns the quota left, to store as the successor's. Other nodes start the
    /// pair from the stored quota and a whole rate allowance: across nodes a roll can give one period's allowance
    /// more, never a doubled limit for the overlap.
    pub fn carry_over(&self, old: &CredentialId, new: CredentialId, now: Millis) -> Option<i64> {
        let (tat, rate, quota) = {
            let shard = self.shard(old);
            let st = shard.get(old)?;
            (st.tat, st.rate, st.quota)
        };
        let mut shard = self.shard(&new);
        let st = shard.entry(new).or_default();
        st.tat = tat;
        st.rate = rate;
        st.quota = quota.map(|q| QuotaState { pending: 0, ..q });
        st.last_used = now;
        quota.map(|q| q.left.max(0))
    }

    /// What a key has left on this node now, without using it (for showing).
    pub fn peek(&self, id: &CredentialId, now: Millis) -> (Option<u32>, Option<i64>) {
        let shard = self.shard(id);
        let Some(st) = shard.get(id) else { return (None, None) };
        let rate = st.rate.map(|rl| rl.remaining(st.tat, now));
        let quota = st.quota.map(|q| if now >= q.next_refill { q.refill.map_or(q.left, |r| r.amount) } else { q.left });
        (rate, quota.map(|q| q.max(0)))
    }

    /// Takes what the other nodes must learn: uses admitted here since the last sync, and every recently used quota
    /// (to read it back).
    fn take(&self, now: Millis) -> Vec<LimitUses> {
        let mut out = Vec::new();
        for mut map in self.keys.shards() {
            for (id, st) in map.iter_mut() {
                let recent = now.saturating_sub(st.last_used) < REFRESH_WINDOW;
                let quota_uses =
                    st.quota.as_mut().filter(|q| q.pending > 0 || recent).map(|q| std::mem::take(&mut q.pending));
                if st.unsynced > 0 || quota_uses.is_some() {
                    out.push(LimitUses { id: *id, rate_uses: std::mem::take(&mut st.unsynced), quota_uses });
                }
            }
        }
        out
    }

    /// Puts back a batch that could not be written.
    fn restore(&self, batch: &[LimitUses]) {
        for u in batch {
            let mut shard = self.shard(&u.id);
            if let Some(st) = shard.get_mut(&u.id) {
                st.unsynced += u.rate_uses;
                if let (Some(q), Some(n)) = (&mut st.quota, u.quota_uses) {
                    q.pending += n;
                }
            }
        }
    }

    /// Applies what a sync read back: the stored quotas (less the uses admitted here since the batch was taken) and
    /// other nodes' uses not seen before.
    fn apply(&self, sync: &LimitSync, now: Millis) {
        for q in &sync.quotas {
            let mut shard = self.shard(&q.id);
            if let Some(QuotaState { left, pending, next_refill, refill }) =
                shard.get_mut(&q.id).and_then(|s| s.quota.as_mut())
            {
                *left = q.remaining - *pending;
                if let Some(r) = refill {
                    *next_refill = r.interval.next_after(q.refilled_at.max(now));
                }
            }
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for r in &sync.remote {
            if seen.insert(r.seq, r.at).is_some() {
                continue;
            }
            let mut shard = self.shard(&r.id);
            let st = shard.entry(r.id).or_default();
            match st.rate {
                Some(rl) => st.tat = rl.charge(st.tat, r.uses, now),
                None => st.debt += r.uses,
            }
            st.last_used = st.last_used.max(now);
        }
        seen.retain(|_, at| *at > now - REMOTE_WINDOW - 1000);
    }

    /// Forgets keys idle for `idle` with nothing left to tell the others and a rate allowance that is whole again.
    fn prune(&self, now: Millis, idle: Millis) {
        for mut map in self.keys.shards() {
            map.retain(|_, st| {
                let busy = st.unsynced > 0 || st.quota.is_some_and(|q| q.pending > 0);
                let recovering = st.rate.is_some_and(|rl| rl.remaining(st.tat, now) < rl.limit());
                busy || recovering || now.saturating_sub(st.last_used) < idle
            });
        }
    }

    /// Keys with a state here.
    pub fn len(&self) -> usize {
        self.keys.shards().map(|s| s.len()).sum()
    }

    /// Whether no key has a state here.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One sync with the store under this node's name, at `now`; keys idle for `idle` are forgotten afterwards.
    /// On failure nothing is lost: the uses are kept for the next sync.
    pub async fn sync(&self, store: &dyn Store, node: &str, now: Millis, idle: Millis) -> Result<usize, StoreError> {
        let batch = self.take(now);
        match store.sync_limits(node, &batch, now - REMOTE_WINDOW, now - FORGET_AFTER, now).await {
            Ok(sync) => {
                self.apply(&sync, now);
                self.prune(now, idle);
                Ok(batch.len())
            }
            Err(e) => {
                self.restore(&batch);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atna_domain::{Quota, Refill, RefillInterval};
    use atna_store::{KeyRules, QuotaLeft, RemoteUses};

    const T0: Millis = 1_780_000_000_000;

    fn entry(rules: KeyRules) -> KeyEntry {
        KeyEntry::for_tests(rules)
    }

    fn rate(limit: u32, period: u32) -> Option<RateLimit> {
        Some(RateLimit::new(limit, period).unwrap())
    }

    #[test]
    fn a_burst_of_n_plus_k_lets_exactly_n_through_and_time_brings_them_back() {
        let l = Limiter::default();
        let e = entry(KeyRules { rate_limit: rate(10, 1), ..Default::default() });
        let results: Vec<_> = (0..15).map(|_| l.admit(&e, T0)).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
        let refused = results.last().unwrap().as_ref().unwrap_err();
        assert_eq!((refused.status.as_u16(), refused.code, refused.retry_after), (429, "rate_limited", Some(1)));
        assert_eq!(results[0].as_ref().unwrap().rate.unwrap().1, 9);
        assert_eq!(results[9].as_ref().unwrap().rate.unwrap().1, 0);
        assert!(l.admit(&e, T0 + 99).is_err());
        assert!(l.admit(&e, T0 + 100).is_ok(), "one back every 100 ms");
        assert!(l.admit(&e, T0 + 100).is_err());
    }

    #[test]
    fn a_refused_request_consumes_nothing() {
        let l = Limiter::default();
        let q = Quota::new(3, None, T0).unwrap();
        let e = entry(KeyRules { rate_limit: rate(2, 60), quota: Some(q), ..Default::default() });
        assert_eq!(l.admit(&e, T0).unwrap().quota_left, Some(2));
        assert_eq!(l.admit(&e, T0).unwrap().quota_left, Some(1));
        // Rate-limited: the quota keeps its last use.
        for _ in 0..5 {
            assert_eq!(l.admit(&e, T0).unwrap_err().code, "rate_limited");
        }
        assert_eq!(l.peek(&e.record.id, T0), (Some(0), Some(1)));
        let later = T0 + 30_000;
        assert_eq!(l.admit(&e, later).unwrap().quota_left, Some(0));
        // Quota used up: refused before the rate limit is asked, so the rate allowance is untouched.
        let after = T0 + 120_000;
        for _ in 0..5 {
            let err = l.admit(&e, after).unwrap_err();
            assert_eq!((err.code, err.retry_after), ("usage_exceeded", None));
        }
        assert_eq!(l.peek(&e.record.id, after), (Some(2), Some(0)));
    }

    #[test]
    fn quotas_refill_and_syncs_bring_other_nodes_uses() {
        let l = Limiter::default();
        let refill = Refill::new(5, RefillInterval::Daily).unwrap();
        let e = entry(KeyRules { quota: Some(Quota::new(2, Some(refill), T0).unwrap()), ..Default::default() });
        l.admit(&e, T0).unwrap();
        l.admit(&e, T0).unwrap();
        let err = l.admit(&e, T0).unwrap_err();
        let next = RefillInterval::Daily.next_after(T0);
        assert_eq!(err.retry_after, Some(((next - T0 + 999) / 1000) as u64));
        assert_eq!(l.admit(&e, next).unwrap().quota_left, Some(4), "refilled at the start of the day");
        // A sync: this node's batch has 3 uses; the store says 1 is left (another node used some), and one more use
        // came here meanwhile.
        let batch = l.take(next);
        assert_eq!(batch, [LimitUses { id: e.record.id, rate_uses: 0, quota_uses: Some(3) }]);
        l.admit(&e, next).unwrap();
        let quotas = vec![QuotaLeft { id: e.record.id, remaining: 1, refilled_at: next }];
        l.apply(&LimitSync { quotas, remote: vec![] }, next);
        assert_eq!(l.admit(&e, next).unwrap_err().code, "usage_exceeded", "1 left, less the one used here: 0");
    }

    #[test]
    fn other_nodes_uses_are_charged_once() {
        let l = Limiter::default();
        let e = entry(KeyRules { rate_limit: rate(10, 1), ..Default::default() });
        let id = e.record.id;
        // Learned before this node saw the key: kept as debt until it does.
        let remote = vec![RemoteUses { seq: 1, id, at: T0, uses: 8 }];
        l.apply(&LimitSync { quotas: vec![], remote: remote.clone() }, T0);
        l.apply(&LimitSync { quotas: vec![], remote }, T0);
        let ok = (0..5).filter(|_| l.admit(&e, T0).is_ok()).count();
        assert_eq!(ok, 2, "10 allowed, 8 used elsewhere (the repeated row counted once)");
        let remote = vec![RemoteUses { seq: 2, id, at: T0, uses: 10 }];
        l.apply(&LimitSync { quotas: vec![], remote }, T0);
        assert!(l.admit(&e, T0 + 999).is_err(), "a debt of a whole second");
        assert!(l.admit(&e, T0 + 1_100).is_ok());
    }

    #[test]
    fn a_failed_sync_keeps_the_uses_and_idle_keys_are_forgotten() {
        let l = Limiter::default();
        let e = entry(KeyRules { rate_limit: rate(10, 1), ..Default::default() });
        l.admit(&e, T0).unwrap();
        let batch = l.take(T0);
        assert_eq!(batch[0].rate_uses, 1);
        assert!(l.take(T0).is_empty());
        l.restore(&batch);
        assert_eq!(l.take(T0)[0].rate_uses, 1);
        l.prune(T0 + 500, 60_000);
        assert_eq!(l.len(), 1);
        l.prune(T0 + 61_000, 60_000);
        assert!(l.is_empty());
        let plain = entry(KeyRules::default());
        assert_eq!(l.admit(&plain, T0).unwrap(), Admitted::default());
        assert!(l.is_empty(), "a key without limits has no state");
    }

    #[test]
    fn headers_follow_the_draft() {
        assert_eq!(policy_value(RateLimit::new(100, 60).unwrap()), "\"default\";q=100;w=60");
        assert_eq!(state_value(42, 18), "\"default\";r=42;t=18");
    }
}
