//! Per-key state on the hot path: a map by Credential ID split into shards with a lock each, so concurrent requests
//! of different keys rarely wait for each other. Shared by the usage counters (`usage.rs`) and the rate limits and
//! quotas (`limits.rs`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use atna_domain::CredentialId;

const SHARDS: usize = 16;

/// A cheap hasher for maps by Credential ID. Safe without randomisation: only IDs of existing keys get in (a request
/// whose secret matched, or a row of the store), and those are random strings atna generated, so nobody can choose
/// colliding ones.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

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

/// One shard's map.
pub type IdMap<V> = HashMap<CredentialId, V, std::hash::BuildHasherDefault<IdHasher>>;

/// A map by Credential ID in [`SHARDS`] locked shards.
pub struct Sharded<V> {
    shards: Box<[Mutex<IdMap<V>>]>,
}

impl<V> Default for Sharded<V> {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect() }
    }
}

impl<V> Sharded<V> {
    /// The shard holding `id`, locked. A panic while it was held cannot have left it inconsistent: every user's
    /// update is a few assignments.
    pub fn shard(&self, id: &CredentialId) -> MutexGuard<'_, IdMap<V>> {
        // IDs are uniformly random base62, so their last character spreads keys evenly.
        let i = id.as_str().as_bytes().last().copied().unwrap_or_default() as usize % SHARDS;
        lock(&self.shards[i])
    }

    /// Every shard, each locked in turn (background work: flushes, syncs, counts).
    pub fn shards(&self) -> impl Iterator<Item = MutexGuard<'_, IdMap<V>>> {
        self.shards.iter().map(lock)
    }
}

fn lock<V>(m: &Mutex<IdMap<V>>) -> MutexGuard<'_, IdMap<V>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
