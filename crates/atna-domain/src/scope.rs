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
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::test_cases(2_000)))]

        /// Any list of any text: never a panic; what parses is a sorted set of at most 32 valid scopes whose stored
        /// form reads back to the same set, and an error never echoes more than 64 characters of the input.
        #[test]
        fn any_lists_are_judged_without_panicking(
            items in proptest::collection::vec(prop_oneof![any::<String>(), "[a-z][a-z0-9:._*-]{0,70}"], 0..40)
        ) {
            match Scopes::parse(&items) {
                Ok(s) => {
                    prop_assert!(s.iter().count() <= MAX_SCOPES);
                    prop_assert!(s.iter().all(|x| Scope::parse(x).is_ok()));
                    prop_assert!(s.iter().zip(s.iter().skip(1)).all(|(a, b)| a < b), "sorted, no duplicates");
                    prop_assert_eq!(Scopes::from_stored(&s.to_stored()).unwrap(), s.clone());
                    prop_assert!(items.iter().all(|i| s.contains(i)));
                }
                Err(ScopeError::Invalid(shown)) => prop_assert!(shown.chars().count() <= MAX_SCOPE_LEN),
                Err(ScopeError::TooMany) => prop_assert!(items.len() > MAX_SCOPES),
            }
        }

        /// The stored form is read from any text (a hand-edited database) without a panic.
        #[test]
        fn any_stored_text_is_read_without_panicking(s in any::<String>()) {
            if let Ok(scopes) = Scopes::from_stored(&s) {
                prop_assert_eq!(Scopes::from_stored(&scopes.to_stored()).unwrap(), scopes);
            }
        }

        /// A subset is a subset, and nothing is missing from a superset.
        #[test]
        fn subsets_agree_with_missing(a in proptest::collection::vec("[a-d]", 0..4), b in proptest::collection::vec("[a-d]", 0..4)) {
            let (a, b) = (Scopes::parse(&a).unwrap(), Scopes::parse(&b).unwrap());
            prop_assert_eq!(a.is_subset_of(&b), a.missing_from(&b).next().is_none());
        }
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
