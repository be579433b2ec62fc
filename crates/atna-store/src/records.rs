//! The records the store reads and writes.

use atna_domain::{
    CredentialId, Email, IpAllowlist, KeyFormat, KeyName, KeyPrefix, KeyStatus, Millis, PasswordHash, Quota, RateLimit,
    Refill, RefillInterval, Scopes, SecretHash, UserId, VerifyCode,
};

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub password_hash: PasswordHash,
    pub is_admin: bool,
    pub created_at: Millis,
}

/// A stored user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub password_hash: PasswordHash,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: Millis,
}

/// A key to store. Only the hash of its secret is here.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: CredentialId,
    pub owner: UserId,
    pub name: KeyName,
    pub hash: SecretHash,
    pub scopes: Scopes,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    /// Who created it, and from where (for the audit trail).
    pub actor: Who,
    /// The dashboard form that created it: a key per form at most, whichever node the form is sent to, however often.
    pub form_nonce: Option<String>,
    /// The key that created it through the API, if one did.
    pub created_by_key: Option<CredentialId>,
    /// The rules checked at the gate on every use.
    pub rules: KeyRules,
    /// The key this one replaces (a roll); `None` for a key made from scratch.
    pub rolled_from: Option<CredentialId>,
}

/// Per-key rules the gate checks on every use of a good key (after status and expiry): the IP allowlist, then (after
/// the scopes) the quota and the rate limit. Parsed once when the record is read, so the hot path only compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRules {
    /// Where the key may be used from; empty: anywhere.
    pub ip_allowlist: IpAllowlist,
    /// How fast the key may be used; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// How many more times it may be used (as stored when the record was read; the server counts uses in memory
    /// and writes them back in batches); `None`: no quota.
    pub quota: Option<Quota>,
}

/// Uses of one key admitted on one node since its last [`Store::sync_limits`](crate::Store::sync_limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitUses {
    pub id: CredentialId,
    /// Uses to share with other nodes' rate limiters (0: none, or the key has no rate limit).
    pub rate_uses: i64,
    /// Uses to take off the key's quota; `None`: the key has no quota (`Some(0)` just reads it back).
    pub quota_uses: Option<i64>,
}

/// Rate-limited uses that another node admitted (a row of the shared table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteUses {
    /// The row's number (unique; a node remembers which rows it has applied).
    pub seq: i64,
    pub id: CredentialId,
    /// When that node wrote them (its clock).
    pub at: Millis,
    pub uses: i64,
}

/// A quota as the store holds it after a sync: uses left and when it was last filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLeft {
    pub id: CredentialId,
    pub remaining: i64,
    pub refilled_at: Millis,
}

/// What [`Store::sync_limits`](crate::Store::sync_limits) read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSync {
    /// Every quota of the batch, after its uses were taken off (and any due refill applied).
    pub quotas: Vec<QuotaLeft>,
    /// Other nodes' rows written after `since`.
    pub remote: Vec<RemoteUses>,
}

impl NewKey {
    /// The record the store holds once this key is inserted (unused, active). Lets a caller prepare everything it
    /// will show about the key before the key is committed.
    pub fn record(&self) -> KeyRecord {
        KeyRecord {
            id: self.id,
            owner: self.owner,
            name: self.name.clone(),
            scopes: self.scopes.clone(),
            status: KeyStatus::Active,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: None,
            last_used_ip: None,
            use_count: 0,
            created_by_key: self.created_by_key,
            rules: self.rules.clone(),
            rolled_from: self.rolled_from,
            rolled_to: None,
        }
    }
}

/// A stored key's metadata. Never holds the secret or its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: CredentialId,
    pub owner: UserId,
    pub name: KeyName,
    pub scopes: Scopes,
    pub status: KeyStatus,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
    pub last_used_ip: Option<String>,
    pub use_count: i64,
    /// The key that created it through the API (`None`: made in the dashboard or by the operator). The creating key
    /// may since have been deleted: its children stay.
    pub created_by_key: Option<CredentialId>,
    /// The rules checked at the gate on every use.
    pub rules: KeyRules,
    /// The key this one replaced (it was made by rolling that key).
    pub rolled_from: Option<CredentialId>,
    /// The key that replaced this one: it was rolled, and stops working at `expires_at` (the end of the overlap).
    pub rolled_to: Option<CredentialId>,
}

/// What the verifier needs about one key.
#[derive(Debug, Clone)]
pub struct AuthRecord {
    pub key: KeyRecord,
    pub hash: SecretHash,
    pub owner_email: Email,
    pub owner_disabled: bool,
}

/// Which page of keys to list.
#[derive(Debug, Clone, Default)]
pub struct KeyQuery {
    /// Keys strictly older than this position (newest first): `(created_at, id)` of the last key of the previous
    /// page.
    pub after: Option<(Millis, CredentialId)>,
    /// Most keys to return.
    pub limit: i64,
    /// Only keys whose name contains this, literally (`%` and `_` are characters), ignoring the case of ASCII letters
    /// only (`É` and `é` differ), on every backend.
    pub search: Option<String>,
}

/// Usage of one key gathered in memory since the last flush.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageUpdate {
    pub id: CredentialId,
    pub count: i64,
    pub last_used_at: Millis,
    pub last_used_ip: Option<String>,
}

/// Requests of one key in one hour with one outcome, gathered in memory since the last flush
/// ([`Store::record_usage_counts`](crate::Store::record_usage_counts)). Only keys that exist are counted: an unknown
/// Credential ID gets no buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageCount {
    pub id: CredentialId,
    /// Start of the hour (UTC), Unix ms.
    pub hour: Millis,
    /// `Valid` for an allowed request; any other code for a refused attempt.
    pub outcome: VerifyCode,
    pub count: i64,
}

/// The width of a usage bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    /// The bucket's length in milliseconds.
    pub const fn millis(self) -> Millis {
        match self {
            Granularity::Hour => 60 * 60 * 1000,
            Granularity::Day => 24 * 60 * 60 * 1000,
        }
    }

    /// The start of the bucket `t` falls in (buckets are aligned to UTC hours and days).
    pub const fn floor(self, t: Millis) -> Millis {
        t - t.rem_euclid(self.millis())
    }

    /// The lowercase name (`hour`, `day`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }
}

/// One stored usage bucket of one key: how many requests with `outcome` began in the bucket starting at `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub start: Millis,
    /// A [`VerifyCode::as_str`] (`VALID` for allowed requests). Kept as text: a newer node may count codes this
    /// build does not know, and they are still shown.
    pub outcome: String,
    pub count: i64,
}

/// One entry of the change feed: something every node's key cache must forget.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub seq: i64,
    pub what: ChangeKind,
}

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    /// One key was revoked or changed.
    Key(CredentialId),
    /// A user was disabled or re-enabled: all their keys changed.
    User(UserId),
    /// An installation fact changed (the key prefix): reread it. Stored as user 0, which no user has, so nodes that
    /// predate it read a user change and only forget their cached keys.
    Installation,
}

/// The `user_id` a [`ChangeKind::Installation`] entry is stored with.
pub const INSTALLATION_CHANGE_USER: i64 = 0;

/// The `owner_id` of audit events about the installation rather than a user's key (`installation.*`). No user has
/// it, so no user's audit trail lists them.
pub const INSTALLATION_OWNER: UserId = UserId(0);

/// Who did something, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user (the dashboard).
    User(UserId),
    /// A user's API key, through the REST API.
    Key { user: UserId, key: CredentialId },
    /// The operator, through the `atna` command line.
    Operator,
}

impl Actor {
    /// The user ID, when a user (in person or through a key) acted.
    pub fn user(self) -> Option<UserId> {
        match self {
            Actor::User(u) | Actor::Key { user: u, .. } => Some(u),
            Actor::Operator => None,
        }
    }

    /// The key that acted, when one did.
    pub fn key(self) -> Option<CredentialId> {
        match self {
            Actor::Key { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Reads the stored pair (`actor_id`, `actor_key_id`) back.
    pub fn from_stored(user: Option<UserId>, key: Option<CredentialId>) -> Self {
        match (user, key) {
            (Some(user), Some(key)) => Actor::Key { user, key },
            (Some(u), None) => Actor::User(u),
            (None, _) => Actor::Operator,
        }
    }
}

/// Who did something and from where: the actor, and the client's address and user agent when the change came over
/// HTTP (`None` for the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub actor: Actor,
    pub ip: Option<String>,
    /// At most [`MAX_USER_AGENT`] characters.
    pub user_agent: Option<String>,
}

/// Longest audit detail an import accepts (a key's whole rules fit many times over).
pub const MAX_AUDIT_DETAIL: usize = 64 * 1024;

/// Longest user agent the audit trail keeps; longer ones are cut.
pub const MAX_USER_AGENT: usize = 256;

impl Who {
    /// An actor at an address with a user agent (cut to [`MAX_USER_AGENT`] characters).
    pub fn new(actor: Actor, ip: Option<String>, user_agent: Option<&str>) -> Self {
        let user_agent = user_agent.map(|ua| ua.chars().filter(|c| !c.is_control()).take(MAX_USER_AGENT).collect());
        Self { actor, ip, user_agent }
    }
}

impl From<Actor> for Who {
    fn from(actor: Actor) -> Self {
        Self { actor, ip: None, user_agent: None }
    }
}

/// What the audit trail records. Keys: `key.created`, `key.rolled`, `key.edited`, `key.disabled`, `key.enabled`,
/// `key.deleted`, `keys.revoked` (an administrator's bulk revocation). People: `session.signed_in`,
/// `session.sign_in_failed` (kept [`FAILED_SIGN_IN_RETENTION`] only), `session.ended`, `password.changed`,
/// `user.created`, `user.disabled`, `user.enabled`, `setup.completed`.
pub mod audit_kind {
    pub const KEY_CREATED: &str = "key.created";
    pub const KEY_ROLLED: &str = "key.rolled";
    pub const KEY_EDITED: &str = "key.edited";
    pub const KEY_DISABLED: &str = "key.disabled";
    pub const KEY_ENABLED: &str = "key.enabled";
    pub const KEY_DELETED: &str = "key.deleted";
    pub const KEYS_REVOKED: &str = "keys.revoked";
    pub const SIGNED_IN: &str = "session.signed_in";
    pub const SIGN_IN_FAILED: &str = "session.sign_in_failed";
    pub const SESSION_ENDED: &str = "session.ended";
    pub const PASSWORD_CHANGED: &str = "password.changed";
    pub const USER_CREATED: &str = "user.created";
    pub const USER_DISABLED: &str = "user.disabled";
    pub const USER_ENABLED: &str = "user.enabled";
    pub const SETUP_COMPLETED: &str = "setup.completed";
    /// A secret scanner reported the key in public (issue 11); the detail names the source and the URL.
    pub const KEY_LEAKED: &str = "key.leaked";
    /// An operator changed the installation's key prefix (`atna -> acme` in the detail).
    pub const KEY_PREFIX_CHANGED: &str = "installation.key_prefix_changed";
    /// Every kind, for filters and documentation.
    pub const ALL: &[&str] = &[
        KEY_CREATED,
        KEY_ROLLED,
        KEY_EDITED,
        KEY_DISABLED,
        KEY_ENABLED,
        KEY_DELETED,
        KEYS_REVOKED,
        SIGNED_IN,
        SIGN_IN_FAILED,
        SESSION_ENDED,
        PASSWORD_CHANGED,
        USER_CREATED,
        USER_DISABLED,
        USER_ENABLED,
        SETUP_COMPLETED,
        KEY_LEAKED,
        KEY_PREFIX_CHANGED,
    ];
}

/// How long failed sign-ins stay in the audit trail: strangers write them, so they must not grow it without bound.
pub const FAILED_SIGN_IN_RETENTION: Millis = 30 * 24 * 60 * 60 * 1000;

/// The owner of audit events that belong to nobody (a failed sign-in for an address no user has).
pub const NO_USER: UserId = UserId(0);

/// An audit event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    pub at: Millis,
    /// The user the event is about (whose key, whose session); [`NO_USER`] when none.
    pub owner: UserId,
    pub who: Who,
    /// One of [`audit_kind`].
    pub action: &'static str,
    pub key_id: Option<CredentialId>,
    pub key_name: Option<String>,
    /// A small JSON object with what else matters (what changed, the successor, how many keys); never a secret.
    pub detail: Option<String>,
}

/// One line of the audit trail. Append-only; survives the key it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Increases with every event recorded (a position, not a count).
    pub id: i64,
    pub at: Millis,
    /// The user the event is about; [`NO_USER`] when none.
    pub owner: UserId,
    pub actor: Actor,
    /// One of [`audit_kind`] (older databases hold only `key.created` and `key.deleted`).
    pub action: String,
    pub key_id: Option<CredentialId>,
    pub key_name: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// A JSON object; see [`NewAuditEvent::detail`].
    pub detail: Option<String>,
}

/// Which audit events to read: newest first, every filter optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only events about this user.
    pub owner: Option<UserId>,
    /// Only events about this key.
    pub key: Option<CredentialId>,
    /// Only events of this kind.
    pub action: Option<String>,
    /// Only events at or after this time.
    pub since: Option<Millis>,
    /// Only events before this time.
    pub until: Option<Millis>,
    /// Events strictly older than this position: `(at, id)` of the last event of the previous page.
    pub after: Option<(Millis, i64)>,
    /// Most events to return.
    pub limit: i64,
}

/// A change to a key (`PATCH /v1/keys/{id}`): `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyPatch {
    pub name: Option<KeyName>,
    pub scopes: Option<Scopes>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<Millis>>,
    /// The per-key rules, replaced as a whole.
    pub rules: Option<KeyRules>,
    /// `Active` or `Disabled` (never `Revoked`: that is deletion).
    pub status: Option<KeyStatus>,
}

impl KeyPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Which keys an administrator's bulk revocation takes: live keys of `owner` (or of everyone) created before
/// `created_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyFilter {
    pub owner: Option<UserId>,
    /// Keys created strictly before this time.
    pub created_before: Option<Millis>,
}

/// The key prefixes an installation recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPrefixes {
    /// What new keys get; `None` until the first start records the configured one.
    pub current: Option<KeyPrefix>,
    /// Every prefix keys were issued with (the current one included), oldest first.
    pub issued: Vec<KeyPrefix>,
}

impl KeyPrefixes {
    /// The format keys are parsed with: the recorded prefixes, or `fallback` (the configured prefix) while none is.
    pub fn format(&self, fallback: &KeyPrefix) -> KeyFormat {
        let current = self.current.clone().unwrap_or_else(|| fallback.clone());
        KeyFormat::new(current, self.issued.iter().cloned())
    }
}

/// What the installation does with a live key a secret scanner reports (`leak_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeakAction {
    /// Delete (revoke) it at once, as GitHub does with its own tokens.
    #[default]
    Revoke,
    /// Disable it: it stops working but stays listed, and can be enabled again.
    Disable,
    /// Leave it working; only record the report (and tell the owner).
    Notify,
}

impl LeakAction {
    /// Reads the configured form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "revoke" => Some(Self::Revoke),
            "disable" => Some(Self::Disable),
            "notify" => Some(Self::Notify),
            _ => None,
        }
    }

    /// The configured form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoke => "revoke",
            Self::Disable => "disable",
            Self::Notify => "notify",
        }
    }
}

/// A report that one of this installation's keys was found in public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLeakReport {
    pub key: CredentialId,
    /// Who reported it: `github`, `gitlab`, `gitlab-self-managed`.
    pub source: &'static str,
    /// Where it was found (empty when the scanner did not say).
    pub url: String,
}

/// What a leak report did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakOutcome {
    /// The key was live and is now deleted.
    Revoked,
    /// The key was active and is now disabled.
    Disabled,
    /// The key was left as it was: `notify`, or it was already deleted, disabled or expired.
    Unchanged,
    /// The same key at the same URL was reported before: nothing was done or recorded again.
    Replayed,
}

impl LeakOutcome {
    /// The stored form (`leak_reports.outcome`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Disabled => "disabled",
            Self::Unchanged => "unchanged",
            Self::Replayed => "replayed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "revoked" => Self::Revoked,
            "disabled" => Self::Disabled,
            _ => Self::Unchanged,
        }
    }
}

/// A recorded leak report, as My API Keys shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakRecord {
    pub key_id: CredentialId,
    /// The key's name (`None` if the key row is gone, which deletion never does).
    pub key_name: Option<String>,
    pub source: String,
    pub url: String,
    pub reported_at: Millis,
    pub outcome: LeakOutcome,
    /// The key's status now.
    pub status: Option<KeyStatus>,
}

impl LeakRecord {
    /// Builds a record from stored columns.
    pub fn from_stored(
        key_id: CredentialId,
        key_name: Option<String>,
        source: String,
        url: String,
        reported_at: Millis,
        outcome: &str,
        status: Option<KeyStatus>,
    ) -> Self {
        Self { key_id, key_name, source, url, reported_at, outcome: LeakOutcome::parse(outcome), status }
    }
}

/// A dashboard session to create.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: [u8; 32],
    pub user: UserId,
    /// The CSRF token bound to the session.
    pub csrf: String,
    pub created_at: Millis,
    pub idle_expires_at: Millis,
    pub absolute_expires_at: Millis,
}

/// A live session and its user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub created_at: Millis,
    pub idle_expires_at: Millis,
    pub absolute_expires_at: Millis,
}

// ----- export / import (`atna export`, `atna import`) -----

/// The `format` of the snapshots this build writes.
///
/// * `atna-export/5` added `rolled_from` and `rolled_to` to keys and `ip` and `user_agent` to audit events (all
///   optional).
/// * `atna-export/4` added rate limits and quotas to keys (`rate_limit`, `rate_period_seconds`, `quota_*`; optional),
///   `key_prefixes` (optional; absent: only `atna_` keys were issued) and `detail` to audit events (optional).
/// * `atna-export/3` added `ip_allowlist` to keys (optional).
/// * `atna-export/2` added `created_by_key` to keys and `actor_key_id` to audit events (both optional).
/// * `atna-export/1` files still import: they lack only those fields.
pub const SNAPSHOT_FORMAT: &str = "atna-export/5";

/// Every format this build reads.
pub const READABLE_SNAPSHOT_FORMATS: &[&str] =
    &["atna-export/1", "atna-export/2", "atna-export/3", "atna-export/4", SNAPSHOT_FORMAT];

/// A whole installation, as moved between databases by `atna export` and `atna import`: every user, every key
/// (deleted ones included) and the audit trail. Keys travel only as hashes, so every key keeps working after the move.
/// Sessions are not in it (people sign in again) and neither is the change feed (it only matters to running nodes).
///
/// Fields are plain text and numbers, exactly as stored, so the JSON form is stable and any backend can bind them
/// directly; [`Snapshot::check`] is what proves they parse. Times are Unix milliseconds, like everywhere in the store.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Always [`SNAPSHOT_FORMAT`] for snapshots this build writes.
    pub format: String,
    /// When the export was taken.
    pub exported_at: Millis,
    /// Every user, by ascending ID.
    pub users: Vec<ExportedUser>,
    /// Every key, deleted ones included, by ascending Credential ID.
    pub keys: Vec<ExportedKey>,
    /// The audit trail, in the order it was recorded (oldest first).
    pub audit_events: Vec<ExportedAuditEvent>,
    /// Every key prefix the installation issued keys with, by prefix (format 4; absent: none recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_prefixes: Vec<ExportedKeyPrefix>,
}

/// A recorded key prefix in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedKeyPrefix {
    pub prefix: String,
    pub recorded_at: Millis,
    /// Whether new keys get it (one prefix at most).
    pub current: bool,
}

/// A user in a [`Snapshot`]. `Debug` does not print the password hash.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedUser {
    pub id: i64,
    /// Normalised (trimmed, lowercase).
    pub email: String,
    /// The argon2id hash in PHC string form, exactly as stored.
    pub password_hash: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: Millis,
}

impl std::fmt::Debug for ExportedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedUser")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("password_hash", &"..")
            .field("is_admin", &self.is_admin)
            .field("disabled", &self.disabled)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A key in a [`Snapshot`], deleted or not.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedKey {
    /// The Credential ID (16 base62 characters).
    pub id: String,
    pub owner_id: i64,
    pub name: String,
    /// SHA-256 of the secret part, as 64 lowercase hexadecimal digits ([`SecretHash::to_hex`]).
    pub secret_hash: String,
    /// The stored form: sorted, space-separated ([`Scopes::to_stored`]); empty for none.
    pub scopes: String,
    /// `active`, `disabled` or `revoked` ([`KeyStatus::as_str`]).
    pub status: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    /// When it was deleted; `None` for live keys.
    pub revoked_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
    pub last_used_ip: Option<String>,
    pub use_count: i64,
    /// The Credential ID of the key that created it through the API (format 2; absent in format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_key: Option<String>,
    /// The IP allowlist in its stored form: canonical ranges, space-separated (format 3; absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_allowlist: Option<String>,
    /// The Credential ID of the key this one was rolled from (format 5; absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_from: Option<String>,
    /// The Credential ID of the key this one was rolled to (format 5; absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_to: Option<String>,
    /// Rate limit: requests per `rate_period_seconds` (format 4; absent: none; both or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_period_seconds: Option<i64>,
    /// Usage quota: uses left, the total shown beside it, and when it was last filled (format 4; absent: none; all
    /// three or none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_remaining: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_refilled_at: Option<Millis>,
    /// The quota's refill: amount and `daily` or `monthly` (format 4; both or neither, and only with a quota).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_refill_amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_refill_interval: Option<String>,
}

impl ExportedKey {
    /// The rules' limits from their stored columns, as every backend reads them back.
    pub fn limits(&self) -> Result<(Option<RateLimit>, Option<Quota>), &'static str> {
        limits_from_stored(StoredLimits {
            rate_limit: self.rate_limit,
            rate_period_seconds: self.rate_period_seconds,
            quota_remaining: self.quota_remaining,
            quota_total: self.quota_total,
            quota_refilled_at: self.quota_refilled_at,
            quota_refill_amount: self.quota_refill_amount,
            quota_refill_interval: self.quota_refill_interval.as_deref(),
        })
    }
}

/// A key's limit columns as stored (every one nullable).
#[derive(Debug, Clone, Copy, Default)]
pub struct StoredLimits<'a> {
    pub rate_limit: Option<i64>,
    pub rate_period_seconds: Option<i64>,
    pub quota_remaining: Option<i64>,
    pub quota_total: Option<i64>,
    pub quota_refilled_at: Option<Millis>,
    pub quota_refill_amount: Option<i64>,
    pub quota_refill_interval: Option<&'a str>,
}

impl StoredLimits<'_> {
    /// The columns of a key's rate limit and quota.
    pub fn of(rate: Option<RateLimit>, quota: Option<Quota>) -> StoredLimits<'static> {
        StoredLimits {
            rate_limit: rate.map(|r| i64::from(r.limit())),
            rate_period_seconds: rate.map(|r| i64::from(r.period_seconds())),
            quota_remaining: quota.map(|q| q.remaining),
            quota_total: quota.map(|q| q.total),
            quota_refilled_at: quota.map(|q| q.refilled_at),
            quota_refill_amount: quota.and_then(|q| q.refill.map(|r| r.amount)),
            quota_refill_interval: quota.and_then(|q| q.refill.map(|r| r.interval.as_str())),
        }
    }
}

/// Reads a key's limit columns back into its rules (a stored quota may be 0 and below its total, never negative).
pub fn limits_from_stored(s: StoredLimits<'_>) -> Result<(Option<RateLimit>, Option<Quota>), &'static str> {
    let rate = match (s.rate_limit, s.rate_period_seconds) {
        (None, None) => None,
        (Some(l), Some(p)) => Some(
            u32::try_from(l)
                .ok()
                .zip(u32::try_from(p).ok())
                .and_then(|(l, p)| RateLimit::new(l, p).ok())
                .ok_or("rate limit out of range")?,
        ),
        _ => return Err("rate_limit and rate_period_seconds go together"),
    };
    let refill = match (s.quota_refill_amount, s.quota_refill_interval) {
        (None, None) => None,
        (Some(a), Some(i)) => {
            Some(RefillInterval::parse(i).and_then(|i| Refill::new(a, i)).map_err(|_| "quota refill out of range")?)
        }
        _ => return Err("quota_refill_amount and quota_refill_interval go together"),
    };
    let quota = match (s.quota_remaining, s.quota_total, s.quota_refilled_at) {
        (None, None, None) if refill.is_none() => None,
        (Some(remaining), Some(total), Some(refilled_at)) => {
            if remaining < 0 || !(0..=atna_domain::limits::MAX_QUOTA).contains(&total) {
                return Err("quota out of range");
            }
            Some(Quota { remaining, total, refill, refilled_at })
        }
        _ => return Err("quota_remaining, quota_total and quota_refilled_at go together (and a refill needs them)"),
    };
    Ok((rate, quota))
}

/// One audit event in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedAuditEvent {
    pub at: Millis,
    pub owner_id: i64,
    /// The user who acted; `None` for the operator (the command line).
    pub actor_id: Option<i64>,
    /// One of the audit kinds (`key.created`, `key.rolled`, `session.signed_in`, …).
    pub action: String,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    /// The Credential ID of the key the actor used, when a key acted through the API (format 2; absent in format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_key_id: Option<String>,
    /// The client's address (format 5; absent: unknown or the command line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The client's user agent (format 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// More about the event: a JSON object for key lifecycle events, text for leaks and prefix changes (format 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What [`Store::import_all`](crate::Store::import_all) wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportSummary {
    pub users: u64,
    /// All keys, deleted ones included.
    pub keys: u64,
    /// How many of `keys` are deleted (revoked).
    pub revoked_keys: u64,
    pub audit_events: u64,
}

impl Snapshot {
    /// What importing this snapshot writes (the counts [`Store::import_all`](crate::Store::import_all) returns).
    pub fn summary(&self) -> ImportSummary {
        let revoked = self.keys.iter().filter(|k| k.status == KeyStatus::Revoked.as_str()).count();
        ImportSummary {
            users: self.users.len() as u64,
            keys: self.keys.len() as u64,
            revoked_keys: revoked as u64,
            audit_events: self.audit_events.len() as u64,
        }
    }

    /// Checks everything a backend could not store or read back: the format, that every field parses into its domain
    /// type in its one stored form, that IDs and e-mail addresses are unique, that every key's owner is in the
    /// snapshot, and that no owner has two live keys of one name. Backends call this before writing anything, so a
    /// hand-edited or truncated file is refused whole with [`StoreError::InvalidSnapshot`](crate::StoreError).
    pub fn check(&self) -> Result<(), crate::StoreError> {
        use std::collections::HashSet;
        let bad = |what: String| Err(crate::StoreError::InvalidSnapshot(what));
        if !READABLE_SNAPSHOT_FORMATS.contains(&self.format.as_str()) {
            return bad(format!(
                "format is `{}`; this atna reads {}",
                self.format,
                READABLE_SNAPSHOT_FORMATS.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(" and ")
            ));
        }
        let mut ids = HashSet::new();
        let mut emails = HashSet::new();
        for u in &self.users {
            if u.id <= 0 || !ids.insert(u.id) {
                return bad(format!("user id {} is not a positive, unique number", u.id));
            }
            match Email::parse(&u.email) {
                Ok(e) if e.as_str() == u.email => {}
                _ => return bad(format!("user {}: `{}` is not a normalised e-mail address", u.id, u.email)),
            }
            if !emails.insert(u.email.as_str()) {
                return bad(format!("user {}: e-mail address {} appears twice", u.id, u.email));
            }
            if u.password_hash.is_empty() {
                return bad(format!("user {}: empty password hash", u.id));
            }
        }
        let mut key_ids = HashSet::new();
        let mut live_names = HashSet::new();
        for k in &self.keys {
            let key = |what: &str| bad(format!("key {}: {what}", k.id));
            if CredentialId::parse(&k.id).is_err() || !key_ids.insert(k.id.as_str()) {
                return key("not a unique Credential ID");
            }
            if !ids.contains(&k.owner_id) {
                return key(&format!("owner {} is not among the users", k.owner_id));
            }
            if KeyName::from_stored(&k.name).map(|n| n.as_str() != k.name).unwrap_or(true) {
                return key("invalid name");
            }
            if SecretHash::from_hex(&k.secret_hash).is_none() {
                return key("secret_hash is not 64 lowercase hexadecimal digits");
            }
            if Scopes::from_stored(&k.scopes).map(|s| s.to_stored() != k.scopes).unwrap_or(true) {
                return key("scopes are not in their stored form (sorted, space-separated, valid)");
            }
            let Some(status) = KeyStatus::parse(&k.status) else { return key("unknown status") };
            if status != KeyStatus::Revoked && !live_names.insert((k.owner_id, k.name.as_str())) {
                return key("its owner has another live key of the same name");
            }
            if k.use_count < 0 {
                return key("negative use_count");
            }
            if k.created_by_key.as_deref().is_some_and(|id| CredentialId::parse(id).is_err()) {
                return key("created_by_key is not a Credential ID");
            }
            for linked in [&k.rolled_from, &k.rolled_to] {
                if linked.as_deref().is_some_and(|id| CredentialId::parse(id).is_err()) {
                    return key("rolled_from / rolled_to is not a Credential ID");
                }
            }
            if let Some(a) = &k.ip_allowlist {
                match IpAllowlist::from_stored(Some(a)) {
                    Ok(list) if list.to_stored().as_deref() == Some(a.as_str()) => {}
                    _ => return key("ip_allowlist is not in its stored form (canonical ranges, space-separated)"),
                }
            }
            if let Err(e) = k.limits() {
                return key(e);
            }
        }
        for (i, e) in self.audit_events.iter().enumerate() {
            if e.key_id.as_deref().is_some_and(|id| CredentialId::parse(id).is_err()) {
                return bad(format!("audit event {i}: key_id is not a Credential ID"));
            }
            if e.actor_key_id.as_deref().is_some_and(|id| CredentialId::parse(id).is_err()) {
                return bad(format!("audit event {i}: actor_key_id is not a Credential ID"));
            }
            // A JSON object for lifecycle events, plain text for leaks and prefix changes: any text, but bounded.
            if e.detail.as_deref().is_some_and(|d| d.len() > MAX_AUDIT_DETAIL) {
                return bad(format!("audit event {i}: detail is longer than {MAX_AUDIT_DETAIL} bytes"));
            }
            if e.action.is_empty() {
                return bad(format!("audit event {i}: empty action"));
            }
        }
        let mut prefixes = HashSet::new();
        for p in &self.key_prefixes {
            if KeyPrefix::parse(&p.prefix).is_err() || !prefixes.insert(p.prefix.as_str()) {
                return bad(format!("key prefix `{}` is not a unique, valid prefix", p.prefix));
            }
        }
        if self.key_prefixes.iter().filter(|p| p.current).count() > 1 {
            return bad("more than one current key prefix".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let user = |id, email: &str| ExportedUser {
            id,
            email: email.into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            is_admin: false,
            disabled: false,
            created_at: 1,
        };
        let key = |id: &str, name: &str, status: &str| ExportedKey {
            id: id.into(),
            owner_id: 1,
            name: name.into(),
            secret_hash: SecretHash::of(id).to_hex(),
            scopes: "billing:read keys:manage".into(),
            status: status.into(),
            created_at: 1,
            expires_at: None,
            revoked_at: (status == "revoked").then_some(2),
            last_used_at: None,
            last_used_ip: None,
            use_count: 0,
            created_by_key: None,
            ip_allowlist: None,
            ..ExportedKey::default()
        };
        Snapshot {
            format: SNAPSHOT_FORMAT.into(),
            exported_at: 3,
            users: vec![user(1, "alice@example.com"), user(7, "bob@example.com")],
            keys: vec![key("AAAAAAAAAAAAAAAA", "crm", "revoked"), key("BBBBBBBBBBBBBBBB", "crm", "active")],
            audit_events: vec![ExportedAuditEvent {
                at: 1,
                owner_id: 1,
                actor_id: None,
                action: "key.created".into(),
                key_id: Some("AAAAAAAAAAAAAAAA".into()),
                key_name: Some("crm".into()),
                actor_key_id: None,
                ip: None,
                user_agent: None,
                detail: None,
            }],
            key_prefixes: vec![ExportedKeyPrefix { prefix: "atna".into(), recorded_at: 1, current: true }],
        }
    }

    #[track_caller]
    fn refused(s: Snapshot, want: &str) {
        match s.check() {
            Err(crate::StoreError::InvalidSnapshot(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("expected InvalidSnapshot({want}), got {other:?}"),
        }
    }

    #[test]
    fn a_consistent_snapshot_passes_and_counts() {
        let s = snapshot();
        s.check().unwrap();
        assert_eq!(s.summary(), ImportSummary { users: 2, keys: 2, revoked_keys: 1, audit_events: 1 });
    }

    #[test]
    fn inconsistent_snapshots_are_refused() {
        let edit = |f: &dyn Fn(&mut Snapshot)| {
            let mut s = snapshot();
            f(&mut s);
            s
        };
        refused(edit(&|s| s.format = "atna-export/6".into()), "atna-export/5");
        refused(edit(&|s| s.key_prefixes[0].prefix = "ACME".into()), "key prefix");
        refused(
            edit(&|s| s.key_prefixes.push(ExportedKeyPrefix { prefix: "acme".into(), recorded_at: 2, current: true })),
            "more than one current",
        );
        refused(edit(&|s| s.users[1].id = 1), "user id 1");
        refused(edit(&|s| s.users[1].email = "Alice@example.com".into()), "normalised");
        refused(edit(&|s| s.users[1].email = "alice@example.com".into()), "appears twice");
        refused(edit(&|s| s.keys[1].id = "AAAAAAAAAAAAAAAA".into()), "unique Credential ID");
        refused(edit(&|s| s.keys[1].owner_id = 2), "owner 2");
        refused(edit(&|s| s.keys[1].secret_hash = s.keys[1].secret_hash.to_uppercase()), "hexadecimal");
        refused(edit(&|s| s.keys[1].scopes = "keys:manage billing:read".into()), "stored form");
        refused(edit(&|s| s.keys[1].status = "paused".into()), "status");
        refused(edit(&|s| s.keys[0].status = "active".into()), "same name");
        refused(edit(&|s| s.keys[1].name = " crm".into()), "name");
        refused(edit(&|s| s.audit_events[0].key_id = Some("x".into())), "audit event 0");
        refused(edit(&|s| s.keys[1].created_by_key = Some("x".into())), "created_by_key");
        refused(edit(&|s| s.audit_events[0].actor_key_id = Some("x".into())), "actor_key_id");
        refused(edit(&|s| s.keys[1].ip_allowlist = Some("10.0.0.1".into())), "ip_allowlist");
        refused(edit(&|s| s.keys[1].ip_allowlist = Some("".into())), "ip_allowlist");
        refused(edit(&|s| s.keys[1].rate_limit = Some(10)), "rate_limit");
        refused(edit(&|s| (s.keys[1].rate_limit, s.keys[1].rate_period_seconds) = (Some(0), Some(60))), "rate limit");
        refused(edit(&|s| s.keys[1].quota_remaining = Some(5)), "quota_remaining");
        refused(
            edit(&|s| {
                (s.keys[1].quota_remaining, s.keys[1].quota_total, s.keys[1].quota_refilled_at) =
                    (Some(5), Some(9), Some(1));
                s.keys[1].quota_refill_amount = Some(9);
            }),
            "refill",
        );
    }

    #[test]
    fn format_1_files_still_import() {
        // A file written before `created_by_key` / `actor_key_id` existed: no such fields at all.
        let mut v = serde_json::to_value(snapshot()).unwrap();
        v["format"] = "atna-export/1".into();
        assert!(v["keys"][0].get("created_by_key").is_none(), "absent fields are not written");
        let old: Snapshot = serde_json::from_value(v).unwrap();
        old.check().unwrap();
        assert!(old.keys.iter().all(|k| k.created_by_key.is_none()));
    }

    #[test]
    fn debug_hides_password_hashes() {
        let s = snapshot();
        assert!(!format!("{s:?}").contains("argon2"));
    }
}

/// What [`Store::prune`](crate::Store::prune) deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub changes: u64,
    pub sessions: u64,
    pub sign_in_attempts: u64,
    pub device_tokens: u64,
    /// Failed sign-ins older than [`FAILED_SIGN_IN_RETENTION`], dropped from the audit trail.
    pub failed_sign_ins: u64,
}

/// One counter an attempt is counted against by [`Store::throttle_begin`](crate::Store::throttle_begin): attempts
/// recorded under `key` after `now - window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRule<'a> {
    pub key: &'a str,
    /// Attempts allowed within the window before the rule holds attempts back.
    pub limit: i64,
    pub window: Millis,
    /// How the rule holds attempts back once `limit` is reached.
    pub over: Over,
}

/// What a [`ThrottleRule`] does once its key has `limit` attempts in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// Refuse until the oldest of the `limit` newest attempts leaves the window (a lock-out).
    Refuse,
    /// Slow down instead: with `n >= limit` attempts in the window, the next one is allowed `first * 2^(n - limit)`
    /// (at most `max`) after the newest one. The key never locks: it only spaces attempts out.
    Backoff { first: Millis, max: Millis },
}

impl<'a> ThrottleRule<'a> {
    /// A lock-out rule: `limit` attempts per `window`.
    pub fn refuse(key: &'a str, limit: i64, window: Millis) -> Self {
        Self { key, limit, window, over: Over::Refuse }
    }
}

/// How long after the newest attempt a [`Over::Backoff`] rule with `n` attempts in its window waits.
pub fn backoff_delay(n: i64, limit: i64, first: Millis, max: Millis) -> Millis {
    if n < limit {
        return 0;
    }
    // Capped shift: 2^40 ms is decades, far past any sensible `max`.
    let shift = (n - limit).min(40) as u32;
    first.saturating_mul(1_i64 << shift).min(max)
}
