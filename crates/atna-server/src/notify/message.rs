//! What a reminder message says: the webhook payload (JSON, documented in docs/reminders.md) and the e-mail, and the
//! outbox entries one message becomes (e-mail when SMTP is set, the user's webhook, the installation's webhook).

use atna_domain::Millis;
use atna_store::{Channel, NewDelivery, Reminder, Store, StoreResult, User};
use serde::Serialize;

use super::NotifySettings;

/// A webhook payload (Standard Webhooks' recommended shape: `type`, `timestamp`, `data`).
#[derive(Debug, Serialize)]
pub struct Payload {
    /// `key.leaked` or `key.auto_disabled` for a message sent at once; `reminders.digest` for the daily digest.
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: String,
    pub data: Data,
}

#[derive(Debug, Serialize)]
pub struct Data {
    pub user: UserRef,
    pub reminders: Vec<Item>,
}

#[derive(Debug, Serialize)]
pub struct UserRef {
    pub id: i64,
    pub email: String,
}

#[derive(Debug, Serialize)]
pub struct Item {
    /// `expires_in_7_days`, `expires_in_1_day`, `rotation_due`, `unused`, `auto_disabled`, `deleted`, `rolled`,
    /// `leaked`.
    pub kind: &'static str,
    pub message: String,
    pub key: KeyRef,
    /// When the condition was noticed or the event happened.
    pub noticed_at: String,
    /// Where to act: the key's Roll and Delete pages (absent for a deleted key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<Link>,
}

#[derive(Debug, Serialize)]
pub struct KeyRef {
    pub id: String,
    pub name: String,
}

/// Links to the pages where a reminder is acted on.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub roll: String,
    pub delete: String,
}

impl Link {
    /// The Roll and Delete pages of key `id`, under `public_url` when set (else as paths).
    pub fn for_key(public_url: Option<&str>, id: &str) -> Self {
        let base = public_url.unwrap_or("").trim_end_matches('/');
        Self { roll: format!("{base}/keys/{id}/roll"), delete: format!("{base}/keys/{id}/delete") }
    }
}

/// The e-mail of a message, as stored in the outbox.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Mail {
    pub subject: String,
    pub text: String,
}

pub fn rfc3339(t: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .map_or_else(|| t.to_string(), |d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The payload of a message about `reminders` (one, sent at once; or a digest).
pub fn payload(settings: &NotifySettings, user: &User, reminders: &[Reminder], now: Millis) -> Payload {
    let kind = match reminders {
        [one] if one.kind.immediate() => one.kind.event_type(),
        _ => "reminders.digest".to_owned(),
    };
    let items = reminders
        .iter()
        .map(|r| Item {
            kind: r.kind.as_str(),
            message: r.kind.sentence(&r.key_name),
            key: KeyRef { id: r.key_id.to_string(), name: r.key_name.clone() },
            noticed_at: rfc3339(r.created_at),
            links: r.kind.key_still_live().then(|| Link::for_key(settings.public_url.as_deref(), r.key_id.as_str())),
        })
        .collect();
    Payload {
        kind,
        timestamp: rfc3339(now),
        data: Data { user: UserRef { id: user.id.0, email: user.email.to_string() }, reminders: items },
    }
}

/// The e-mail of the same message.
pub fn mail(p: &Payload) -> Mail {
    let subject = match p.data.reminders.as_slice() {
        [one] => format!("atna: {}", one.message),
        many => format!("atna: {} reminders about your API keys", many.len()),
    };
    let mut text = String::from("Hello,\n\nhere is what atna noticed about your API keys:\n\n");
    for r in &p.data.reminders {
        text.push_str(&format!("* {} (Credential ID {}, noticed {})\n", r.message, r.key.id, r.noticed_at));
        if let Some(l) = &r.links {
            text.push_str(&format!("  Roll it: {}\n  Delete it: {}\n", l.roll, l.delete));
        }
    }
    text.push_str("\nThe dashboard lists every reminder under Reminders in your profile menu.\n");
    Mail { subject, text }
}

/// A new message ID and the outbox entries of a message about `reminders` to `user`: an e-mail when SMTP is set, and
/// one webhook request each to the user's and the installation's webhook when set. No entry at all is fine: the
/// dashboard still shows the reminder.
pub async fn build(
    store: &dyn Store,
    settings: &NotifySettings,
    user: &User,
    reminders: &[Reminder],
    now: Millis,
) -> StoreResult<(String, Vec<NewDelivery>)> {
    let p = payload(settings, user, reminders, now);
    let body = serde_json::to_string(&p).map_err(|e| atna_store::StoreError::Corrupt(e.to_string()))?;
    let mut out = Vec::new();
    if settings.smtp.is_some() {
        let m = serde_json::to_string(&mail(&p)).map_err(|e| atna_store::StoreError::Corrupt(e.to_string()))?;
        out.push(NewDelivery { id: super::new_id(), channel: Channel::Email, user: Some(user.id), body: m });
    }
    for owner in [Some(user.id), None] {
        if store.webhook(owner).await?.is_some() {
            out.push(NewDelivery { id: super::new_id(), channel: Channel::Webhook, user: owner, body: body.clone() });
        }
    }
    Ok((super::new_id(), out))
}
