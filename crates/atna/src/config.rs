//! Settings layered from defaults, the TOML file, `ATNA_*` variables and flags; and logging.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use atna_server::Settings;
use serde::Deserialize;

use crate::cli::{Global, Serve};

/// The TOML file's shape. Unknown keys are errors, so a typo does not silently do nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<std::net::SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub database_max_connections: Option<u32>,
    pub database_timeout_ms: Option<u64>,
    pub database_start_wait_secs: Option<u64>,
    pub database_statement_timeout_ms: Option<u64>,
    pub database_lock_timeout_ms: Option<u64>,
    pub trust_forwarded_for: Option<bool>,
    pub cache_ttl_secs: Option<u64>,
    pub negative_cache_ttl_secs: Option<u64>,
    pub cache_capacity: Option<usize>,
    pub usage_flush_secs: Option<u64>,
    pub change_poll_ms: Option<u64>,
    pub change_feed_max_lag_ms: Option<u64>,
    pub max_body_bytes: Option<usize>,
    pub session_idle_timeout_secs: Option<u64>,
    pub session_absolute_timeout_secs: Option<u64>,
}

/// Everything resolved.
pub struct Resolved {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub uses_default_database: bool,
    pub db: atna_server::store_url::DbOptions,
    pub file: FileConfig,
}

const KNOWN_ENV: &[&str] = &[
    "ATNA_CONFIG",
    "ATNA_DATA_DIR",
    "ATNA_DATABASE_URL",
    "ATNA_DATABASE_MAX_CONNECTIONS",
    "ATNA_LISTEN",
    "ATNA_TRUST_FORWARDED_FOR",
    "ATNA_LOG",
    "ATNA_LOG_FORMAT",
];

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
    if let Some(ms) = file.database_timeout_ms {
        anyhow::ensure!(ms >= 1, "database_timeout_ms must be at least 1");
        db.acquire_timeout = Duration::from_millis(ms);
    }
    // Zero turns PostgreSQL's limit off, as in PostgreSQL itself.
    if let Some(ms) = file.database_statement_timeout_ms {
        db.statement_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = file.database_lock_timeout_ms {
        db.lock_timeout = Duration::from_millis(ms);
    }
    Ok(Resolved { data_dir, database_url, uses_default_database, db, file })
}

/// Server settings from the file and flags.
pub fn settings(r: &Resolved, s: &Serve) -> Settings {
    let d = Settings::default();
    let f = &r.file;
    let secs = |v: Option<u64>, default: Duration| v.map(Duration::from_secs).unwrap_or(default);
    Settings {
        listen: s.listen.or(f.listen).unwrap_or(d.listen),
        trust_forwarded_for: s.trust_forwarded_for.or(f.trust_forwarded_for).unwrap_or(d.trust_forwarded_for),
        cache_ttl: secs(f.cache_ttl_secs, d.cache_ttl),
        negative_cache_ttl: secs(f.negative_cache_ttl_secs, d.negative_cache_ttl),
        cache_capacity: f.cache_capacity.unwrap_or(d.cache_capacity),
        usage_flush_interval: secs(f.usage_flush_secs, d.usage_flush_interval),
        change_poll_interval: f.change_poll_ms.map(Duration::from_millis).unwrap_or(d.change_poll_interval),
        change_feed_max_lag: f.change_feed_max_lag_ms.map(Duration::from_millis).unwrap_or(d.change_feed_max_lag),
        max_body_bytes: f.max_body_bytes.unwrap_or(d.max_body_bytes),
        session_idle_timeout: secs(f.session_idle_timeout_secs, d.session_idle_timeout),
        session_absolute_timeout: secs(f.session_absolute_timeout_secs, d.session_absolute_timeout),
    }
}

/// Creates the data directory when the default database lives there.
pub fn ensure_data_dir(r: &Resolved) -> anyhow::Result<()> {
    if r.uses_default_database {
        create_dir(&r.data_dir)?;
    }
    Ok(())
}

fn create_dir(p: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(p).with_context(|| format!("creating data directory {}", p.display()))
}

/// Logs to stderr; `ATNA_LOG` (or `RUST_LOG`) filters, `ATNA_LOG_FORMAT=json` for JSON lines.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("ATNA_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("ATNA_LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = settings(&r, &Serve { listen: None, trust_forwarded_for: None });
        assert_eq!(s.change_feed_max_lag, Duration::from_millis(1500));
        assert_eq!(s.session_idle_timeout, Duration::from_secs(600));
        assert_eq!(s.session_absolute_timeout, Duration::from_secs(3600));
        assert_eq!(s.listen.port(), 9000);
        let flag = Serve { listen: Some("127.0.0.1:9001".parse().unwrap()), trust_forwarded_for: None };
        assert_eq!(settings(&r, &flag).listen.port(), 9001, "a flag wins over the file");
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
        ] {
            let path = dir.path().join("atna.toml");
            std::fs::write(&path, text).unwrap();
            let e = resolve(&global(Some(path))).err().unwrap();
            assert!(format!("{e:#}").contains(want), "{text}: {e:#}");
        }
    }
}
