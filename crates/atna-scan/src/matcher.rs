//! Finding atna keys in bytes: any key prefix, and only strings whose checksum is right.
//!
//! A key is `<prefix>_<id>_<secret>_<crc>`: a prefix of 2–16 lowercase letters and digits (`atna` unless the
//! installation chose its own), a 16-character Credential ID, a 43-character secret and 6 base62 digits of the CRC32
//! of everything before the last `_` (the prefix included), as `atna_domain::credential` writes them. Only the
//! checksum tells a key from a look-alike, so only strings whose checksum is right are reported: a random string of
//! the right shape passes with a chance of one in 4 billion.
//!
//! The search is linear and has no regular expression: `memchr` finds each `_`, and a candidate is checked at fixed
//! offsets from it (the three `_` of a key are always 17 and 61 bytes apart) before any character class or checksum
//! is looked at. Every `_` costs a bounded amount of work, whatever the input, so a hostile file cannot make the
//! scan slower than a constant times its size.

use std::fmt;

use atna_domain::credential::{CHECKSUM_LEN, ID_LEN, SECRET_LEN};
use atna_domain::{CredentialId, SecretHash};

/// Shortest key prefix (without its `_`).
pub const MIN_PREFIX: usize = 2;
/// Longest key prefix (without its `_`).
pub const MAX_PREFIX: usize = 16;
/// From the `_` after the prefix to the end of the key.
const TAIL_LEN: usize = 1 + ID_LEN + 1 + SECRET_LEN + 1 + CHECKSUM_LEN;
/// Offsets from the `_` after the prefix.
const SECOND_SEP: usize = 1 + ID_LEN;
const THIRD_SEP: usize = SECOND_SEP + 1 + SECRET_LEN;

/// The regular expression an operator can give another scanner for keys of any prefix (the checksum must still be
/// checked to rule out look-alikes). Documentation only: this crate does not use it.
pub const ANY_PREFIX_REGEX: &str = r"\b[a-z0-9]{2,16}_[0-9A-Za-z]{16}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}\b";

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The CRC32 of `body` as six base62 digits, exactly as `atna_domain::credential::encode` appends it (a test below
/// holds the two together).
fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = u64::from(crc32fast::hash(body));
    let mut out = [b'0'; CHECKSUM_LEN];
    for c in out.iter_mut().rev() {
        *c = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_prefix_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A whole key found in some text. The key itself is kept only to ask a store or a server about it
/// ([`FoundKey::expose`]); `Debug` never prints it and it is never serialised.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FoundKey(String);

impl FoundKey {
    /// The key, for the one request that asks about it (`--check`).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The prefix (without its `_`).
    pub fn prefix(&self) -> &str {
        &self.0[..self.0.len() - TAIL_LEN]
    }

    /// The Credential ID it embeds.
    pub fn id(&self) -> CredentialId {
        let start = self.0.len() - TAIL_LEN + 1;
        // Checked when the key was found: 16 base62 characters.
        CredentialId::parse(&self.0[start..start + ID_LEN]).expect("a found key holds a Credential ID")
    }

    /// The hash the store keeps for this key (of its secret part).
    pub fn hash(&self) -> SecretHash {
        let start = self.0.len() - TAIL_LEN + SECOND_SEP + 1;
        SecretHash::of(&self.0[start..start + SECRET_LEN])
    }
}

impl fmt::Debug for FoundKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FoundKey({}_{}_[redacted])", self.prefix(), self.id())
    }
}

/// One key in a haystack: where it starts and ends (byte offsets) and the key.
#[derive(Debug, Clone)]
pub struct Match {
    pub start: usize,
    pub end: usize,
    pub key: FoundKey,
}

/// Every key in `hay`, in order. Each `_` that could follow a prefix is tried; for a candidate, the longest run of
/// prefix characters before it (at most 16) is tried from its longest to its shortest prefix, so a key glued to
/// other text (`token=xatna_…`, `MY_atna_…`) is still found, and the first prefix whose checksum is right wins.
pub fn find_keys(hay: &[u8]) -> Vec<Match> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = memchr::memchr(b'_', &hay[from..]) {
        let sep = from + rel;
        from = sep + 1;
        if let Some(m) = candidate(hay, sep) {
            // A key holds no other key: go on after it.
            from = m.end;
            out.push(m);
        }
    }
    out
}

/// The key whose prefix ends at `hay[sep] == '_'`, if there is one.
fn candidate(hay: &[u8], sep: usize) -> Option<Match> {
    let end = sep + TAIL_LEN;
    if end > hay.len() || sep < MIN_PREFIX {
        return None;
    }
    // The cheap tests first: two more separators at fixed places, and no base62 character glued to the end.
    if hay[sep + SECOND_SEP] != b'_' || hay[sep + THIRD_SEP] != b'_' {
        return None;
    }
    if hay.get(end).copied().is_some_and(is_base62) {
        return None;
    }
    let tail = &hay[sep + 1..end];
    let parts_ok = tail[..ID_LEN].iter().copied().all(is_base62)
        && tail[SECOND_SEP..THIRD_SEP - 1].iter().copied().all(is_base62)
        && tail[THIRD_SEP..].iter().copied().all(is_base62);
    if !parts_ok {
        return None;
    }
    let mut run = 0;
    while run < MAX_PREFIX && run < sep && is_prefix_char(hay[sep - 1 - run]) {
        run += 1;
    }
    let body_end = sep + THIRD_SEP;
    (MIN_PREFIX..=run).rev().find_map(|len| {
        let start = sep - len;
        if checksum(&hay[start..body_end]) != hay[body_end + 1..end] {
            return None;
        }
        // Only ASCII was accepted, so this is valid UTF-8.
        let key = String::from_utf8(hay[start..end].to_vec()).ok()?;
        Some(Match { start, end, key: FoundKey(key) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use atna_domain::credential::encode;
    use atna_domain::GeneratedKey;

    /// A key with any prefix, built like `encode` builds `atna_` keys.
    pub(crate) fn key_with_prefix(prefix: &str) -> String {
        let atna = GeneratedKey::generate().secret.expose().to_owned();
        let body = format!("{prefix}_{}", &atna[5..5 + ID_LEN + 1 + SECRET_LEN]);
        let sum = checksum(body.as_bytes());
        format!("{body}_{}", std::str::from_utf8(&sum).unwrap())
    }

    #[test]
    fn the_checksum_is_the_domains() {
        for _ in 0..50 {
            let g = GeneratedKey::generate();
            let key = g.secret.expose();
            let found = find_keys(key.as_bytes());
            assert_eq!(found.len(), 1, "{key:?}");
            assert_eq!(found[0].key.id(), g.id);
            assert!(found[0].key.hash().matches(&g.hash));
            assert_eq!(found[0].key.prefix(), "atna");
        }
        let id = CredentialId::generate();
        let k = encode(&id, &[b'x'; SECRET_LEN]);
        assert_eq!(find_keys(k.as_bytes())[0].key.id(), id);
    }

    #[test]
    fn any_prefix_is_found_with_its_offsets() {
        for prefix in ["ac", "acme", "0123456789abcdef", "x9"] {
            let key = key_with_prefix(prefix);
            let text = format!("line one\nAPI_KEY=\"{key}\" # comment\n");
            let found = find_keys(text.as_bytes());
            assert_eq!(found.len(), 1, "{prefix}");
            assert_eq!(&text[found[0].start..found[0].end], key);
            assert_eq!(found[0].key.prefix(), prefix);
        }
    }

    #[test]
    fn keys_glued_to_text_are_found() {
        let key = key_with_prefix("acme");
        for text in [format!("MY_{key}"), format!("xyz{key}"), format!("é{key}."), format!("{key}_suffix")] {
            let found = find_keys(text.as_bytes());
            assert_eq!(found.len(), 1, "{text}");
            assert_eq!(found[0].key.expose(), key);
        }
    }

    #[test]
    fn look_alikes_are_not_reported() {
        let key = key_with_prefix("acme");
        let mut typo = key.clone().into_bytes();
        let i = key.len() - 10;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        assert!(find_keys(&typo).is_empty(), "one changed character");
        assert!(find_keys(format!("{key}x").as_bytes()).is_empty(), "glued to more base62 characters");
        assert!(find_keys(&key.as_bytes()[..key.len() - 1]).is_empty(), "cut off");
        let upper = key.replacen("acme", "ACME", 1);
        assert!(find_keys(upper.as_bytes()).is_empty(), "prefixes are lowercase");
        let shape = format!("acme_{}_{}_{}", "A".repeat(16), "b".repeat(43), "C".repeat(6));
        assert!(find_keys(shape.as_bytes()).is_empty(), "the right shape with a wrong checksum");
    }

    #[test]
    fn several_keys_and_underscore_floods() {
        let (a, b) = (key_with_prefix("atna"), key_with_prefix("zz"));
        let text = format!("{a}\n{}\n{b} {a}", "_".repeat(10_000));
        let found: Vec<String> = find_keys(text.as_bytes()).into_iter().map(|m| m.key.expose().to_owned()).collect();
        assert_eq!(found, [a.clone(), b, a]);
        assert!(find_keys(&[b'_'; 100_000]).is_empty());
        assert!(find_keys(b"").is_empty());
        assert!(find_keys(b"_").is_empty());
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let key = key_with_prefix("acme");
        let m = &find_keys(key.as_bytes())[0];
        let dbg = format!("{m:?}");
        assert!(!dbg.contains(&key[22..60]), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    proptest::proptest! {
        /// The matcher agrees with the published regular expression plus the checksum, on text that holds keys,
        /// look-alikes and noise.
        #[test]
        fn agrees_with_the_regex(tokens in proptest::collection::vec((0u8..5, 0u8..4), 0..40)) {
            let re = regex::bytes::Regex::new(ANY_PREFIX_REGEX).unwrap();
            let mut text = Vec::new();
            // Tokens end at a word boundary, where the regular expression's `\b` holds; the matcher's extra reach
            // (keys glued to other text) has its own test above.
            for (token, sep) in tokens {
                match token {
                    0 => text.extend_from_slice(key_with_prefix("acme").as_bytes()),
                    1 => {
                        let mut k = key_with_prefix("atna").into_bytes();
                        k[30] = if k[30] == b'q' { b'r' } else { b'q' };
                        text.extend_from_slice(&k);
                    }
                    2 => text.extend_from_slice(b"_x_"),
                    3 => text.extend_from_slice("é".as_bytes()),
                    _ => text.extend_from_slice(b"abc"),
                }
                text.push([b' ', b'\n', b'=', b'"'][usize::from(sep)]);
            }
            let ours: Vec<String> = find_keys(&text).into_iter().map(|m| m.key.expose().to_owned()).collect();
            let theirs: Vec<String> = re
                .find_iter(&text)
                .map(|m| m.as_bytes())
                .filter(|k| {
                    let body = &k[..k.len() - 7];
                    checksum(body) == k[k.len() - 6..]
                })
                .map(|k| String::from_utf8(k.to_vec()).unwrap())
                .collect();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }
}
