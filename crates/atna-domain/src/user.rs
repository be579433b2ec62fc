//! Users: their IDs, e-mail addresses, and argon2id password hashing.

use std::fmt;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// A user's numeric ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A normalised (trimmed, lowercased) e-mail address.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Email(String);

/// The text is not an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Enter an e-mail address such as alice@example.com.")]
pub struct EmailError;

impl Email {
    /// Parses and normalises an address. Deliberately loose (one `@`, a dot-free local part is fine): the address is
    /// a login name, not a mailbox atna writes to.
    pub fn parse(s: &str) -> Result<Self, EmailError> {
        let s = s.trim().to_lowercase();
        let ok = s.len() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(s.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@'));
        if ok {
            Ok(Self(s))
        } else {
            Err(EmailError)
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shortest password accepted (NIST SP 800-63B).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, so hashing cost stays bounded.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// A password in clear text; `Debug` never prints it.
#[derive(Clone)]
pub struct Password(String);

/// Why a new password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("The password must be at least {MIN_PASSWORD_CHARS} characters.")]
    TooShort,
    #[error("The password must be at most {MAX_PASSWORD_CHARS} characters.")]
    TooLong,
}

impl Password {
    /// A password someone is choosing: checked against the length rules.
    pub fn new(s: String) -> Result<Self, PasswordError> {
        let n = s.chars().count();
        if n < MIN_PASSWORD_CHARS {
            Err(PasswordError::TooShort)
        } else if n > MAX_PASSWORD_CHARS {
            Err(PasswordError::TooLong)
        } else {
            Ok(Self(s))
        }
    }

    /// A password someone is logging in with: not checked, only compared.
    pub fn attempt(s: String) -> Self {
        Self(s)
    }

    fn bytes(&self) -> &[u8] {
        // Longer attempts cannot match any stored password; cap them so hashing cost stays bounded.
        let b = self.0.as_bytes();
        &b[..b.len().min(MAX_PASSWORD_CHARS * 4)]
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// An argon2id hash in PHC string form.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

fn argon2() -> Argon2<'static> {
    // OWASP's recommendation: m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl PasswordHash {
    /// Hashes a password with argon2id and a random salt.
    pub fn hash(password: &Password) -> Self {
        let salt = SaltString::generate(&mut OsRng);
        let phc = argon2().hash_password(password.bytes(), &salt).map(|h| h.to_string()).unwrap_or_default();
        Self(phc)
    }

    /// Wraps a hash read back from storage.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The PHC string, for storage.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the password matches. A corrupt stored hash never matches.
    pub fn verify(&self, password: &Password) -> bool {
        match argon2::PasswordHash::new(&self.0) {
            Ok(parsed) => argon2().verify_password(password.bytes(), &parsed).is_ok(),
            Err(_) => false,
        }
    }

    /// A hash of nothing anyone knows, to spend the same time on unknown accounts as on known ones.
    pub fn dummy() -> &'static PasswordHash {
        static DUMMY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
        DUMMY.get_or_init(|| PasswordHash::hash(&Password::attempt("atna-dummy-password".into())))
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::test_cases(2_000)))]

        /// Any text: never a panic; what parses is normalised (parsing it again changes nothing), at most 254 bytes,
        /// with exactly one `@` between non-empty parts and no white space or control characters.
        #[test]
        fn any_text_is_judged_without_panicking(s in prop_oneof![any::<String>(), "\\PC{0,20}@\\PC{0,20}", "[ A-Za-z.+]{0,8}@[A-Za-z.-]{0,8}"]) {
            if let Ok(e) = Email::parse(&s) {
                let text = e.as_str();
                prop_assert_eq!(&Email::parse(text).unwrap(), &e);
                prop_assert!(text.len() <= 254);
                prop_assert_eq!(text.matches('@').count(), 1);
                prop_assert!(!text.starts_with('@') && !text.ends_with('@'));
                prop_assert!(!text.chars().any(|c| c.is_whitespace() || c.is_control()));
            }
        }

        /// Ordinary addresses parse, and case and surrounding spaces do not make a different user.
        #[test]
        fn ordinary_addresses_parse_case_blind(local in "[A-Za-z0-9._%+-]{1,30}", domain in "[A-Za-z0-9-]{1,20}\\.[A-Za-z]{2,6}") {
            let a = Email::parse(&format!("  {local}@{domain} ")).unwrap();
            let b = Email::parse(&format!("{}@{}", local.to_uppercase(), domain.to_lowercase())).unwrap();
            prop_assert_eq!(a, b);
        }

        /// A password of any length is checked against the rules without a panic, and `Debug` never shows it.
        #[test]
        fn passwords_are_judged_without_panicking(s in "\\PC{0,40}") {
            let n = s.chars().count();
            match Password::new(s.clone()) {
                Ok(p) => {
                    prop_assert!((MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n));
                    prop_assert_eq!(format!("{:?}", p), "Password([redacted])");
                }
                Err(_) => prop_assert!(n < MIN_PASSWORD_CHARS),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalise() {
        assert_eq!(Email::parse(" Alice@Example.COM ").unwrap().as_str(), "alice@example.com");
        for bad in ["", "alice", "@x", "a@", "a b@x", "a@b@c", "a\n@x"] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let p = Password::new("correct horse".into()).unwrap();
        let h = PasswordHash::hash(&p);
        assert!(h.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify(&p));
        assert!(!h.verify(&Password::attempt("wrong horse".into())));
        assert!(!PasswordHash::from_stored("garbage".into()).verify(&p));
        assert_ne!(PasswordHash::hash(&p), h, "salts differ");
    }

    #[test]
    fn password_rules() {
        assert_eq!(Password::new("short".into()).unwrap_err(), PasswordError::TooShort);
        assert_eq!(Password::new("x".repeat(1025)).unwrap_err(), PasswordError::TooLong);
        assert!(!format!("{:?}", Password::attempt("hunter22".into())).contains("hunter22"));
    }
}
