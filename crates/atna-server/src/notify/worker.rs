//! The background jobs of reminders, on every node: the scan (conditions, automatic disabling, digests) and the
//! outbox delivery loop. Several nodes may run both at once: a reminder is recorded once per (key, kind), a digest is
//! sent by the node whose transaction marks its reminders first, and an outbox entry is claimed by one node at a time.

use std::sync::Arc;

use atna_domain::{Millis, Policy, ReminderKind, DAY_MS};
use atna_store::{Attempt, Channel, Delivery, KeyRecord, Store, StoreResult};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::message::{self, Mail};
use super::{email, webhook, Notifier};

/// Outbox entries claimed at a time.
const CLAIM: i64 = 20;
/// Keys read per page of the scan.
const SCAN_PAGE: i64 = 500;

/// This process's name in `claimed_by`: host, process ID and a random part (a restarted process is another node).
pub fn node_name() -> String {
    format!("{}-{}-{}", crate::app::hostname(), std::process::id(), &super::new_id()[4..12])
}

/// Runs the scan every `scan_interval` and the delivery loop until `stop` turns true.
pub fn start(notifier: Notifier, policy: Policy, stop: watch::Receiver<bool>) -> [JoinHandle<()>; 2] {
    let node: Arc<str> = node_name().into();
    let scan = {
        let (n, mut stop) = (notifier.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(n.settings().scan_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
                if let Err(e) = scan(&n, &policy, crate::clock::now()).await {
                    tracing::warn!(error = %e, "reminder scan failed; trying again later");
                }
            }
        })
    };
    let deliver = {
        let mut stop = stop;
        tokio::spawn(async move {
            loop {
                match deliver_due(&notifier, &node, crate::clock::now()).await {
                    Ok(n) if n as i64 == CLAIM => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "outbox not readable; trying again later"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(notifier.settings().outbox_poll_interval) => {}
                    _ = notifier.woken().notified() => {}
                    _ = stop.changed() => return,
                }
            }
        })
    };
    [scan, deliver]
}

/// What the scan reminds of for one key at `now`: at most one expiry reminder (the nearer one), rotation due, unused.
pub fn conditions(policy: &Policy, k: &KeyRecord, now: Millis) -> Vec<ReminderKind> {
    let mut out = Vec::new();
    if k.expires_at.is_some_and(|t| t <= now) {
        return out; // Expired: nothing left to remind of.
    }
    match k.expires_at.map(|t| t - now) {
        Some(left) if left <= DAY_MS => out.push(ReminderKind::ExpiresIn1Day),
        Some(left) if left <= 7 * DAY_MS => out.push(ReminderKind::ExpiresIn7Days),
        _ => {}
    }
    if policy.rotation_due(k.created_at, now) {
        out.push(ReminderKind::RotationDue);
    }
    if (now - k.last_used_at.unwrap_or(k.created_at)) / DAY_MS >= policy.unused_days {
        out.push(ReminderKind::Unused);
    }
    out
}

/// One scan: records the conditions of every live key, applies automatic disabling, then sends due digests.
pub async fn scan(n: &Notifier, policy: &Policy, now: Millis) -> StoreResult<()> {
    let store = n.store().clone();
    let mut after = None;
    loop {
        let page = store.scan_keys(after.as_ref(), SCAN_PAGE).await?;
        for k in &page {
            for kind in conditions(policy, k, now) {
                store
                    .add_reminder(
                        &atna_store::NewReminder {
                            user: k.owner,
                            kind,
                            key_id: k.id,
                            key_name: k.name.to_string(),
                            at: now,
                        },
                        None,
                    )
                    .await?;
            }
            if policy.auto_disable_due(k.created_at, k.last_used_at, now) && auto_disable(&*store, k, now).await? {
                n.enqueue(k, ReminderKind::AutoDisabled, now).await?;
            }
        }
        match page.last() {
            Some(k) if page.len() as i64 == SCAN_PAGE => after = Some(k.id),
            _ => break,
        }
    }
    send_digests(n, now).await
}

/// Disables a key the policy's `auto_disable_unused_days` caught; true when it did. Written like any disable (one
/// store transaction with its `key.disabled` audit event, published on the change feed, so every node refuses the key
/// with `key_disabled` at its next poll); the actor is the installation (the operator), and the event's detail says
/// why.
async fn auto_disable(store: &dyn Store, k: &KeyRecord, now: Millis) -> StoreResult<bool> {
    if k.status != atna_domain::KeyStatus::Active {
        return Ok(false);
    }
    let patch = atna_store::KeyPatch { status: Some(atna_domain::KeyStatus::Disabled), ..Default::default() };
    let who = atna_store::Who::from(atna_store::Actor::Operator);
    let done = store.update_key(None, &k.id, &patch, &who, now).await?.is_some();
    if done {
        tracing::info!(key = %k.id, owner = k.owner.0, "policy: disabled a key unused for auto_disable_unused_days");
    }
    Ok(done)
}

/// Sends the digest of every user whose last one is at least `digest_interval` old.
async fn send_digests(n: &Notifier, now: Millis) -> StoreResult<()> {
    let store = n.store();
    let interval = n.settings().digest_interval.as_millis() as Millis;
    let mut sent = 0;
    for user in store.digest_due(now - interval, 1000).await? {
        let pending = store.pending_reminders(user).await?;
        let Some(u) = store.user_by_id(user).await? else { continue };
        if pending.is_empty() {
            continue;
        }
        let (message, deliveries) = message::build(&**store, n.settings(), &u, &pending, now).await?;
        let ids: Vec<i64> = pending.iter().map(|r| r.id).collect();
        if store.send_digest(user, &ids, &message, now, &deliveries).await? {
            sent += 1;
        }
    }
    if sent > 0 {
        tracing::info!(users = sent, "reminder digests queued");
        n.wake();
    }
    Ok(())
}

/// Claims due outbox entries and delivers them; returns how many it claimed.
pub async fn deliver_due(n: &Notifier, node: &str, now: Millis) -> StoreResult<usize> {
    let lease = n.settings().lease().as_millis() as Millis;
    let claimed = n.store().claim_deliveries(node, now, now + lease, CLAIM).await?;
    for d in &claimed {
        let attempt = deliver(n, d).await;
        let done = crate::clock::now();
        let attempt = Attempt {
            retry_at: if attempt.delivered { None } else { n.settings().retry_at(d.attempts + 1, done) },
            ..attempt
        };
        if attempt.delivered {
            tracing::info!(id = %d.id, channel = d.channel.as_str(), status = attempt.status, "reminder delivered");
        } else {
            tracing::warn!(id = %d.id, channel = d.channel.as_str(), error = attempt.error.as_deref(), attempts = d.attempts + 1, "reminder not delivered");
        }
        if !n.store().finish_delivery(&d.id, node, &attempt, done).await? {
            tracing::warn!(id = %d.id, "the claim on an outbox entry ran out before its attempt ended");
        }
    }
    Ok(claimed.len())
}

/// One attempt (without `retry_at`, which the caller sets).
async fn deliver(n: &Notifier, d: &Delivery) -> Attempt {
    let s = n.settings();
    let give_up =
        |e: &str| Attempt { delivered: false, status: None, error: Some(e.to_owned()), duration_ms: 0, retry_at: None };
    match d.channel {
        Channel::Webhook => {
            let hook = match n.store().webhook(d.user).await {
                Ok(Some(h)) => h,
                Ok(None) => return give_up("the webhook was removed"),
                Err(e) => return give_up(&e.to_string()),
            };
            let o = webhook::send(
                &hook.url,
                &hook.secret,
                &d.id,
                &d.body,
                s.delivery_timeout,
                s.webhooks_allow_private_addresses,
            )
            .await;
            Attempt {
                delivered: o.delivered(),
                status: o.status.map(i64::from),
                error: o.error,
                duration_ms: o.elapsed.as_millis() as i64,
                retry_at: None,
            }
        }
        Channel::Email => {
            let Some(smtp) = &s.smtp else { return give_up("no SMTP server is configured") };
            let Some(user) = d.user else { return give_up("an e-mail without a recipient") };
            let to = match n.store().user_by_id(user).await {
                Ok(Some(u)) => u.email.to_string(),
                Ok(None) => return give_up("the user no longer exists"),
                Err(e) => return give_up(&e.to_string()),
            };
            let Ok(mail) = serde_json::from_str::<Mail>(&d.body) else {
                return give_up("unreadable e-mail in the outbox");
            };
            let sent = email::send(smtp, &to, &mail.subject, &mail.text, s.delivery_timeout).await;
            Attempt {
                delivered: sent.error.is_none(),
                status: sent.code.map(i64::from),
                error: sent.error,
                duration_ms: sent.elapsed.as_millis() as i64,
                retry_at: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atna_domain::{GeneratedKey, KeyName, KeyStatus, Scopes, UserId};

    fn key(created_at: Millis, expires_at: Option<Millis>, last_used_at: Option<Millis>) -> KeyRecord {
        KeyRecord {
            id: GeneratedKey::generate().id,
            owner: UserId(1),
            name: KeyName::parse("billing").unwrap(),
            scopes: Scopes::default(),
            status: KeyStatus::Active,
            created_at,
            expires_at,
            last_used_at,
            last_used_ip: None,
            use_count: 0,
            created_by_key: None,
            rolled_from: None,
            rolled_to: None,
            rules: Default::default(),
        }
    }

    #[test]
    fn conditions_follow_the_policy() {
        use ReminderKind::*;
        let now = 1000 * DAY_MS;
        let p = Policy::default();
        assert_eq!(conditions(&p, &key(now - DAY_MS, Some(now + 3 * DAY_MS), Some(now)), now), [ExpiresIn7Days]);
        assert_eq!(conditions(&p, &key(now - DAY_MS, Some(now + DAY_MS), Some(now)), now), [ExpiresIn1Day]);
        assert_eq!(conditions(&p, &key(now - 90 * DAY_MS, None, Some(now)), now), [RotationDue]);
        assert_eq!(conditions(&p, &key(now - 40 * DAY_MS, None, Some(now - 30 * DAY_MS)), now), [Unused]);
        assert!(conditions(&p, &key(now - 2 * DAY_MS, None, None), now).is_empty(), "young and unused: not yet");
        assert!(conditions(&p, &key(now - 200 * DAY_MS, Some(now - 1), None), now).is_empty(), "expired");
        let strict = Policy { rotation_due_days: 10, unused_days: 5, ..p };
        assert_eq!(conditions(&strict, &key(now - 10 * DAY_MS, None, None), now), [RotationDue, Unused]);
    }
}
