//! The `Store` trait every atna backend implements (SQLite, PostgreSQL), the records it speaks in, and the
//! conformance suite (`conformance`) each backend runs against itself so they cannot drift apart.
//!
//! The store is never on the verification hot path for a cached key: the verifier reads `auth_record` once per
//! Credential ID and then serves from memory; usage is written back in batches through `record_usage`.

pub mod conformance;
mod notify;
mod records;

pub use notify::*;
pub use records::*;

use async_trait::async_trait;
use atna_domain::{CredentialId, Email, KeyPrefix, Millis, PasswordHash, UserId};

/// How long a first-run setup link works after its node printed it: one hour. A link copied into a chat or a
/// terminal scrollback must not stay a way to become administrator for as long as nobody signs up.
pub const SETUP_TOKEN_TTL: Millis = 60 * 60 * 1000;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (a user's e-mail address, a live key's name for its owner).
    #[error("already exists: {0}")]
    Conflict(&'static str),
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Database(String),
    /// Stored data did not parse back (a bug or a hand-edited database).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// [`Store::import_all`] was given a store that already holds data; nothing was written.
    #[error("the target database is not empty (it already has users, keys or audit events); import only into a new, empty database")]
    NotEmpty,
    /// [`Store::import_all`] was given a snapshot that fails [`Snapshot::check`]; nothing was written.
    #[error("invalid export file: {0}")]
    InvalidSnapshot(String),
}

/// What [`Store::set_key_prefix`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefixChange {
    /// The current prefix before (`None`: none was recorded).
    pub previous: Option<KeyPrefix>,
    /// The prefix already was current: nothing was written.
    pub unchanged: bool,
}

/// Why [`Store::wait_for_change`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something was published.
    Notified,
    /// The timeout passed; poll anyway.
    Timeout,
    /// The notification channel broke and was re-established: changes may have been missed.
    Lost,
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Persistence for users, keys, sessions, usage and the change feed (and, through [`NotifyStore`], reminders and
/// their outbox). Implementations must be safe to share between tasks and between processes on the same database.
#[async_trait]
pub trait Store: NotifyStore + Send + Sync + 'static {
    /// The backend's name, for logs and `/readyz`.
    fn backend(&self) -> &'static str;

    /// Checks the database answers.
    async fn ping(&self) -> StoreResult<()>;

    // ----- users -----

    /// Creates a user. `Conflict` when the e-mail address is taken.
    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    async fn user_by_email(&self, email: &Email) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>>;
    /// All users, oldest first.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    async fn count_users(&self) -> StoreResult<i64>;
    /// Disables or re-enables a user. Disabling ends their sessions; either way every node's key cache learns it
    /// through the change feed. Returns false when there is no such user.
    async fn set_user_disabled(&self, id: UserId, disabled: bool, at: Millis) -> StoreResult<bool>;
    /// Replaces a user's password hash.
    async fn set_password(&self, id: UserId, hash: &PasswordHash) -> StoreResult<bool>;

    // ----- keys -----

    /// Stores a new key, durably, before its secret is shown to anyone. `Conflict` when the owner already has a
    /// live key of that name.
    async fn insert_key(&self, key: NewKey) -> StoreResult<KeyRecord>;
    /// The key (live or deleted) that an owner's dashboard form with this nonce created, if any.
    async fn key_by_form_nonce(&self, owner: UserId, nonce: &str) -> StoreResult<Option<KeyRecord>>;
    /// One live (not deleted) key of one owner. Another owner's key is `None`, exactly like a missing one.
    async fn get_key(&self, owner: UserId, id: &CredentialId) -> StoreResult<Option<KeyRecord>>;
    /// A page of an owner's live keys, newest first.
    async fn list_keys(&self, owner: UserId, query: &KeyQuery) -> StoreResult<Vec<KeyRecord>>;
    /// How many live keys an owner has (optionally only those whose name contains `search`).
    async fn count_keys(&self, owner: UserId, search: Option<&str>) -> StoreResult<i64>;
    /// Like [`count_keys`](Self::count_keys), but stops counting at `cap`: the answer is `min(count, cap)`. Its cost
    /// is bounded by `cap` index entries however many keys the owner has (pages show "10,000+ keys").
    async fn count_keys_upto(&self, owner: UserId, search: Option<&str>, cap: i64) -> StoreResult<i64>;
    /// Deletes (revokes) a live key, records who did it, and publishes the revocation on the change feed, all in one
    /// transaction. `owner: None` is an operator acting on any user's key. Returns the revoked key, or `None` when
    /// there was no such live key (of that owner).
    async fn revoke_key(
        &self,
        owner: Option<UserId>,
        id: &CredentialId,
        who: &Who,
        at: Millis,
    ) -> StoreResult<Option<KeyRecord>>;
    /// Rolls a live key that was not rolled before: in one transaction, stores `new` (whose `rolled_from` names the
    /// old key), links the old key to it and moves the old key's expiry to `old_expires_at` (or keeps its own when
    /// that is sooner), publishes the old key's change on the feed, and records `key.created` (the new key) and
    /// `key.rolled` (the old one). Returns the old key as it now is, or `None` (nothing written) when there is no such
    /// live key (of that owner) or it was already rolled. `Conflict` when the new name is taken.
    async fn roll_key(
        &self,
        owner: Option<UserId>,
        old: &CredentialId,
        new: NewKey,
        old_expires_at: Millis,
    ) -> StoreResult<Option<KeyRecord>>;
    /// Changes a live key (of `owner`; `None`: the operator), publishes the change on the feed and records
    /// `key.disabled` / `key.enabled` for a status change and `key.edited` (naming the changed members) for the rest,
    /// in one transaction. Returns the key before and after, or `None` when there is no such live key. `Conflict` when
    /// a new name is taken.
    async fn update_key(
        &self,
        owner: Option<UserId>,
        id: &CredentialId,
        patch: &KeyPatch,
        who: &Who,
        at: Millis,
    ) -> StoreResult<Option<(KeyRecord, KeyRecord)>>;
    /// Every live key a bulk revocation would take, newest first.
    async fn keys_matching(&self, filter: &KeyFilter) -> StoreResult<Vec<KeyRecord>>;
    /// Revokes every live key matching `filter`, publishes each owner's change on the feed and records one
    /// `keys.revoked` event (with `detail`, to which the count is added), in one transaction. Returns the revoked keys.
    async fn revoke_keys(
        &self,
        filter: &KeyFilter,
        who: &Who,
        detail: serde_json::Map<String, serde_json::Value>,
        at: Millis,
    ) -> StoreResult<Vec<KeyRecord>>;
    /// What the verifier needs to decide about a key, including deleted keys (so it can say `REVOKED`).
    async fn auth_record(&self, id: &CredentialId) -> StoreResult<Option<AuthRecord>>;
    /// Adds a batch of usage gathered in memory: counts add up, the latest use wins.
    async fn record_usage(&self, batch: &[UsageUpdate]) -> StoreResult<()>;
    /// Shares one node's limit counts with the others, in one transaction (a node calls it every sync interval,
    /// never per request):
    ///
    /// * rate-limited uses (`rate_uses > 0`) are added to the shared table as one row per key, under `node`, at `now`;
    /// * each quota of the batch loses its uses atomically (`remaining = max(remaining - uses, 0)`), after a refill
    ///   that is due at `now` (an interval began since `quota_refilled_at`: back to the refill amount), and is read
    ///   back (deleted keys too; keys without a quota are left out);
    /// * rows of the shared table older than `forget_before` are deleted, and rows of other nodes written after
    ///   `since` (their clocks) are returned: the caller skips the ones it applied already.
    async fn sync_limits(
        &self,
        node: &str,
        batch: &[LimitUses],
        since: Millis,
        forget_before: Millis,
        now: Millis,
    ) -> StoreResult<LimitSync>;

    // ----- usage over time (per-key buckets) -----

    /// Adds a batch of usage buckets gathered in memory: each count is added to its hourly bucket and to its UTC
    /// day's bucket, on top of what this and other nodes wrote before (`count = count + new`).
    async fn record_usage_counts(&self, batch: &[UsageCount]) -> StoreResult<()>;
    /// One key's buckets of one width whose start lies in `[from, to)`, by start (then outcome). Buckets with no
    /// requests are not stored and so not returned.
    async fn usage_buckets(
        &self,
        id: &CredentialId,
        granularity: Granularity,
        from: Millis,
        to: Millis,
    ) -> StoreResult<Vec<UsageRow>>;
    /// Allowed requests per UTC day since `from` (a day's start), for several keys in one query (a page's
    /// sparklines): `(key, day start, count)`, days without requests left out.
    async fn daily_allowed(&self, ids: &[CredentialId], from: Millis) -> StoreResult<Vec<(CredentialId, Millis, i64)>>;
    /// Housekeeping: deletes hourly buckets that start before `hours_before` and daily ones before `days_before`.
    /// Returns how many buckets were deleted.
    async fn prune_usage(&self, hours_before: Millis, days_before: Millis) -> StoreResult<u64>;

    /// What the verifier needs about each of `ids` that exists (deleted keys included), in no particular order: one
    /// batched read for a leak report of many tokens.
    async fn auth_records(&self, ids: &[CredentialId]) -> StoreResult<Vec<AuthRecord>>;

    // ----- key prefixes (the installation's own; see `atna key-prefix`) -----

    /// The recorded key prefixes.
    async fn key_prefixes(&self) -> StoreResult<KeyPrefixes>;
    /// Records `prefix` as the current one unless one is already recorded (the first start of an installation), safe
    /// against several processes starting at once; returns what is recorded afterwards.
    async fn init_key_prefix(&self, prefix: &KeyPrefix, at: Millis) -> StoreResult<KeyPrefixes>;
    /// Makes `prefix` the current one (keeping every earlier one as issued, so their keys keep working), records
    /// `installation.key_prefix_changed` in the audit trail and publishes [`ChangeKind::Installation`], in one
    /// transaction. When `prefix` already is current nothing is written.
    async fn set_key_prefix(&self, prefix: &KeyPrefix, at: Millis) -> StoreResult<KeyPrefixChange>;

    // ----- leak reports (secret scanners) -----

    /// Records reports that keys were found in public and applies `action` to each reported key, in one transaction:
    /// a report row (once per key and URL: a replay finds it and changes nothing), a `key.leaked` audit event with the
    /// source and URL, and for `revoke` / `disable` the key's new status, its `key.deleted` / `key.disabled` event
    /// and a change-feed entry. Each report's key must exist. Returns each report's key (as it is now) and outcome.
    async fn record_leaks(
        &self,
        reports: &[NewLeakReport],
        action: LeakAction,
        at: Millis,
    ) -> StoreResult<Vec<(KeyRecord, LeakOutcome)>>;
    /// An owner's leak reports, newest first (replays are not recorded twice).
    async fn leak_reports(&self, owner: UserId, limit: i64) -> StoreResult<Vec<LeakRecord>>;

    // ----- change feed (cache invalidation across processes) -----

    /// The newest change sequence number (0 when there is none).
    async fn latest_change(&self) -> StoreResult<i64>;
    /// Changes after `seq`, oldest first, at most `limit`.
    async fn changes_since(&self, seq: i64, limit: i64) -> StoreResult<Vec<Change>>;
    /// Waits until the change feed may have grown, or `timeout` passes. Backends that can push (PostgreSQL's
    /// `LISTEN/NOTIFY`) return early; the default just waits, which turns the caller's loop into polling.
    /// `Wake::Lost` means notifications may have been missed: callers must forget everything they cached.
    async fn wait_for_change(&self, timeout: std::time::Duration) -> Wake {
        tokio::time::sleep(timeout).await;
        Wake::Timeout
    }

    /// Housekeeping: deletes change-feed entries and sign-in attempts recorded before `changes_before` (feed entries
    /// matter only to nodes that far behind, and a node's cache never is; attempts only within the throttling
    /// windows, the longest of which is a day), sessions and device tokens that have expired by `now`, and
    /// `session.sign_in_failed` audit events older than [`FAILED_SIGN_IN_RETENTION`] at `now`. Returns how many of
    /// each were deleted.
    async fn prune(&self, changes_before: Millis, now: Millis) -> StoreResult<Pruned>;

    // ----- first-run setup (shared by every process on the database) -----

    /// Records a setup token (its SHA-256) that the node `issuer` printed at `at` while no user existed, and revokes
    /// the tokens that issuer recorded before (a restarted node's old link stops working; other nodes' keep working).
    async fn add_setup_token(&self, token_hash: &[u8; 32], issuer: &str, at: Millis) -> StoreResult<()>;
    /// Whether a setup token is recorded, was issued less than [`SETUP_TOKEN_TTL`] before `now`, and no user exists.
    async fn setup_open(&self, token_hash: &[u8; 32], now: Millis) -> StoreResult<bool>;
    /// Creates the first administrator, only if the token is open (as [`Store::setup_open`] at `user.created_at`),
    /// atomically across processes; then forgets every setup token. `None` when setup is no longer (or was never)
    /// possible.
    async fn create_first_admin(&self, user: NewUser, token_hash: &[u8; 32]) -> StoreResult<Option<User>>;

    // ----- sign-in throttling (shared by every process on the database) -----

    /// Counts an attempt (a sign-in, a password check) against each rule, unless some rule holds it back: then
    /// counts nothing and returns how long until every rule would allow it. Atomic across processes, so parallel
    /// attempts on several nodes cannot all slip past a rule.
    async fn throttle_begin(&self, rules: &[ThrottleRule<'_>], now: Millis) -> StoreResult<Option<Millis>>;
    /// After a successful attempt: forgets every attempt of `forget`, and takes back the latest attempt of each key
    /// in `take_back` (the one `throttle_begin` counted for this attempt).
    async fn throttle_succeed(&self, forget: &str, take_back: &[&str]) -> StoreResult<()>;

    // ----- device tokens (browsers that signed in before; see the dashboard's throttling) -----

    /// Records a device token (its SHA-256) for a user, valid until `expires_at`.
    async fn add_device_token(&self, token_hash: &[u8; 32], user: UserId, expires_at: Millis) -> StoreResult<()>;
    /// The user a device token belongs to, unless it is unknown or expired by `now`.
    async fn device_token_user(&self, token_hash: &[u8; 32], now: Millis) -> StoreResult<Option<UserId>>;

    // ----- audit -----

    /// An owner's audit events, newest first.
    async fn audit_events(&self, owner: UserId, limit: i64) -> StoreResult<Vec<AuditEvent>> {
        self.audit_page(&AuditQuery { owner: Some(owner), limit, ..AuditQuery::default() }).await
    }
    /// A page of audit events, newest first (`at`, then recording order).
    async fn audit_page(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
    /// Appends one event that no other change carries (sign-ins, sessions, passwords, users). Changes to keys record
    /// their own events in their own transactions.
    async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()>;

    // ----- dashboard sessions -----

    /// Stores a session under the hash of its token.
    async fn create_session(&self, session: NewSession) -> StoreResult<()>;
    /// A live session and its user; expired sessions are `None`.
    async fn session(&self, token_hash: &[u8; 32], now: Millis) -> StoreResult<Option<Session>>;
    /// Records activity, pushing the idle deadline.
    async fn touch_session(&self, token_hash: &[u8; 32], idle_expires_at: Millis) -> StoreResult<()>;
    async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<()>;
    /// Ends every session of a user (log out everywhere, password change, user disabled).
    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64>;

    // ----- moving an installation (`atna export` / `atna import`) -----

    /// Everything a new database needs to take over from this one, read in one consistent snapshot (one read
    /// transaction): every user by ascending ID; every key, deleted (revoked) ones included, by ascending Credential ID,
    /// with its secret hash as lowercase hex and its scopes and status in their stored text forms; and the audit trail
    /// in the order it was recorded. `format` is [`SNAPSHOT_FORMAT`], `exported_at` the current time. Sessions and the
    /// change feed are left out.
    async fn export_all(&self) -> StoreResult<Snapshot>;

    /// Writes a snapshot into an empty store, in one transaction: all of it or none of it.
    ///
    /// * Calls [`Snapshot::check`] first and passes its error on (`InvalidSnapshot`).
    /// * Inside the transaction, refuses with [`StoreError::NotEmpty`] when the store holds any user, key or audit
    ///   event: an import never merges into live data.
    /// * Keeps every user ID and Credential ID exactly (so `owner_id` still points at the right user) and every other
    ///   field as given (`revoked_at`, usage, `disabled`, …). Audit events get new IDs in snapshot order, so they read
    ///   back in the same order.
    /// * Leaves ID generation above the imported IDs: a user created afterwards must get an ID greater than every
    ///   imported one (SQLite's `AUTOINCREMENT` does this by itself; PostgreSQL needs `setval` on the users' and audit
    ///   events' sequences).
    /// * Writes nothing to the change feed and creates no sessions.
    ///
    /// Returns the counts written, which equal [`Snapshot::summary`].
    async fn import_all(&self, snapshot: &Snapshot) -> StoreResult<ImportSummary>;
}
