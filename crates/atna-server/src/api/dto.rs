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
    #[schema(example = json!(["203.0.113.0/24", "2001:db8::/32"]))]
    pub ip_allowlist: Option<Vec<String>>,
    /// The Credential ID of the key this one replaced (it was made by rolling that key); `null` otherwise.
    pub rolled_from: Option<String>,
    /// The Credential ID of the key that replaced this one: it was rolled and stops working at `expires_at`, the end
    /// of the overlap; `null` otherwise.
    pub rolled_to: Option<String>,
}

impl Key {
    /// Describes a key at `now`.
    pub fn new(k: &KeyRecord, now: Millis) -> Self {
        let health = KeyHealth::at(k.created_at, k.last_used_at, now);
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
    pub name: String,
    /// Scopes for the new key; only scopes the calling key has. Default: none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When the key stops working (RFC 3339). Default: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Where the key may be used from: CIDR ranges (IPv4 or IPv6; a bare address is one address), at most 64.
    /// Default (absent or `null`): anywhere, or, for a key made by a key with an allowlist, that key's allowlist;
    /// each range must then lie inside one of that key's ranges.
    #[schema(example = json!(["203.0.113.0/24", "2001:db8::/32"]))]
    pub ip_allowlist: Option<Vec<String>>,
}

/// Paging and search for the key list: optional query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1–100, default 20.
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
    #[schema(value_type = Option<String>, example = "203.0.113.7")]
    pub ip: Option<std::net::IpAddr>,
    /// Scopes the key must all hold; otherwise `INSUFFICIENT_SCOPE`. At most 32, each at most 128 bytes.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The verdict on a key. `key_id`, `name`, `owner`, `scopes` and `expires_at` are present when the key's secret
/// matched, even if it is expired, disabled or revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    pub valid: bool,
    /// `VALID`, `MALFORMED`, `NOT_FOUND`, `INVALID_SECRET`, `EXPIRED`, `REVOKED`, `DISABLED`, `IP_NOT_ALLOWED` or
    /// `INSUFFICIENT_SCOPE` (checked in that order).
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
}

/// Liveness or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    /// The storage backend (`sqlite` or `postgres`).
    pub backend: &'static str,
}
