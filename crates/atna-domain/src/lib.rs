//! atna's domain: the credential format, names, scopes, users and passwords, and the lifecycle rules that decide
//! whether a key is good. Pure functions and parsing newtypes; no I/O, so everything here is unit-tested in process
//! and shared by the CLI, the REST API, the dashboard and every storage backend.

pub mod cidr;
pub mod credential;
pub mod lifecycle;
pub mod limits;
pub mod name;
pub mod policy;
pub mod reminder;
pub mod scanner_rules;
pub mod scope;
pub mod user;

pub use cidr::{AllowlistError, Cidr, CidrError, IpAllowlist};
pub use credential::{
    looks_like_key, ApiKeySecret, CredentialId, GeneratedKey, InvalidKeyPrefix, KeyFormat, KeyPrefix, MalformedKey,
    ParsedKey, SecretHash,
};
pub use lifecycle::{KeyHealth, KeyStatus, VerifyCode};
pub use limits::{LimitError, Quota, RateDecision, RateLimit, Refill, RefillInterval};
pub use name::{KeyName, KeyNameError};
pub use policy::{ExpiryChoice, LifetimeExceedsPolicy, Policy, PolicyError, DAY_MS};
pub use reminder::ReminderKind;
pub use scope::{Scope, ScopeError, Scopes};
pub use user::{Email, EmailError, Password, PasswordError, PasswordHash, UserId};

/// Milliseconds since the Unix epoch, the one time representation every backend stores.
pub type Millis = i64;

/// How many cases a property test runs: `default` normally, `ATNA_PROPTEST_CASES` in the long mode (docs/development.md: "Long
/// runs"). Public so every crate's property tests honour the same variable.
#[doc(hidden)]
pub fn test_cases(default: u32) -> u32 {
    std::env::var("ATNA_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
