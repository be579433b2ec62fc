//! What `atna scan` prints: text for people, JSON for scripts, SARIF 2.1.0 for code-scanning tools (GitHub code
//! scanning, GitLab, IDEs). Every form names the place and the Credential ID, never the key nor the text around it.

use serde_json::{json, Value};

use crate::{Finding, Report};

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

/// The SARIF rule every finding is reported under.
pub const RULE_ID: &str = "atna/api-key";

/// Renders a report. `tool_version` goes into SARIF's `tool.driver.version`.
pub fn render(report: &Report, format: Format, tool_version: &str) -> String {
    match format {
        Format::Text => text(report),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Sarif => {
            let mut s = serde_json::to_string_pretty(&sarif(report, tool_version)).unwrap_or_default();
            s.push('\n');
            s
        }
    }
}

/// One line per finding: `path:line:column: atna key <ID> (prefix p)[, added in commit … by … on …][: status]`.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.findings {
        out.push_str(&format!("{}:{}:{}: {}\n", f.path, f.line, f.column, describe(f)));
    }
    out
}

/// The summary line `atna scan` prints on standard error.
pub fn summary(report: &Report) -> String {
    let n = report.findings.len();
    let keys = if n == 1 { "1 key".to_owned() } else { format!("{n} keys") };
    let mut s =
        format!("{keys} found; {} files ({:.1} MB) scanned", report.files_scanned, report.bytes_scanned as f64 / 1e6);
    if report.commits_walked > 0 || report.blobs_scanned > 0 {
        s += &format!(", {} commits walked, {} distinct blobs scanned", report.commits_walked, report.blobs_scanned);
    }
    if !report.skipped.is_empty() {
        s += &format!(", {} skipped", report.skipped.len());
    }
    if !report.errors.is_empty() {
        s += &format!(", {} errors", report.errors.len());
    }
    s
}

fn describe(f: &Finding) -> String {
    let mut s = format!("atna key {} (prefix {})", f.credential_id, f.prefix);
    if let Some(c) = &f.commit {
        s += &format!(", added in commit {} by {} <{}> on {}", c.id, c.author_name, c.author_email, c.date);
    }
    if let Some(st) = f.status {
        s += &format!(": {}", st.as_str());
    }
    s
}

/// A SARIF 2.1.0 log with one run.
pub fn sarif(report: &Report, tool_version: &str) -> Value {
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let mut props = json!({ "credentialId": f.credential_id, "keyPrefix": f.prefix });
            if let Some(c) = &f.commit {
                props["commit"] = json!(c.id);
                props["author"] = json!(format!("{} <{}>", c.author_name, c.author_email));
                props["authorDate"] = json!(c.date);
            }
            if let Some(st) = f.status {
                props["status"] = json!(st.as_str());
            }
            json!({
                "ruleId": RULE_ID,
                "ruleIndex": 0,
                "level": "error",
                "message": { "text": describe(f) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": path_to_uri(&f.path) },
                        "region": { "startLine": f.line, "startColumn": f.column, "endColumn": f.end_column },
                    }
                }],
                // Stable across runs and lines moving: the same key in the same file is the same alert.
                "partialFingerprints": { "atnaCredentialId/v1": format!("{}:{}", f.credential_id, f.path) },
                "properties": props,
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "atna scan",
                "version": tool_version,
                "rules": [{
                    "id": RULE_ID,
                    "name": "AtnaApiKey",
                    "shortDescription": { "text": "An atna API key (format and checksum verified)" },
                    "fullDescription": { "text": "A string with the format and the CRC32 checksum of an atna API key. \
                        Anyone who reads it can call the API as its owner." },
                    "help": { "text": "Delete (revoke) the key in atna's dashboard or with `atna key delete <Credential ID>` \
                        (or `atna scan --check --revoke`), give the service a new key from a secret store, and remove \
                        the key from the file (and from history: it stays in every clone)." },
                    "defaultConfiguration": { "level": "error" },
                    "properties": { "tags": ["security", "secret"] },
                }],
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

/// A path as a relative URI reference (or a `file://` URI for an absolute path), with every byte outside RFC 3986's
/// unreserved characters and `/` percent-encoded.
pub fn path_to_uri(path: &str) -> String {
    let (abs, rel) = match path.strip_prefix('/') {
        Some(r) => (true, r),
        None => (false, path.strip_prefix("./").unwrap_or(path)),
    };
    let mut out = String::with_capacity(rel.len() + 8);
    if abs {
        out.push_str("file:///");
    }
    for b in rel.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(path_to_uri("src/a b.rs"), "src/a%20b.rs");
        assert_eq!(path_to_uri("./x/é.env"), "x/%C3%A9.env");
        assert_eq!(path_to_uri("/tmp/x:y"), "file:///tmp/x%3Ay");
        assert_eq!(path_to_uri("blob 1234"), "blob%201234");
    }
}
