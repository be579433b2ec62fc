//! `atna scan`: finds atna API keys, of any key prefix, before they leave the machine.
//!
//! * [`matcher`]: the key format and its checksum, searched linearly (no look-alikes reported);
//! * [`files`]: a parallel walk of paths that respects `.gitignore` and skips what is not a regular file;
//! * [`git`]: every blob reachable from every ref of a repository, each scanned once, and the commit that brought in
//!   each key found;
//! * [`report`]: text, JSON and SARIF 2.1.0.
//!
//! Nothing here prints or stores the text around a key, nor the key itself: a finding carries its place and its
//! Credential ID; the key is kept in memory only for `--check` to ask about it.

pub mod files;
pub mod git;
pub mod matcher;
pub mod report;

use std::path::PathBuf;

pub use report::Format;

pub use matcher::{find_keys, FoundKey, Match};

/// Default cap on the size of one file or blob: larger ones are skipped (and listed as skipped).
pub const DEFAULT_MAX_SIZE: u64 = 64 * 1024 * 1024;

/// How to scan.
#[derive(Debug, Clone)]
pub struct Options {
    /// Files and blobs larger than this many bytes are skipped, not read (a blob is not inflated).
    pub max_size: u64,
    /// Worker threads; 0 picks one per CPU.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { max_size: DEFAULT_MAX_SIZE, threads: 0 }
    }
}

impl Options {
    fn threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// The commit that brought a key into a repository's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Commit {
    /// The full object ID.
    pub id: String,
    pub author_name: String,
    pub author_email: String,
    /// The author date, RFC 3339 in UTC.
    pub date: String,
}

/// One key found: where, and which key (by its Credential ID). The key itself is not serialised.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    /// The file (as walked), or for a history hit the path inside the repository.
    pub path: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column, in Unicode code points (SARIF's `unicodeCodePoints`).
    pub column: u64,
    /// The column just after the key.
    pub end_column: u64,
    pub credential_id: String,
    /// The key prefix it was issued under (`atna`, or the installation's own).
    pub prefix: String,
    /// For a history hit: the commit that added the key at this path (the oldest one, when several did).
    pub commit: Option<Commit>,
    /// With `--check`: what the store or server says about the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<KeyState>,
    #[serde(skip)]
    pub key: FoundKey,
}

/// What `--check` learnt about a found key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// A key of the installation that has not been deleted (it may be disabled or expired): it matters.
    Live,
    /// Deleted (revoked) before this scan.
    Deleted,
    /// Not a key of this installation (no such Credential ID, or the secret does not match it).
    Unknown,
    /// Was live, and this scan revoked it (`--revoke`).
    Revoked,
}

impl KeyState {
    /// The word used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Live => "live",
            KeyState::Deleted => "deleted",
            KeyState::Unknown => "unknown",
            KeyState::Revoked => "revoked",
        }
    }
}

/// Something that was not scanned, and why (not an error: too large, not a regular file).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// Everything one scan found.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub skipped: Vec<Skipped>,
    /// What could not be read (a scan with errors is incomplete: `atna scan` exits with 2).
    pub errors: Vec<String>,
    pub files_scanned: u64,
    pub bytes_scanned: u64,
    /// Git: commits walked and distinct blobs scanned.
    pub commits_walked: u64,
    pub blobs_scanned: u64,
}

impl Report {
    /// Adds another report's findings and counts to this one.
    pub fn merge(&mut self, other: Report) {
        self.findings.extend(other.findings);
        self.skipped.extend(other.skipped);
        self.errors.extend(other.errors);
        self.files_scanned += other.files_scanned;
        self.bytes_scanned += other.bytes_scanned;
        self.commits_walked += other.commits_walked;
        self.blobs_scanned += other.blobs_scanned;
    }
}

/// Why a scan could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: {message}")]
    Path { path: PathBuf, message: String },
    #[error("git: {0}")]
    Git(String),
}

/// Line and column of byte offsets in one buffer, for offsets given in increasing order.
pub(crate) struct Positions<'a> {
    hay: &'a [u8],
    at: usize,
    line: u64,
    line_start: usize,
}

impl<'a> Positions<'a> {
    pub(crate) fn new(hay: &'a [u8]) -> Self {
        Self { hay, at: 0, line: 1, line_start: 0 }
    }

    /// `(line, column)` of `offset`, both 1-based; the column counts code points (bytes that start a UTF-8
    /// character).
    pub(crate) fn of(&mut self, offset: usize) -> (u64, u64) {
        let seen = &self.hay[self.at..offset];
        for nl in memchr::memchr_iter(b'\n', seen) {
            self.line += 1;
            self.line_start = self.at + nl + 1;
        }
        self.at = offset;
        let col = self.hay[self.line_start..offset].iter().filter(|&&b| (b & 0xC0) != 0x80).count() as u64 + 1;
        (self.line, col)
    }
}

/// The findings of one buffer, with positions.
pub(crate) fn findings_in(hay: &[u8], path: &str) -> Vec<Finding> {
    let mut pos = Positions::new(hay);
    find_keys(hay)
        .into_iter()
        .map(|m| {
            let (line, column) = pos.of(m.start);
            Finding {
                path: path.to_owned(),
                line,
                column,
                end_column: column + (m.end - m.start) as u64,
                credential_id: m.key.id().to_string(),
                prefix: m.key.prefix().to_owned(),
                commit: None,
                status: None,
                key: m.key,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_code_points() {
        let text = "ab\néé x\n\nz".as_bytes();
        let mut p = Positions::new(text);
        assert_eq!(p.of(0), (1, 1));
        assert_eq!(p.of(1), (1, 2));
        assert_eq!(p.of(3), (2, 1));
        let x = text.iter().position(|&b| b == b'x').unwrap();
        assert_eq!(p.of(x), (2, 4));
        assert_eq!(p.of(text.len() - 1), (4, 1));
    }
}
