//! Usage gathered on the hot path: per key, how often it was used, when last and from where, and its requests per
//! hour by outcome (allowed, or refused and why). Held in memory and written to the store in batches
//! ([`UsageBuffer::take`], then `Store::record_usage` and `Store::record_usage_counts`), never a write per request.

use std::net::IpAddr;
use std::sync::MutexGuard;

use atna_domain::{CredentialId, Millis, VerifyCode};
use atna_store::{Granularity, UsageCount, UsageUpdate};

use crate::sharded::{IdMap, Sharded};

/// Usage of one key not yet written to the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pending {
    pub count: i64,
    pub last_used_at: Millis,
    pub last_used_ip: Option<IpAddr>,
}

/// Outcome slots per hour: one per [`VerifyCode`], indexed by [`VerifyCode::index`] (`Valid`, slot 0, counts allowed
/// requests). Room for codes yet to come, so a new code needs no change here.
pub const SLOTS: usize = 16;
const _: () = assert!(VerifyCode::ALL.len() <= SLOTS, "more verify codes than usage slots: raise SLOTS");

/// One hour of one key's requests, by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourCounts {
    /// Start of the hour (UTC), Unix ms.
    pub hour: Millis,
    /// Requests by [`VerifyCode::index`].
    pub counts: [u32; SLOTS],
}

impl HourCounts {
    fn new(hour: Millis) -> Self {
        Self { hour, counts: [0; SLOTS] }
    }
}

/// Everything gathered for one key since the last flush: its uses (allowed requests) and its requests by hour and
/// outcome. Refused attempts only add to `current`/`earlier`, never to `used`: they are attempts, not use.
#[derive(Debug, Clone)]
struct Gathered {
    used: Pending,
    /// The hour requests are arriving in now (almost always the only one between two flushes).
    current: HourCounts,
    /// Hours that ended since the last flush.
    earlier: Vec<HourCounts>,
}

impl Gathered {
    fn new(hour: Millis) -> Self {
        Self {
            used: Pending { count: 0, last_used_at: Millis::MIN, last_used_ip: None },
            current: HourCounts::new(hour),
            earlier: Vec::new(),
        }
    }

    /// Adds `count` uses, the latest (by time) setting the last use and its address.
    fn add_uses(&mut self, count: i64, at: Millis, ip: Option<IpAddr>) {
        self.used.count += count;
        if at >= self.used.last_used_at {
            self.used.last_used_at = at;
            self.used.last_used_ip = ip;
        }
    }

    /// The counts of the hour starting at `hour`.
    fn hour(&mut self, hour: Millis) -> &mut HourCounts {
        if self.current.hour == hour {
            return &mut self.current;
        }
        if let Some(i) = self.earlier.iter().position(|h| h.hour == hour) {
            return &mut self.earlier[i];
        }
        if hour > self.current.hour {
            let ended = std::mem::replace(&mut self.current, HourCounts::new(hour));
            self.earlier.push(ended);
            &mut self.current
        } else {
            self.earlier.push(HourCounts::new(hour));
            self.earlier.last_mut().expect("just pushed")
        }
    }
}

/// The start of the UTC hour `t` falls in. Cheap enough for the hot path (one remainder).
pub fn hour_of(t: Millis) -> Millis {
    Granularity::Hour.floor(t)
}

/// Sharded in-memory usage counters.
#[derive(Default)]
pub struct UsageBuffer {
    keys: Sharded<Gathered>,
}

/// What [`UsageBuffer::take`] hands to the store.
#[derive(Debug, Default)]
pub struct Batch {
    /// Use counts, last use: keys with at least one allowed request.
    pub uses: Vec<UsageUpdate>,
    /// Requests by key, hour and outcome.
    pub counts: Vec<UsageCount>,
}

impl UsageBuffer {
    fn shard(&self, id: &CredentialId) -> MutexGuard<'_, IdMap<Gathered>> {
        self.keys.shard(id)
    }

    /// Counts one use (an allowed request).
    pub fn record(&self, id: CredentialId, at: Millis, ip: Option<IpAddr>) {
        let hour = hour_of(at);
        let mut shard = self.shard(&id);
        let g = shard.entry(id).or_insert_with(|| Gathered::new(hour));
        g.hour(hour).counts[0] += 1;
        g.add_uses(1, at, ip);
    }

    /// Counts one refused attempt with an existing key's Credential ID (`code` says why). Never a use.
    pub fn refuse(&self, id: CredentialId, code: VerifyCode, at: Millis) {
        let hour = hour_of(at);
        let mut shard = self.shard(&id);
        let g = shard.entry(id).or_insert_with(|| Gathered::new(hour));
        g.hour(hour).counts[code.index()] += 1;
    }

    /// What is pending for one key (to show usage the store has not seen yet); `None` when it has no pending use.
    pub fn pending(&self, id: &CredentialId) -> Option<Pending> {
        self.shard(id).get(id).map(|g| g.used).filter(|u| u.count > 0)
    }

    /// The hours pending for one key, by outcome.
    pub fn pending_hours(&self, id: &CredentialId) -> Vec<HourCounts> {
        match self.shard(id).get(id) {
            Some(g) => g.earlier.iter().copied().chain(std::iter::once(g.current)).collect(),
            None => Vec::new(),
        }
    }

    /// Takes everything pending, leaving the buffer empty.
    pub fn take(&self) -> Batch {
        let mut out = Batch::default();
        for mut shard in self.keys.shards() {
            let map = std::mem::take(&mut *shard);
            for (id, g) in map {
                if g.used.count > 0 {
                    out.uses.push(UsageUpdate {
                        id,
                        count: g.used.count,
                        last_used_at: g.used.last_used_at,
                        last_used_ip: g.used.last_used_ip.map(|ip| ip.to_string()),
                    });
                }
                for h in g.earlier.iter().chain(std::iter::once(&g.current)) {
                    for (slot, &n) in h.counts.iter().enumerate() {
                        if n > 0 {
                            let outcome = VerifyCode::ALL[slot];
                            out.counts.push(UsageCount { id, hour: h.hour, outcome, count: i64::from(n) });
                        }
                    }
                }
            }
        }
        out
    }

    /// Puts back use counts that could not be written, so no use is lost.
    pub fn restore_uses(&self, batch: Vec<UsageUpdate>) {
        for u in batch {
            let ip = u.last_used_ip.and_then(|s| s.parse().ok());
            let mut shard = self.shard(&u.id);
            let g = shard.entry(u.id).or_insert_with(|| Gathered::new(hour_of(u.last_used_at)));
            g.add_uses(u.count, u.last_used_at, ip);
        }
    }

    /// Puts back buckets that could not be written.
    pub fn restore_counts(&self, batch: Vec<UsageCount>) {
        for c in batch {
            let mut shard = self.shard(&c.id);
            let g = shard.entry(c.id).or_insert_with(|| Gathered::new(c.hour));
            let slot = &mut g.hour(c.hour).counts[c.outcome.index()];
            *slot = slot.saturating_add(u32::try_from(c.count).unwrap_or(u32::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Millis = 60 * 60 * 1000;

    #[test]
    fn counts_add_up_and_the_latest_use_wins() {
        let b = UsageBuffer::default();
        let (k1, k2) = (CredentialId::generate(), CredentialId::generate());
        let ip1: IpAddr = "203.0.113.7".parse().unwrap();
        let ip2: IpAddr = "198.51.100.1".parse().unwrap();
        b.record(k1, 10, Some(ip1));
        b.record(k1, 5, Some(ip2));
        b.record(k2, 7, None);
        assert_eq!(b.pending(&k1), Some(Pending { count: 2, last_used_at: 10, last_used_ip: Some(ip1) }));
        let mut batch = b.take().uses;
        batch.sort_by_key(|u| u.last_used_at);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[1].count, 2);
        assert_eq!(batch[1].last_used_ip.as_deref(), Some("203.0.113.7"));
        assert!(b.take().uses.is_empty());
        b.record(k1, 20, None);
        b.restore_uses(batch);
        assert_eq!(b.pending(&k1), Some(Pending { count: 3, last_used_at: 20, last_used_ip: None }));
        assert_eq!(b.pending(&k2).unwrap().count, 1);
    }

    #[test]
    fn requests_are_bucketed_by_hour_and_outcome_and_refusals_are_not_uses() {
        let b = UsageBuffer::default();
        let k = CredentialId::generate();
        let t = 1_764_000_000_000 - 1_764_000_000_000 % H; // the start of an hour
        b.record(k, t + 5, None);
        b.record(k, t + 6, None);
        b.refuse(k, VerifyCode::InvalidSecret, t + 7);
        b.refuse(k, VerifyCode::Expired, t + H + 1); // the next hour
        b.record(k, t + H - 1, None); // late arrival for the earlier hour
        b.refuse(k, VerifyCode::InvalidSecret, t - 1); // and one for the hour before
        let hours = b.pending_hours(&k);
        assert_eq!(hours.len(), 3);
        let mut counts = b.take().counts;
        counts.sort_by_key(|c| (c.hour, c.outcome.index()));
        let got: Vec<(Millis, VerifyCode, i64)> = counts.iter().map(|c| (c.hour, c.outcome, c.count)).collect();
        assert_eq!(
            got,
            [
                (t - H, VerifyCode::InvalidSecret, 1),
                (t, VerifyCode::Valid, 3),
                (t, VerifyCode::InvalidSecret, 1),
                (t + H, VerifyCode::Expired, 1),
            ]
        );
        // A key with only refused attempts has no use to write.
        let stranger = CredentialId::generate();
        b.refuse(stranger, VerifyCode::InvalidSecret, t);
        assert_eq!(b.pending(&stranger), None);
        let batch = b.take();
        assert!(batch.uses.is_empty());
        assert_eq!(batch.counts.len(), 1);
        // What could not be written comes back whole.
        b.restore_counts(batch.counts.clone());
        b.restore_counts(batch.counts);
        assert_eq!(b.take().counts[0].count, 2);
    }
}
