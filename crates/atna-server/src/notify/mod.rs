//! Reminders to a key's owner, by e-mail and signed webhook, from a durable outbox.
//!
//! * [`Notifier::enqueue`] is the one call per event (a key deleted, rolled, disabled automatically, reported
//!   leaked): it records the reminder once per (key, kind). Leaks and automatic disabling go to the outbox at once;
//!   everything else waits for the owner's daily digest.
//! * [`worker`] runs on every node: a periodic scan notices conditions (expires in 7 days / 1 day, rotation due,
//!   unused), sends due digests, and delivers outbox entries it claims (with a lease, so each entry is sent by one
//!   node and an entry whose node died is sent by another with the same ID).
//! * [`webhook`] signs (Standard Webhooks) and sends through the SSRF guard; [`email`] sends over SMTP.

pub mod email;
mod message;
pub mod ssrf;
pub mod webhook;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use atna_domain::{Millis, ReminderKind};
use atna_store::{KeyRecord, NewReminder, Store, StoreResult};

pub use message::{Link, Payload};

/// How e-mail is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// Plain SMTP, upgraded with STARTTLS (required); port 587 by default.
    #[default]
    StartTls,
    /// TLS from the first byte (SMTPS); port 465 by default.
    Tls,
    /// No encryption at all (a relay on the same machine, tests); port 25 by default.
    None,
}

impl SmtpTls {
    /// Reads the setting (`starttls`, `tls`, `none`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "starttls" => Some(Self::StartTls),
            "tls" => Some(Self::Tls),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// The port used when none is set.
    pub fn default_port(self) -> u16 {
        match self {
            Self::StartTls => 587,
            Self::Tls => 465,
            Self::None => 25,
        }
    }
}

/// The SMTP server reminders are sent through (`[smtp]`).
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender, e.g. `atna <atna@example.com>`.
    pub from: String,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("from", &self.from)
            .finish()
    }
}

/// Reminder settings.
#[derive(Clone, Debug)]
pub struct NotifySettings {
    /// Where e-mail goes out; `None`: no e-mail (webhooks and the dashboard only).
    pub smtp: Option<SmtpSettings>,
    /// Lets webhooks reach loopback, private and link-local addresses (tests; operators whose receivers are inside).
    pub webhooks_allow_private_addresses: bool,
    /// How long one webhook request or SMTP conversation may take.
    pub delivery_timeout: Duration,
    /// How often a node looks for due outbox entries (an enqueue on this node wakes it at once).
    pub outbox_poll_interval: Duration,
    /// How often the conditions are scanned for and due digests sent.
    pub scan_interval: Duration,
    /// The least time between two digests of one user.
    pub digest_interval: Duration,
    /// The first retry's delay; each further retry waits twice as long (at most six hours).
    pub retry_base: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: i64,
    /// The dashboard's address as people reach it (`https://keys.example.com`), for links in e-mails and webhook
    /// payloads; `None`: messages carry paths only.
    pub public_url: Option<String>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            smtp: None,
            webhooks_allow_private_addresses: false,
            delivery_timeout: Duration::from_secs(10),
            outbox_poll_interval: Duration::from_secs(5),
            scan_interval: Duration::from_secs(60 * 60),
            digest_interval: Duration::from_secs(24 * 60 * 60),
            retry_base: Duration::from_secs(30),
            max_attempts: 12,
            public_url: None,
        }
    }
}

impl NotifySettings {
    /// How long a claimed outbox entry stays with its node: past this, another node takes it (the node died).
    pub fn lease(&self) -> Duration {
        self.delivery_timeout * 2 + Duration::from_secs(1)
    }

    /// When to retry after `attempts` failed attempts, or `None` to give up.
    pub fn retry_at(&self, attempts: i64, now: Millis) -> Option<Millis> {
        if attempts >= self.max_attempts {
            return None;
        }
        let base = self.retry_base.as_millis() as i64;
        let delay = base.saturating_mul(1_i64 << (attempts - 1).clamp(0, 20)).min(6 * 60 * 60 * 1000);
        Some(now + delay)
    }
}

/// Records events for the key's owner and wakes this node's delivery worker. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    store: Arc<dyn Store>,
    settings: Arc<NotifySettings>,
    wake: Arc<tokio::sync::Notify>,
}

impl Notifier {
    pub fn new(store: Arc<dyn Store>, settings: NotifySettings) -> Self {
        Self { store, settings: Arc::new(settings), wake: Arc::new(tokio::sync::Notify::new()) }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &NotifySettings {
        &self.settings
    }

    /// Reminds `key`'s owner that `kind` happened at `now`: once per (key, kind), at once for leaks and automatic
    /// disabling (e-mail when SMTP is set, the owner's webhook and the installation's), else in the next daily
    /// digest. Returns false when this (key, kind) was reminded before. Callers log a failure rather than fail the
    /// action: the key was deleted either way.
    pub async fn enqueue(&self, key: &KeyRecord, kind: ReminderKind, now: Millis) -> StoreResult<bool> {
        let r = NewReminder { user: key.owner, kind, key_id: key.id, key_name: key.name.to_string(), at: now };
        if !kind.immediate() {
            return self.store.add_reminder(&r, None).await;
        }
        let Some(user) = self.store.user_by_id(key.owner).await? else { return Ok(false) };
        let reminder = atna_store::Reminder {
            id: 0,
            user: r.user,
            kind,
            key_id: r.key_id,
            key_name: r.key_name.clone(),
            created_at: now,
            sent_at: None,
            message: None,
        };
        let (message, deliveries) = message::build(&*self.store, &self.settings, &user, &[reminder], now).await?;
        let added = self.store.add_reminder(&r, Some((&message, &deliveries))).await?;
        if added {
            self.wake.notify_one();
        }
        Ok(added)
    }

    /// Like [`enqueue`](Self::enqueue), logging instead of returning a failure.
    pub async fn enqueue_logged(&self, key: &KeyRecord, kind: ReminderKind, now: Millis) {
        if let Err(e) = self.enqueue(key, kind, now).await {
            tracing::warn!(error = %e, key = %key.id, kind = kind.as_str(), "could not record a reminder");
        }
    }

    /// Wakes this node's delivery worker (something was added to the outbox).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn woken(&self) -> &tokio::sync::Notify {
        &self.wake
    }
}

/// A fresh message or outbox ID: `msg_` and 128 random bits in hex.
pub fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("msg_{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_give_up() {
        let s = NotifySettings { retry_base: Duration::from_secs(30), max_attempts: 4, ..Default::default() };
        assert_eq!(s.retry_at(1, 0), Some(30_000));
        assert_eq!(s.retry_at(2, 0), Some(60_000));
        assert_eq!(s.retry_at(3, 0), Some(120_000));
        assert_eq!(s.retry_at(4, 0), None);
        let long = NotifySettings { max_attempts: 100, ..s };
        assert_eq!(long.retry_at(40, 0), Some(6 * 60 * 60 * 1000), "at most six hours");
    }

    #[test]
    fn smtp_passwords_are_not_in_debug_output() {
        let s = SmtpSettings {
            host: "smtp.example.com".into(),
            port: 587,
            tls: SmtpTls::StartTls,
            username: Some("atna".into()),
            password: Some("hunter2".into()),
            from: "atna@example.com".into(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
