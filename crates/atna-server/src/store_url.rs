//! Picks the backend once, at start, from the database URL's scheme.

use std::path::Path;
use std::sync::Arc;

use atna_store::{Store, StoreError};
use atna_store_postgres::{PgSettings, PgStore};
use atna_store_sqlite::SqliteStore;

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported database URL scheme in `{0}`: use sqlite:PATH or postgres://USER@HOST/DB")]
    UnknownScheme(String),
    #[error("the SQLite database {0} does not exist; check the path, or add ?mode=rwc to create it")]
    Missing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The default database: `atna.db` in the data directory, created on first use.
pub fn default_url(data_dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("atna.db").display())
}

/// How to open the database, beyond its URL: the PostgreSQL pool's settings (SQLite has none to take).
pub type DbOptions = PgSettings;

/// Opens (and migrates) the store a URL names. A `sqlite:` URL must name an existing file unless it says
/// `mode=rwc`, so that a typo is an error rather than a new, empty database.
pub async fn open(url: &str, opts: &DbOptions) -> Result<Arc<dyn Store>, OpenError> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => {
            let create = url.contains("mode=rwc") || url.contains("mode=memory") || url.contains(":memory:");
            if !create {
                let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
                let path = path.split('?').next().unwrap_or_default();
                if !Path::new(path).exists() {
                    return Err(OpenError::Missing(path.to_owned()));
                }
            }
            Ok(Arc::new(SqliteStore::open(url, create).await?))
        }
        "postgres" | "postgresql" => {
            let store = PgStore::open(url, opts).await.map_err(|e| match e {
                // sqlx's messages can carry the URL; never print a password.
                StoreError::Database(m) => StoreError::Database(redact_in(&m, url)),
                other => other,
            })?;
            Ok(Arc::new(store))
        }
        _ => Err(OpenError::UnknownScheme(redact_password(url))),
    }
}

/// Replaces any copy of `url` in a message by its redacted form.
fn redact_in(message: &str, url: &str) -> String {
    message.replace(url, &redact_password(url))
}

/// Hides a password in a URL before it is printed.
pub fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_schemes_and_typos_are_errors() {
        let e = open("mysql://root:pw@localhost/x", &DbOptions::default()).await.err().unwrap();
        assert!(matches!(e, OpenError::UnknownScheme(ref u) if u == "mysql://root:***@localhost/x"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("atan.db");
        let e = open(&format!("sqlite://{}", typo.display()), &DbOptions::default()).await.err().unwrap();
        assert!(matches!(e, OpenError::Missing(_)), "{e}");
        assert!(!typo.exists());
        let store = open(&default_url(dir.path()), &DbOptions::default()).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        assert!(dir.path().join("atna.db").exists());
    }

    #[tokio::test]
    async fn an_unreachable_postgres_is_a_clear_error_without_the_password() {
        // Port 1 on localhost: nothing listens, the connection is refused at once.
        let url = "postgres://atna:s3cret@127.0.0.1:1/atna";
        let e = open(url, &DbOptions::default()).await.err().unwrap().to_string();
        assert!(e.contains("cannot connect to PostgreSQL"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }
}
