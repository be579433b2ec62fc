//! Settings layered from defaults, the TOML file, `ATNA_*` variables and flags; and logging.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use atna_server::Settings;
use serde::Deserialize;

use crate::cli::{Global, Serve};

/// The TOML file's shape. Unknown keys are errors, so a typo does not silently do nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub database_max_connections: Option<u32>,
    pub database_timeout_ms: Option<u64>,
    pub database_start_wait_secs: Option<u64>,
    pub database_statement_timeout_ms: Option<u64>,
    pub database_lock_timeout_ms: Option<u64>,
    pub trust_forwarded_for: Option<bool>,
    pub trusted_proxies: Option<Vec<String>>,
    pub header_read_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_peer: Option<usize>,
    pub cache_ttl_secs: Option<u64>,
    pub negative_cache_ttl_secs: Option<u64>,
    pub cache_capacity: Option<usize>,
    pub usage_flush_secs: Option<u64>,
    pub usage_hourly_retention_days: Option<u64>,
    pub usage_daily_retention_days: Option<u64>,
    pub change_poll_ms: Option<u64>,
    pub limits_sync_ms: Option<u64>,
    pub change_feed_max_lag_ms: Option<u64>,
    pub max_body_bytes: Option<usize>,
    pub password_hash_concurrency: Option<usize>,
    pub session_idle_timeout_secs: Option<u64>,
    pub session_absolute_timeout_secs: Option<u64>,
    pub api_key_headers: Option<Vec<String>>,
    pub metrics_listen: Option<String>,
    pub upstream: Option<String>,
    pub proxy_listen: Option<String>,
    pub proxy_trusted_proxies: Option<Vec<String>>,
    pub proxy_max_body_bytes: Option<u64>,
    pub proxy_forward_authorization: Option<bool>,
    pub proxy_upstream_timeout_secs: Option<u64>,
    /// `[proxy]`: the proxy's routes (`[[proxy.routes]]`).
    pub proxy: Option<ProxyFile>,
    /// The dashboard's address as people reach it, for links in reminders.
    pub public_url: Option<String>,
    pub webhooks_allow_private_addresses: Option<bool>,
    pub delivery_timeout_secs: Option<u64>,
    pub reminder_scan_secs: Option<u64>,
    pub digest_interval_secs: Option<u64>,
    pub outbox_poll_ms: Option<u64>,
    pub delivery_retry_base_ms: Option<u64>,
    pub delivery_max_attempts: Option<i64>,
    pub policy: Option<PolicyConfig>,
    pub smtp: Option<SmtpConfig>,
    pub key_prefix: Option<String>,
    pub github_public_keys: Option<String>,
    pub gitlab_public_keys: Option<String>,
    pub gitlab_revocation_token: Option<String>,
    pub leak_action: Option<String>,
}

/// The `[proxy]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    #[serde(default)]
    pub routes: Vec<RouteFile>,
}

/// One `[[proxy.routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub path_prefix: String,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[policy]`: the installation's key policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub default_key_lifetime_days: Option<i64>,
    pub max_key_lifetime_days: Option<i64>,
    pub rotation_due_days: Option<i64>,
    pub unused_days: Option<i64>,
    pub auto_disable_unused_days: Option<i64>,
}

/// `[smtp]`: where reminder e-mails go out.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig").field("host", &self.host).field("from", &self.from).finish_non_exhaustive()
    }
}

/// Everything resolved.
pub struct Resolved {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub uses_default_database: bool,
    pub db: atna_server::store_url::DbOptions,
    pub file: FileConfig,
    /// The configured key prefix (`key_prefix`, `ATNA_KEY_PREFIX`; default `atna`).
    pub key_prefix: atna_domain::KeyPrefix,
}

const KNOWN_ENV: &[&str] = &[
    "ATNA_CONFIG",
    "ATNA_DATA_DIR",
    "ATNA_DATABASE_URL",
    "ATNA_DATABASE_MAX_CONNECTIONS",
    "ATNA_LISTEN",
    "ATNA_TRUST_FORWARDED_FOR",
    "ATNA_TRUSTED_PROXIES",
    "ATNA_HEADER_READ_TIMEOUT_SECS",
    "ATNA_IDLE_TIMEOUT_SECS",
    "ATNA_REQUEST_TIMEOUT_SECS",
    "ATNA_MAX_CONNECTIONS",
    "ATNA_MAX_CONNECTIONS_PER_PEER",
    "ATNA_LOG",
    "ATNA_LOG_FORMAT",
    "ATNA_API_KEY_HEADERS",
    "ATNA_METRICS_LISTEN",
    "ATNA_UPSTREAM",
    "ATNA_PROXY_LISTEN",
    "ATNA_PROXY_TRUSTED_PROXIES",
    "ATNA_PROXY_MAX_BODY_BYTES",
    "ATNA_PROXY_FORWARD_AUTHORIZATION",
    "ATNA_PROXY_UPSTREAM_TIMEOUT_SECS",
    "ATNA_SMTP_PASSWORD",
    "ATNA_SCAN_SERVER",
    "ATNA_KEY_PREFIX",
    "ATNA_GITHUB_PUBLIC_KEYS",
    "ATNA_GITLAB_PUBLIC_KEYS",
    "ATNA_GITLAB_REVOCATION_TOKEN",
    "ATNA_LEAK_ACTION",
];

/// A setting from its `ATNA_*` variable, else the file.
fn env_or(var: &str, file: &Option<String>) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty()).or_else(|| file.clone())
}

/// Reads the file and resolves where the data lives.
pub fn resolve(g: &Global) -> anyhow::Result<Resolved> {
    for (k, _) in std::env::vars() {
        if k.starts_with("ATNA_") && !KNOWN_ENV.contains(&k.as_str()) && !k.starts_with("ATNA_TEST_") {
            tracing::warn!(variable = %k, "unknown ATNA_ environment variable ignored");
        }
    }
    let file = match &g.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading config file {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("in config file {}", p.display()))?
        }
        None => FileConfig::default(),
    };
    let data_dir = g.data_dir.clone().or(file.data_dir.clone()).unwrap_or_else(|| PathBuf::from("atna-data"));
    let explicit = g.database_url.clone().or(file.database_url.clone());
    let uses_default_database = explicit.is_none();
    let database_url = explicit.unwrap_or_else(|| atna_server::store_url::default_url(&data_dir));
    let mut db = atna_server::store_url::DbOptions::default();
    if let Some(n) = g.database_max_connections.or(file.database_max_connections) {
        anyhow::ensure!(n >= 1, "database_max_connections must be at least 1");
        db.max_connections = n;
    }
    if let Some(ms) = within("database_timeout_ms", file.database_timeout_ms, 1, MAX_SECS * 1000)? {
        db.acquire_timeout = Duration::from_millis(ms);
    }
    within("database_start_wait_secs", file.database_start_wait_secs, 0, MAX_SECS)?;
    // Zero turns PostgreSQL's limit off, as in PostgreSQL itself.
    if let Some(ms) = within("database_statement_timeout_ms", file.database_statement_timeout_ms, 0, PG_MAX_MS)? {
        db.statement_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = within("database_lock_timeout_ms", file.database_lock_timeout_ms, 0, PG_MAX_MS)? {
        db.lock_timeout = Duration::from_millis(ms);
    }
    let key_prefix = match env_or("ATNA_KEY_PREFIX", &file.key_prefix) {
        Some(p) => atna_domain::KeyPrefix::parse(&p).with_context(|| format!("key_prefix {p:?}"))?,
        None => atna_domain::KeyPrefix::default(),
    };
    Ok(Resolved { data_dir, database_url, uses_default_database, db, file, key_prefix })
}

/// Ten years: the longest duration a setting takes. Longer means "never" to a person, and time arithmetic on
/// `u64::MAX` seconds overflows (an `Instant` plus such a duration panics).
const MAX_SECS: u64 = 10 * 365 * 24 * 60 * 60;
/// PostgreSQL's own limit for `statement_timeout` and `lock_timeout` (an int of milliseconds, about 24.8 days).
const PG_MAX_MS: u64 = i32::MAX as u64;

/// `v` if it is within `min..=max`; otherwise an error naming the setting.
fn within(name: &str, v: Option<u64>, min: u64, max: u64) -> anyhow::Result<Option<u64>> {
    if let Some(x) = v {
        anyhow::ensure!(x >= min, "{name} must be at least {min}");
        anyhow::ensure!(x <= max, "{name} must be at most {max}");
    }
    Ok(v)
}

/// Server settings from the file and flags (flags include their `ATNA_*` variables).
pub fn settings(r: &Resolved, s: &Serve) -> anyhow::Result<Settings> {
    let d = Settings::default();
    let f = &r.file;
    let secs = |v: Option<u64>, default: Duration| v.map(Duration::from_secs).unwrap_or(default);
    let days = |v: Option<u64>, default: Duration| {
        v.map(|d| Duration::from_secs(d.saturating_mul(24 * 60 * 60))).unwrap_or(default)
    };
    let millis = |v: Option<u64>, default: Duration| v.map(Duration::from_millis).unwrap_or(default);
    let at_least_1 = |name: &str, v: Option<u64>| within(name, v, 1, MAX_SECS);
    let any_secs = |name: &str, v: Option<u64>| within(name, v, 0, MAX_SECS);
    let trusted_proxies = match (&s.trusted_proxies, &f.trusted_proxies) {
        (Some(flag), _) => flag.clone(),
        (None, Some(list)) => list
            .iter()
            .map(|c| c.parse().with_context(|| format!("in trusted_proxies: {c:?}")))
            .collect::<anyhow::Result<_>>()?,
        (None, None) => d.trusted_proxies.clone(),
    };
    let trust_forwarded_for = s.trust_forwarded_for.or(f.trust_forwarded_for).unwrap_or(d.trust_forwarded_for);
    if trust_forwarded_for {
        tracing::warn!(
            "trust_forwarded_for is deprecated: it believes forwarding headers from any peer and lifts the per-peer \
             connection cap for all; set trusted_proxies to your proxies' addresses instead"
        );
    }
    let max_connections = s.max_connections.or(f.max_connections).or(d.max_connections);
    anyhow::ensure!(max_connections != Some(0), "max_connections must be at least 1");
    let max_connections_per_peer =
        s.max_connections_per_peer.or(f.max_connections_per_peer).unwrap_or(d.max_connections_per_peer);
    anyhow::ensure!(max_connections_per_peer >= 1, "max_connections_per_peer must be at least 1");
    let password_hash_concurrency = f.password_hash_concurrency.unwrap_or(d.password_hash_concurrency);
    anyhow::ensure!(password_hash_concurrency >= 1, "password_hash_concurrency must be at least 1");
    let listen = match s.listen.as_ref().or(f.listen.as_ref()) {
        Some(text) => listen_address(text)?,
        None => d.listen,
    };
    Ok(Settings {
        listen,
        trust_forwarded_for,
        trusted_proxies,
        header_read_timeout: secs(
            at_least_1("header_read_timeout_secs", s.header_read_timeout_secs.or(f.header_read_timeout_secs))?,
            d.header_read_timeout,
        ),
        idle_timeout: secs(
            at_least_1("idle_timeout_secs", s.idle_timeout_secs.or(f.idle_timeout_secs))?,
            d.idle_timeout,
        ),
        request_timeout: secs(
            at_least_1("request_timeout_secs", s.request_timeout_secs.or(f.request_timeout_secs))?,
            d.request_timeout,
        ),
        max_connections,
        max_connections_per_peer,
        cache_ttl: secs(any_secs("cache_ttl_secs", f.cache_ttl_secs)?, d.cache_ttl),
        negative_cache_ttl: secs(any_secs("negative_cache_ttl_secs", f.negative_cache_ttl_secs)?, d.negative_cache_ttl),
        cache_capacity: f.cache_capacity.unwrap_or(d.cache_capacity),
        // Zero would be an interval of nothing: the flusher (or the poller) would stop or spin.
        usage_flush_interval: secs(at_least_1("usage_flush_secs", f.usage_flush_secs)?, d.usage_flush_interval),
        change_poll_interval: millis(
            within("change_poll_ms", f.change_poll_ms, 1, MAX_SECS * 1000)?,
            d.change_poll_interval,
        ),
        change_feed_max_lag: millis(
            within("change_feed_max_lag_ms", f.change_feed_max_lag_ms, 0, MAX_SECS * 1000)?,
            d.change_feed_max_lag,
        ),
        usage_hourly_retention: days(
            at_least_1("usage_hourly_retention_days", f.usage_hourly_retention_days)?,
            d.usage_hourly_retention,
        ),
        usage_daily_retention: days(
            at_least_1("usage_daily_retention_days", f.usage_daily_retention_days)?,
            d.usage_daily_retention,
        ),
        // At least 10 ms: a tighter loop would only load the database.
        limits_sync_interval: f
            .limits_sync_ms
            .map(|ms| Duration::from_millis(ms.max(10)))
            .unwrap_or(d.limits_sync_interval),
        max_body_bytes: f.max_body_bytes.unwrap_or(d.max_body_bytes),
        password_hash_concurrency,
        session_idle_timeout: secs(
            at_least_1("session_idle_timeout_secs", f.session_idle_timeout_secs)?,
            d.session_idle_timeout,
        ),
        session_absolute_timeout: secs(
            at_least_1("session_absolute_timeout_secs", f.session_absolute_timeout_secs)?,
            d.session_absolute_timeout,
        ),
        api_key_headers: api_key_headers(f.api_key_headers.as_deref())?.unwrap_or(d.api_key_headers),
        policy: policy(f)?,
        notify: notify(f)?,
        metrics_listen: match std::env::var("ATNA_METRICS_LISTEN").ok().or_else(|| f.metrics_listen.clone()) {
            Some(text) => Some(listen_address(&text).context("metrics_listen")?),
            None => None,
        },
        proxy: proxy_settings(f, s)?,
        key_prefix: r.key_prefix.clone(),
        leaks: leak_settings(f)?,
    })
}

/// The leak endpoints' settings (`github_public_keys`, `gitlab_public_keys`, `gitlab_revocation_token`,
/// `leak_action`), each from its `ATNA_*` variable over the file.
fn leak_settings(f: &FileConfig) -> anyhow::Result<atna_server::leaks::LeakSettings> {
    use atna_server::leaks::KeySource;
    let source = |var: &str, file: &Option<String>, name: &str| -> anyhow::Result<Option<KeySource>> {
        env_or(var, file).map(|v| KeySource::parse(&v).map_err(|e| anyhow::anyhow!("{name}: {e}"))).transpose()
    };
    let token = env_or("ATNA_GITLAB_REVOCATION_TOKEN", &f.gitlab_revocation_token);
    if let Some(t) = &token {
        // GitLab sends it on every call: a short one could be guessed.
        anyhow::ensure!(t.trim().len() >= 16, "gitlab_revocation_token must be at least 16 characters");
    }
    let action = match env_or("ATNA_LEAK_ACTION", &f.leak_action) {
        Some(a) => atna_store::LeakAction::parse(&a)
            .with_context(|| format!("leak_action {a:?}: use revoke, disable or notify"))?,
        None => atna_store::LeakAction::default(),
    };
    Ok(atna_server::leaks::LeakSettings {
        github_public_keys: source("ATNA_GITHUB_PUBLIC_KEYS", &f.github_public_keys, "github_public_keys")?,
        gitlab_public_keys: source("ATNA_GITLAB_PUBLIC_KEYS", &f.gitlab_public_keys, "gitlab_public_keys")?,
        gitlab_revocation_token: token.map(|t| t.trim().to_owned()),
        action,
    })
}

/// Reverse-proxy mode's settings: `None` without `upstream` and `proxy_listen`; an error with only one of them, or with
/// `proxy_*` settings or routes but neither (they would silently do nothing).
fn proxy_settings(f: &FileConfig, s: &Serve) -> anyhow::Result<Option<atna_server::proxy::ProxySettings>> {
    use atna_server::proxy::{ProxySettings, Route, Upstream};
    let upstream = s.upstream.as_ref().or(f.upstream.as_ref());
    let listen = s.proxy_listen.as_ref().or(f.proxy_listen.as_ref());
    let (upstream, listen) = match (upstream, listen) {
        (Some(u), Some(l)) => (u, l),
        (None, None) => {
            let set = s.proxy_trusted_proxies.is_some()
                || s.proxy_max_body_bytes.is_some()
                || s.proxy_forward_authorization.is_some()
                || s.proxy_upstream_timeout_secs.is_some()
                || f.proxy_trusted_proxies.is_some()
                || f.proxy_max_body_bytes.is_some()
                || f.proxy_forward_authorization.is_some()
                || f.proxy_upstream_timeout_secs.is_some()
                || f.proxy.is_some();
            anyhow::ensure!(
                !set,
                "proxy settings are given but reverse-proxy mode is off: set upstream and proxy_listen"
            );
            return Ok(None);
        }
        (Some(_), None) => anyhow::bail!("upstream is set but proxy_listen is not: reverse-proxy mode needs both"),
        (None, Some(_)) => anyhow::bail!("proxy_listen is set but upstream is not: reverse-proxy mode needs both"),
    };
    let upstream: Upstream = upstream.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let mut p = ProxySettings::new(listen_address(listen).context("proxy_listen")?, upstream);
    p.trusted_proxies = match (&s.proxy_trusted_proxies, &f.proxy_trusted_proxies) {
        (Some(flag), _) => flag.clone(),
        (None, Some(list)) => list
            .iter()
            .map(|c| c.parse().with_context(|| format!("in proxy_trusted_proxies: {c:?}")))
            .collect::<anyhow::Result<_>>()?,
        (None, None) => Vec::new(),
    };
    p.max_body_bytes = s.proxy_max_body_bytes.or(f.proxy_max_body_bytes);
    anyhow::ensure!(p.max_body_bytes != Some(0), "proxy_max_body_bytes must be at least 1 (leave it out for no limit)");
    p.forward_authorization = s.proxy_forward_authorization.or(f.proxy_forward_authorization).unwrap_or(false);
    if let Some(secs) = s.proxy_upstream_timeout_secs.or(f.proxy_upstream_timeout_secs) {
        anyhow::ensure!(secs >= 1, "proxy_upstream_timeout_secs must be at least 1");
        p.upstream_timeout = Duration::from_secs(secs);
    }
    for r in f.proxy.iter().flat_map(|t| &t.routes) {
        p.routes.push(
            Route::new(&r.path_prefix, &r.methods, &r.scopes).map_err(|e| anyhow::anyhow!("in proxy.routes: {e}"))?,
        );
    }
    Ok(Some(p))
}

/// The key policy from `[policy]` (defaults for what it leaves out), checked.
pub fn policy(f: &FileConfig) -> anyhow::Result<atna_domain::Policy> {
    let d = atna_domain::Policy::default();
    let p = f.policy.as_ref();
    let policy = atna_domain::Policy {
        default_lifetime_days: p.and_then(|p| p.default_key_lifetime_days),
        max_lifetime_days: p.and_then(|p| p.max_key_lifetime_days),
        rotation_due_days: p.and_then(|p| p.rotation_due_days).unwrap_or(d.rotation_due_days),
        unused_days: p.and_then(|p| p.unused_days).unwrap_or(d.unused_days),
        auto_disable_unused_days: p.and_then(|p| p.auto_disable_unused_days),
    };
    policy.check()?;
    Ok(policy)
}

/// Reminder settings: `[smtp]` (its password from `ATNA_SMTP_PASSWORD` over the file), webhooks and the job timings.
pub fn notify(f: &FileConfig) -> anyhow::Result<atna_server::notify::NotifySettings> {
    use atna_server::notify::{SmtpSettings, SmtpTls};
    let d = atna_server::notify::NotifySettings::default();
    let smtp = match &f.smtp {
        None => None,
        Some(c) => {
            let tls = match c.tls.as_deref() {
                None => SmtpTls::default(),
                Some(t) => SmtpTls::parse(t)
                    .ok_or_else(|| anyhow::anyhow!("smtp.tls = `{t}` is not one of starttls, tls, none"))?,
            };
            let s = SmtpSettings {
                host: c.host.clone(),
                port: c.port.unwrap_or(tls.default_port()),
                tls,
                username: c.username.clone(),
                password: std::env::var("ATNA_SMTP_PASSWORD").ok().or_else(|| c.password.clone()),
                from: c.from.clone(),
            };
            atna_server::notify::email::check(&s).map_err(|e| anyhow::anyhow!(e))?;
            anyhow::ensure!(
                s.username.is_some() == s.password.is_some(),
                "smtp.username and smtp.password go together"
            );
            Some(s)
        }
    };
    let public_url = match &f.public_url {
        Some(u) => {
            let parsed = atna_server::notify::ssrf::parse(u)
                .map_err(|_| anyhow::anyhow!("public_url `{u}` is not an http(s) URL"))?;
            Some(parsed.as_str().trim_end_matches('/').to_owned())
        }
        None => None,
    };
    let ms = |v: Option<u64>, default: Duration| v.map(Duration::from_millis).unwrap_or(default);
    let secs = |v: Option<u64>, default: Duration| v.map(Duration::from_secs).unwrap_or(default);
    let n = atna_server::notify::NotifySettings {
        smtp,
        webhooks_allow_private_addresses: f
            .webhooks_allow_private_addresses
            .unwrap_or(d.webhooks_allow_private_addresses),
        delivery_timeout: secs(f.delivery_timeout_secs, d.delivery_timeout),
        outbox_poll_interval: ms(f.outbox_poll_ms, d.outbox_poll_interval),
        scan_interval: secs(f.reminder_scan_secs, d.scan_interval),
        digest_interval: secs(f.digest_interval_secs, d.digest_interval),
        retry_base: ms(f.delivery_retry_base_ms, d.retry_base),
        max_attempts: f.delivery_max_attempts.unwrap_or(d.max_attempts),
        public_url,
    };
    anyhow::ensure!(n.delivery_timeout >= Duration::from_secs(1), "delivery_timeout_secs must be at least 1");
    anyhow::ensure!(!n.outbox_poll_interval.is_zero(), "outbox_poll_ms must be at least 1");
    anyhow::ensure!(!n.scan_interval.is_zero(), "reminder_scan_secs must be at least 1");
    anyhow::ensure!(!n.retry_base.is_zero(), "delivery_retry_base_ms must be at least 1");
    anyhow::ensure!(n.max_attempts >= 1, "delivery_max_attempts must be at least 1");
    Ok(n)
}

/// The headers forward-auth reads a key from: `ATNA_API_KEY_HEADERS` (comma-separated) over the file's
/// `api_key_headers`. An empty list is allowed (Bearer only); a name that is not a header name is an error.
fn api_key_headers(file: Option<&[String]>) -> anyhow::Result<Option<Vec<axum::http::HeaderName>>> {
    let from_env = std::env::var("ATNA_API_KEY_HEADERS").ok();
    let (names, source): (Vec<String>, &str) = match (&from_env, file) {
        (Some(v), _) => {
            (v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(), "ATNA_API_KEY_HEADERS")
        }
        (None, Some(list)) => (list.to_vec(), "api_key_headers"),
        (None, None) => return Ok(None),
    };
    let parsed = names
        .iter()
        .map(|n| {
            let name = axum::http::HeaderName::try_from(n.as_str())
                .map_err(|_| anyhow::anyhow!("{source}: `{n}` is not a header name"))?;
            anyhow::ensure!(
                name != axum::http::header::AUTHORIZATION,
                "{source}: Authorization is always read; list other headers"
            );
            Ok(name)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(parsed))
}

/// `HOST:PORT` as an address to bind: an IP address as is, a host name (`localhost:8080`) resolved now, taking the
/// first address the system's resolver gives.
fn listen_address(text: &str) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        anyhow::bail!("listen address `{text}` has no port: use HOST:PORT, e.g. 127.0.0.1:8080 or localhost:8080")
    };
    anyhow::ensure!(
        !host.is_empty() && port.parse::<u16>().is_ok(),
        "listen address `{text}` is not HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080 or localhost:8080)"
    );
    let resolved =
        text.to_socket_addrs().map_err(|e| anyhow::anyhow!("cannot resolve listen address `{text}`: {e}"))?;
    resolved.into_iter().next().ok_or_else(|| anyhow::anyhow!("listen address `{text}` resolves to no address"))
}

/// Creates the data directory (private) when the default database lives there, or warns if it is not private.
pub fn ensure_data_dir(r: &Resolved) -> anyhow::Result<()> {
    if r.uses_default_database {
        crate::files::ensure_private_dir(&r.data_dir)?;
    }
    Ok(())
}

/// For commands that need an existing database: with the default one, it must already be in the data directory.
/// (An explicit `sqlite:` URL is checked when opened; PostgreSQL is created by `atna migrate` or `atna serve`.)
pub fn require_database(r: &Resolved) -> anyhow::Result<()> {
    if r.uses_default_database && !r.data_dir.join("atna.db").exists() {
        let dir = r.data_dir.display().to_string();
        let shown = if r.data_dir.is_relative() && !dir.starts_with('.') { format!("./{dir}") } else { dir };
        anyhow::bail!("no atna database at {shown} (use --data-dir or ATNA_DATABASE_URL)");
    }
    Ok(())
}

/// Logs to stderr; `ATNA_LOG` (or `RUST_LOG`) filters, `ATNA_LOG_FORMAT=json` for JSON lines. A bad `ATNA_LOG` or
/// `ATNA_LOG_FORMAT` is an error, like an unknown key in the TOML file: ignored, it would hide the logs asked for.
pub fn init_logging() -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("ATNA_LOG") {
        Ok(v) => log_filter(&v)?,
        Err(_) => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let json = match std::env::var("ATNA_LOG_FORMAT").as_deref() {
        Err(_) | Ok("text") => false,
        Ok("json") => true,
        Ok(other) => anyhow::bail!("ATNA_LOG_FORMAT=`{other}` is not a log format: use text or json"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

/// `ATNA_LOG` as a filter. `EnvFilter` skips directives it cannot parse (`bogus===` would mean "log nothing
/// special" without a word), so each directive is parsed on its own first.
fn log_filter(value: &str) -> anyhow::Result<tracing_subscriber::EnvFilter> {
    use tracing_subscriber::filter::Directive;
    for d in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        d.parse::<Directive>().map_err(|e| {
            anyhow::anyhow!("ATNA_LOG=`{value}`: `{d}` is not a log filter ({e}); use e.g. info, or atna=debug,warn")
        })?;
    }
    Ok(tracing_subscriber::EnvFilter::try_new(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve() -> Serve {
        Serve {
            listen: None,
            trust_forwarded_for: None,
            trusted_proxies: None,
            header_read_timeout_secs: None,
            idle_timeout_secs: None,
            request_timeout_secs: None,
            max_connections: None,
            max_connections_per_peer: None,
            upstream: None,
            proxy_listen: None,
            proxy_trusted_proxies: None,
            proxy_max_body_bytes: None,
            proxy_forward_authorization: None,
            proxy_upstream_timeout_secs: None,
        }
    }

    fn global(config: Option<PathBuf>) -> Global {
        Global { config, data_dir: None, database_url: None, database_max_connections: None }
    }

    #[test]
    fn the_file_sets_timeouts_and_database_options_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("atna.toml");
        std::fs::write(
            &path,
            "session_idle_timeout_secs = 600\nsession_absolute_timeout_secs = 3600\n\
             database_max_connections = 4\ndatabase_timeout_ms = 250\nlisten = \"127.0.0.1:9000\"\n\
             database_statement_timeout_ms = 0\ndatabase_lock_timeout_ms = 700\nchange_feed_max_lag_ms = 1500\n",
        )
        .unwrap();
        let r = resolve(&global(Some(path.clone()))).unwrap();
        assert_eq!((r.db.max_connections, r.db.acquire_timeout), (4, Duration::from_millis(250)));
        assert_eq!((r.db.statement_timeout, r.db.lock_timeout), (Duration::ZERO, Duration::from_millis(700)));
        let s = settings(&r, &serve()).unwrap();
        assert_eq!(s.change_feed_max_lag, Duration::from_millis(1500));
        assert_eq!(s.session_idle_timeout, Duration::from_secs(600));
        assert_eq!(s.session_absolute_timeout, Duration::from_secs(3600));
        assert_eq!(s.listen.port(), 9000);
        let flag = Serve { listen: Some("127.0.0.1:9001".into()), ..serve() };
        assert_eq!(settings(&r, &flag).unwrap().listen.port(), 9001, "a flag wins over the file");
        let mut g = global(Some(path));
        g.database_max_connections = Some(7);
        assert_eq!(resolve(&g).unwrap().db.max_connections, 7);
    }

    #[test]
    fn typos_and_impossible_values_in_the_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            ("session_idle_timeout = 600\n", "unknown field `session_idle_timeout`"),
            ("database_max_connections = 0\n", "at least 1"),
            ("database_statement_timeout_ms = 2147483648\n", "at most 2147483647"),
            ("database_start_wait_secs = 9223372036854775807\n", "at most 315360000"),
        ] {
            let path = dir.path().join("atna.toml");
            std::fs::write(&path, text).unwrap();
            let e = resolve(&global(Some(path))).err().unwrap();
            assert!(format!("{e:#}").contains(want), "{text}: {e:#}");
        }
    }

    #[test]
    fn connection_settings_come_from_the_file_and_flags_and_bad_ones_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("atna.toml");
        std::fs::write(
            &path,
            "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nheader_read_timeout_secs = 5\nidle_timeout_secs = 7\n\
             request_timeout_secs = 9\nmax_connections = 100\nmax_connections_per_peer = 3\n",
        )
        .unwrap();
        let r = resolve(&global(Some(path))).unwrap();
        let s = settings(&r, &serve()).unwrap();
        assert_eq!(s.trusted_proxies.iter().map(|c| c.to_string()).collect::<Vec<_>>(), ["10.0.0.0/8", "::1/128"]);
        assert!(s.trusts_peer("10.1.2.3".parse().unwrap()) && !s.trusts_peer("11.0.0.1".parse().unwrap()));
        assert_eq!(s.header_read_timeout, Duration::from_secs(5));
        assert_eq!(s.idle_timeout, Duration::from_secs(7));
        assert_eq!(s.request_timeout, Duration::from_secs(9));
        assert_eq!((s.max_connections, s.max_connections_per_peer), (Some(100), 3));
        let flag = Serve { trusted_proxies: Some(vec!["192.0.2.0/24".parse().unwrap()]), ..serve() };
        assert_eq!(settings(&r, &flag).unwrap().trusted_proxies.len(), 1, "the flag replaces the file's list");

        for (text, want) in [
            ("trusted_proxies = [\"10.0.0.0/33\"]\n", "from 0 to 32"),
            ("trusted_proxies = [\"proxy.local\"]\n", "not an IP address"),
            ("max_connections_per_peer = 0\n", "at least 1"),
            ("password_hash_concurrency = 0\n", "password_hash_concurrency must be at least 1"),
            ("header_read_timeout_secs = 0\n", "at least 1"),
            // Found by the property test below: zero stopped the usage flusher (a panic in its task, usage never
            // written), and huge values overflow time arithmetic.
            ("usage_flush_secs = 0\n", "usage_flush_secs must be at least 1"),
            ("change_poll_ms = 0\n", "change_poll_ms must be at least 1"),
            ("cache_ttl_secs = 9223372036854775807\n", "cache_ttl_secs must be at most 315360000"),
            ("session_idle_timeout_secs = 0\n", "at least 1"),
        ] {
            std::fs::write(dir.path().join("bad.toml"), text).unwrap();
            let r = resolve(&global(Some(dir.path().join("bad.toml")))).unwrap();
            let e = settings(&r, &serve()).err().unwrap();
            assert!(format!("{e:#}").contains(want), "{text}: {e:#}");
        }
    }

    #[test]
    fn listen_takes_host_names_and_explains_bad_addresses() {
        let r = resolve(&global(None)).unwrap();
        let listen = |text: &str| settings(&r, &Serve { listen: Some(text.into()), ..serve() });
        let addr = listen("localhost:9002").unwrap().listen;
        assert!(addr.ip().is_loopback() && addr.port() == 9002, "{addr}");
        assert_eq!(listen("[::1]:9003").unwrap().listen.port(), 9003);
        for (text, want) in [
            ("localhost", "has no port"),
            ("localhost:http", "is not HOST:PORT"),
            (":8080", "is not HOST:PORT"),
            ("no-such-host.invalid:8080", "cannot resolve listen address `no-such-host.invalid:8080`"),
        ] {
            let e = listen(text).err().unwrap();
            assert!(format!("{e:#}").contains(want), "{text}: {e:#}");
        }
    }

    #[test]
    fn reverse_proxy_mode_comes_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("atna.toml");
        std::fs::write(
            &path,
            "upstream = \"http://127.0.0.1:9000\"\nproxy_listen = \"127.0.0.1:8443\"\n\
             proxy_trusted_proxies = [\"10.0.0.0/8\"]\nproxy_max_body_bytes = 1048576\n\
             proxy_forward_authorization = true\nproxy_upstream_timeout_secs = 5\n\
             [[proxy.routes]]\npath_prefix = \"/admin\"\nmethods = [\"POST\"]\nscopes = [\"admin:write\"]\n\
             [[proxy.routes]]\npath_prefix = \"/\"\nscopes = [\"api\"]\n",
        )
        .unwrap();
        let r = resolve(&global(Some(path))).unwrap();
        let p = settings(&r, &serve()).unwrap().proxy.unwrap();
        assert_eq!(p.upstream.to_string(), "http://127.0.0.1:9000");
        assert_eq!(p.listen.port(), 8443);
        assert_eq!(p.trusted_proxies.len(), 1);
        assert_eq!(p.max_body_bytes, Some(1_048_576));
        assert!(p.forward_authorization);
        assert_eq!(p.upstream_timeout, Duration::from_secs(5));
        assert_eq!(p.routes.len(), 2);
        assert_eq!((p.routes[0].path_prefix.as_str(), p.routes[0].methods[0].as_str()), ("/admin", "POST"));
        let flag = Serve {
            upstream: Some("http://127.0.0.1:9100".into()),
            proxy_listen: Some("127.0.0.1:0".into()),
            ..serve()
        };
        let p = settings(&r, &flag).unwrap().proxy.unwrap();
        assert_eq!((p.upstream.to_string().as_str(), p.listen.port()), ("http://127.0.0.1:9100", 0), "flags win");

        let none = resolve(&global(None)).unwrap();
        assert!(settings(&none, &serve()).unwrap().proxy.is_none(), "off by default");
        for (text, want) in [
            ("upstream = \"http://127.0.0.1:9000\"\n", "proxy_listen is not"),
            ("proxy_listen = \"127.0.0.1:1\"\n", "upstream is not"),
            ("proxy_max_body_bytes = 10\n", "reverse-proxy mode is off"),
            ("upstream = \"https://x\"\nproxy_listen = \"127.0.0.1:1\"\n", "https upstreams are not supported"),
            (
                "upstream = \"http://x\"\nproxy_listen = \"127.0.0.1:1\"\n[[proxy.routes]]\npath_prefix = \"/a/../b\"\n",
                "in proxy.routes",
            ),
            (
                "upstream = \"http://x\"\nproxy_listen = \"127.0.0.1:1\"\n[[proxy.routes]]\npath_prefix = \"/\"\nscope = []\n",
                "unknown field `scope`",
            ),
        ] {
            std::fs::write(dir.path().join("bad.toml"), text).unwrap();
            let e = match resolve(&global(Some(dir.path().join("bad.toml")))) {
                Ok(r) => settings(&r, &serve()).err().unwrap(),
                Err(e) => e,
            };
            assert!(format!("{e:#}").contains(want), "{text}: {e:#}");
        }
    }

    #[test]
    fn bad_log_filters_are_errors() {
        assert!(log_filter("info").is_ok() && log_filter("atna=debug,warn").is_ok());
        let e = log_filter("bogus===").err().unwrap().to_string();
        assert!(e.contains("ATNA_LOG=`bogus===`"), "{e}");
    }

    #[test]
    fn key_header_names_are_checked() {
        let names = |l: &[&str]| api_key_headers(Some(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
        let ok = names(&["X-API-Key", "apikey"]).unwrap().unwrap();
        assert_eq!(ok.iter().map(|h| h.as_str()).collect::<Vec<_>>(), ["x-api-key", "apikey"]);
        assert!(names(&[]).unwrap().unwrap().is_empty(), "Bearer only");
        assert!(names(&["bad header"]).unwrap_err().to_string().contains("`bad header` is not a header name"));
        assert!(names(&["Authorization"]).is_err());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// A number as TOML would give it: small, at the edges that matter, or anything an i64 holds.
    fn number() -> impl Strategy<Value = i64> {
        prop_oneof![0i64..5, Just(i64::MAX), Just(i64::MIN), Just(u32::MAX as i64 + 1), any::<i64>()]
    }

    fn quoted(s: &str) -> String {
        toml::Value::String(s.to_owned()).to_string()
    }

    /// Lines of a configuration file: every setting the file knows, each present or not, with numbers, addresses
    /// and names drawn from the edges and from anywhere. Listen addresses never need a DNS lookup.
    fn config_text() -> impl Strategy<Value = String> {
        const NUMERIC: &[&str] = &[
            "database_max_connections",
            "database_timeout_ms",
            "database_start_wait_secs",
            "database_statement_timeout_ms",
            "database_lock_timeout_ms",
            "header_read_timeout_secs",
            "idle_timeout_secs",
            "request_timeout_secs",
            "max_connections",
            "max_connections_per_peer",
            "cache_ttl_secs",
            "negative_cache_ttl_secs",
            "cache_capacity",
            "usage_flush_secs",
            "change_poll_ms",
            "change_feed_max_lag_ms",
            "max_body_bytes",
            "password_hash_concurrency",
            "session_idle_timeout_secs",
            "session_absolute_timeout_secs",
        ];
        let address = prop_oneof!["(127\\.0\\.0\\.1|\\[::1\\]):[0-9]{1,6}", "[a-z0-9.]{0,12}", "\\PC{0,12}"];
        let numbers = proptest::collection::vec(proptest::option::of(number()), NUMERIC.len());
        let texts = (
            proptest::option::of(address.clone()),
            proptest::option::of(address),
            proptest::option::of(proptest::collection::vec("[0-9a-f:./]{0,20}", 0..4)),
            proptest::option::of(proptest::collection::vec("\\PC{0,12}", 0..4)),
            proptest::option::of(any::<bool>()),
        );
        (numbers, texts).prop_map(|(numbers, (listen, metrics, proxies, headers, forwarded))| {
            let mut text = String::new();
            for (name, v) in NUMERIC.iter().zip(numbers) {
                if let Some(v) = v {
                    text += &format!("{name} = {v}\n");
                }
            }
            let list = |v: &[String]| format!("[{}]", v.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(", "));
            for (name, v) in [("listen", listen), ("metrics_listen", metrics)] {
                if let Some(v) = v {
                    text += &format!("{name} = {}\n", quoted(&v));
                }
            }
            if let Some(v) = proxies {
                text += &format!("trusted_proxies = {}\n", list(&v));
            }
            if let Some(v) = headers {
                text += &format!("api_key_headers = {}\n", list(&v));
            }
            if let Some(v) = forwarded {
                text += &format!("trust_forwarded_for = {v}\n");
            }
            text
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(atna_domain::test_cases(500)))]

        /// Any text as a configuration file: an error or settings, never a panic.
        #[test]
        fn any_text_is_read_without_panicking(text in prop_oneof![any::<String>(), "([a-z_]{1,30} = [0-9\"a-z\\[\\],.:-]{0,20}\n){0,4}"]) {
            let _ = toml::from_str::<FileConfig>(&text);
        }

        /// Any value of every setting: an error naming the setting, or settings the server can run with (every
        /// duration at most ten years, every interval above zero), never a panic.
        #[test]
        fn any_settings_resolve_or_are_refused(text in config_text()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("atna.toml");
            std::fs::write(&path, &text).unwrap();
            let Ok(r) = resolve(&Global { config: Some(path), data_dir: None, database_url: None, database_max_connections: None }) else {
                return Ok(());
            };
            prop_assert!(r.db.max_connections >= 1 && r.db.acquire_timeout >= Duration::from_millis(1));
            let serve = Serve::default();
            if let Ok(s) = settings(&r, &serve) {
                let ten_years = Duration::from_secs(MAX_SECS);
                for d in [s.header_read_timeout, s.idle_timeout, s.request_timeout, s.cache_ttl, s.negative_cache_ttl,
                          s.usage_flush_interval, s.change_poll_interval, s.change_feed_max_lag,
                          s.session_idle_timeout, s.session_absolute_timeout] {
                    prop_assert!(d <= ten_years, "{text}");
                }
                for d in [s.header_read_timeout, s.idle_timeout, s.request_timeout, s.usage_flush_interval,
                          s.change_poll_interval, s.session_idle_timeout, s.session_absolute_timeout] {
                    prop_assert!(!d.is_zero(), "{text}");
                }
                prop_assert!(s.max_connections != Some(0) && s.max_connections_per_peer >= 1);
            }
        }
    }
}
