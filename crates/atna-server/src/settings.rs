//! What the server can be told at start. The binary layers defaults, the TOML file, `ATNA_*` variables and flags
//! into one of these; nothing here reads the environment itself.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::cidr::{self, Cidr};

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
    /// How often this node shares its rate-limit and quota counts with the other nodes through the database (and
    /// learns theirs). Across nodes a key can exceed its limits by what the nodes admit in about two of these.
    pub limits_sync_interval: Duration,
    /// How long hourly usage buckets (requests per key per hour, by outcome) are kept.
    pub usage_hourly_retention: Duration,
    /// How long daily usage buckets are kept.
    pub usage_daily_retention: Duration,
    /// How often the change feed is polled when the store cannot push.
    pub change_poll_interval: Duration,
    /// How long after its last successful change-feed read this node still trusts its cache (at least three poll
    /// intervals are used). Past it, a deletion elsewhere might be unknown, so keys are read from the store again.
    pub change_feed_max_lag: Duration,
    /// Deprecated: treat every peer as a trusted proxy (the last `X-Forwarded-For` address is the client's).
    /// `trusted_proxies` says which peers are proxies instead.
    pub trust_forwarded_for: bool,
    /// The proxies in front of atna. From a peer in these ranges, the client is the right-most `X-Forwarded-For`
    /// address outside them, and `X-Forwarded-Proto`/`X-Forwarded-Host` are believed; such peers also have no
    /// per-peer connection cap. From any other peer those headers are ignored.
    pub trusted_proxies: Vec<Cidr>,
    /// A connection must deliver a request's headers this long after it opens (or after the first byte of a
    /// following request), else it is closed.
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed. Upgraded and streaming connections have none.
    pub idle_timeout: Duration,
    /// A request whose answer takes longer than this gets a 503 `request_timeout`.
    pub request_timeout: Duration,
    /// Most open connections at once; `None` derives it from the file-descriptor limit (at most 10,000).
    pub max_connections: Option<usize>,
    /// Most open connections from one address (IPv6: one /64), except from trusted proxies.
    pub max_connections_per_peer: usize,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Most argon2 password hashes or checks running at once; the rest queue, sign-ins from unknown browsers last
    /// (see `dashboard/slots.rs`).
    pub password_hash_concurrency: usize,
    /// A dashboard session ends after this long without activity.
    pub session_idle_timeout: Duration,
    /// A dashboard session ends this long after sign-in, active or not.
    pub session_absolute_timeout: Duration,
    /// Headers forward-auth reads a key from when there is no `Authorization: Bearer` (some clients cannot set it).
    pub api_key_headers: Vec<axum::http::HeaderName>,
    /// Where `/metrics` is served instead of the main listener (`None`: on the main listener).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Reverse-proxy mode: a second listener that checks every request's key and passes it on to an upstream.
    pub proxy: Option<crate::proxy::ProxySettings>,
    /// The installation's key policy (`[policy]`): default and maximum lifetime, rotation-due and unused ages.
    pub policy: atna_domain::Policy,
    /// Reminders: SMTP, webhooks, and how often the background jobs run.
    pub notify: crate::notify::NotifySettings,
    /// The prefix new keys get, recorded in the database at the first start (`key_prefix`). A node configured with
    /// another prefix than the recorded one says so at start and issues the recorded one.
    pub key_prefix: atna_domain::KeyPrefix,
    /// Reports from secret scanners (`/v1/leaks/…`, `/v1/revoke_tokens`).
    pub leaks: crate::leaks::LeakSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cache_ttl: Duration::from_secs(30),
            negative_cache_ttl: Duration::from_secs(10),
            cache_capacity: 100_000,
            usage_flush_interval: Duration::from_secs(5),
            limits_sync_interval: Duration::from_secs(1),
            usage_hourly_retention: Duration::from_secs(14 * 24 * 60 * 60),
            usage_daily_retention: Duration::from_secs(400 * 24 * 60 * 60),
            change_poll_interval: Duration::from_millis(200),
            change_feed_max_lag: Duration::from_secs(1),
            trust_forwarded_for: false,
            trusted_proxies: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: None,
            max_connections_per_peer: 256,
            max_body_bytes: 64 * 1024,
            password_hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            session_idle_timeout: Duration::from_secs(12 * 60 * 60),
            session_absolute_timeout: Duration::from_secs(7 * 24 * 60 * 60),
            api_key_headers: vec![axum::http::HeaderName::from_static("x-api-key")],
            metrics_listen: None,
            proxy: None,
            policy: atna_domain::Policy::default(),
            notify: crate::notify::NotifySettings::default(),
            key_prefix: atna_domain::KeyPrefix::default(),
            leaks: crate::leaks::LeakSettings::default(),
        }
    }
}

impl Settings {
    /// Whether a connection from `peer` is one of our proxies: its forwarding headers are believed, and it has no
    /// per-peer connection cap.
    pub fn trusts_peer(&self, peer: IpAddr) -> bool {
        self.trust_forwarded_for || cidr::any_contains(&self.trusted_proxies, peer)
    }
}
