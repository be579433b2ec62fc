//! Lifecycle rules: whether a key is good right now, and the best-practice flags the dashboard shows (rotation due,
//! unused).

use crate::Millis;

/// Keys older than this are due for rotation by default (the seed doc: "at least every three months"); the
/// installation's [`Policy`](crate::Policy) can change it.
pub const ROTATION_AFTER_DAYS: i64 = 90;
/// Keys unused for this long are flagged "unused — consider deleting" by default ([`Policy`](crate::Policy)).
pub const UNUSED_AFTER_DAYS: i64 = 30;
/// A key never used is flagged once it is this old, so a key made a minute ago is not nagged about.
pub const NEVER_USED_GRACE_DAYS: i64 = 1;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A key's stored status. Expiry is not a status: it is computed from `expires_at` at the moment of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Disabled,
    /// Deleted by its owner or an operator: it never works again. The record stays for the audit trail.
    Revoked,
}

impl KeyStatus {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Disabled => "disabled",
            KeyStatus::Revoked => "revoked",
        }
    }

    /// Reads the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => KeyStatus::Active,
            "disabled" => KeyStatus::Disabled,
            "revoked" => KeyStatus::Revoked,
            _ => return None,
        })
    }
}

/// The outcome of verifying a presented key, as reported by `POST /v1/keys/verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyCode {
    Valid,
    /// Not an atna key at all (shape or checksum); decided without a lookup.
    Malformed,
    /// No key has this Credential ID.
    NotFound,
    /// The Credential ID exists but the secret is wrong.
    InvalidSecret,
    Expired,
    /// The key was deleted.
    Revoked,
    /// The key, or its owner's account, is disabled.
    Disabled,
    /// The key is good but may not be used from this address (its IP allowlist).
    IpNotAllowed,
    /// The key is good but lacks a scope the caller asked about.
    InsufficientScope,
    /// The key is good but has used up its rate limit for now.
    RateLimited,
    /// The key is good but its usage quota is used up.
    UsageExceeded,
}

impl VerifyCode {
    /// Every code, in declaration order (`ALL[c.index()] == c`, a test checks it). A new code is one more line here:
    /// per-key usage counts refusals in a small array indexed by the code, so it needs no other change.
    pub const ALL: &'static [VerifyCode] = &[
        VerifyCode::Valid,
        VerifyCode::Malformed,
        VerifyCode::NotFound,
        VerifyCode::InvalidSecret,
        VerifyCode::Expired,
        VerifyCode::Revoked,
        VerifyCode::Disabled,
        VerifyCode::IpNotAllowed,
        VerifyCode::InsufficientScope,
        VerifyCode::RateLimited,
        VerifyCode::UsageExceeded,
    ];

    /// The code's position in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The code whose [`as_str`](Self::as_str) this is.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    /// The stable machine-readable form.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyCode::Valid => "VALID",
            VerifyCode::Malformed => "MALFORMED",
            VerifyCode::NotFound => "NOT_FOUND",
            VerifyCode::InvalidSecret => "INVALID_SECRET",
            VerifyCode::Expired => "EXPIRED",
            VerifyCode::Revoked => "REVOKED",
            VerifyCode::Disabled => "DISABLED",
            VerifyCode::IpNotAllowed => "IP_NOT_ALLOWED",
            VerifyCode::InsufficientScope => "INSUFFICIENT_SCOPE",
            VerifyCode::RateLimited => "RATE_LIMITED",
            VerifyCode::UsageExceeded => "USAGE_EXCEEDED",
        }
    }

    /// A sentence for people.
    pub fn explain(self) -> &'static str {
        match self {
            VerifyCode::Valid => "The key is valid.",
            VerifyCode::Malformed => "This is not an atna API key: check that it was copied whole.",
            VerifyCode::NotFound => "No API key has this Credential ID.",
            VerifyCode::InvalidSecret => "The API key's secret is wrong.",
            VerifyCode::Expired => "The API key has expired.",
            VerifyCode::Revoked => "The API key was deleted and no longer works.",
            VerifyCode::Disabled => "The API key, or the account that owns it, is disabled.",
            VerifyCode::IpNotAllowed => "The API key may not be used from this IP address (see its IP allowlist).",
            VerifyCode::InsufficientScope => "The API key lacks a scope that was asked for.",
            VerifyCode::RateLimited => "The API key has made too many requests; try again after the time given.",
            VerifyCode::UsageExceeded => "The API key's usage quota is used up.",
        }
    }
}

/// A key's status as people and programs are shown it: the stored status, except that an active key past its expiry
/// is `expired`. Every face (REST API, CLI, dashboard) shows this one, so a dead key never looks healthy.
pub fn shown_status(status: KeyStatus, expires_at: Option<Millis>, now: Millis) -> &'static str {
    match status {
        KeyStatus::Active if expires_at.is_some_and(|t| t <= now) => "expired",
        s => s.as_str(),
    }
}

/// Whether a key whose secret matched may be used now.
pub fn decide(status: KeyStatus, owner_disabled: bool, expires_at: Option<Millis>, now: Millis) -> VerifyCode {
    match status {
        KeyStatus::Revoked => VerifyCode::Revoked,
        KeyStatus::Disabled => VerifyCode::Disabled,
        KeyStatus::Active if owner_disabled => VerifyCode::Disabled,
        KeyStatus::Active => match expires_at {
            Some(at) if at <= now => VerifyCode::Expired,
            _ => VerifyCode::Valid,
        },
    }
}

/// The best-practice flags for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyHealth {
    /// Older than the rotation-due age (90 days by default): rotate it.
    pub rotation_due: bool,
    /// Never used (past a day's grace) or unused for the unused age (30 days by default): consider deleting it.
    pub unused: bool,
    /// Age in whole days.
    pub age_days: i64,
}

impl KeyHealth {
    /// Computes the flags at `now` under the default policy (rotation due at 90 days, unused at 30).
    pub fn at(created_at: Millis, last_used_at: Option<Millis>, now: Millis) -> Self {
        Self::under(&crate::Policy::default(), created_at, last_used_at, now)
    }

    /// Computes the flags at `now` under the installation's `policy` (its rotation-due and unused ages).
    pub fn under(policy: &crate::Policy, created_at: Millis, last_used_at: Option<Millis>, now: Millis) -> Self {
        Self {
            rotation_due: policy.rotation_due(created_at, now),
            unused: policy.unused(created_at, last_used_at, now),
            age_days: (now - created_at).max(0) / DAY_MS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_in_order() {
        for (i, c) in VerifyCode::ALL.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?} is out of order in VerifyCode::ALL");
            assert_eq!(VerifyCode::parse(c.as_str()), Some(*c));
        }
        // A new variant breaks this match until it is added here, and then the loop above until it is in `ALL`.
        let last = VerifyCode::ALL[VerifyCode::ALL.len() - 1];
        match last {
            VerifyCode::Valid
            | VerifyCode::Malformed
            | VerifyCode::NotFound
            | VerifyCode::InvalidSecret
            | VerifyCode::Expired
            | VerifyCode::Revoked
            | VerifyCode::Disabled
            | VerifyCode::IpNotAllowed
            | VerifyCode::InsufficientScope
            | VerifyCode::RateLimited => panic!("{last:?} is not the last variant"),
            VerifyCode::UsageExceeded => {}
        }
        assert_eq!(VerifyCode::parse("valid"), None, "the stored form is exact");
    }

    #[test]
    fn decisions() {
        use KeyStatus::*;
        assert_eq!(decide(Active, false, None, 10), VerifyCode::Valid);
        assert_eq!(decide(Active, false, Some(11), 10), VerifyCode::Valid);
        assert_eq!(decide(Active, false, Some(10), 10), VerifyCode::Expired);
        assert_eq!(decide(Active, true, None, 10), VerifyCode::Disabled);
        assert_eq!(decide(Disabled, false, None, 10), VerifyCode::Disabled);
        assert_eq!(decide(Revoked, false, Some(1), 10), VerifyCode::Revoked);
    }

    #[test]
    fn expired_keys_are_shown_as_expired() {
        assert_eq!(shown_status(KeyStatus::Active, Some(10), 10), "expired");
        assert_eq!(shown_status(KeyStatus::Active, Some(11), 10), "active");
        assert_eq!(shown_status(KeyStatus::Active, None, 10), "active");
        assert_eq!(shown_status(KeyStatus::Disabled, Some(1), 10), "disabled");
        assert_eq!(shown_status(KeyStatus::Revoked, Some(1), 10), "revoked");
    }

    #[test]
    fn health_flags() {
        let now = 200 * DAY_MS;
        let h = KeyHealth::at(now - 91 * DAY_MS, Some(now - DAY_MS), now);
        assert!(h.rotation_due && !h.unused);
        assert_eq!(h.age_days, 91);
        assert!(KeyHealth::at(now - 2 * DAY_MS, None, now).unused);
        assert!(!KeyHealth::at(now - 1000, None, now).unused, "a brand-new key is not nagged");
        assert!(KeyHealth::at(now - 60 * DAY_MS, Some(now - 31 * DAY_MS), now).unused);
        assert!(!KeyHealth::at(now - 89 * DAY_MS, Some(now), now).rotation_due);
        for s in [KeyStatus::Active, KeyStatus::Disabled, KeyStatus::Revoked] {
            assert_eq!(KeyStatus::parse(s.as_str()), Some(s));
        }
    }
}
