//! Usage gathered on the hot path: per key, how often it was used, when last and from where. Held in memory and
//! written to the store in batches ([`UsageBuffer::take`] + `Store::record_usage`), never a write per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use atna_domain::{CredentialId, Millis};
use atna_store::UsageUpdate;

const SHARDS: usize = 16;

/// A cheap hasher for the usage maps. Safe without randomisation: only IDs of valid keys get in, and those are
/// random strings atna generated, so nobody can choose colliding ones.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.wrapping_mul(31).wrapping_add(u64::from(b));
        }
    }
}

type IdMap = HashMap<CredentialId, Pending, std::hash::BuildHasherDefault<IdHasher>>;

/// Usage of one key not yet written to the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pending {
    pub count: i64,
    pub last_used_at: Millis,
    pub last_used_ip: Option<IpAddr>,
}

/// Sharded in-memory usage counters.
pub struct UsageBuffer {
    shards: Box<[Mutex<IdMap>]>,
}

impl Default for UsageBuffer {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect() }
    }
}

fn shard_of(id: &CredentialId) -> usize {
    // IDs are uniformly random base62, so their last character spreads keys evenly.
    id.as_str().as_bytes().last().copied().unwrap_or_default() as usize % SHARDS
}

impl UsageBuffer {
    fn shard(&self, id: &CredentialId) -> std::sync::MutexGuard<'_, IdMap> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is one assignment).
        self.shards[shard_of(id)].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one use.
    pub fn record(&self, id: CredentialId, at: Millis, ip: Option<IpAddr>) {
        self.add(id, Pending { count: 1, last_used_at: at, last_used_ip: ip });
    }

    fn add(&self, id: CredentialId, p: Pending) {
        let mut shard = self.shard(&id);
        let e = shard.entry(id).or_insert(Pending { count: 0, last_used_at: Millis::MIN, last_used_ip: None });
        e.count += p.count;
        if p.last_used_at >= e.last_used_at {
            e.last_used_at = p.last_used_at;
            e.last_used_ip = p.last_used_ip;
        }
    }

    /// What is pending for one key (to show usage the store has not seen yet).
    pub fn pending(&self, id: &CredentialId) -> Option<Pending> {
        self.shard(id).get(id).copied()
    }

    /// Takes everything pending, leaving the buffer empty.
    pub fn take(&self) -> Vec<UsageUpdate> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let map = std::mem::take(&mut *shard.lock().unwrap_or_else(|p| p.into_inner()));
            out.extend(map.into_iter().map(|(id, p)| UsageUpdate {
                id,
                count: p.count,
                last_used_at: p.last_used_at,
                last_used_ip: p.last_used_ip.map(|ip| ip.to_string()),
            }));
        }
        out
    }

    /// Puts back a batch that could not be written, so no use is lost.
    pub fn restore(&self, batch: Vec<UsageUpdate>) {
        for u in batch {
            let ip = u.last_used_ip.and_then(|s| s.parse().ok());
            self.add(u.id, Pending { count: u.count, last_used_at: u.last_used_at, last_used_ip: ip });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut batch = b.take();
        batch.sort_by_key(|u| u.last_used_at);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[1].count, 2);
        assert_eq!(batch[1].last_used_ip.as_deref(), Some("203.0.113.7"));
        assert!(b.take().is_empty());
        b.record(k1, 20, None);
        b.restore(batch);
        assert_eq!(b.pending(&k1), Some(Pending { count: 3, last_used_at: 20, last_used_ip: None }));
        assert_eq!(b.pending(&k2).unwrap().count, 1);
    }
}
