//! How many connections may be open: a global cap (a semaphore) and a per-peer cap (a count per address, IPv6 per
//! /64, since one host usually holds a whole /64). Trusted proxies have no per-peer cap: all their clients' traffic
//! comes from their address. An admitted connection carries an [`Admission`] that gives its places back when the
//! connection (or what it was upgraded to) is dropped.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The connection caps and the current counts.
pub struct Limits {
    global: Arc<Semaphore>,
    max: u32,
    per_peer: usize,
    peers: DashMap<PeerKey, usize>,
}

/// The unit the per-peer cap counts: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKey {
    V4(u32),
    V6(u64),
}

impl PeerKey {
    /// The key of an address; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => PeerKey::V4(u32::from(a)),
            IpAddr::V6(a) => PeerKey::V6((u128::from(a) >> 64) as u64),
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` are open.
    Global,
    /// `max_connections_per_peer` are open from this address.
    Peer,
}

/// A connection's places under the caps, given back on drop.
pub struct Admission {
    _global: OwnedSemaphorePermit,
    peer: Option<(Arc<Limits>, PeerKey)>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some((limits, key)) = self.peer.take() {
            limits.release(key);
        }
    }
}

impl Limits {
    /// Caps of `max` connections in all and `per_peer` from one address.
    pub fn new(max: u32, per_peer: usize) -> Arc<Self> {
        Arc::new(Self { global: Arc::new(Semaphore::new(max as usize)), max, per_peer, peers: DashMap::new() })
    }

    /// Admits a connection from `ip`; `exempt` (a trusted proxy) skips the per-peer cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, exempt: bool) -> Result<Admission, Refusal> {
        let global = match self.global.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => return Err(Refusal::Global),
        };
        if exempt {
            return Ok(Admission { _global: global, peer: None });
        }
        let key = PeerKey::of(ip);
        let mut count = self.peers.entry(key).or_insert(0);
        if *count >= self.per_peer {
            drop(count);
            self.release_if_zero(key);
            return Err(Refusal::Peer);
        }
        *count += 1;
        Ok(Admission { _global: global, peer: Some((self.clone(), key)) })
    }

    fn release(&self, key: PeerKey) {
        if let Some(mut n) = self.peers.get_mut(&key) {
            *n = n.saturating_sub(1);
        }
        self.release_if_zero(key);
    }

    fn release_if_zero(&self, key: PeerKey) {
        self.peers.remove_if(&key, |_, n| *n == 0);
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.max as usize - self.global.available_permits()
    }

    /// Waits until every connection is gone, or `grace` has passed; true if all are gone.
    pub async fn drained(&self, grace: Duration) -> bool {
        tokio::time::timeout(grace, self.global.acquire_many(self.max)).await.is_ok_and(|p| p.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_count_per_peer_and_in_all_and_give_places_back() {
        let l = Limits::new(4, 2);
        let a1 = l.admit(ip("10.0.0.1"), false).unwrap();
        let _a2 = l.admit(ip("::ffff:10.0.0.1"), false).unwrap();
        assert_eq!(l.admit(ip("10.0.0.1"), false).err(), Some(Refusal::Peer), "mapped IPv6 is the same peer");
        let _b = l.admit(ip("2001:db8::1"), false).unwrap();
        let _b2 = l.admit(ip("2001:db8::2:3"), false).unwrap();
        assert_eq!(l.admit(ip("2001:db8::ffff"), false).err(), Some(Refusal::Global));
        drop(a1);
        assert_eq!(l.admit(ip("2001:db8::ffff"), false).err(), Some(Refusal::Peer), "one /64 is one peer");
        let _p = l.admit(ip("10.0.0.1"), true).unwrap();
        assert_eq!(l.open(), 4);
        assert_eq!(l.admit(ip("10.9.9.9"), true).err(), Some(Refusal::Global), "proxies are under the global cap");
    }

    #[test]
    fn counts_of_gone_peers_are_forgotten() {
        let l = Limits::new(10, 1);
        let a = l.admit(ip("10.0.0.1"), false).unwrap();
        assert!(l.admit(ip("10.0.0.1"), false).is_err());
        drop(a);
        assert!(l.peers.is_empty());
        assert!(l.admit(ip("10.0.0.1"), false).is_ok());
    }
}
