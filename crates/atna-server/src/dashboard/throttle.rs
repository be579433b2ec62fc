//! Throttling of password guesses (sign-in and the Account page's "current password"), designed so that strangers
//! cannot lock the real owner out.
//!
//! | counter (key)                              | applies to                          | rule                                    |
//! |--------------------------------------------|-------------------------------------|-----------------------------------------|
//! | account + client network (`an:`)           | sign-ins without a device cookie    | 5 / 15 min, then 429 until one expires  |
//! | client network (`i:`)                      | sign-ins without a device cookie    | 20 / 15 min, then 429                   |
//! | account (`a:`)                             | sign-ins without a device cookie    | 10 / day free, then 1 s, 2 s, 4 s … 15 min after the newest |
//! | device cookie (`d:`)                       | sign-ins with the account's cookie  | 5 / 15 min, then 429                    |
//! | user (`pwchange:user:`)                    | password changes                    | 5 / 15 min, then 429                    |
//!
//! The client network is the address for IPv4 and its /64 for IPv6 (one subscriber usually holds a whole /64). A
//! browser that signed in to an account before holds a device cookie for it (see `device.rs`): its attempts count
//! only against that cookie, so no amount of failures by strangers, from anywhere, keeps the owner out, while a
//! stolen cookie still gets only 5 guesses per 15 minutes. The per-account counter never locks: it slows guessing
//! spread over many addresses to about 100 a day, and an owner on a new browser waits at most 15 minutes.
//!
//! The counts live in the database (`Store::throttle_begin`), so every node behind a load balancer shares them. Each
//! attempt is counted before its password is checked, so parallel guesses cannot slip through; a success takes its
//! attempt back. A refusal is an immediate 429 with `Retry-After`; nothing ever sleeps holding a connection.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Duration;

use atna_domain::{Millis, UserId};
use atna_store::{Over, Store, StoreResult, ThrottleRule};

/// The window of the lock-out counters.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed sign-ins allowed per account and client network within [`WINDOW`].
pub const PER_ACCOUNT_AND_NETWORK: i64 = 5;
/// Failed sign-ins allowed per client network (over all accounts) within [`WINDOW`].
pub const PER_NETWORK: i64 = 20;
/// Failed sign-ins per account within [`ACCOUNT_WINDOW`] before each further one must wait.
pub const PER_ACCOUNT_FREE: i64 = 10;
/// The window of the per-account counter: long against its 15-minute cap, so spacing never resets itself.
pub const ACCOUNT_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
// Housekeeping keeps sign-in attempts for `CHANGE_RETENTION` (at least): the per-account window must fit in it.
const _: () = assert!(ACCOUNT_WINDOW.as_secs() <= crate::watcher::CHANGE_RETENTION.as_secs());
/// The first per-account delay; each further failure doubles it.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest per-account delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);
/// Failed sign-ins allowed per device cookie within [`WINDOW`].
pub const PER_DEVICE: i64 = 5;
/// Wrong current passwords allowed per user on the Account page within [`WINDOW`].
pub const PASSWORD_CHECKS: i64 = 5;

fn ms(d: Duration) -> Millis {
    d.as_millis() as Millis
}

/// The network a client is counted under: an IPv4 address as it is, an IPv6 address as its /64 (IPv4-mapped IPv6
/// addresses as the IPv4 address they carry).
pub fn network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", Ipv6Addr::from(prefix))
            }
        },
    }
}

/// One counter of a [`SignIn`]: key, limit, window, and what happens past the limit.
type Counter = (String, i64, Millis, Over);

/// One sign-in attempt's counters, decided before the password is checked. The first is this browser's (or this
/// network's) own for the account, forgotten on success; the others are shared, and only take this attempt back.
pub struct SignIn {
    counters: Vec<Counter>,
}

impl SignIn {
    /// A sign-in for `account` (normalised as typed) from `ip`; `device` is the hash of a device token the browser
    /// presented that belongs to this account.
    pub fn new(account: &str, ip: Option<IpAddr>, device: Option<&[u8; 32]>) -> Self {
        let window = ms(WINDOW);
        if let Some(hash) = device {
            let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
            return Self { counters: vec![(format!("d:{hex}"), PER_DEVICE, window, Over::Refuse)] };
        }
        let net = ip.map(network);
        let backoff = Over::Backoff { first: ms(BACKOFF_FIRST), max: ms(BACKOFF_MAX) };
        let mut counters = vec![
            (format!("an:{}|{account}", net.as_deref().unwrap_or("-")), PER_ACCOUNT_AND_NETWORK, window, Over::Refuse),
            (format!("a:{account}"), PER_ACCOUNT_FREE, ms(ACCOUNT_WINDOW), backoff),
        ];
        if let Some(net) = net {
            counters.push((format!("i:{net}"), PER_NETWORK, window, Over::Refuse));
        }
        Self { counters }
    }

    /// Counts the attempt, or `Ok(Err(wait))` when it must wait that long.
    pub async fn begin(&self, store: &dyn Store) -> StoreResult<Result<(), Duration>> {
        let rules: Vec<ThrottleRule<'_>> = self
            .counters
            .iter()
            .map(|(key, limit, window, over)| ThrottleRule { key, limit: *limit, window: *window, over: *over })
            .collect();
        decide(store, &rules).await
    }

    /// After a successful sign-in: forgets this browser's (or network's) failures for the account and takes back
    /// the attempt counted on the shared counters. Strangers' failures on the account stay counted.
    pub async fn succeed(&self, store: &dyn Store) -> StoreResult<()> {
        let take_back: Vec<&str> = self.counters[1..].iter().map(|c| c.0.as_str()).collect();
        store.throttle_succeed(&self.counters[0].0, &take_back).await
    }

    #[cfg(test)]
    fn keys(&self) -> Vec<&str> {
        self.counters.iter().map(|c| c.0.as_str()).collect()
    }
}

async fn decide(store: &dyn Store, rules: &[ThrottleRule<'_>]) -> StoreResult<Result<(), Duration>> {
    Ok(match store.throttle_begin(rules, crate::clock::now()).await? {
        None => Ok(()),
        Some(wait) => Err(Duration::from_millis(wait.max(1) as u64)),
    })
}

fn password_key(user: UserId) -> String {
    format!("pwchange:user:{}", user.0)
}

/// Counts a check of `user`'s current password, or `Ok(Err(wait))` when they must wait that long.
pub async fn begin_password_check(store: &dyn Store, user: UserId) -> StoreResult<Result<(), Duration>> {
    let key = password_key(user);
    decide(store, &[ThrottleRule::refuse(&key, PASSWORD_CHECKS, ms(WINDOW))]).await
}

/// After the right current password: forgets the user's wrong ones.
pub async fn password_check_succeeded(store: &dyn Store, user: UserId) -> StoreResult<()> {
    store.throttle_succeed(&password_key(user), &[]).await
}

/// Users with a password check running on this node.
static CHECKING: Mutex<BTreeSet<i64>> = Mutex::new(BTreeSet::new());

/// One password check at a time per user (on this node): held while it runs.
pub struct Checking(UserId);

impl Checking {
    /// The user's slot, or `None` while another of their checks runs: one person cannot take several of the
    /// node's few argon2 slots (which every sign-in waits for) by sending many requests at once.
    pub fn start(user: UserId) -> Option<Self> {
        // Not `then_some(Self(user))`: that would build (and drop, releasing the slot) a guard even when refusing.
        let free = CHECKING.lock().unwrap_or_else(|e| e.into_inner()).insert(user.0);
        if free {
            Some(Self(user))
        } else {
            None
        }
    }
}

impl Drop for Checking {
    fn drop(&mut self) {
        CHECKING.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.0 .0);
    }
}

/// The wait for a refusal message, rounded up: "N seconds" under a minute, else "N minutes".
pub fn wait_text(wait: Duration) -> String {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let (n, unit) = if secs < 60 { (secs.max(1), "second") } else { (secs.div_ceil(60), "minute") };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The `Retry-After` value: whole seconds, rounded up.
pub fn retry_after(wait: Duration) -> axum::http::HeaderValue {
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    axum::http::HeaderValue::from(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_shown_rounded_up() {
        assert_eq!(wait_text(WINDOW), "15 minutes");
        assert_eq!(wait_text(Duration::from_secs(61)), "2 minutes");
        assert_eq!(wait_text(Duration::from_secs(60)), "1 minute");
        assert_eq!(wait_text(Duration::from_millis(10)), "1 second");
        assert_eq!(wait_text(Duration::from_millis(2500)), "3 seconds");
        assert_eq!(retry_after(Duration::from_millis(1500)), "2");
        assert_eq!(retry_after(Duration::from_millis(0)), "1");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let net = |s: &str| network(s.parse().unwrap());
        assert_eq!(net("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
        assert_eq!(net("2001:db8:1:2::1"), net("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
        assert_eq!(net("::1"), "::/64");
        assert_eq!(net("203.0.113.7"), "203.0.113.7");
        assert_ne!(net("203.0.113.7"), net("203.0.113.8"), "IPv4 addresses are counted one by one");
        assert_eq!(net("::ffff:203.0.113.7"), "203.0.113.7", "IPv4-mapped is the IPv4 address");
    }

    #[test]
    fn a_device_cookie_counts_only_against_itself() {
        let ip = Some("203.0.113.7".parse().unwrap());
        let stranger = SignIn::new("bob@x.io", ip, None);
        assert_eq!(stranger.keys(), ["an:203.0.113.7|bob@x.io", "a:bob@x.io", "i:203.0.113.7"]);
        let owner = SignIn::new("bob@x.io", ip, Some(&[0xab; 32]));
        assert_eq!(owner.keys(), [format!("d:{}", "ab".repeat(16))]);
    }

    #[test]
    fn one_password_check_per_user_at_a_time() {
        let first = Checking::start(UserId(-7)).expect("free");
        assert!(Checking::start(UserId(-7)).is_none(), "the same user waits");
        let other = Checking::start(UserId(-8));
        assert!(other.is_some(), "another user does not");
        drop(first);
        assert!(Checking::start(UserId(-7)).is_some(), "free again once the first ends");
    }
}
