//! Scopes: what a key may do. `keys:manage` lets a key manage its owner's keys over the REST API; other scopes are
//! the platform's own and atna only stores, checks and reports them.

use std::fmt;

/// The scope that allows managing keys through `/v1/keys`.
pub const MANAGE_KEYS: &str = "keys:manage";
/// Longest scope, in bytes.
pub const MAX_SCOPE_LEN: usize = 64;
/// Most scopes on one key.
pub const MAX_SCOPES: usize = 32;

/// One scope, such as `keys:manage` or `invoices:read`: lowercase letters, digits and `:._-*`, starting with a
/// letter, at most 64 characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

/// Why a scope list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("`{0}` is not a valid scope: use lowercase letters, digits and `:._-*`, starting with a letter, at most {MAX_SCOPE_LEN} characters.")]
    Invalid(String),
    #[error("A key has at most {MAX_SCOPES} scopes.")]
    TooMany,
}

impl Scope {
    /// Parses one scope.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_SCOPE_LEN
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b":._-*".contains(&c));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            let shown: String = s.chars().take(MAX_SCOPE_LEN).collect();
            Err(ScopeError::Invalid(shown))
        }
    }

    /// The scope as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key's scopes: a sorted set without duplicates.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parses a list of scopes, dropping duplicates.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, ScopeError> {
        let mut v = items.iter().map(|s| Scope::parse(s.as_ref())).collect::<Result<Vec<_>, _>>()?;
        v.sort();
        v.dedup();
        if v.len() > MAX_SCOPES {
            return Err(ScopeError::TooMany);
        }
        Ok(Self(v))
    }

    /// Reads scopes back from their stored form (space-separated, as in OAuth).
    pub fn from_stored(s: &str) -> Result<Self, ScopeError> {
        let items: Vec<&str> = s.split_ascii_whitespace().collect();
        Self::parse(&items)
    }

    /// The stored form: space-separated.
    pub fn to_stored(&self) -> String {
        self.iter().collect::<Vec<_>>().join(" ")
    }

    /// Whether the set holds this scope.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s.0 == scope)
    }

    /// Whether every scope of `self` is also in `other`: a key can only grant what it has.
    pub fn is_subset_of(&self, other: &Scopes) -> bool {
        self.0.iter().all(|s| other.0.binary_search(s).is_ok())
    }

    /// The scopes of `self` missing from `other`.
    pub fn missing_from<'a>(&'a self, other: &'a Scopes) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(|s| other.0.binary_search(s).is_err()).map(|s| s.as_str())
    }

    /// The scopes as text, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| s.as_str())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_sort_and_dedup() {
        let s = Scopes::parse(&["keys:manage", "billing:read", "keys:manage"]).unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), ["billing:read", "keys:manage"]);
        assert_eq!(Scopes::from_stored(&s.to_stored()).unwrap(), s);
        assert!(s.contains(MANAGE_KEYS));
        assert_eq!(Scopes::from_stored("").unwrap(), Scopes::default());
    }

    #[test]
    fn bad_scopes_are_refused() {
        for bad in ["", "Keys", "1abc", "a b", "a\n", &"a".repeat(65), "ключ"] {
            assert!(Scopes::parse(&[bad]).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
        assert_eq!(Scopes::parse(&many).unwrap_err(), ScopeError::TooMany);
    }

    #[test]
    fn subsets() {
        let all = Scopes::parse(&["a", "b", "keys:manage"]).unwrap();
        let some = Scopes::parse(&["b"]).unwrap();
        let other = Scopes::parse(&["b", "c"]).unwrap();
        assert!(some.is_subset_of(&all));
        assert!(Scopes::default().is_subset_of(&some));
        assert!(!other.is_subset_of(&all));
        assert_eq!(other.missing_from(&all).collect::<Vec<_>>(), ["c"]);
    }
}
