//! Reminders and their delivery: what each key's owner was reminded of (once per key and kind), the durable outbox
//! every e-mail and webhook goes out from, and the webhook endpoints. A trait of its own ([`NotifyStore`]), which
//! every [`Store`](crate::Store) also is.
//!
//! The outbox is claimed with a lease (`claimed_by`, `claimed_until`): a node takes due entries, delivers them and
//! records the outcome; an entry whose node died mid-way is taken again by any node once the lease has passed, with
//! the same ID (so a webhook's `webhook-id` is the same on every attempt: receivers deduplicate on it).

use async_trait::async_trait;
use atna_domain::{CredentialId, Millis, ReminderKind, UserId};

use crate::{KeyRecord, StoreResult};

/// A reminder to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReminder {
    pub user: UserId,
    pub kind: ReminderKind,
    pub key_id: CredentialId,
    pub key_name: String,
    pub at: Millis,
}

/// A recorded reminder.
#[derive(Debug, Clone, PartialEq)]
pub struct Reminder {
    pub id: i64,
    pub user: UserId,
    pub kind: ReminderKind,
    pub key_id: CredentialId,
    pub key_name: String,
    /// When the condition was noticed (or the event happened).
    pub created_at: Millis,
    /// When it was sent (at once, or in a digest); `None` while it waits for the next digest.
    pub sent_at: Option<Millis>,
    /// The message it went out in (the outbox entries of each channel share it).
    pub message: Option<String>,
}

/// How a message goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// To the user's e-mail address, over SMTP.
    Email,
    /// To the webhook of the user, or of the installation.
    Webhook,
}

impl Channel {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    /// Reads the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

/// An outbox entry to add: one message on one channel to one recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// Unique; a webhook sends it as `webhook-id` on every attempt.
    pub id: String,
    pub channel: Channel,
    /// The recipient user; `None`: the installation's webhook.
    pub user: Option<UserId>,
    /// What is sent: the webhook's JSON body, or the e-mail as JSON (`subject`, `text`).
    pub body: String,
}

/// An outbox entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub message: String,
    pub channel: Channel,
    pub user: Option<UserId>,
    pub body: String,
    pub created_at: Millis,
    /// Attempts made so far (finished ones; a claim alone does not count).
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub delivered_at: Option<Millis>,
    /// When delivery was given up.
    pub failed_at: Option<Millis>,
    /// The last attempt's HTTP status (webhooks) or SMTP reply code (e-mail).
    pub last_status: Option<i64>,
    /// Why the last attempt failed, for people (never a response body).
    pub last_error: Option<String>,
    pub last_duration_ms: Option<i64>,
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub delivered: bool,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// When to try again after a failure; `None` after a failure: give up.
    pub retry_at: Option<Millis>,
}

/// A webhook endpoint.
#[derive(Clone, PartialEq)]
pub struct Webhook {
    /// The user it belongs to; `None`: the installation's (set by administrators, gets every user's reminders).
    pub owner: Option<UserId>,
    pub url: String,
    /// The signing secret, `whsec_` and base64.
    pub secret: String,
    pub created_at: Millis,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("owner", &self.owner)
            .field("url", &self.url)
            .field("secret", &"[redacted]")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// Storage for reminders, the outbox and webhook endpoints. Every operation is safe with several nodes on one
/// database: recording a reminder twice records it once, a digest's reminders are sent by one node, an outbox entry
/// is claimed by one node at a time.
#[async_trait]
pub trait NotifyStore: Send + Sync {
    /// Records a reminder unless this (key, kind) was recorded before: then records nothing and returns false.
    /// With `send_now` (a message ID and its outbox entries), the reminder is marked sent in that message and the
    /// entries are added in the same transaction (for reminders that cannot wait for the digest).
    async fn add_reminder(&self, r: &NewReminder, send_now: Option<(&str, &[NewDelivery])>) -> StoreResult<bool>;
    /// Users with unsent reminders whose last digest went out before `last_digest_before` (or never), at most `limit`.
    async fn digest_due(&self, last_digest_before: Millis, limit: i64) -> StoreResult<Vec<UserId>>;
    /// A user's unsent reminders, oldest first.
    async fn pending_reminders(&self, user: UserId) -> StoreResult<Vec<Reminder>>;
    /// Marks `reminders` (all unsent, all `user`'s) sent at `at` in `message` and adds its outbox entries, all in one
    /// transaction; false (and nothing written) when any of them was sent meanwhile (by another node).
    async fn send_digest(
        &self,
        user: UserId,
        reminders: &[i64],
        message: &str,
        at: Millis,
        deliveries: &[NewDelivery],
    ) -> StoreResult<bool>;
    /// A user's reminders, newest first, with the outbox entries of the messages they went out in.
    async fn reminders(&self, user: UserId, limit: i64) -> StoreResult<Vec<(Reminder, Vec<Delivery>)>>;
    /// Outbox entries of one message, by ID.
    async fn deliveries(&self, message: &str) -> StoreResult<Vec<Delivery>>;

    /// Claims up to `limit` entries due at `now` (not delivered, not given up, not claimed by a live lease) for `node`
    /// until `lease_until`. Each entry is claimed by one node at a time.
    async fn claim_deliveries(
        &self,
        node: &str,
        now: Millis,
        lease_until: Millis,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>>;
    /// Records an attempt at `now` on an entry `node` claimed, and releases the claim. False when the claim was lost
    /// (the lease passed and another node took the entry): nothing is written.
    async fn finish_delivery(&self, id: &str, node: &str, attempt: &Attempt, now: Millis) -> StoreResult<bool>;

    /// The webhook of a user (`Some`) or of the installation (`None`).
    async fn webhook(&self, owner: Option<UserId>) -> StoreResult<Option<Webhook>>;
    /// Sets (replacing) a webhook.
    async fn set_webhook(&self, w: &Webhook) -> StoreResult<()>;
    /// Removes a webhook; false when there was none.
    async fn delete_webhook(&self, owner: Option<UserId>) -> StoreResult<bool>;

    /// A page of live, active keys of enabled users, by ascending Credential ID after `after` (the reminder scan).
    async fn scan_keys(&self, after: Option<&CredentialId>, limit: i64) -> StoreResult<Vec<KeyRecord>>;
}
