//! The command line. Every option can also come from an `ATNA_*` environment variable; flags win over variables,
//! variables over the TOML file, the file over defaults.

use std::path::PathBuf;

use atna_server::cidr::Cidr;
use clap::{Args, CommandFactory, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "atna", version, about = "Self-hosted API keys: dashboard, REST API and Bearer verification")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Parses the command line like [`Parser::parse`], except that a bad value taken from an `ATNA_*` variable is
/// reported under the variable's name rather than the flag's, which the user never typed.
pub fn parse() -> Cli {
    Cli::try_parse().unwrap_or_else(|e| match env_value_error(&e) {
        Some(message) => {
            eprint!("{message}");
            std::process::exit(e.exit_code())
        }
        None => e.exit(),
    })
}

/// clap's message for an invalid value, with the flag replaced by the variable, when the value came from a variable.
fn env_value_error(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(e.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return None;
    }
    let Some(ContextValue::String(shown)) = e.get(ContextKind::InvalidArg) else { return None };
    let cmd = Cli::command();
    let mut args: Vec<clap::Arg> = cmd.get_arguments().cloned().collect();
    args.extend(cmd.get_subcommands().flat_map(|c| c.get_arguments().cloned().collect::<Vec<_>>()));
    let typed = |long: &str| {
        let flag = format!("--{long}");
        std::env::args().skip(1).any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    let arg = args.iter().find(|a| a.get_long().is_some_and(|l| shown.starts_with(&format!("--{l}") as &str)))?;
    let var = arg.get_env()?.to_str()?;
    if typed(arg.get_long()?) || std::env::var_os(var).is_none() {
        return None;
    }
    Some(e.render().to_string().replace(shown.as_str(), var))
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// A TOML file with settings (see docs/configuration.md).
    #[arg(long, env = "ATNA_CONFIG", global = true, help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// Where atna keeps its data (the SQLite database by default). Default: ./atna-data
    #[arg(long, env = "ATNA_DATA_DIR", global = true, help_heading = GLOBAL)]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite:PATH or postgres://USER@HOST/DB. Default: the SQLite file in the data directory.
    #[arg(long = "database", env = "ATNA_DATABASE_URL", global = true, hide_env_values = true, help_heading = GLOBAL)]
    pub database_url: Option<String>,
    /// Most PostgreSQL connections per process (the change listener's one is extra). Default: 10
    #[arg(long, env = "ATNA_DATABASE_MAX_CONNECTIONS", global = true, help_heading = GLOBAL)]
    pub database_max_connections: Option<u32>,
}

/// The help heading of the options every command takes, so they stand apart from the command's own.
const GLOBAL: &str = "Global options";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (REST API, verification, dashboard).
    Serve(Serve),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys (the operator's bootstrap and recovery tools).
    #[command(subcommand)]
    Key(KeyCommand),
    /// The installation's key prefix (what new keys start with; every prefix ever used keeps working).
    #[command(subcommand)]
    KeyPrefix(KeyPrefixCommand),
    /// Print the key format for secret scanners: the regular expression (default), a gitleaks rule, a TruffleHog
    /// detector or the fields of a GitHub custom pattern, for every prefix this installation issued.
    KeyFormat {
        /// A rule for .gitleaks.toml.
        #[arg(long, group = "format")]
        gitleaks: bool,
        /// A custom detector for TruffleHog's configuration file.
        #[arg(long, group = "format")]
        trufflehog: bool,
        /// The fields of a GitHub custom pattern (secret scanning and push protection).
        #[arg(long, group = "format")]
        github_pattern: bool,
    },
    /// Write every user, key (deleted ones too, as hashes) and audit event as JSON, to move this installation to
    /// another database with `atna import`. Sessions are not exported. The output holds password and key hashes:
    /// keep it private and delete it after the import.
    Export {
        /// Write to FILE (created with mode 0600) instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Overwrite FILE if it already exists.
        #[arg(long, requires = "output")]
        force: bool,
    },
    /// Find atna API keys (any key prefix, checksum verified) in files and, with --git, in a repository's history.
    /// Exit status: 0 none found, 1 found, 2 error. Prints where and the Credential ID, never the key.
    Scan(Scan),
    /// Print the audit trail, newest first: who did what to which key or account, when, and from where.
    Audit {
        /// Only events about this user (their keys, their sessions).
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// Only events since this time: RFC 3339 (2027-02-26T00:00:00Z) or an age such as 24h, 7d, 30m.
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only events of this kind, e.g. key.rolled.
        #[arg(long)]
        kind: Option<String>,
        /// Only events about this key (Credential ID).
        #[arg(long, value_name = "ID")]
        key: Option<String>,
        /// At most this many events. Default: all.
        #[arg(long, value_name = "N")]
        limit: Option<i64>,
        /// Print one JSON object per line (JSON lines, for a log pipeline) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Load what `atna export` wrote into this database, which must be new and empty (no users, keys or audit events).
    /// All or nothing; user IDs and Credential IDs are kept, so every key keeps working.
    Import {
        /// The export file, or `-` for standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Back up a running SQLite installation (a consistent copy, taken while servers keep serving), check a copy,
    /// or, after restoring one, delete again the keys deleted since it was taken. PostgreSQL: use pg_dump
    /// (docs/backups.md).
    Backup(Backup),
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["output", "verify", "reapply_deletions_from"])))]
pub struct Backup {
    /// Write a copy of the database to FILE (a new file with mode 0600, renamed into place once complete).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite FILE if it already exists.
    #[arg(long, requires = "output")]
    pub force: bool,
    /// Check a copy (integrity, schema version, that every key is whole) and print what it holds. Opens only FILE.
    #[arg(long, value_name = "FILE")]
    pub verify: Option<PathBuf>,
    /// After a restore: delete every key that is deleted in SOURCE (the old live SQLite database, or a newer
    /// `atna export` file) but live in this database, and disable the users disabled there.
    #[arg(long, value_name = "SOURCE")]
    pub reapply_deletions_from: Option<PathBuf>,
}

#[derive(Args, Debug, Default)]
pub struct Serve {
    /// Address to listen on, HOST:PORT; a host name is resolved at start. Default: 127.0.0.1:8080
    #[arg(long, env = "ATNA_LISTEN")]
    pub listen: Option<String>,
    /// Deprecated (use --trusted-proxies): trust every peer's X-Forwarded-For, X-Forwarded-Proto and -Host.
    #[arg(long, env = "ATNA_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: Option<bool>,
    /// Your proxies' addresses or ranges, comma-separated (e.g. 10.0.0.0/8,::1): only their forwarding headers
    /// are believed, and they have no per-peer connection cap.
    #[arg(long, env = "ATNA_TRUSTED_PROXIES", value_delimiter = ',', value_name = "CIDR,...")]
    pub trusted_proxies: Option<Vec<Cidr>>,
    /// Seconds a client has to send a request's headers. Default: 10
    #[arg(long, env = "ATNA_HEADER_READ_TIMEOUT_SECS", value_name = "SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a kept-alive connection may wait for its next request. Default: 60
    #[arg(long, env = "ATNA_IDLE_TIMEOUT_SECS", value_name = "SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds before a request still unanswered gets a 503. Default: 30
    #[arg(long, env = "ATNA_REQUEST_TIMEOUT_SECS", value_name = "SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Most open connections. Default: from the file-descriptor limit, at most 10000
    #[arg(long, env = "ATNA_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most open connections from one address (IPv6: one /64), trusted proxies excepted. Default: 256
    #[arg(long, env = "ATNA_MAX_CONNECTIONS_PER_PEER", value_name = "N")]
    pub max_connections_per_peer: Option<usize>,
    /// Reverse-proxy mode: the API every request on --proxy-listen is passed on to, http://HOST:PORT.
    #[arg(long, env = "ATNA_UPSTREAM", value_name = "URL", help_heading = PROXY)]
    pub upstream: Option<String>,
    /// Reverse-proxy mode: where to listen for the requests to check and pass on, HOST:PORT.
    #[arg(long, env = "ATNA_PROXY_LISTEN", value_name = "HOST:PORT", help_heading = PROXY)]
    pub proxy_listen: Option<String>,
    /// The proxies in front of the proxy listener, comma-separated (its own list; --trusted-proxies is the API's).
    #[arg(long, env = "ATNA_PROXY_TRUSTED_PROXIES", value_delimiter = ',', value_name = "CIDR,...", help_heading = PROXY)]
    pub proxy_trusted_proxies: Option<Vec<Cidr>>,
    /// Largest request body the proxy passes on, in bytes. Default: no limit
    #[arg(long, env = "ATNA_PROXY_MAX_BODY_BYTES", value_name = "BYTES", help_heading = PROXY)]
    pub proxy_max_body_bytes: Option<u64>,
    /// Pass Authorization and the key headers on to the upstream. Default: false (they are removed)
    #[arg(long, env = "ATNA_PROXY_FORWARD_AUTHORIZATION", value_name = "BOOL", help_heading = PROXY)]
    pub proxy_forward_authorization: Option<bool>,
    /// Seconds the upstream has to start answering once a request has been passed on. Default: 60
    #[arg(long, env = "ATNA_PROXY_UPSTREAM_TIMEOUT_SECS", value_name = "SECS", help_heading = PROXY)]
    pub proxy_upstream_timeout_secs: Option<u64>,
}

/// The help heading of the reverse-proxy options.
const PROXY: &str = "Reverse-proxy mode";

#[derive(Args, Debug)]
pub struct Scan {
    /// Files and directories to scan (directories recursively, respecting .gitignore). Default: .
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also scan the history of the git repository holding each PATH: every blob reachable from every ref, with
    /// the commit and author that added each key.
    #[arg(long)]
    pub git: bool,
    /// Print JSON.
    #[arg(long, conflicts_with = "sarif")]
    pub json: bool,
    /// Print SARIF 2.1.0 (GitHub code scanning and other CI tools).
    #[arg(long)]
    pub sarif: bool,
    /// Skip files and git blobs larger than this many MiB. Default: 64
    #[arg(long = "max-size", value_name = "MIB", default_value_t = 64)]
    pub max_size_mib: u64,
    /// Worker threads. Default: one per CPU
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub threads: usize,
    /// Ask whether each key found is live, deleted or unknown: the database (--database / --data-dir / --config, as
    /// other commands), or a running atna with --server. Counts no use of the keys.
    #[arg(long)]
    pub check: bool,
    /// With --check: ask the atna at this URL (POST /v1/credentials/status) instead of the database.
    #[arg(long, value_name = "URL", env = "ATNA_SCAN_SERVER", requires = "check")]
    pub server: Option<String>,
    /// With --check: revoke (delete) every live key found; recorded in the owner's audit trail.
    #[arg(long, requires = "check")]
    pub revoke: bool,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user. The password comes from stdin (--password-stdin) or an interactive prompt.
    Create {
        /// The new user's e-mail address (their sign-in name).
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: their sessions end and their keys stop working at once.
    Disable {
        /// The user's e-mail address.
        email: String,
        /// Disable even the last enabled administrator (nobody can then manage users in the dashboard until
        /// `atna user enable`).
        #[arg(long)]
        force: bool,
    },
    /// Re-enable a disabled user.
    Enable {
        /// The user's e-mail address.
        email: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyPrefixCommand {
    /// Show the current prefix and every prefix keys were issued with.
    Show,
    /// Make PREFIX the one new keys get, on every node (2-16 lowercase letters and digits). Keys issued before keep
    /// working. Recorded in the audit trail.
    Set {
        /// The new prefix, e.g. acme (keys then look like acme_<id>_<secret>_<checksum>).
        prefix: atna_domain::KeyPrefix,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create a key for a user and print its Credential ID and Credential Secret.
    Create {
        /// The owner's e-mail address.
        #[arg(long)]
        user: String,
        /// The key's name; recommended: <service_name>-<dd_mm_yyyy>-<hh_mm>.
        #[arg(long)]
        name: String,
        /// A scope for the key (repeatable), e.g. keys:manage.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// When the key stops working (RFC 3339, e.g. 2027-02-26T00:00:00Z).
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        /// Where the key may be used from: a CIDR range or one address, IPv4 or IPv6 (repeatable, at most 64);
        /// requests from anywhere else are refused. Default: anywhere.
        #[arg(long = "allow-ip", value_name = "CIDR")]
        allow_ip: Vec<String>,
        /// At most this many requests per period: `100/60s`, `10/1m`, `5000/1h`, `100/s`. Default: no limit.
        #[arg(long = "rate-limit", value_name = "N/PERIOD")]
        rate_limit: Option<String>,
        /// How many times the key may be used (a usage quota; at 0 it is refused with 429). Default: no quota.
        #[arg(long, value_name = "N")]
        quota: Option<i64>,
        /// Fill the quota up again at the start of every UTC day or month (`daily` or `monthly`); needs `--quota`.
        #[arg(long = "quota-refill", value_name = "daily|monthly", requires = "quota")]
        quota_refill: Option<String>,
        /// How many uses a refill gives. Default: the `--quota` value.
        #[arg(long = "quota-refill-amount", value_name = "N", requires = "quota_refill")]
        quota_refill_amount: Option<i64>,
        /// Print JSON (with the secret) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List a user's keys (never their secrets).
    List {
        /// The owner's e-mail address.
        #[arg(long)]
        user: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a key's usage over time (deleted keys too): allowed requests and refused attempts by reason, per day (or
    /// per hour), with a small chart. Counts reach the database at each server's usage flush (`usage_flush_secs`).
    Usage {
        /// The key's Credential ID (or a whole pasted key: its Credential ID is taken from it).
        id: String,
        /// How many days back, today included (1 to 400).
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=400))]
        days: u32,
        /// One line per hour instead of per day (hourly buckets are kept 14 days by default).
        #[arg(long)]
        hourly: bool,
        /// Print JSON (as `GET /v1/keys/{id}/usage` answers) instead of a chart.
        #[arg(long)]
        json: bool,
    },
    /// Roll a key: a new key (same scopes and rules, a name with today's date and time) replaces it, and the old key
    /// keeps working until the overlap ends. Prints the new key's Credential ID and Secret once.
    Roll {
        /// The key's Credential ID (or a whole pasted key).
        id: String,
        /// How long the old key keeps working: 0 (stops now), or an age such as 1h, 24h, 7d (at most 30d).
        #[arg(long, default_value = "24h", value_parser = parse_duration_secs)]
        overlap: i64,
        /// Print JSON (with the secret) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Disable a key: it answers `key_disabled` on every node at once, and can be enabled again.
    Disable {
        /// The key's Credential ID (or a whole pasted key).
        id: String,
    },
    /// Enable a disabled key again (an expired key needs a new --expires-at: `atna key update`).
    Enable {
        /// The key's Credential ID (or a whole pasted key).
        id: String,
    },
    /// Change a key's name, scopes, expiry, IP allowlist, rate limit or quota; only what is given changes.
    Update {
        /// The key's Credential ID (or a whole pasted key).
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// Replace the scopes with these (repeatable).
        #[arg(long = "scope", conflicts_with = "no_scopes")]
        scopes: Vec<String>,
        /// Remove every scope.
        #[arg(long)]
        no_scopes: bool,
        /// A new expiry (RFC 3339).
        #[arg(long, conflicts_with = "no_expiry")]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        /// Remove the expiry: the key never expires.
        #[arg(long)]
        no_expiry: bool,
        /// Replace the IP allowlist with these ranges (repeatable).
        #[arg(long = "allow-ip", value_name = "CIDR", conflicts_with = "allow_anywhere")]
        allow_ip: Vec<String>,
        /// Remove the IP allowlist: the key works from anywhere.
        #[arg(long)]
        allow_anywhere: bool,
        /// A new rate limit: `100/60s`, `10/1m`, `5000/1h`, `100/s`.
        #[arg(long = "rate-limit", value_name = "N/PERIOD", conflicts_with = "no_rate_limit")]
        rate_limit: Option<String>,
        /// Remove the rate limit.
        #[arg(long)]
        no_rate_limit: bool,
        /// Set the quota: N uses left from now.
        #[arg(long, value_name = "N", conflicts_with = "no_quota")]
        quota: Option<i64>,
        /// Fill the quota up again at the start of every UTC day or month (`daily` or `monthly`); needs `--quota`.
        #[arg(long = "quota-refill", value_name = "daily|monthly", requires = "quota")]
        quota_refill: Option<String>,
        /// How many uses a refill gives. Default: the `--quota` value.
        #[arg(long = "quota-refill-amount", value_name = "N", requires = "quota_refill")]
        quota_refill_amount: Option<i64>,
        /// Remove the quota.
        #[arg(long)]
        no_quota: bool,
        /// Print the key as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke many keys at once (an incident): every key of a user, or every key created before a time (of everyone,
    /// or of one user). Recorded as one audit event; running servers refuse the keys at once.
    RevokeAll {
        /// Only this user's keys.
        #[arg(long, value_name = "EMAIL", required_unless_present = "created_before")]
        user: Option<String>,
        /// Only keys created before this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        created_before: Option<chrono::DateTime<chrono::Utc>>,
        /// Only show what would be revoked (how many keys, their recent use); revoke nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete (revoke) a key by Credential ID. Running servers stop accepting it at once.
    Delete {
        /// The key's Credential ID (as `atna key list` shows it). A whole pasted key works too: its Credential ID
        /// is taken from it.
        id: String,
    },
}

/// A duration in seconds: a number of seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_duration_secs(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_lowercase()),
        _ => (s, 's'),
    };
    let n: i64 = num.trim().parse().map_err(|_| format!("`{s}` is not a duration such as 0, 90s, 30m, 24h or 7d"))?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("`{s}`: the unit must be s, m, h or d")),
    };
    if n < 0 {
        return Err("a duration cannot be negative".into());
    }
    n.checked_mul(unit).ok_or_else(|| format!("`{s}` is too long"))
}

/// `--since`: an RFC 3339 time, or an age (24h, 7d) before now.
fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let secs =
        parse_duration_secs(s).map_err(|_| format!("`{s}` is neither an RFC 3339 time nor an age such as 24h"))?;
    Ok(chrono::Utc::now() - chrono::Duration::seconds(secs))
}

#[cfg(test)]
mod tests {
    use super::parse_duration_secs;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("0"), Ok(0));
        assert_eq!(parse_duration_secs("90"), Ok(90));
        assert_eq!(parse_duration_secs("24h"), Ok(86_400));
        assert_eq!(parse_duration_secs("7d"), Ok(604_800));
        assert_eq!(parse_duration_secs("30m"), Ok(1_800));
        assert!(parse_duration_secs("1w").is_err());
        assert!(parse_duration_secs("-1h").is_err());
        assert!(parse_duration_secs("h").is_err());
    }
}
