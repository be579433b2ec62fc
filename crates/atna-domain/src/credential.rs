//! The API key ("Credential Secret") format and its public half, the Credential ID.
//!
//! A key looks like `<prefix>_<id>_<secret>_<checksum>`:
//!
//! * `<prefix>` identifies the issuer, so secret scanners can match it with one regular expression: `atna` unless
//!   the installation chose its own ([`KeyPrefix`]: 2–16 lowercase letters and digits, e.g. `acme`). An installation
//!   accepts every prefix it ever issued ([`KeyFormat`]); [`looks_like_key`] accepts any valid prefix (for scanners);
//! * `<id>` is the Credential ID: 16 base62 characters (≈ 95 bits) from the OS CSPRNG, public and safe to log;
//! * `<secret>` is 43 base62 characters (≈ 256 bits) from the OS CSPRNG;
//! * `<checksum>` is the CRC32 of everything before its `_`, as 6 base62 digits, so a mistyped or truncated key is
//!   rejected offline, without touching the store.
//!
//! The server stores only the SHA-256 of the secret part. A fast hash is right here: the input is a long random secret,
//! not a human password, so there is nothing for a slow hash to protect against and every request pays for it.
//! Hashing the 43-character secret rather than the whole 72-character key fits SHA-256's single 64-byte block, which
//! halves the hot path's largest cost; the ID needs no hashing, as it is what finds the record in the first place.

use std::fmt;

use rand::rngs::OsRng;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Keys of an installation that chose no prefix of its own start with this.
pub const PREFIX: &str = "atna_";
/// The prefix of an installation that chose none ([`PREFIX`] without its `_`).
pub const DEFAULT_PREFIX: &str = "atna";
/// Fewest characters in a [`KeyPrefix`].
pub const PREFIX_MIN: usize = 2;
/// Most characters in a [`KeyPrefix`].
pub const PREFIX_MAX: usize = 16;
/// Characters in a Credential ID.
pub const ID_LEN: usize = 16;
/// Characters in the random secret part.
pub const SECRET_LEN: usize = 43;
/// Characters of the base62-encoded CRC32 checksum.
pub const CHECKSUM_LEN: usize = 6;
/// Length of a key after its prefix: `_` + id + `_` + secret + `_` + checksum.
pub const BODY_LEN: usize = 1 + ID_LEN + 1 + SECRET_LEN + 1 + CHECKSUM_LEN;
/// Length of a whole key with the default prefix: `atna_` + id + `_` + secret + `_` + checksum.
pub const KEY_LEN: usize = DEFAULT_PREFIX.len() + BODY_LEN;
/// The regular expression a secret scanner can use to find keys with the default prefix
/// ([`KeyFormat::regex`] for others).
pub const KEY_REGEX: &str = r"\batna_[0-9A-Za-z]{16}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}\b";

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
// Offsets after the prefix (`p` = the prefix's length): the `_` after the prefix is at `p`.
const ID_START: usize = 1;
const ID_END: usize = ID_START + ID_LEN;
const SECRET_START: usize = ID_END + 1;
const SECRET_END: usize = SECRET_START + SECRET_LEN;
const CHECKSUM_START: usize = SECRET_END + 1;

/// An installation's key prefix: 2–16 lowercase ASCII letters and digits (`acme` gives `acme_<id>_<secret>_<crc>`).
/// One word, no `_`, so a key splits unambiguously and a double-click still selects all of it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Parses a prefix as configured (`acme`; a trailing `_` is not part of it).
    pub fn parse(s: &str) -> Result<Self, InvalidKeyPrefix> {
        if Self::valid(s.as_bytes()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidKeyPrefix)
        }
    }

    fn valid(b: &[u8]) -> bool {
        (PREFIX_MIN..=PREFIX_MAX).contains(&b.len()) && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    }

    /// The prefix as text, without its `_`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        Self(DEFAULT_PREFIX.to_owned())
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPrefix({})", self.0)
    }
}

impl std::str::FromStr for KeyPrefix {
    type Err = InvalidKeyPrefix;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The text is not a key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a key prefix is 2 to 16 lowercase letters and digits (e.g. `acme`)")]
pub struct InvalidKeyPrefix;

/// The prefixes an installation accepts: every one it ever issued keys with (the current one first). Parsing with it
/// still rejects malformed keys, and keys with any other prefix, without a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    prefixes: Vec<KeyPrefix>,
}

impl Default for KeyFormat {
    fn default() -> Self {
        Self::new(KeyPrefix::default(), [])
    }
}

impl KeyFormat {
    /// The format of an installation that issues keys with `current` and issued keys with `older` before.
    pub fn new(current: KeyPrefix, older: impl IntoIterator<Item = KeyPrefix>) -> Self {
        let mut prefixes = vec![current];
        for p in older {
            if !prefixes.contains(&p) {
                prefixes.push(p);
            }
        }
        Self { prefixes }
    }

    /// The prefix new keys get.
    pub fn current(&self) -> &KeyPrefix {
        &self.prefixes[0]
    }

    /// Every accepted prefix, the current one first.
    pub fn prefixes(&self) -> &[KeyPrefix] {
        &self.prefixes
    }

    /// Checks the format and checksum of a presented key, and that its prefix is one of these.
    pub fn parse<'a>(&self, key: &'a str) -> Result<ParsedKey<'a>, MalformedKey> {
        let parsed = ParsedKey::parse_any(key)?;
        if self.prefixes.iter().any(|p| p.as_str() == parsed.prefix()) {
            Ok(parsed)
        } else {
            Err(MalformedKey::WrongPrefix)
        }
    }

    /// The regular expression that finds keys with any of these prefixes (one alternative per prefix).
    pub fn regex(&self) -> String {
        let body = r"_[0-9A-Za-z]{16}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}";
        match self.prefixes.as_slice() {
            [one] => format!(r"\b{one}{body}\b"),
            many => {
                let alts: Vec<&str> = many.iter().map(KeyPrefix::as_str).collect();
                format!(r"\b(?:{}){body}\b", alts.join("|"))
            }
        }
    }
}

/// Whether `text` is a whole key of any installation: a valid prefix, the right shape and a matching checksum. For
/// scanners, which must find keys of every prefix an installation ever issued without asking it.
pub fn looks_like_key(text: &str) -> bool {
    ParsedKey::parse_any(text).is_ok()
}

fn random_base62<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for c in &mut out {
        // gen_range rejects biased draws, so every character is uniform over the 62 symbols.
        *c = BASE62[OsRng.gen_range(0..BASE62.len())];
    }
    out
}

fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Whether every byte is a base62 digit: without a branch per byte (the compiler vectorises it), as every presented
/// key passes here.
fn all_base62(s: &[u8]) -> bool {
    s.iter().fold(true, |ok, &b| {
        let lower = b | 0x20;
        ok & ((b.wrapping_sub(b'0') < 10) | (lower.wrapping_sub(b'a') < 26))
    })
}

fn checksum_chars(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for c in out.iter_mut().rev() {
        *c = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// The public identifier of a key: shown in lists, URLs and logs, and embedded in the key itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialId([u8; ID_LEN]);

impl CredentialId {
    /// A fresh random ID.
    pub fn generate() -> Self {
        Self(random_base62())
    }

    /// Parses an ID as shown to users (16 base62 characters).
    pub fn parse(s: &str) -> Result<Self, InvalidCredentialId> {
        let bytes = s.as_bytes();
        if bytes.len() != ID_LEN || !bytes.iter().copied().all(is_base62) {
            return Err(InvalidCredentialId);
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(bytes);
        Ok(Self(id))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        // Only base62 ASCII is ever stored in an ID, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialId({})", self.as_str())
    }
}

impl serde::Serialize for CredentialId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The text is not a Credential ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a Credential ID is 16 letters and digits")]
pub struct InvalidCredentialId;

/// The SHA-256 of a whole key: what the store keeps instead of the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Hashes a secret part (or any text, in tests).
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Rebuilds a hash read back from storage.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    /// The raw digest, for storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hexadecimal digits (the form `atna export` writes).
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
        out
    }

    /// Reads 64 lowercase hexadecimal digits back; anything else (uppercase included) is `None`, so every hash has
    /// exactly one text form.
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            *o = (digit(pair[0])? << 4) | digit(pair[1])?;
        }
        Some(Self(out))
    }

    /// Constant-time equality: how long it takes does not depend on where two hashes differ.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// A whole API key in clear text. It exists only between generation and the one response that shows it; `Debug`
/// never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// The key itself, for the single place that must show it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret([redacted])")
    }
}

/// Builds the key text for an ID and a secret part, with the default prefix and its checksum. Only
/// [`GeneratedKey::generate`] makes real keys; this is public so tests and tools can build keys that are well-formed
/// but wrong.
pub fn encode(id: &CredentialId, secret: &[u8; SECRET_LEN]) -> String {
    encode_with(&KeyPrefix::default(), id, secret)
}

/// [`encode`] with a given prefix.
pub fn encode_with(prefix: &KeyPrefix, id: &CredentialId, secret: &[u8; SECRET_LEN]) -> String {
    let mut key = Vec::with_capacity(prefix.0.len() + BODY_LEN);
    key.extend_from_slice(prefix.0.as_bytes());
    key.push(b'_');
    key.extend_from_slice(&id.0);
    key.push(b'_');
    key.extend_from_slice(secret);
    let sum = checksum_chars(&key);
    key.push(b'_');
    key.extend_from_slice(&sum);
    String::from_utf8(key).unwrap_or_default()
}

/// A new key: its ID, the secret to show once, and the hash to store.
#[derive(Debug)]
pub struct GeneratedKey {
    pub id: CredentialId,
    pub secret: ApiKeySecret,
    pub hash: SecretHash,
}

impl GeneratedKey {
    /// Generates a key with the default prefix from the OS CSPRNG.
    pub fn generate() -> Self {
        Self::generate_with(&KeyPrefix::default())
    }

    /// Generates a key with `prefix` from the OS CSPRNG.
    pub fn generate_with(prefix: &KeyPrefix) -> Self {
        let id = CredentialId::generate();
        let key = encode_with(prefix, &id, &random_base62());
        let p = prefix.0.len();
        let hash = SecretHash::of(&key[p + SECRET_START..p + SECRET_END]);
        Self { id, secret: ApiKeySecret(key), hash }
    }
}

/// Why a presented key is not an atna key at all. Decided without any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    #[error("The key is empty.")]
    Empty,
    #[error(
        "The key does not start with this installation's prefix (such as `atna_`): it is not one of its API keys."
    )]
    WrongPrefix,
    #[error("The key has the wrong length (a key is its prefix and {BODY_LEN} more characters): was it cut off when copied?")]
    WrongLength,
    #[error("The key contains characters an atna key never has.")]
    BadCharacter,
    #[error("The key's checksum does not match: it was mistyped or altered.")]
    BadChecksum,
}

/// A key that has the right shape and checksum: its ID is known, its secret not yet checked.
#[derive(Debug, Clone, Copy)]
pub struct ParsedKey<'a> {
    pub id: CredentialId,
    key: &'a str,
    /// Bytes before the first `_`.
    prefix_len: usize,
}

impl<'a> ParsedKey<'a> {
    /// Checks the format and checksum of a presented key with the default prefix (`atna_`); [`KeyFormat::parse`]
    /// accepts an installation's own prefixes.
    pub fn parse(key: &'a str) -> Result<Self, MalformedKey> {
        if key.is_empty() {
            return Err(MalformedKey::Empty);
        }
        if !key.as_bytes().starts_with(PREFIX.as_bytes()) {
            return Err(MalformedKey::WrongPrefix);
        }
        Self::parse_any(key)
    }

    /// Checks the format and checksum of a presented key with any valid prefix (2–16 lowercase letters and digits).
    /// The checksum covers everything before the last `_`, prefix included.
    pub fn parse_any(key: &'a str) -> Result<Self, MalformedKey> {
        let b = key.as_bytes();
        if b.is_empty() {
            return Err(MalformedKey::Empty);
        }
        let p = match b.iter().take(PREFIX_MAX + 1).position(|&c| c == b'_') {
            Some(p) if KeyPrefix::valid(&b[..p]) => p,
            _ => return Err(MalformedKey::WrongPrefix),
        };
        if b.len() != p + BODY_LEN {
            return Err(MalformedKey::WrongLength);
        }
        let rest = &b[p..];
        if rest[ID_END] != b'_' || rest[SECRET_END] != b'_' {
            return Err(MalformedKey::BadCharacter);
        }
        let parts = [&rest[ID_START..ID_END], &rest[SECRET_START..SECRET_END], &rest[CHECKSUM_START..]];
        if !parts.iter().all(|p| all_base62(p)) {
            return Err(MalformedKey::BadCharacter);
        }
        if checksum_chars(&b[..p + SECRET_END]) != rest[CHECKSUM_START..] {
            return Err(MalformedKey::BadChecksum);
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&rest[ID_START..ID_END]);
        Ok(Self { id: CredentialId(id), key, prefix_len: p })
    }

    /// The key's prefix, without its `_`.
    pub fn prefix(&self) -> &'a str {
        // `parse_any` checked that every byte is ASCII.
        &self.key[..self.prefix_len]
    }

    /// The hash to compare with the stored one.
    pub fn hash(&self) -> SecretHash {
        // `parse_any` checked the length and that every byte is ASCII, so this slice is on character boundaries.
        let p = self.prefix_len;
        SecretHash::of(&self.key[p + SECRET_START..p + SECRET_END])
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn base62<const N: usize>() -> impl Strategy<Value = [u8; N]> {
        proptest::array::uniform(proptest::sample::select(BASE62.to_vec()))
    }

    /// A well-formed key (right shape and checksum) from any ID and secret: what generation makes, but covering the
    /// whole space rather than what the CSPRNG happened to draw.
    fn any_key() -> impl Strategy<Value = (CredentialId, [u8; SECRET_LEN], String)> {
        (base62::<ID_LEN>(), base62::<SECRET_LEN>()).prop_map(|(id, secret)| {
            let id = CredentialId(id);
            let key = encode(&id, &secret);
            (id, secret, key)
        })
    }

    /// Positions a typo can hit without being a wrong character outright: every base62 character of the key.
    /// Where the body of a key with the default prefix starts (the offsets above are the body's).
    const P: usize = DEFAULT_PREFIX.len();

    fn base62_positions() -> impl Strategy<Value = usize> {
        prop_oneof![P + ID_START..P + ID_END, P + SECRET_START..P + SECRET_END, P + CHECKSUM_START..KEY_LEN]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::test_cases(2_000)))]

        /// Any text at all, and text shaped almost like a key: never a panic, and whatever parses is exactly a key of
        /// the documented shape whose ID is the one embedded in it.
        #[test]
        fn any_text_is_judged_without_panicking(
            s in prop_oneof![
                any::<String>(),
                "atna_[0-9A-Za-z_]{60,75}",
                "atna_\\PC{0,70}",
                "atna_[0-9A-Za-z]{16}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}",
            ]
        ) {
            if let Ok(p) = ParsedKey::parse(&s) {
                prop_assert_eq!(s.len(), KEY_LEN);
                prop_assert!(s.starts_with(PREFIX));
                prop_assert_eq!(p.id.as_str(), &s[ID_START..ID_END]);
                let _ = p.hash();
            }
            let _ = CredentialId::parse(&s);
            let _ = SecretHash::from_hex(&s);
        }

        /// Every well-formed key parses back to its ID and to the hash of its secret part.
        #[test]
        fn every_key_round_trips((id, secret, key) in any_key()) {
            let p = ParsedKey::parse(&key).unwrap();
            prop_assert_eq!(p.id, id);
            prop_assert!(p.hash().matches(&SecretHash::of(std::str::from_utf8(&secret).unwrap())));
            prop_assert_eq!(CredentialId::parse(id.as_str()), Ok(id));
            prop_assert!(key.len() == KEY_LEN);
        }

        /// One mistyped character (another letter or digit, anywhere in the ID, the secret or the checksum) is
        /// always caught by the checksum: CRC-32 detects every error confined to 32 consecutive bits.
        #[test]
        fn one_typo_is_always_caught((_, _, key) in any_key(), at in base62_positions(), shift in 1usize..BASE62.len()) {
            let mut b = key.into_bytes();
            // Another base62 character than the one there: `shift` steps further along the alphabet.
            let was = BASE62.iter().position(|&c| c == b[at]).unwrap();
            b[at] = BASE62[(was + shift) % BASE62.len()];
            let typo = String::from_utf8(b).unwrap();
            prop_assert_eq!(ParsedKey::parse(&typo).unwrap_err(), MalformedKey::BadChecksum);
        }

        /// Two neighbouring characters swapped (the commonest transcription error) are always caught too.
        #[test]
        fn swapped_neighbours_are_always_caught(
            (_, _, key) in any_key(),
            at in prop_oneof![P + ID_START..P + ID_END - 1, P + SECRET_START..P + SECRET_END - 1, P + CHECKSUM_START..KEY_LEN - 1]
        ) {
            let mut b = key.into_bytes();
            if b[at] == b[at + 1] {
                // Swapping equal characters changes nothing: there is no typo to catch.
                return Ok(());
            }
            b.swap(at, at + 1);
            let typo = String::from_utf8(b).unwrap();
            prop_assert_eq!(ParsedKey::parse(&typo).unwrap_err(), MalformedKey::BadChecksum);
        }

        /// A key cut short or with anything added is refused for its length, whatever was cut or added.
        #[test]
        fn cut_or_padded_keys_are_refused((_, _, key) in any_key(), cut in 1usize..KEY_LEN - PREFIX.len(), extra in "\\PC{1,8}") {
            prop_assert_eq!(ParsedKey::parse(&key[..KEY_LEN - cut]).unwrap_err(), MalformedKey::WrongLength);
            let padded = format!("{key}{extra}");
            prop_assert!(ParsedKey::parse(&padded).is_err());
        }

        /// The stored hash's text form reads back to itself.
        #[test]
        fn hashes_round_trip_through_hex(s in any::<String>()) {
            let h = SecretHash::of(&s);
            prop_assert_eq!(SecretHash::from_hex(&h.to_hex()), Some(h));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash_to_what_is_stored() {
        let k = GeneratedKey::generate();
        let s = k.secret.expose();
        assert_eq!(s.len(), KEY_LEN);
        assert!(s.starts_with("atna_"));
        let p = ParsedKey::parse(s).unwrap();
        assert_eq!(p.id, k.id);
        assert!(p.hash().matches(&k.hash));
        assert!(s.contains(k.id.as_str()));
    }

    #[test]
    fn keys_are_unique() {
        let a = GeneratedKey::generate();
        let b = GeneratedKey::generate();
        assert_ne!(a.id, b.id);
        assert_ne!(a.secret, b.secret);
    }

    #[test]
    fn malformed_keys_are_told_apart() {
        let k = GeneratedKey::generate();
        let s = k.secret.expose().to_string();
        assert_eq!(ParsedKey::parse("").unwrap_err(), MalformedKey::Empty);
        assert_eq!(ParsedKey::parse("ghp_abc").unwrap_err(), MalformedKey::WrongPrefix);
        assert_eq!(ParsedKey::parse(&s[..KEY_LEN - 1]).unwrap_err(), MalformedKey::WrongLength);
        assert_eq!(ParsedKey::parse(&format!("{s}x")).unwrap_err(), MalformedKey::WrongLength);
        let mut bad = s.clone().into_bytes();
        bad[30] = b'-';
        assert_eq!(ParsedKey::parse(std::str::from_utf8(&bad).unwrap()).unwrap_err(), MalformedKey::BadCharacter);
        // One changed character in the secret: right shape, wrong checksum.
        let mut typo = s.clone().into_bytes();
        typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
        assert_eq!(ParsedKey::parse(std::str::from_utf8(&typo).unwrap()).unwrap_err(), MalformedKey::BadChecksum);
        // Multi-byte characters must not panic on slicing.
        let wide = format!("atna_{}", "é".repeat((KEY_LEN - 5) / 2));
        assert!(ParsedKey::parse(&wide).is_err());
    }

    #[test]
    fn hashes_compare_by_value() {
        let a = SecretHash::of("x");
        assert!(a.matches(&SecretHash::of("x")));
        assert!(!a.matches(&SecretHash::of("y")));
        assert_eq!(SecretHash::from_slice(a.as_bytes()), Some(a));
        assert_eq!(SecretHash::from_slice(&[1, 2]), None);
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let a = SecretHash::of("x");
        let hex = a.to_hex();
        assert_eq!(hex, "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
        assert_eq!(SecretHash::from_hex(&hex), Some(a));
        assert_eq!(SecretHash::from_hex(&hex.to_uppercase()), None, "one text form only");
        assert_eq!(SecretHash::from_hex(&hex[..62]), None);
        assert_eq!(SecretHash::from_hex(&format!("{}zz", &hex[..62])), None);
        assert_eq!(SecretHash::from_hex(&"é".repeat(32)), None);
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let k = GeneratedKey::generate();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(k.secret.expose()));
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn prefixes_parse() {
        assert_eq!(KeyPrefix::parse("acme").unwrap().as_str(), "acme");
        assert_eq!(KeyPrefix::parse("a1").unwrap().as_str(), "a1");
        assert!(KeyPrefix::parse("abcdefghijklmnop").is_ok(), "16 characters");
        for bad in ["", "a", "abcdefghijklmnopq", "Acme", "ac_me", "acme_", "ac-me", "äcme"] {
            assert!(KeyPrefix::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(KeyPrefix::default().as_str(), "atna");
    }

    #[test]
    fn keys_with_an_own_prefix_parse_and_hash_to_what_is_stored() {
        for prefix in ["acme", "ab", "abcdefghijklmnop", "x9"] {
            let prefix = KeyPrefix::parse(prefix).unwrap();
            let k = GeneratedKey::generate_with(&prefix);
            let s = k.secret.expose();
            assert_eq!(s.len(), prefix.as_str().len() + BODY_LEN);
            assert!(s.starts_with(&format!("{prefix}_")));
            let p = ParsedKey::parse_any(s).unwrap();
            assert_eq!((p.id, p.prefix()), (k.id, prefix.as_str()));
            assert!(p.hash().matches(&k.hash));
            assert!(looks_like_key(s));
            // The default parser wants `atna_`; a format with this prefix accepts it.
            assert_eq!(ParsedKey::parse(s).unwrap_err(), MalformedKey::WrongPrefix);
            assert!(KeyFormat::new(prefix.clone(), []).parse(s).is_ok());
            assert_eq!(KeyFormat::default().parse(s).unwrap_err(), MalformedKey::WrongPrefix);
        }
    }

    #[test]
    fn a_format_accepts_every_issued_prefix_and_nothing_else() {
        let acme = KeyPrefix::parse("acme").unwrap();
        let format = KeyFormat::new(acme.clone(), [KeyPrefix::default(), acme.clone()]);
        assert_eq!(format.prefixes().len(), 2, "no duplicates");
        assert_eq!(format.current(), &acme);
        let old = GeneratedKey::generate();
        let new = GeneratedKey::generate_with(&acme);
        let other = GeneratedKey::generate_with(&KeyPrefix::parse("othr").unwrap());
        assert_eq!(format.parse(old.secret.expose()).unwrap().id, old.id);
        assert_eq!(format.parse(new.secret.expose()).unwrap().id, new.id);
        assert_eq!(format.parse(other.secret.expose()).unwrap_err(), MalformedKey::WrongPrefix);
        assert!(looks_like_key(other.secret.expose()), "a scanner finds any installation's keys");
        assert_eq!(format.regex(), r"\b(?:acme|atna)_[0-9A-Za-z]{16}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}\b");
        assert_eq!(KeyFormat::default().regex(), KEY_REGEX);
    }

    #[test]
    fn the_checksum_covers_the_prefix() {
        // The same ID and secret under another prefix of the same length: the checksum no longer matches.
        let k = GeneratedKey::generate_with(&KeyPrefix::parse("acme").unwrap());
        let moved = format!("acmf{}", &k.secret.expose()[4..]);
        assert_eq!(ParsedKey::parse_any(&moved).unwrap_err(), MalformedKey::BadChecksum);
        assert!(!looks_like_key(&moved));
        // Look-alikes: wrong prefixes and shapes.
        let body = &k.secret.expose()[4..];
        for bad in [format!("A{body}"), format!("Acme{body}"), format!("a{body}"), format!("abcdefghijklmnopq{body}")] {
            assert_eq!(ParsedKey::parse_any(&bad).unwrap_err(), MalformedKey::WrongPrefix, "{bad}");
        }
        assert_eq!(ParsedKey::parse_any(&format!("acme{body}x")).unwrap_err(), MalformedKey::WrongLength);
        assert_eq!(ParsedKey::parse_any("acme").unwrap_err(), MalformedKey::WrongPrefix);
        assert_eq!(ParsedKey::parse_any("acme_").unwrap_err(), MalformedKey::WrongLength);
    }

    #[test]
    fn credential_ids_parse() {
        let id = CredentialId::generate();
        assert_eq!(CredentialId::parse(id.as_str()), Ok(id));
        assert!(CredentialId::parse("short").is_err());
        assert!(CredentialId::parse("0123456789abcde!").is_err());
    }
}
