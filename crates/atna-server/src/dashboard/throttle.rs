//! Login throttling, in memory: after 5 failed sign-ins for one account or 20 from one address within 15 minutes,
//! further attempts are refused until the oldest failure leaves the window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per account within the window.
pub const PER_ACCOUNT: usize = 5;
/// Failures allowed per client address within the window.
pub const PER_IP: usize = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Above this many tracked keys, expired ones are swept on the next failure.
const SWEEP_ABOVE: usize = 10_000;

/// Failed sign-ins by account and by address.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

fn keys(account: &str, ip: Option<IpAddr>) -> [(Option<String>, usize); 2] {
    [(Some(format!("a:{account}")), PER_ACCOUNT), (ip.map(|ip| format!("i:{ip}")), PER_IP)]
}

impl Throttle {
    /// `Err(wait)` when sign-ins for this account or from this address are refused for `wait` more.
    pub fn check(&self, account: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        for (key, limit) in keys(account, ip) {
            let Some(q) = key.and_then(|k| map.get(&k)) else { continue };
            let live: Vec<&Instant> = q.iter().filter(|t| now.duration_since(**t) < WINDOW).collect();
            if live.len() >= limit {
                // Allowed again when enough failures have aged out to drop below the limit.
                let pivot = live[live.len() - limit];
                wait = wait.max(WINDOW.saturating_sub(now.duration_since(*pivot)));
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Checks and, when allowed, counts the attempt as a failure right away, so parallel attempts cannot all slip
    /// through before the first failure is recorded. A successful sign-in then calls [`Throttle::succeed`].
    pub fn begin(&self, account: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        self.check(account, ip)?;
        self.fail(account, ip);
        Ok(())
    }

    /// Records a failed sign-in.
    pub fn fail(&self, account: &str, ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        for (key, limit) in keys(account, ip) {
            let Some(key) = key else { continue };
            let q = map.entry(key).or_default();
            while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) || q.len() > limit {
                q.pop_front();
            }
            q.push_back(now);
        }
    }

    /// After a successful sign-in: forgets the account's failures, and takes back the attempt [`Throttle::begin`]
    /// counted against the address.
    pub fn succeed(&self, account: &str, ip: Option<IpAddr>) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("a:{account}"));
        if let Some(q) = ip.and_then(|ip| map.get_mut(&format!("i:{ip}"))) {
            q.pop_back();
        }
    }
}

/// "N minutes", rounded up, for the refusal message.
pub fn minutes(wait: Duration) -> u64 {
    wait.as_secs().div_ceil(60).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_addresses_are_limited() {
        let t = Throttle::default();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..PER_ACCOUNT {
            assert!(t.check("a@x", Some(ip)).is_ok());
            t.fail("a@x", Some(ip));
        }
        let wait = t.check("a@x", Some(ip)).unwrap_err();
        assert_eq!(minutes(wait), 15);
        assert!(t.check("b@x", Some(ip)).is_ok(), "another account from the same address is still allowed");
        for i in 0..PER_IP {
            t.fail(&format!("u{i}@x"), Some(ip));
        }
        assert!(t.check("c@x", Some(ip)).is_err(), "the address is now limited");
        assert!(t.check("c@x", Some("198.51.100.1".parse().unwrap())).is_ok());
        t.succeed("a@x", None);
        assert!(t.check("a@x", None).is_ok());

        // Attempts are counted before they are judged, so parallel ones cannot all get through.
        let t = Throttle::default();
        let allowed = (0..10).filter(|_| t.begin("p@x", Some(ip)).is_ok()).count();
        assert_eq!(allowed, PER_ACCOUNT);
        let t = Throttle::default();
        for _ in 0..(PER_IP * 2) {
            assert!(t.begin("ok@x", Some(ip)).is_ok());
            t.succeed("ok@x", Some(ip));
        }
        assert!(t.check("other@x", Some(ip)).is_ok(), "successful sign-ins do not use up the address's allowance");
    }
}
