//! The installation's key policy (TOML `[policy]`): how long keys live by default and at most, when a key counts as
//! due for rotation or unused, and whether unused keys are disabled automatically. Pure rules, no I/O.

use crate::lifecycle::{NEVER_USED_GRACE_DAYS, ROTATION_AFTER_DAYS, UNUSED_AFTER_DAYS};
use crate::Millis;

/// One day in milliseconds.
pub const DAY_MS: Millis = 24 * 60 * 60 * 1000;

/// The key policy. `Default` is what an installation without a `[policy]` table gets: no default or maximum
/// lifetime, rotation due after 90 days, unused after 30, no automatic disabling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// New keys expire after this many days unless their creator picks an expiry (`None`: they never expire).
    pub default_lifetime_days: Option<i64>,
    /// No key may be created to live longer than this many days: asking for more is refused, never capped.
    pub max_lifetime_days: Option<i64>,
    /// Keys this old are due for rotation.
    pub rotation_due_days: i64,
    /// Keys unused (or, past a day's grace, never used) for this long are flagged unused.
    pub unused_days: i64,
    /// Keys unused for this many days are disabled automatically (`None`: never).
    pub auto_disable_unused_days: Option<i64>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            default_lifetime_days: None,
            max_lifetime_days: None,
            rotation_due_days: ROTATION_AFTER_DAYS,
            unused_days: UNUSED_AFTER_DAYS,
            auto_disable_unused_days: None,
        }
    }
}

/// Why a policy does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy.{0} must be at least 1 day")]
    NotPositive(&'static str),
    #[error("policy.default_key_lifetime_days ({0}) is longer than policy.max_key_lifetime_days ({1})")]
    DefaultBeyondMax(i64, i64),
}

/// A requested expiry the policy refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "This installation's policy lets keys live at most {max_days} days: pick an expiry no later than that (leave it \
     out to get the default)."
)]
pub struct LifetimeExceedsPolicy {
    pub max_days: i64,
}

/// What the creator of a key asked for as its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryChoice {
    /// Nothing: the policy's default applies.
    Default,
    /// Explicitly no expiry (the dashboard's "Never").
    Never,
    /// This moment.
    At(Millis),
}

impl Policy {
    /// Checks the numbers make sense together.
    pub fn check(&self) -> Result<(), PolicyError> {
        let positive =
            |v: Option<i64>, name| if v.is_some_and(|d| d < 1) { Err(PolicyError::NotPositive(name)) } else { Ok(()) };
        positive(self.default_lifetime_days, "default_key_lifetime_days")?;
        positive(self.max_lifetime_days, "max_key_lifetime_days")?;
        positive(Some(self.rotation_due_days), "rotation_due_days")?;
        positive(Some(self.unused_days), "unused_days")?;
        positive(self.auto_disable_unused_days, "auto_disable_unused_days")?;
        if let (Some(d), Some(m)) = (self.default_lifetime_days, self.max_lifetime_days) {
            if d > m {
                return Err(PolicyError::DefaultBeyondMax(d, m));
            }
        }
        Ok(())
    }

    /// The expiry a new key gets at `now` for what its creator chose: the default when nothing was chosen, the choice
    /// when it lies within the maximum lifetime, else [`LifetimeExceedsPolicy`] (a longer life is never silently cut
    /// short). "Never" is beyond any maximum.
    pub fn expiry(&self, choice: ExpiryChoice, now: Millis) -> Result<Option<Millis>, LifetimeExceedsPolicy> {
        let latest = self.max_lifetime_days.map(|d| now.saturating_add(d.saturating_mul(DAY_MS)));
        let wanted = match choice {
            ExpiryChoice::Default => return Ok(self.default_lifetime_days.map(|d| now.saturating_add(d * DAY_MS))),
            ExpiryChoice::Never => None,
            ExpiryChoice::At(t) => Some(t),
        };
        match (latest, wanted) {
            (Some(_), None) => Err(LifetimeExceedsPolicy { max_days: self.max_lifetime_days.unwrap_or_default() }),
            (Some(l), Some(t)) if t > l => {
                Err(LifetimeExceedsPolicy { max_days: self.max_lifetime_days.unwrap_or_default() })
            }
            _ => Ok(wanted),
        }
    }

    /// Whether a key created at `created_at` is due for rotation at `now`.
    pub fn rotation_due(&self, created_at: Millis, now: Millis) -> bool {
        (now - created_at).max(0) / DAY_MS >= self.rotation_due_days
    }

    /// Whether a key counts as unused at `now`: unused for `unused_days`, or never used and older than a day.
    pub fn unused(&self, created_at: Millis, last_used_at: Option<Millis>, now: Millis) -> bool {
        match last_used_at {
            None => (now - created_at).max(0) / DAY_MS >= NEVER_USED_GRACE_DAYS,
            Some(t) => (now - t) / DAY_MS >= self.unused_days,
        }
    }

    /// Whether the policy disables this key automatically at `now`: unused (since its last use or, never used, since
    /// its creation) for `auto_disable_unused_days`.
    pub fn auto_disable_due(&self, created_at: Millis, last_used_at: Option<Millis>, now: Millis) -> bool {
        self.auto_disable_unused_days.is_some_and(|d| (now - last_used_at.unwrap_or(created_at)) / DAY_MS >= d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_000 * DAY_MS;

    #[test]
    fn default_and_maximum_lifetime() {
        let open = Policy::default();
        assert_eq!(open.expiry(ExpiryChoice::Default, NOW), Ok(None));
        assert_eq!(open.expiry(ExpiryChoice::Never, NOW), Ok(None));
        let p = Policy { default_lifetime_days: Some(90), max_lifetime_days: Some(365), ..Policy::default() };
        assert_eq!(p.expiry(ExpiryChoice::Default, NOW), Ok(Some(NOW + 90 * DAY_MS)));
        assert_eq!(p.expiry(ExpiryChoice::At(NOW + 365 * DAY_MS), NOW), Ok(Some(NOW + 365 * DAY_MS)));
        let refused = Err(LifetimeExceedsPolicy { max_days: 365 });
        assert_eq!(p.expiry(ExpiryChoice::At(NOW + 365 * DAY_MS + 1), NOW), refused);
        assert_eq!(p.expiry(ExpiryChoice::Never, NOW), refused, "never is beyond any maximum");
    }

    #[test]
    fn inconsistent_policies_are_refused() {
        let p = Policy { default_lifetime_days: Some(400), max_lifetime_days: Some(365), ..Policy::default() };
        assert_eq!(p.check(), Err(PolicyError::DefaultBeyondMax(400, 365)));
        assert!(Policy { rotation_due_days: 0, ..Policy::default() }.check().is_err());
        assert!(Policy::default().check().is_ok());
    }

    #[test]
    fn ages_follow_the_policy() {
        let p =
            Policy { rotation_due_days: 10, unused_days: 5, auto_disable_unused_days: Some(20), ..Policy::default() };
        assert!(p.rotation_due(NOW - 10 * DAY_MS, NOW) && !p.rotation_due(NOW - 9 * DAY_MS, NOW));
        assert!(p.unused(NOW - 50 * DAY_MS, Some(NOW - 5 * DAY_MS), NOW));
        assert!(!p.unused(NOW - 50 * DAY_MS, Some(NOW - 4 * DAY_MS), NOW));
        assert!(p.auto_disable_due(NOW - 20 * DAY_MS, None, NOW));
        assert!(!p.auto_disable_due(NOW - 50 * DAY_MS, Some(NOW - 19 * DAY_MS), NOW));
        assert!(!Policy::default().auto_disable_due(0, None, NOW), "off by default");
    }
}
