//! Fuzz target: the key parser (`ParsedKey::parse`), with the checks the property tests make on whatever parses.
//! Run: see docs/development.md ("Fuzzing").

use atna_domain::credential::{ParsedKey, KEY_LEN, PREFIX};
use atna_domain::{CredentialId, SecretHash};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        if let Ok(key) = ParsedKey::parse(text) {
            assert_eq!(text.len(), KEY_LEN);
            assert!(text.starts_with(PREFIX));
            assert_eq!(key.id.as_str(), &text[PREFIX.len()..PREFIX.len() + 16]);
            let _ = key.hash();
        }
        let _ = CredentialId::parse(text);
        let _ = SecretHash::from_hex(text);
    });
}
