//! The JSON shapes of the REST API. Their schemas feed `/openapi.json`.

use atna_domain::{KeyHealth, Millis, UserId};
use atna_store::KeyRecord;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::clock::to_datetime;

/// The user a key belongs to.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Owner {
    #[schema(value_type = i64)]
    pub id: UserId,
    pub email: String,
}

/// The key that made the request.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// The key's Credential ID.
    pub key_id: String,
    pub name: String,
    pub owner: Owner,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl WhoAmI {
    /// Describes a key.
    pub fn new(k: &KeyRecord, owner: Owner) -> Self {
        Self {
            key_id: k.id.to_string(),
            name: k.name.to_string(),
            owner,
            scopes: k.scopes.iter().map(str::to_owned).collect(),
            created_at: to_datetime(k.created_at),
            expires_at: k.expires_at.map(to_datetime),
        }
    }
}

/// An API key's metadata. Never contains the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct Key {
    /// The Credential ID: public, safe to log.
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// `active`, `disabled` or `expired` (an active key past `expires_at`).
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_ip: Option<String>,
    pub use_count: i64,
    /// Whether the name follows `<service_name>-<dd_mm_yyyy>-<hh_mm>`.
    pub follows_naming_convention: bool,
    /// Older than 90 days: rotate it (create a new key, move your services to it, delete this one).
    pub rotation_due: bool,
    /// Never used, or not used for 30 days: consider deleting it.
    pub unused: bool,
    /// The Credential ID of the key that created this one through the API (it may since have been deleted); `null`
    /// for keys made in the dashboard or by the operator.
    pub created_by_key: Option<String>,
    /// Where the key may be used from (CIDR ranges, canonical form); `null`: anywhere.
    #[schema(example = json!(["203.0.113.0/24", "2001:db8::/32"]), max_items = 64)]
    pub ip_allowlist: Option<Vec<String>>,
    /// The Credential ID of the key this one replaced (it was made by rolling that key); `null` otherwise.
    pub rolled_from: Option<String>,
    /// The Credential ID of the key that replaced this one: it was rolled and stops working at `expires_at`, the end
    /// of the overlap; `null` otherwise.
    pub rolled_to: Option<String>,
    /// At most `limit` requests per `period_seconds`; `null`: no limit.
    pub rate_limit: Option<RateLimitRule>,
    /// Uses left, and the refill if any; `null`: no quota.
    pub quota: Option<QuotaRule>,
}

/// A key's rate limit (GCRA: a whole `limit` may come at once, then one per `period_seconds / limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"limit": 100, "period_seconds": 60}))]
pub struct RateLimitRule {
    /// 1–1,000,000 requests…
    pub limit: i64,
    /// …per 1–86,400 seconds.
    pub period_seconds: i64,
}

/// A key's usage quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"remaining": 10000, "refill": {"amount": 10000, "interval": "monthly"}}))]
pub struct QuotaRule {
    /// Uses left (0 to 10^12). At 0 the key is refused with `usage_exceeded` (429) until a refill.
    pub remaining: i64,
    /// Filled up again to `amount` at the start of every UTC day or month; `null`: never.
    #[serde(default)]
    pub refill: Option<QuotaRefill>,
}

/// A quota's refill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaRefill {
    /// 1 to 10^12 uses.
    pub amount: i64,
    /// `daily` or `monthly` (UTC).
    #[schema(example = "monthly")]
    pub interval: String,
}

impl RateLimitRule {
    pub fn of(r: atna_domain::RateLimit) -> Self {
        Self { limit: i64::from(r.limit()), period_seconds: i64::from(r.period_seconds()) }
    }
}

impl QuotaRule {
    /// A quota as shown at `now` (a refill that is due counts as done).
    pub fn of(q: &atna_domain::Quota, now: Millis) -> Self {
        Self {
            remaining: q.remaining_at(now),
            refill: q.refill.map(|r| QuotaRefill { amount: r.amount, interval: r.interval.as_str().to_owned() }),
        }
    }
}

impl Key {
    /// Describes a key at `now` under the default policy.
    pub fn new(k: &KeyRecord, now: Millis) -> Self {
        Self::under(k, now, &atna_domain::Policy::default())
    }

    /// Describes a key at `now`, its flags (`rotation_due`, `unused`) under the installation's `policy`.
    pub fn under(k: &KeyRecord, now: Millis, policy: &atna_domain::Policy) -> Self {
        let health = KeyHealth::under(policy, k.created_at, k.last_used_at, now);
        Self {
            id: k.id.to_string(),
            name: k.name.to_string(),
            scopes: k.scopes.iter().map(str::to_owned).collect(),
            status: atna_domain::lifecycle::shown_status(k.status, k.expires_at, now),
            created_at: to_datetime(k.created_at),
            expires_at: k.expires_at.map(to_datetime),
            last_used_at: k.last_used_at.map(to_datetime),
            last_used_ip: k.last_used_ip.clone(),
            use_count: k.use_count,
            follows_naming_convention: k.name.follows_convention(),
            rotation_due: health.rotation_due,
            unused: health.unused,
            created_by_key: k.created_by_key.map(|id| id.to_string()),
            ip_allowlist: allowlist_json(&k.rules.ip_allowlist),
            rate_limit: k.rules.rate_limit.map(RateLimitRule::of),
            quota: k.rules.quota.as_ref().map(|q| QuotaRule::of(q, now)),
            rolled_from: k.rolled_from.map(|id| id.to_string()),
            rolled_to: k.rolled_to.map(|id| id.to_string()),
        }
    }
}

/// An IP allowlist as JSON: its ranges in canonical form, `None` (`null`) for none.
pub fn allowlist_json(a: &atna_domain::IpAllowlist) -> Option<Vec<String>> {
    (!a.is_empty()).then(|| a.ranges().iter().map(ToString::to_string).collect())
}

/// A key just created: its metadata and the Credential Secret, returned this once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: Key,
    /// The Credential Secret: the API key to send as `Authorization: Bearer <secret>`. Store it now; it cannot be
    /// shown again.
    pub secret: String,
}

/// How to roll a key.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollKey {
    /// How long the old key keeps working, in seconds: 0 (it stops now) to 2592000 (30 days). Default: 86400 (a day).
    #[schema(example = 86400)]
    pub overlap_seconds: Option<i64>,
}

/// A rolled key: the new key with its secret (shown this once), and the old key as it now is (`rolled_to` set,
/// `expires_at` at the end of the overlap).
#[derive(Debug, Serialize, ToSchema)]
pub struct RolledKey {
    #[serde(flatten)]
    pub key: Key,
    /// The new key's Credential Secret. Store it now; it cannot be shown again.
    pub secret: String,
    pub old_key: Key,
}

/// A change to a key, as a JSON merge patch (RFC 7396): only the members present change; `null` removes
/// `expires_at` (never expires) or `ip_allowlist` (anywhere). Any other member is a 422.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct KeyMergePatch {
    /// `active` or `disabled`. A disabled key answers `key_disabled` on every node at once. Enabling a key that has
    /// expired is a 422 `key_expired` (give it a new `expires_at` in the same patch).
    pub status: Option<String>,
    pub name: Option<String>,
    /// Only scopes the calling key holds.
    pub scopes: Option<Vec<String>>,
    /// RFC 3339; `null`: never. Not beyond the calling key's own expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// CIDR ranges; `null` or `[]`: anywhere. Within the calling key's allowlist.
    pub ip_allowlist: Option<Vec<String>>,
    /// The new rate limit; `null`: none.
    pub rate_limit: Option<RateLimitRule>,
    /// The new quota, `remaining` uses left from now; `null`: none.
    pub quota: Option<QuotaRule>,
}

/// Paging and filters of `GET /v1/audit`: optional query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1–100, default 20.
    pub limit: Option<i64>,
    /// Only events of this kind (e.g. `key.rolled`).
    pub kind: Option<String>,
    /// Only events about this key (Credential ID).
    pub key_id: Option<String>,
    /// Only events at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
}

/// A page of keys, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub data: Vec<Key>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// What a new key should be.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1–100 characters, unique among your keys. Recommended: `<service_name>-<dd_mm_yyyy>-<hh_mm>`.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Scopes for the new key; only scopes the calling key has. Default: none.
    #[serde(default)]
    #[schema(max_items = 32)]
    pub scopes: Vec<String>,
    /// When the key stops working (RFC 3339). Default: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Where the key may be used from: CIDR ranges (IPv4 or IPv6; a bare address is one address), at most 64.
    /// Default (absent or `null`): anywhere, or, for a key made by a key with an allowlist, that key's allowlist;
    /// each range must then lie inside one of that key's ranges.
    #[schema(example = json!(["203.0.113.0/24", "2001:db8::/32"]))]
    pub ip_allowlist: Option<Vec<String>>,
    /// A rate limit; absent or `null`: none.
    #[serde(default)]
    pub rate_limit: Option<RateLimitRule>,
    /// A usage quota; absent or `null`: none.
    #[serde(default)]
    pub quota: Option<QuotaRule>,
}

/// Paging and search for the key list: optional query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// From a previous page's `next_cursor`.
    #[param(pattern = r"^-?[0-9]{1,18}\.[0-9A-Za-z]{16}$")]
    pub cursor: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Only keys whose name contains this text.
    pub search: Option<String>,
}

/// A key to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The whole API key, as a client sent it.
    pub key: String,
    /// The address the key is being used from (for a service checking its own clients' keys). Default: the address
    /// of whoever calls this endpoint. A key with an IP allowlist is `IP_NOT_ALLOWED` from elsewhere.
    #[schema(schema_with = ip_address, example = "203.0.113.7")]
    pub ip: Option<std::net::IpAddr>,
    /// Scopes the key must all hold; otherwise `INSUFFICIENT_SCOPE`. At most 32, each at most 128 bytes.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// An IPv4 or IPv6 address, or `null`: what `std::net::IpAddr` reads.
fn ip_address() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let address = |f| ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(f)));
    AnyOfBuilder::new()
        .item(address(KnownFormat::Ipv4))
        .item(address(KnownFormat::Ipv6))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "The address the key is being used from (for a service checking its own clients' keys). Default: the \
             address of whoever calls this endpoint. A key with an IP allowlist is `IP_NOT_ALLOWED` from elsewhere.",
        ))
        .build()
        .into()
}

/// The verdict on a key. `key_id`, `name`, `owner`, `scopes` and `expires_at` are present when the key's secret
/// matched, even if it is expired, disabled or revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    pub valid: bool,
    /// `VALID`, `MALFORMED`, `NOT_FOUND`, `INVALID_SECRET`, `EXPIRED`, `REVOKED`, `DISABLED`, `IP_NOT_ALLOWED`,
    /// `INSUFFICIENT_SCOPE`, `USAGE_EXCEEDED` or `RATE_LIMITED` (checked in that order; only a `VALID` check uses the
    /// key's rate limit and quota).
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    pub key_id: Option<String>,
    pub name: Option<String>,
    pub owner: Option<Owner>,
    pub scopes: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The key's IP allowlist; `null` for none (or when the secret did not match).
    pub ip_allowlist: Option<Vec<String>>,
    /// The key's rate limit and what is left of it after this check; `null` for none.
    pub rate_limit: Option<RateLimitStatus>,
    /// The key's quota and the uses left after this check; `null` for none.
    pub quota: Option<QuotaStatus>,
    /// With `RATE_LIMITED`: seconds until a request would pass; with `USAGE_EXCEEDED`: until the quota's refill
    /// (`null`: it is never refilled).
    pub retry_after_seconds: Option<u64>,
}

/// A rate limit and its state on the answering node.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitStatus {
    pub limit: i64,
    pub period_seconds: i64,
    /// Requests that would pass right now.
    pub remaining: u32,
    /// Seconds until the whole allowance is back (present for `VALID`).
    pub reset_seconds: Option<u64>,
}

/// A quota and the uses left.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaStatus {
    pub remaining: i64,
    pub refill: Option<QuotaRefill>,
}

/// Liveness or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    /// The storage backend (`sqlite` or `postgres`).
    pub backend: &'static str,
}

/// `GET /v1/keys/{id}/usage` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Start of the range (RFC 3339), rounded down to the bucket it falls in. Default: 24 hourly (or 30 daily)
    /// buckets, the last one being the one `to` falls in.
    pub from: Option<String>,
    /// End of the range (RFC 3339, exclusive). Default: now.
    pub to: Option<String>,
    /// `hour` (default) or `day`. Buckets are aligned to UTC hours and days; hourly buckets are kept 14 days and
    /// daily ones 400 days by default. At most 1000 buckets per request.
    pub granularity: Option<String>,
}

/// A key's usage over time.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSeries {
    /// `hour` or `day`.
    #[schema(value_type = String, example = "hour")]
    pub granularity: atna_store::Granularity,
    /// Every bucket of the range, oldest first, empty ones included.
    pub buckets: Vec<UsageBucket>,
}

/// Requests with one key in one hour or day.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageBucket {
    /// Start of the bucket (UTC).
    pub start: DateTime<Utc>,
    /// Requests that were let through (a use of the key).
    pub allowed: i64,
    /// Refused attempts by reason (`invalid_secret`, `expired`, `revoked`, `disabled`, `ip_not_allowed`,
    /// `insufficient_scope`, …); reasons with none are left out. Attempts, not use: anyone who knows a Credential ID
    /// can make them.
    #[schema(example = json!({"invalid_secret": 3}))]
    pub refused: std::collections::BTreeMap<String, i64>,
}

impl UsageSeries {
    /// The API's form of a timeline.
    pub fn new(granularity: atna_store::Granularity, buckets: Vec<crate::timeline::Bucket>) -> Self {
        let buckets = buckets
            .into_iter()
            .map(|b| UsageBucket { start: to_datetime(b.start), allowed: b.allowed, refused: b.refused })
            .collect();
        Self { granularity, buckets }
    }
}
