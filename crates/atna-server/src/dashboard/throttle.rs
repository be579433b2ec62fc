//! Login throttling: after 5 failed sign-ins for one account or 20 from one address within 15 minutes, further
//! attempts are refused until the oldest failure leaves the window.
//!
//! The counts live in the database (`Store::throttle_begin`), so several nodes behind a load balancer share them: an
//! attacker gets the same five guesses whichever nodes answer. Each attempt is counted before its password is
//! checked, so parallel guesses cannot slip through; a successful sign-in takes its attempt back.

use std::net::IpAddr;
use std::time::Duration;

use atna_store::{Store, StoreResult};

/// Failures allowed per account within the window.
pub const PER_ACCOUNT: i64 = 5;
/// Failures allowed per client address within the window.
pub const PER_IP: i64 = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

fn account_key(account: &str) -> String {
    format!("a:{account}")
}

fn ip_key(ip: Option<IpAddr>) -> Option<String> {
    ip.map(|ip| format!("i:{ip}"))
}

/// Counts a sign-in attempt, or `Ok(Err(wait))` when this account or address must wait that long.
pub async fn begin(store: &dyn Store, account: &str, ip: Option<IpAddr>) -> StoreResult<Result<(), Duration>> {
    let account = account_key(account);
    let ip = ip_key(ip);
    let mut keys = vec![(account.as_str(), PER_ACCOUNT)];
    if let Some(ip) = &ip {
        keys.push((ip.as_str(), PER_IP));
    }
    let window = WINDOW.as_millis() as i64;
    Ok(match store.throttle_begin(&keys, crate::clock::now(), window).await? {
        None => Ok(()),
        Some(wait) => Err(Duration::from_millis(wait.max(1) as u64)),
    })
}

/// After a successful sign-in: forgets the account's failures and takes back the attempt counted for the address.
pub async fn succeed(store: &dyn Store, account: &str, ip: Option<IpAddr>) -> StoreResult<()> {
    store.throttle_succeed(&account_key(account), ip_key(ip).as_deref()).await
}

/// "N minutes", rounded up, for the refusal message.
pub fn minutes(wait: Duration) -> u64 {
    wait.as_secs().div_ceil(60).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_shown_in_whole_minutes_rounded_up() {
        assert_eq!(minutes(WINDOW), 15);
        assert_eq!(minutes(Duration::from_secs(61)), 2);
        assert_eq!(minutes(Duration::from_millis(10)), 1);
    }
}
