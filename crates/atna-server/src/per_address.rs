//! A per-address rate limit for the public endpoints that take no key in `Authorization` (`/v1/credentials/status`
//! and `/v1/credentials/revoke`): whoever holds a key may ask about it or revoke it, but nobody may use them to try
//! keys by the million. GCRA (one "theoretical arrival time" per address) in this node's memory; IPv6 clients are
//! counted per /64, as one machine usually holds a whole /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests one address may make per minute, sustained.
pub const PER_MINUTE: u32 = 30;
/// Requests one address may make at once, after a quiet minute.
pub const BURST: u32 = 10;
/// Past this many addresses, those whose allowance is full again are forgotten.
const PRUNE_AT: usize = 100_000;

/// The limiter. Cheap to share behind the app state.
pub struct PerAddress {
    interval: Duration,
    burst: Duration,
    tat: Mutex<HashMap<IpAddr, Instant>>,
}

impl Default for PerAddress {
    fn default() -> Self {
        Self::new(PER_MINUTE, BURST)
    }
}

impl PerAddress {
    /// `per_minute` requests a minute, `burst` at once.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        Self { interval, burst: interval * burst.max(1), tat: Mutex::new(HashMap::new()) }
    }

    /// Counts a request from `ip`, or says how long until one would be allowed (counting nothing).
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = bucket(ip);
        let mut map = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PRUNE_AT {
            map.retain(|_, t| *t > now);
        }
        let tat = map.get(&key).copied().filter(|t| *t > now).unwrap_or(now);
        let allowed_from = tat.checked_sub(self.burst - self.interval).unwrap_or(now);
        if allowed_from > now {
            return Err(allowed_from - now);
        }
        map.insert(key, tat + self.interval);
        Ok(())
    }
}

/// IPv4 addresses as they are; IPv6 addresses by their /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let l = PerAddress::new(60, 3);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.admit(a, t0).is_ok());
        }
        let wait = l.admit(a, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(l.admit("192.0.2.2".parse().unwrap(), t0).is_ok(), "another address has its own allowance");
        assert!(l.admit(a, t0 + Duration::from_secs(1)).is_ok(), "one more a second");
        assert!(l.admit(a, t0 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let l = PerAddress::new(60, 1);
        let t0 = Instant::now();
        assert!(l.admit("2001:db8::1".parse().unwrap(), t0).is_ok());
        assert!(l.admit("2001:db8::2".parse().unwrap(), t0).is_err());
        assert!(l.admit("2001:db8:0:1::1".parse().unwrap(), t0).is_ok());
    }
}
