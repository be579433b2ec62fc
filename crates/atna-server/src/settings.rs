//! What the server can be told at start. The binary layers defaults, the TOML file, `ATNA_*` variables and flags
//! into one of these; nothing here reads the environment itself.

use std::net::SocketAddr;
use std::time::Duration;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// How long a verified key's record is trusted from memory before it is read again. The safety net behind
    /// change-feed invalidation, not the main mechanism.
    pub cache_ttl: Duration,
    /// How long "no such key" is remembered.
    pub negative_cache_ttl: Duration,
    /// Most key records kept in memory.
    pub cache_capacity: usize,
    /// How often gathered usage is written to the store.
    pub usage_flush_interval: Duration,
    /// How often the change feed is polled when the store cannot push.
    pub change_poll_interval: Duration,
    /// How long after its last successful change-feed read this node still trusts its cache (at least three poll
    /// intervals are used). Past it, a deletion elsewhere might be unknown, so keys are read from the store again.
    pub change_feed_max_lag: Duration,
    /// Trust the last address of `X-Forwarded-For` as the client's (only behind a proxy you run).
    pub trust_forwarded_for: bool,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// A dashboard session ends after this long without activity.
    pub session_idle_timeout: Duration,
    /// A dashboard session ends this long after sign-in, active or not.
    pub session_absolute_timeout: Duration,
    /// Headers forward-auth reads a key from when there is no `Authorization: Bearer` (some clients cannot set it).
    pub api_key_headers: Vec<axum::http::HeaderName>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cache_ttl: Duration::from_secs(30),
            negative_cache_ttl: Duration::from_secs(10),
            cache_capacity: 100_000,
            usage_flush_interval: Duration::from_secs(5),
            change_poll_interval: Duration::from_millis(200),
            change_feed_max_lag: Duration::from_secs(1),
            trust_forwarded_for: false,
            max_body_bytes: 64 * 1024,
            session_idle_timeout: Duration::from_secs(12 * 60 * 60),
            session_absolute_timeout: Duration::from_secs(7 * 24 * 60 * 60),
            api_key_headers: vec![axum::http::HeaderName::from_static("x-api-key")],
        }
    }
}
