//! What `atna key-format` prints: the rules secret scanners need to find this installation's keys, built from its
//! [`KeyFormat`] so an operator pastes the right pattern for the prefixes it issued.

use crate::credential::KeyFormat;

/// The regular expression without word boundaries, for tools that take "before" and "after" separately.
fn bare(format: &KeyFormat) -> String {
    let r = format.regex();
    r.trim_start_matches(r"\b").trim_end_matches(r"\b").to_owned()
}

/// The keywords a scanner pre-filters on: every prefix with its `_`.
fn keywords(format: &KeyFormat) -> Vec<String> {
    format.prefixes().iter().map(|p| format!("{p}_")).collect()
}

/// A rule for gitleaks' `.gitleaks.toml`.
pub fn gitleaks(format: &KeyFormat) -> String {
    let id = format.current();
    let keywords: Vec<String> = keywords(format).iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        "[[rules]]\nid = \"{id}-api-key\"\ndescription = \"{id} API key\"\nregex = '''{}'''\nkeywords = [{}]\n",
        format.regex(),
        keywords.join(", ")
    )
}

/// A custom detector for TruffleHog's configuration file (`trufflehog filesystem --config FILE`).
pub fn trufflehog(format: &KeyFormat) -> String {
    let id = format.current();
    let mut out = format!("detectors:\n  - name: {id}-api-key\n    keywords:\n");
    for k in keywords(format) {
        out += &format!("      - {k}\n");
    }
    out += &format!("    regex:\n      key: '{}'\n", format.regex());
    out
}

/// The fields of a GitHub custom pattern (repository, organisation or enterprise settings → Code security → Custom
/// patterns), which secret scanning and push protection use for a self-hosted installation's own repositories.
pub fn github_pattern(format: &KeyFormat) -> String {
    format!(
        "Pattern name:   {id} API key\nSecret format:  {}\nBefore secret:  \\A|[^0-9A-Za-z_]\nAfter secret:   \\z|[^0-9A-Za-z_]\n",
        bare(format),
        id = format.current()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::KeyPrefix;

    fn acme() -> KeyFormat {
        KeyFormat::new(KeyPrefix::parse("acme").unwrap(), [KeyPrefix::default()])
    }

    #[test]
    fn gitleaks_rule_names_every_prefix() {
        let rule = gitleaks(&acme());
        assert!(rule.contains("id = \"acme-api-key\""), "{rule}");
        assert!(rule.contains(r"regex = '''\b(?:acme|atna)_[0-9A-Za-z]{16}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}\b'''"));
        assert!(rule.contains(r#"keywords = ["acme_", "atna_"]"#), "{rule}");
        let default = gitleaks(&KeyFormat::default());
        assert!(default.contains(r"'''\batna_[0-9A-Za-z]{16}"), "{default}");
    }

    #[test]
    fn trufflehog_and_github_outputs() {
        let t = trufflehog(&acme());
        assert!(t.contains("name: acme-api-key") && t.contains("- acme_") && t.contains("key: '\\b(?:acme|atna)_"));
        let g = github_pattern(&KeyFormat::new(KeyPrefix::parse("acme").unwrap(), []));
        assert!(g.contains("Secret format:  acme_[0-9A-Za-z]{16}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}\n"), "{g}");
    }
}
